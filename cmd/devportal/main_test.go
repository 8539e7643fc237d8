package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(args, &out, &errb); err != nil {
		t.Fatalf("devportal %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func keygen(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	runOK(t, "keygen", "-dir", dir)
	return dir
}

func TestKeygen(t *testing.T) {
	dir := keygen(t)
	for _, f := range []struct {
		name string
		mode os.FileMode
		size int
	}{{portalKeyFile, 0o600, 32}, {portalPubFile, 0o644, 32}, {siteKeyFile, 0o600, 32}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s mode %v, want %v", f.name, fi.Mode().Perm(), f.mode)
		}
		if _, err := readKeyFile(filepath.Join(dir, f.name), f.name, f.size); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, tokenFile)); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 40 {
		t.Errorf("token: %v %v", fi, err)
	}
	priv, err := readPortalKey(filepath.Join(dir, portalKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := os.ReadFile(filepath.Join(dir, portalPubFile))
	pub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubText)))
	if !bytes.Equal(pub, priv.Public().(ed25519.PublicKey)) {
		t.Error("portal.pub is not the public key of portal.key")
	}

	var out, errb bytes.Buffer
	if err := run([]string{"keygen", "-dir", dir}, &out, &errb); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Errorf("keygen over existing keys: %v", err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, portalKeyFile))
	if p2, _ := readPortalKey(filepath.Join(dir, portalKeyFile)); !p2.Equal(priv) || len(again) == 0 {
		t.Error("a refused keygen changed the key")
	}
	runOK(t, "keygen", "-dir", dir, "-force")
	if p2, _ := readPortalKey(filepath.Join(dir, portalKeyFile)); p2.Equal(priv) {
		t.Error("keygen -force kept the old key")
	}
}

// TestMkdocDemoSeed makes the document of examples/demo-seed.toml and
// checks it as a kiosk would: signature, device, credentials and order.
func TestMkdocDemoSeed(t *testing.T) {
	dir := keygen(t)
	doc := filepath.Join(t.TempDir(), "demo.json")
	runOK(t, "mkdoc", "-site-key", filepath.Join(dir, siteKeyFile), "-portal-key", filepath.Join(dir, portalKeyFile),
		"-device", "sim-0001", "-seed", "../../examples/demo-seed.toml", "-out", doc, "-cursor", "c-7",
		"-issued-at", "2026-11-20T10:00:00Z")

	priv, _ := readPortalKey(filepath.Join(dir, portalKeyFile))
	siteKey, _ := readSiteKey(filepath.Join(dir, siteKeyFile))
	body, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	sigText, err := os.ReadFile(portalsync.SigPath(doc))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := portalsync.ParseSignature(string(sigText))
	if err != nil || !ed25519.Verify(priv.Public().(ed25519.PublicKey), body, sig) {
		t.Fatalf("signature does not verify: %v", err)
	}
	d, err := portalsync.ParseDocument(body)
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != "sim-0001" || !d.Full || d.Cursor != "c-7" || d.Base != "" || d.Next != "" ||
		!d.IssuedAt.Equal(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)) || len(d.Revoked) != 1 {
		t.Errorf("header %+v", d.Header)
	}
	byID := map[string]*kiosk.Credential{}
	var prev []byte
	for i, w := range d.Credentials {
		c, err := w.Credential()
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && bytes.Compare(prev, c.Digest[:]) >= 0 {
			t.Errorf("credential %d (%s) is not in ascending digest order", i, c.ID)
		}
		prev = c.Digest[:]
		byID[c.ID] = c
	}
	if len(byID) != 8 {
		t.Fatalf("%d credentials, want 8", len(byID))
	}
	for _, tc := range []struct {
		id     string
		kind   kiosk.Kind
		secret string
	}{
		{"c-ana-pin", kiosk.KindPIN, "246810"},
		{"c-sam-qr", kiosk.KindQR, "KIOSK-STAFF-7F3K9Q"},
		{"c-lee-card", kiosk.KindCard, "0004817265"},
	} {
		c := byID[tc.id]
		if c == nil || c.Digest != kiosk.Digest(siteKey, tc.kind, []byte(tc.secret)) {
			t.Errorf("%s: digest is not that of its secret", tc.id)
		}
	}
	if c := byID["c-parcelco-pin"]; len(c.Schedule) != 1 || c.Schedule[0].From != 7*60 || c.Holder.Role != kiosk.RoleCourier {
		t.Errorf("courier %+v", c)
	}
	if byID["c-guest-once"].Uses != 1 || byID["c-former-pin"].Status != kiosk.StatusDeactivated ||
		byID["c-intern-pin"].ValidUntil.IsZero() || byID["c-locker-pin"].Doors[0] != "locker-1" {
		t.Error("demo credentials lost a field")
	}
	// The document never holds a secret.
	for _, secret := range []string{"246810", "583920", "719304", "360482", "815273", "402958", "KIOSK-STAFF-7F3K9Q", "0004817265"} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("the document holds the secret %s in the clear", secret)
		}
	}

	// sign rewrites the same signature (Ed25519 is deterministic).
	os.Remove(portalsync.SigPath(doc))
	runOK(t, "sign", "-portal-key", filepath.Join(dir, portalKeyFile), doc)
	again, _ := os.ReadFile(portalsync.SigPath(doc))
	if !bytes.Equal(again, sigText) {
		t.Errorf("sign wrote %q, mkdoc %q", again, sigText)
	}
}

