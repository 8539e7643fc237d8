package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"kioskd/kiosk"
	"kioskd/kiosk/config"
)

// The commands against a running kioskd are tested end to end in
// cmd/kioskd (api_test.go, TestKioskctl), which starts a real kioskd and
// runs this command built. Here: what needs no daemon.

// shortDir returns a temp dir with a short path, for Unix sockets (at
// most 107 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// simConfig writes a config for a sim kiosk with a site key and returns
// its path; extra is appended.
func simConfig(t *testing.T, extra string) (path, siteKey string) {
	t.Helper()
	dir := t.TempDir()
	siteKey = filepath.Join(dir, "site.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(siteKey, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	os.Mkdir(filepath.Join(dir, "state"), 0o700)
	cfg := fmt.Sprintf(`device_id = "spr-ctl"
state_dir = %q
hardware  = "sim"

[portal]
site_key_file = %q
public_key    = %q
%s
[[door]]
id    = "main"
relay = { chip = "gpiochip0", line = 17 }

[api]
socket = %q
`, filepath.Join(dir, "state"), siteKey, base64.StdEncoding.EncodeToString(pub), extra, filepath.Join(shortDir(t), "kioskd.sock"))
	path = filepath.Join(dir, "kioskd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, siteKey
}

func TestCheckConfig(t *testing.T) {
	good, _ := simConfig(t, "")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	base := "device_id = \"x\"\n[portal]\nsite_key_file = \"/etc/kioskd/site.key\"\n[[door]]\nid = \"main\"\nrelay = { chip = \"sim0\", line = 0 }\n"
	unknown := write("unknown.toml", base+"beep = true\n")
	twoBad := write("two.toml", "device_id = \"x\"\nsync = 1\n[portal]\nsite_key_file = \"/etc/kioskd/site.key\"\n[[door]]\nid = \"main\"\nrelay = { chip = \"sim0\", line = 0 }\npulse = \"99s\"\n")
	syntax := write("syntax.toml", "device_id = \n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // each must appear, in order, as a line prefix
		stderr string
	}{
		{"good", []string{"check-config", good}, 0, []string{"OK " + good + ": device spr-ctl, hardware sim, 1 doors, 0 inputs"}, ""},
		{"good via -config", []string{"-config", good, "check-config"}, 0, []string{"OK " + good}, ""},
		{"unknown key", []string{"check-config", unknown}, 1, []string{unknown + ":7: door[0].beep: unknown key"}, "1 problem(s)"},
		{"two problems", []string{"check-config", twoBad}, 1, []string{twoBad + ":2: sync: unknown key", twoBad + ":8: door[0].pulse: "}, "2 problem(s)"},
		{"syntax", []string{"check-config", syntax}, 1, []string{syntax + ":1:"}, "1 problem(s)"},
		{"missing file", []string{"check-config", filepath.Join(dir, "none.toml")}, 1, nil, "none.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := kioskctl(tt.args...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != tt.code || !strings.Contains(errOut, tt.stderr) || (tt.stdout != nil && len(lines) != len(tt.stdout)) {
				t.Fatalf("exit %d, want %d; stdout %q; stderr %q", code, tt.code, out, errOut)
			}
			for i, want := range tt.stdout {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("line %d %q, want prefix %q", i, lines[i], want)
				}
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		code, out, _ := kioskctl("--json", "check-config", twoBad)
		var r checkReply
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.OK || len(r.Problems) != 2 ||
			r.Problems[0] != (problem{Line: 2, Key: "sync", Message: r.Problems[0].Message}) || r.Problems[1].Line != 8 || r.Problems[1].Key != "door[0].pulse" {
			t.Errorf("exit %d, %v, %+v", code, err, r)
		}
		code, out, _ = kioskctl("check-config", "--json", good)
		r = checkReply{}
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || !r.OK || len(r.Problems) != 0 {
			t.Errorf("good: exit %d, %v, %+v", code, err, r)
		}
	})
}

// doctorLines runs doctor and returns its exit status and lines by check
// name.
func doctorLines(t *testing.T, args ...string) (int, map[string]check) {
	t.Helper()
	code, out, errOut := kioskctl(append(args, "--json", "doctor")...)
	var checks []check
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s\n%s", err, out, errOut)
	}
	m := map[string]check{}
	for _, c := range checks {
		if _, dup := m[c.Name]; dup {
			t.Errorf("check %q twice", c.Name)
		}
		m[c.Name] = c
	}
	return code, m
}

