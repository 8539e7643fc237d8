package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// runIn runs devportal with input on standard input.
func runIn(t *testing.T, input string, args ...string) (string, error) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(input)
	defer func() { stdin = old }()
	var out, errb bytes.Buffer
	err := run(args, &out, &errb)
	if err != nil {
		t.Logf("devportal %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

func runJSON(t *testing.T, v any, input string, args ...string) {
	t.Helper()
	out, err := runIn(t, input, append(args, "-json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("devportal %s: output %q: %v", strings.Join(args, " "), out, err)
	}
}

// TestOperations runs the property manager's operations from the command
// line, first on the database directly, then through a running server.
func TestOperations(t *testing.T) {
	for _, mode := range []string{"direct", "server"} {
		t.Run(mode, func(t *testing.T) {
			dir := keygen(t)
			if mode == "server" {
				startServer(t, dir)
			}
			operations(t, dir)
		})
	}
}

// startServer runs devportal serve on dir until the test ends.
func startServer(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- serve(ctx, serveConfig{dir: dir, listen: "127.0.0.1:0", pageSize: 100, shutdownDeadline: time.Second,
			ready: func(url string) { ready <- url }}, &out, io.Discard)
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start within 10 s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10 s")
		}
		if _, err := os.Stat(filepath.Join(dir, portal.ServeFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("serve.json left behind: %v", err)
		}
	})
	return url
}

func operations(t *testing.T, dir string) {
	// The kiosk reuses keygen's token file; a second one gets a new file.
	if _, err := runIn(t, "", "device", "add", "-dir", dir, "-id", "spr-0001", "-token-file", filepath.Join(dir, tokenFile)); err != nil {
		t.Fatal(err)
	}
	tok2 := filepath.Join(t.TempDir(), "token2")
	if _, err := runIn(t, "", "device", "add", "-dir", dir, "-id", "spr-0002", "-token-file", tok2, "-push-url", "http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tok2); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new token file: %v %v", fi, err)
	}
	var devs []portal.Device
	runJSON(t, &devs, "", "devices", "-dir", dir)
	if len(devs) != 2 || devs[1].PushURL != "http://127.0.0.1:1" {
		t.Errorf("devices %+v", devs)
	}

	var h portal.Holder
	runJSON(t, &h, "", "holder", "add", "-dir", dir, "-role", "courier", "-name", "ParcelCo")
	var pin, chosen, once, card, qr portal.Issued
	runJSON(t, &pin, "", "pin", "-dir", dir, "-holder", h.ID, "-schedule", "mon-fri 07:00-20:00", "-doors", "main,locker-1", "-uses", "5")
	runJSON(t, &chosen, "719304\n", "pin", "-dir", dir, "-holder", h.ID, "-choose")
	runJSON(t, &once, "", "onetime", "-dir", dir, "-holder", h.ID)
	runJSON(t, &card, "0004817265\n", "card", "-dir", dir, "-holder", h.ID)
	png := filepath.Join(t.TempDir(), "qr.png")
	runJSON(t, &qr, "", "qr", "-dir", dir, "-holder", h.ID, "-png", png)
	if pin.Credential.Uses != 5 || len(pin.Credential.Doors) != 2 || len(pin.Credential.Schedule) != 1 ||
		chosen.Secret != "719304" || once.Credential.Uses != 1 || once.Credential.ValidUntil == nil || card.Credential.Kind != kiosk.KindCard {
		t.Errorf("issued %+v %+v %+v %+v", pin, chosen, once, card)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("QR image: %v", err)
	}
	// A chosen PIN that was issued before is refused, and not shown.
	if _, err := runIn(t, "719304\n", "pin", "-dir", dir, "-holder", h.ID, "-choose"); err == nil || strings.Contains(err.Error(), "719304") {
		t.Errorf("PIN issued twice: %v", err)
	}

	var tok portal.IssuedToken
	tokPNG := filepath.Join(t.TempDir(), "tok.png")
	runJSON(t, &tok, "", "qr", "-dir", dir, "-holder", h.ID, "-signed", "-valid", "72h", "-uses", "3", "-png", tokPNG)
	pub := readPub(t, dir)
	if c, err := kiosk.ParseToken([]byte(tok.Text), pub); err != nil || c.Uses != 3 {
		t.Errorf("signed token: %+v %v", c, err)
	}
	if _, err := os.Stat(tokPNG); err != nil {
		t.Error(err)
	}

	for _, args := range [][]string{
		{"deactivate", "-dir", dir, "-id", qr.Credential.ID},
		{"delete", "-dir", dir, "-id", card.Credential.ID},
		{"revoke", "-dir", dir, "-cid", tok.Token.CID},
		{"unlock", "-dir", dir, "-device", "spr-0001", "-door", "main"},
	} {
		if _, err := runIn(t, "", args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runIn(t, "", "reactivate", "-dir", dir, "-id", card.Credential.ID); err == nil {
		t.Error("reactivated a deleted credential")
	}

	out, err := runIn(t, "", "credentials", "-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{pin.Secret.Reveal(), chosen.Secret.Reveal(), once.Secret.Reveal(), qr.Secret.Reveal(), "0004817265"} {
		if strings.Contains(out, s) {
			t.Errorf("the listing shows a secret:\n%s", out)
		}
	}
	if !strings.Contains(out, qr.Credential.ID) || !strings.Contains(out, "deactivated") || strings.Contains(out, card.Credential.ID+" ") {
		t.Errorf("listing:\n%s", out)
	}
	for _, args := range [][]string{{"holders", "-dir", dir}, {"tokens", "-dir", dir}, {"events", "-dir", dir, "-device", "spr-0001"}, {"devices", "-dir", dir}} {
		if _, err := runIn(t, "", args...); err != nil {
			t.Error(err)
		}
	}

	// The export is a document a kiosk accepts.
	doc := filepath.Join(t.TempDir(), "spr-0001.json")
	if _, err := runIn(t, "", "export", "-dir", dir, "-device", "spr-0001", "-out", doc); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := portalsync.ApplyFile(context.Background(), portalsync.StoreApplier(st), portalsync.FileOptions{DeviceID: "spr-0001", PublicKey: pub}, doc)
	if err != nil || res.Credentials != 4 {
		t.Fatalf("apply the export: %+v %v", res, err)
	}
	siteKey, _ := readSiteKey(filepath.Join(dir, siteKeyFile))
	if c, _ := st.Lookup(kiosk.Digest(siteKey, kiosk.KindPIN, []byte(chosen.Secret))); c == nil || c.ID != chosen.Credential.ID {
		t.Errorf("the chosen PIN is not in the kiosk's store: %+v", c)
	}
	if r, _ := st.Revoked(tok.Token.CID); !r {
		t.Error("the revoked token is not revoked on the kiosk")
	}
}

func readPub(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	priv, err := readPortalKey(filepath.Join(dir, portalKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return priv.Public().(ed25519.PublicKey)
}

// TestServeProtocol pulls from a running devportal serve with the token
// of keygen, as kioskd does.
func TestServeProtocol(t *testing.T) {
	dir := keygen(t)
	if _, err := runIn(t, "", "device", "add", "-dir", dir, "-id", "spr-0001", "-token-file", filepath.Join(dir, tokenFile)); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, dir)
	var h portal.Holder
	runJSON(t, &h, "", "holder", "add", "-dir", dir, "-role", "resident", "-name", "Ana")
	var pin portal.Issued
	runJSON(t, &pin, "", "pin", "-dir", dir, "-holder", h.ID)

	tok, err := portal.ReadTokenFile(filepath.Join(dir, tokenFile), "token")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/devices/spr-0001/sync", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sync: %s %s", resp.Status, body)
	}
	sig, err := portalsync.ParseSignature(resp.Header.Get(portalsync.SignatureHeader))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := portalsync.VerifyReader(readPub(t, dir), sig, bytes.NewReader(body), 0); err != nil {
		t.Fatalf("signature: %v", err)
	}
	d, err := portalsync.ParseDocument(body)
	if err != nil || !d.Full || d.Cursor != "c-1" || len(d.Credentials) != 1 || d.Credentials[0].ID != pin.Credential.ID {
		t.Fatalf("document %+v %v", d, err)
	}
}

// TestImportDemoSeed loads examples/demo-seed.toml into a portal: its
// secrets then open through the portal's documents, and are never issued
// again.
func TestImportDemoSeed(t *testing.T) {
	dir := keygen(t)
	var info portal.ImportInfo
	runJSON(t, &info, "", "import", "-dir", dir, "-seed", "../../examples/demo-seed.toml")
	if info.Credentials != 8 || info.Holders != 8 || info.Revoked != 1 {
		t.Errorf("import %+v", info)
	}
	// All or nothing: a second import conflicts and adds nothing.
	if _, err := runIn(t, "", "import", "-dir", dir, "-seed", "../../examples/demo-seed.toml"); err == nil {
		t.Error("the seed imported twice")
	}
	var cs []portal.CredentialInfo
	runJSON(t, &cs, "", "credentials", "-dir", dir)
	if len(cs) != 8 {
		t.Errorf("%d credentials after a refused import, want 8", len(cs))
	}
	// A demo PIN is never issued again.
	var h portal.Holder
	runJSON(t, &h, "", "holder", "add", "-dir", dir, "-role", "staff", "-name", "Sam")
	if _, err := runIn(t, "246810\n", "pin", "-dir", dir, "-holder", h.ID, "-choose"); err == nil {
		t.Error("a demo PIN was issued again")
	}
	// An issued credential does not take an imported id.
	var pin portal.Issued
	runJSON(t, &pin, "", "pin", "-dir", dir, "-holder", h.ID)

	doc := filepath.Join(t.TempDir(), "demo.json")
	if _, err := runIn(t, "", "export", "-dir", dir, "-device", "sim-0001", "-out", doc); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := portalsync.ApplyFile(context.Background(), portalsync.StoreApplier(st), portalsync.FileOptions{DeviceID: "sim-0001", PublicKey: readPub(t, dir)}, doc); err != nil {
		t.Fatal(err)
	}
	siteKey, _ := readSiteKey(filepath.Join(dir, siteKeyFile))
	for _, tc := range []struct {
		id     string
		kind   kiosk.Kind
		secret string
	}{
		{"c-ana-pin", kiosk.KindPIN, "246810"}, {"c-sam-qr", kiosk.KindQR, "KIOSK-STAFF-7F3K9Q"}, {"c-lee-card", kiosk.KindCard, "0004817265"},
		{pin.Credential.ID, kiosk.KindPIN, pin.Secret.Reveal()},
	} {
		if c, _ := st.Lookup(kiosk.Digest(siteKey, tc.kind, []byte(tc.secret))); c == nil || c.ID != tc.id {
			t.Errorf("%s: %+v", tc.id, c)
		}
	}
}

// TestStaleServeFile: a serve.json left by a server that died does not
// keep the operations from the database.
func TestStaleServeFile(t *testing.T) {
	dir := keygen(t)
	if err := portal.WriteServeFile(dir, portal.ServeInfo{URL: "http://127.0.0.1:1", PID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := runIn(t, "", "holder", "add", "-dir", dir, "-role", "staff", "-name", "Sam"); err != nil {
		t.Fatal(err)
	}
}