func TestMkdocBadSeed(t *testing.T) {
	dir := keygen(t)
	tests := []struct {
		name, seed, want string
	}{
		{"unknown key", "[[holder]]\nid = \"h\"\nrole = \"resident\"\ncolour = \"red\"\n", "unknown keys: holder.colour"},
		{"bad role", "[[holder]]\nid = \"h\"\nrole = \"owner\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\nsecret = \"520163\"\n", `holder.role "owner"`},
		{"bad kind", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c\"\nkind = \"iris\"\nsecret = \"x\"\n", `kind "iris"`},
		{"PIN with letters", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\nsecret = \"12ab56\"\n", "digits only"},
		{"no secret", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\n", "no secret"},
		{"bad schedule", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\nsecret = \"520163\"\nschedule = [{days = [\"mon\"], from = \"7:00\", to = \"20:00\"}]\n", "schedule[0]"},
		{"id twice", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\nsecret = \"520163\"\n[[holder.credential]]\nid = \"c\"\nkind = \"pin\"\nsecret = \"630815\"\n", `"c" is used twice`},
		{"same active secret", "[[holder]]\nid = \"h\"\nrole = \"staff\"\n[[holder.credential]]\nid = \"c1\"\nkind = \"pin\"\nsecret = \"520163\"\n[[holder.credential]]\nid = \"c2\"\nkind = \"pin\"\nsecret = \"520163\"\n", "both active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := filepath.Join(t.TempDir(), "seed.toml")
			os.WriteFile(seed, []byte(tt.seed), 0o600)
			out := filepath.Join(t.TempDir(), "doc.json")
			var o, e bytes.Buffer
			err := run([]string{"mkdoc", "-site-key", filepath.Join(dir, siteKeyFile), "-portal-key", filepath.Join(dir, portalKeyFile),
				"-device", "d", "-seed", seed, "-out", out}, &o, &e)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to say %q", err, tt.want)
			}
			for _, secret := range []string{"520163", "630815", "12ab56"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
			if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
				t.Error("a document was written")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	dir := keygen(t)
	tests := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"mkdoc", "-device", "d"}, 2},
		{[]string{"keygen", "-nope"}, 2},
		{[]string{"sign", "-portal-key", filepath.Join(dir, portalKeyFile)}, 2},
		{[]string{"sign", "-portal-key", filepath.Join(dir, "missing.key"), "x.json"}, 1},
		{[]string{"sign", "-portal-key", filepath.Join(dir, siteKeyFile), filepath.Join(dir, "missing.json")}, 1},
		{[]string{"help"}, 0},
		{[]string{"mkdoc", "-h"}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := exitCode(run(tt.args, &out, &errb), &errb); code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errb.String())
			}
		})
	}
}