func TestDoctorWithoutDaemon(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	portal := httptest.NewServer(http.NotFoundHandler())
	defer portal.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tokenDir := t.TempDir()
	token := filepath.Join(tokenDir, "token")
	os.WriteFile(token, []byte("tok-123\n"), 0o600)

	type want struct {
		status, detail string
	}
	tests := []struct {
		name   string
		extra  string
		mod    func(cfg, siteKey string)
		code   int
		checks map[string]want
	}{
		{"sim, offline", "", nil, 1, map[string]want{
			"config":    {checkOK, "parses (device spr-ctl, hardware sim, 1 doors, 0 inputs)"},
			"state_dir": {checkOK, "exists and is writable"},
			"disk":      {checkOK, "free in"},
			"gpio":      {checkOK, "hardware = sim"},
			"site key":  {checkOK, "is valid"},
			"portal":    {checkOK, "none configured"},
			"kioskd":    {checkFail, "kioskd is not running (no answer on "},
		}},
		{"devices", fmt.Sprintf("\n[[input]]\nname = \"pad\"\ntype = \"serial-keypad\"\ndevice = %q\n\n[[input]]\nname = \"gone\"\ntype = \"serial-scanner\"\nkind = \"qr\"\ndevice = \"/dev/ttyNOPE9\"\n\n[[input]]\ntype = \"terminal\"\n", slave.Name()), nil, 1, map[string]want{
			"input pad":        {checkOK, "serial-keypad " + slave.Name()},
			"input gone":       {checkFail, "/dev/ttyNOPE9 (serial-scanner) does not exist"},
			"input terminal-2": {checkOK, "terminal input"},
		}},
		{"gpio chip missing", "", func(cfg, _ string) {
			b, _ := os.ReadFile(cfg)
			b = []byte(strings.Replace(strings.Replace(string(b), `hardware  = "sim"`, `hardware  = "gpio"`, 1), "gpiochip0", "gpiochip97", 1))
			os.WriteFile(cfg, b, 0o600)
		}, 1, map[string]want{
			"gpio gpiochip97": {checkFail, "/dev/gpiochip97 does not exist (GPIO chips here: "},
		}},
		{"site key readable by all", "", func(_, siteKey string) { os.Chmod(siteKey, 0o644) }, 1, map[string]want{
			"site key": {checkWarn, "is readable by every user (mode 0644); make it 0600"},
		}},
		{"site key bad", "", func(_, siteKey string) { os.WriteFile(siteKey, []byte("short\n"), 0o600) }, 1, map[string]want{
			"site key": {checkFail, "site key file " + "%SITE%"},
		}},
		{"portal answers", fmt.Sprintf("url = %q\ntoken_file = %q\npush_listen = \"127.0.0.1:1\"\n", portal.URL, token), nil, 1, map[string]want{
			"portal": {checkOK, portal.URL + " answers (HTTP 404)"},
			"token":  {checkOK, token + " is valid"},
			"push":   {checkWarn, "not checked, kioskd is not running"},
		}},
		{"portal down, no token", fmt.Sprintf("url = %q\ntoken_file = %q\n", deadURL, filepath.Join(tokenDir, "none")), nil, 1, map[string]want{
			"portal": {checkFail, deadURL + " does not answer"},
			"token":  {checkFail, "none"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg, siteKey string
			if strings.Contains(tt.extra, "url =") {
				// [portal] keys go inside the table: extra lands there.
				cfg, siteKey = simConfig(t, tt.extra)
			} else {
				cfg, siteKey = simConfig(t, "")
				if tt.extra != "" {
					f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
					f.WriteString(tt.extra)
					f.Close()
				}
			}
			if tt.mod != nil {
				tt.mod(cfg, siteKey)
			}
			code, checks := doctorLines(t, "-config", cfg)
			if code != tt.code || checks["config"].Status != checkOK {
				t.Errorf("exit %d, want %d: %+v", code, tt.code, checks)
			}
			for name, w := range tt.checks {
				c, ok := checks[name]
				w.detail = strings.ReplaceAll(w.detail, "%SITE%", siteKey)
				if !ok || c.Status != w.status || !strings.Contains(c.Detail, w.detail) {
					t.Errorf("check %q = %+v, want %s containing %q", name, c, w.status, w.detail)
				}
			}
		})
	}

	t.Run("human", func(t *testing.T) {
		cfg, _ := simConfig(t, "")
		code, out, _ := kioskctl("-config", cfg, "doctor")
		if code != 1 || !strings.Contains(out, "ok   config: "+cfg+" parses") || !strings.Contains(out, "\nfail kioskd: kioskd is not running") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("no config", func(t *testing.T) {
		code, checks := doctorLines(t, "-config", filepath.Join(t.TempDir(), "none.toml"), "-socket", filepath.Join(shortDir(t), "s.sock"))
		if code != 1 || checks["config"].Status != checkFail || checks["kioskd"].Status != checkFail || checks["clock"].Status == "" || checks["board"].Status != checkOK || len(checks) != 4 {
			t.Errorf("exit %d, %+v", code, checks)
		}
	})
	t.Run("clock", func(t *testing.T) {
		for _, synced := range []bool{true, false} {
			d := &doctor{g: &globals{}, synced: func() bool { return synced }}
			d.clock()
			if want := map[bool]string{true: checkOK, false: checkWarn}[synced]; len(d.checks) != 1 || d.checks[0].Status != want {
				t.Errorf("synced %v: %+v", synced, d.checks)
			}
		}
	})
	t.Run("push bound", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		cfg, _ := simConfig(t, fmt.Sprintf("url = %q\ntoken_file = %q\npush_listen = %q\n", portal.URL, token, addr))
		d := &doctor{g: &globals{configPath: cfg}}
		c, _ := loadForTest(t, cfg)
		d.push(c, true, time.Second)
		ln.Close()
		d.push(c, true, time.Second)
		if len(d.checks) != 2 || d.checks[0].Status != checkOK || d.checks[1].Status != checkFail {
			t.Errorf("%+v", d.checks)
		}
	})
}

func TestNotRunning(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, sock := range []string{missing, stale} {
		for _, args := range [][]string{{"status"}, {"events", "--follow"}, {"unlock", "main"}, {"test-relay", "main"}, {"watch-input"}, {"--json", "status"}} {
			t.Run(filepath.Base(sock)+" "+strings.Join(args, " "), func(t *testing.T) {
				code, out, errOut := kioskctl(append([]string{"-socket", sock}, args...)...)
				if want := "kioskctl: kioskd is not running (no answer on " + sock + "): "; code != 1 || out != "" || !strings.HasPrefix(errOut, want) {
					t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
				}
			})
		}
	}
	code, _, errOut := kioskctl("-socket", missing, "sync")
	if code != 1 || !strings.HasPrefix(errOut, "kioskctl: sync: kioskd is not running (no answer on "+missing) {
		t.Errorf("sync: exit %d, %q", code, errOut)
	}
	// The socket comes from the config when -socket is not given.
	cfg, _ := simConfig(t, "")
	code, _, errOut = kioskctl("-config", cfg, "status")
	if code != 1 || !strings.Contains(errOut, "kioskd is not running (no answer on ") || strings.Contains(errOut, "/run/kioskd") {
		t.Errorf("socket from the config: exit %d, %q", code, errOut)
	}
	// An unreadable config falls back to the default socket, saying so.
	code, _, errOut = kioskctl("-config", filepath.Join(dir, "none.toml"), "status")
	if code != 1 || !strings.Contains(errOut, "trying the default socket /run/kioskd/kioskd.sock") {
		t.Errorf("no config: exit %d, %q", code, errOut)
	}
}

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 11, 25, 17, 0, 0, 120e6, time.UTC)
	tests := []struct {
		ev   kiosk.Event
		want string
	}{
		{kiosk.Event{Seq: 7, Time: at, ClockSynced: true, Type: kiosk.EvAccessGranted, Input: "keypad", CredentialID: "c-1", HolderID: "h-1", Role: kiosk.RoleResident, Reason: kiosk.Granted},
			"     7  2026-11-25T17:00:00.120Z  access.granted      input=keypad reason=granted credential=c-1 holder=h-1 role=resident"},
		{kiosk.Event{Seq: 8, Time: at, ClockSynced: true, Type: kiosk.EvDoorUnlocked, Door: "main", Source: "technician", Detail: map[string]any{"test": true, "pulse_ms": 3000.0}},
			"     8  2026-11-25T17:00:00.120Z  door.unlocked       door=main source=technician pulse_ms=3000 test=true"},
		{kiosk.Event{Seq: 9, Time: at, Type: kiosk.EvInputRejected, Input: "bad\nname", Detail: map[string]any{"reason": "x\ny"}},
			`     9  2026-11-25T17:00:00.120Z  input.rejected      input="bad\nname" reason="x\ny" (clock not synchronised)`},
	}
	for _, tt := range tests {
		if got := formatEvent(&tt.ev); got != tt.want {
			t.Errorf("formatEvent\n got %q\nwant %q", got, tt.want)
		}
	}
}

