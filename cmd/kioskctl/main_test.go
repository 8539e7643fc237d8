package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kioskd/kiosk"
	"kioskd/store"
)

// buildDevportal builds the devportal command into dir.
func buildDevportal(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build devportal")
	}
	bin := filepath.Join(dir, "devportal")
	cmd := exec.Command(goTool, "build", "-o", bin, "kioskd/cmd/devportal")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build devportal: %v\n%s", err, out)
	}
	return bin
}

func devportal(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("devportal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// kioskctl runs kioskctl in process and returns its exit status and
// output.
func kioskctl(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = exitCode(run(args, &out, &errb), &errb)
	return code, out.String(), errb.String()
}

// bench is a kiosk on the bench: keys, a config and a state directory.
type bench struct {
	keys, state, config string
	siteKey             []byte
}

func newBench(t *testing.T, bin string) *bench {
	t.Helper()
	dir := t.TempDir()
	b := &bench{keys: filepath.Join(dir, "keys"), state: filepath.Join(dir, "state"), config: filepath.Join(dir, "kioskd.toml")}
	devportal(t, bin, "keygen", "-dir", b.keys)
	pub, err := os.ReadFile(filepath.Join(b.keys, "portal.pub"))
	if err != nil {
		t.Fatal(err)
	}
	site, err := os.ReadFile(filepath.Join(b.keys, "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	if b.siteKey, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(site))); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`device_id = "sim-0001"
state_dir = %q
hardware  = "sim"

[portal]
site_key_file = %q
public_key    = %q

[[door]]
id    = "main"
relay = { chip = "sim0", line = 0 }

[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = "sim0", line = 1 }

[api]
socket = %q
`, b.state, filepath.Join(b.keys, "site.key"), strings.TrimSpace(string(pub)), filepath.Join(shortDir(t), "kioskd.sock"))
	if err := os.WriteFile(b.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestApplyFlow runs what a technician does on a bench: devportal keygen,
// devportal mkdoc from the demo seed, kioskctl apply; then the store
// knows the demo resident's PIN.
func TestApplyFlow(t *testing.T) {
	bin := buildDevportal(t, t.TempDir())
	b := newBench(t, bin)
	doc := filepath.Join(t.TempDir(), "demo.json")
	devportal(t, bin, "mkdoc", "-site-key", filepath.Join(b.keys, "site.key"), "-portal-key", filepath.Join(b.keys, "portal.key"),
		"-device", "sim-0001", "-seed", "../../examples/demo-seed.toml", "-out", doc)

	code, out, errOut := kioskctl("-config", b.config, "apply", doc)
	if code != 0 || strings.TrimSpace(out) != "applied full document c-1: 8 credentials, 0 removed" {
		t.Fatalf("apply: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	code, out, errOut = kioskctl("-config", b.config, "apply", doc)
	if code != 0 || !strings.Contains(out, "nothing changed") {
		t.Fatalf("second apply: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	// A document signed by someone else is rejected with its reason.
	forged := filepath.Join(t.TempDir(), "forged.json")
	body, _ := os.ReadFile(doc)
	os.WriteFile(forged, bytes.Replace(body, []byte(`"c-1"`), []byte(`"c-2"`), 1), 0o644)
	sig, _ := os.ReadFile(doc + ".sig")
	os.WriteFile(forged+".sig", sig, 0o644)
	code, out, errOut = kioskctl("-config", b.config, "apply", forged)
	if code != 1 || !strings.Contains(errOut, "rejected forged.json (bad_signature)") || out != "" {
		t.Fatalf("forged: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	st, err := store.Open(store.Options{Dir: b.state})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Lookup(kiosk.Digest(b.siteKey, kiosk.KindPIN, []byte("246810")))
	if err != nil || c == nil || c.ID != "c-ana-pin" || c.Holder.Role != kiosk.RoleResident {
		t.Fatalf("Lookup of the resident PIN = %+v, %v", c, err)
	}
	if c, _ := st.Lookup(kiosk.Digest(b.siteKey, kiosk.KindQR, []byte("KIOSK-STAFF-7F3K9Q"))); c == nil || c.ID != "c-sam-qr" {
		t.Errorf("Lookup of the staff QR = %+v", c)
	}
	if c, _ := st.Lookup(kiosk.Digest(b.siteKey, kiosk.KindCard, []byte("246810"))); c != nil {
		t.Errorf("the resident PIN read as a card matched %+v", c)
	}
	evs, err := st.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if strings.Join(types, " ") != "sync.applied sync.rejected" {
		t.Errorf("events %v, want sync.applied (first apply only) then sync.rejected", types)
	}

	// With the store held (as kioskd holds it) but no API answering,
	// apply says so.
	code, _, errOut = kioskctl("-config", b.config, "apply", doc)
	if code != 1 || !strings.Contains(errOut, "kioskd is running and holds the store") || !strings.Contains(errOut, "does not answer on its API socket") {
		t.Errorf("apply while the store is held: exit %d, stderr %s", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kioskd.toml")
	os.WriteFile(cfg, []byte("device_id = \"x\"\n[portal]\nsite_key_file = \"/etc/kioskd/site.key\"\n[[door]]\nid = \"main\"\nrelay = { chip = \"sim0\", line = 0 }\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"no command", nil, 2, "no command"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"bad flag", []string{"-nope", "apply", "x.json"}, 2, "-nope"},
		{"apply without file", []string{"apply"}, 2, "want one document file"},
		{"apply two files", []string{"apply", "a.json", "b.json"}, 2, "want one document file"},
		{"status with an argument", []string{"status", "now"}, 2, "status takes no arguments"},
		{"events with an argument", []string{"events", "7"}, 2, "events takes no arguments"},
		{"events bad after", []string{"events", "--after", "x"}, 2, "invalid value"},
		{"unlock without door", []string{"unlock"}, 2, "unlock: want one door id"},
		{"test-relay two doors", []string{"test-relay", "a", "b"}, 2, "test-relay: want one door id"},
		{"watch-input with an argument", []string{"watch-input", "x"}, 2, "watch-input takes no arguments"},
		{"sync negative wait", []string{"sync", "--wait", "-1s"}, 2, "want 0 or more"},
		{"check-config two files", []string{"check-config", "a", "b"}, 2, "at most one config file"},
		{"doctor with an argument", []string{"doctor", "x"}, 2, "doctor takes no arguments"},
		{"subcommand help", []string{"events", "-h"}, 0, "the portal has not accepted yet"},
		{"missing config", []string{"-config", filepath.Join(t.TempDir(), "none.toml"), "apply", "x.json"}, 1, "none.toml"},
		{"no public key", []string{"-config", cfg, "apply", "x.json"}, 1, "portal.public_key is not set"},
		{"help", []string{"help"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := kioskctl(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.say) {
				t.Errorf("exit %d, want %d; stderr %q should say %q (stdout %q)", code, tt.code, errOut, tt.say, out)
			}
		})
	}
}