func TestFormatWatch(t *testing.T) {
	at := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	clock := at.Local().Format("15:04:05.000")
	tests := []struct {
		l    watchLine
		want string
	}{
		{watchLine{Type: "watching", Inputs: []string{"keypad", "scanner"}}, "watching keypad, scanner (Ctrl-C to stop; digits shown as •)"},
		{watchLine{Time: at, Input: "keypad", Type: "key", Key: "•", Entry: 1}, clock + "  keypad       key •  1 digit"},
		{watchLine{Time: at, Input: "keypad", Type: "key", Key: "•", Entry: 6, Submitted: true}, clock + "  keypad       key •  submitted 6 digits"},
		{watchLine{Time: at, Input: "keypad", Type: "key", Key: "#"}, clock + "  keypad       key #  empty entry: nothing to submit"},
		{watchLine{Time: at, Input: "keypad", Type: "key", Key: "*", Cleared: true}, clock + "  keypad       key *  entry cleared"},
		{watchLine{Time: at, Input: "keypad", Type: "key", Key: "B", Entry: 2}, clock + "  keypad       key B  ignored by the entry (2 digits)"},
		{watchLine{Time: at, Input: "scanner", Type: "code", Detail: "12 bytes"}, clock + "  scanner      code (12 bytes)"},
		{watchLine{Time: at, Input: "scanner", Type: "disconnected", Detail: "read: EOF"}, clock + "  scanner      disconnected: read: EOF"},
	}
	for _, tt := range tests {
		if got := formatWatch(&tt.l); got != tt.want {
			t.Errorf("formatWatch\n got %q\nwant %q", got, tt.want)
		}
	}
}

// FuzzStreamLines: whatever kioskd (or anything on its socket) sends,
// an event or watch line that decodes is printed on exactly one line.
func FuzzStreamLines(f *testing.F) {
	for _, s := range []string{
		`{"seq":1,"time":"2026-11-25T17:00:00Z","type":"device.started","detail":{"version":"dev"}}`,
		`{"seq":2,"type":"access.denied","input":"a\nb","reason":"unknown"}`,
		`{"type":"key","input":"keypad","key":"•","entry":3}`,
		`{"type":"watching","inputs":["x\ry"]}`,
		`{"detail":{"\u2028":"\u0085"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var ev kiosk.Event
		if json.Unmarshal(line, &ev) == nil {
			if s := formatEvent(&ev); strings.ContainsAny(s, "\n\r") {
				t.Fatalf("event printed on several lines: %q", s)
			}
		}
		var l watchLine
		if json.Unmarshal(line, &l) == nil {
			if s := formatWatch(&l); strings.ContainsAny(s, "\n\r") {
				t.Fatalf("watch line printed on several lines: %q", s)
			}
		}
	})
}

func TestConfigErrors(t *testing.T) {
	if got := configErrors(nil); got != nil {
		t.Errorf("nil: %v", got)
	}
	if got := configErrors(context.Canceled); got != nil {
		t.Errorf("other error: %v", got)
	}
}

func loadForTest(t *testing.T, path string) (*config.Config, error) {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c, nil
}
