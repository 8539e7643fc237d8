package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"kioskd/cmd/devportal/portal"
	"kioskd/hw/sim"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// apiDeadline bounds every wait of the API tests; nothing sleeps.
const apiDeadline = 10 * time.Second

// apiDevice is the device id of the API tests' kiosk.
const apiDevice = "spr-api"

// apiKiosk is a real kioskd run in process for the API tests: a config
// file and a bbolt store in temp dirs, simulated lines, a terminal input
// fed from a pipe, a serial scanner on a pseudo-terminal, and the local
// API on a Unix socket in a short temp dir.
type apiKiosk struct {
	t       *testing.T
	dir     string
	cfgPath string
	socket  string
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	siteKey []byte
	keys    *io.PipeWriter // what the terminal input reads
	scanner *os.File       // pty master: what the scanner "reads"
	bank    *sim.Bank
	logs    *syncBuffer
	d       *Daemon
	hc      *http.Client
	// wired is true when run serves the API itself; otherwise the test
	// starts one on the daemon (before daemon.go wires it).
	wired  bool
	cancel context.CancelFunc
	done   chan error
	apiEnd chan struct{} // closed when the test's own API stops

	wake <-chan struct{} // store.Subscribe
	seen uint64          // journal events read so far

	ctlBin string // kioskctl, for TestKioskctl
}

// apiKioskOpts configure startAPIKiosk.
type apiKioskOpts struct {
	portal *apiPortal // nil: offline
}

// apiSocketDir returns a short temp dir for sockets: a Unix socket path
// holds at most 107 bytes, and t.TempDir() paths can be longer.
func apiSocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startAPIKiosk(t *testing.T, o apiKioskOpts) *apiKiosk {
	t.Helper()
	k := &apiKiosk{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	// The socket's directory does not exist yet: kioskd makes it.
	k.socket = filepath.Join(apiSocketDir(t), "run", "kioskd.sock")
	var siteKeyFile, portalLines string
	if p := o.portal; p != nil {
		k.priv, k.pub, k.siteKey, siteKeyFile = p.priv, p.priv.Public().(ed25519.PublicKey), p.siteKey, p.siteKeyFile
		portalLines = fmt.Sprintf("url = %q\ntoken_file = %q\nsync_interval = \"1h\"\nheartbeat_interval = \"1h\"\n", p.url, p.tokenFile)
	} else {
		var err error
		if k.pub, k.priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		k.siteKey = make([]byte, 32)
		rand.Read(k.siteKey)
		siteKeyFile = filepath.Join(k.dir, "site.key")
		if err := os.WriteFile(siteKeyFile, []byte(base64.StdEncoding.EncodeToString(k.siteKey)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	k.scanner = master
	cfg := fmt.Sprintf(`device_id = %q
state_dir = %q
hardware  = "sim"

[portal]
%ssite_key_file = %q
public_key    = %q

[keypad]
pin_length = 6

[lockout]
max_failures = 100

[[input]]
name = "term"
type = "terminal"

[[input]]
name   = "scanner"
type   = "serial-scanner"
device = %q
kind   = "qr"

[[door]]
id      = "main"
relay   = { chip = "gpiochip0", line = 17 }
pulse   = "100ms"
contact = { chip = "gpiochip0", line = 27 }

[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = "gpiochip1", line = 0 }
pulse = "100ms"

[api]
socket = %q
`, apiDevice, filepath.Join(k.dir, "state"), portalLines, siteKeyFile, base64.StdEncoding.EncodeToString(k.pub), slave.Name(), k.socket)
	k.cfgPath = filepath.Join(k.dir, "kioskd.toml")
	if err := os.WriteFile(k.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *apiKiosk) start() {
	t := k.t
	t.Helper()
	log := slog.New(slog.NewTextHandler(k.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k.bank = sim.NewBank(log)
	pr, pw := io.Pipe()
	k.keys = pw
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.done = make(chan error, 1)
	ready := make(chan *Daemon, 1)
	go func() {
		k.done <- run(ctx, Options{
			ConfigPath: k.cfgPath, Log: log, Bank: k.bank, Terminal: pr,
			Synced: func() bool { return true },
			Ready:  func(d *Daemon) { ready <- d },
		})
	}()
	select {
	case k.d = <-ready:
	case err := <-k.done:
		t.Fatalf("kioskd did not start: %v\n%s", err, k.logs)
	case <-time.After(apiDeadline):
		t.Fatalf("kioskd not ready within %v\n%s", apiDeadline, k.logs)
	}
	var unsub func()
	k.wake, unsub = k.d.Store.Subscribe()
	t.Cleanup(unsub)
	k.hc = apiHTTPClient(k.socket)
	c, err := net.Dial("unix", k.socket)
	if err != nil {
		t.Fatalf("kioskd does not answer on its API socket: %v", err)
	}
	c.Close()
	k.wired = true
	if k.d.Syncer != nil {
		// The uploader deletes what the portal accepts: ask the engine.
		k.until("every input connected", func() bool {
			return k.d.Engine.Connected("term") && k.d.Engine.Connected("scanner")
		})
		return
	}
	// The journal, so that later reads start after the start's events.
	connected := map[string]bool{}
	for len(connected) < 2 {
		connected[k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvInputConnected }).Input] = true
	}
}

// stop stops kioskd as SIGTERM would and waits for it.
func (k *apiKiosk) stop() {
	if k.cancel == nil {
		return
	}
	k.cancel()
	k.cancel = nil
	k.keys.Close() // unblock the terminal input's read
	select {
	case err := <-k.done:
		if err != nil {
			k.t.Errorf("kioskd stopped with error: %v", err)
		}
	case <-time.After(apiDeadline):
		k.t.Errorf("kioskd did not stop within %v", apiDeadline)
	}
	if k.apiEnd != nil {
		select {
		case <-k.apiEnd:
		case <-time.After(apiDeadline):
			k.t.Errorf("the API did not stop within %v", apiDeadline)
		}
	}
	if k.t.Failed() {
		k.t.Logf("kioskd log:\n%s", k.logs)
	}
}

// until waits until cond holds, checking at once, after every commit to
// the journal, and on a short ticker for state that announces itself
// nowhere a test can listen (a metric counted by another goroutine).
func (k *apiKiosk) until(what string, cond func() bool) {
	k.t.Helper()
	deadline := time.After(apiDeadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-k.wake:
		case <-tick.C:
		case <-deadline:
			k.t.Fatalf("timed out after %v waiting for %s\n%s", apiDeadline, what, k.logs)
		}
	}
}

// event returns the next journal event after those already read that
// matches pred.
func (k *apiKiosk) event(pred func(kiosk.Event) bool) kiosk.Event {
	k.t.Helper()
	var found *kiosk.Event
	k.until("a matching event", func() bool {
		for found == nil {
			evs, err := k.d.Store.Pending(k.seen, 100)
			if err != nil {
				k.t.Fatal(err)
			}
			if len(evs) == 0 {
				return false
			}
			for i := range evs {
				k.seen = evs[i].Seq
				if pred(evs[i]) {
					found = &evs[i]
					break
				}
			}
		}
		return true
	})
	return *found
}

// typeKeys writes keys to the terminal input.
func (k *apiKiosk) typeKeys(s string) {
	k.t.Helper()
	if _, err := io.WriteString(k.keys, s); err != nil {
		k.t.Fatalf("type %q: %v", s, err)
	}
}

func (k *apiKiosk) relay(door string) *sim.Output {
	k.t.Helper()
	return simRelay(k.t, k.bank, door)
}

// pulse waits for one whole pulse of a relay: on, then off.
func apiPulse(t *testing.T, o *sim.Output) {
	t.Helper()
	for _, want := range []bool{true, false} {
		select {
		case got, ok := <-o.Changes():
			if !ok || got != want {
				t.Fatalf("relay changed to %v (open %v), want %v", got, ok, want)
			}
		case <-time.After(apiDeadline):
			t.Fatalf("relay did not change to %v within %v", want, apiDeadline)
		}
	}
}

func apiHTTPClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// call sends a request to the API and returns the status and body.
func (k *apiKiosk) call(method, path, body string) (int, []byte) {
	k.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://kioskd"+path, rd)
	if err != nil {
		k.t.Fatal(err)
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		k.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		k.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// callJSON sends a request, wants status code and decodes the reply.
func (k *apiKiosk) callJSON(method, path, body string, code int, v any) {
	k.t.Helper()
	got, b := k.call(method, path, body)
	if got != code {
		k.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, code, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			k.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// apiStream reads a streamed reply line by line.
type apiStream struct {
	t      *testing.T
	lines  chan string
	cancel context.CancelFunc
	done   chan struct{}
}

func (k *apiKiosk) stream(path string) *apiStream {
	k.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://kioskd"+path, nil)
	resp, err := k.hc.Do(req)
	if err != nil {
		cancel()
		k.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		k.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		k.t.Errorf("GET %s: Content-Type %q, want application/x-ndjson", path, ct)
	}
	s := &apiStream{t: k.t, lines: make(chan string, 1024), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	k.t.Cleanup(s.close)
	return s
}

func (s *apiStream) close() {
	s.cancel()
	<-s.done
}

// next returns the next line that matches pred, failing when the stream
// ends first or after the deadline.
func (s *apiStream) next(what string, pred func(string) bool) string {
	s.t.Helper()
	deadline := time.After(apiDeadline)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("stream ended before %s", what)
			}
			if pred(l) {
				return l
			}
		case <-deadline:
			s.t.Fatalf("no %s within %v", what, apiDeadline)
		}
	}
}

// ended waits for the stream to end.
func (s *apiStream) ended() {
	s.t.Helper()
	deadline := time.After(apiDeadline)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-deadline:
			s.t.Fatalf("stream did not end within %v", apiDeadline)
		}
	}
}

// writeDoc signs a full document holding PIN credentials (id → PIN) and
// writes the file pair into dir.
func (k *apiKiosk) writeDoc(dir, cursor string, pins map[string]string) string {
	k.t.Helper()
	doc := &portalsync.Document{Header: portalsync.Header{DeviceID: apiDevice, IssuedAt: time.Now().UTC(), Full: true, Cursor: cursor}}
	for id, pin := range pins {
		c := kiosk.Credential{ID: id, Kind: kiosk.KindPIN, Rev: 1, Status: kiosk.StatusActive,
			Holder: kiosk.Holder{ID: "h-" + id, Role: kiosk.RoleResident}, Digest: kiosk.Digest(k.siteKey, kiosk.KindPIN, []byte(pin))}
		doc.Credentials = append(doc.Credentials, *portalsync.NewWireCredential(&c))
	}
	body, err := doc.Marshal()
	if err != nil {
		k.t.Fatal(err)
	}
	path := filepath.Join(dir, cursor+".json")
	if err := portalsync.WriteFile(path, body, k.priv); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// metric returns the value of one sample in /metrics ("" when absent).
func (k *apiKiosk) metric(sample string) string {
	k.t.Helper()
	code, b := k.call(http.MethodGet, "/metrics", "")
	if code != http.StatusOK {
		k.t.Fatalf("GET /metrics: %d %s", code, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// ---- the API over its socket ----

func TestAPISocket(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	fi, err := os.Stat(k.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(k.socket))
	if err != nil || di.Mode().Perm() != 0o750 {
		t.Errorf("socket directory: %v, %v; want mode 0750", di.Mode(), err)
	}

	// A second API on the same socket is refused.
	if a, err := newAPI(k.d, nil); !errors.Is(err, errAPISocketInUse) {
		if a != nil {
			a.close()
		}
		t.Errorf("second API on the same socket: %v, want errAPISocketInUse", err)
	}
	if code, _ := k.call(http.MethodGet, "/v1/status", ""); code != http.StatusOK {
		t.Errorf("status after a refused second API: %d", code)
	}

	other := func(path string) *Daemon {
		cfg := *k.d.Config
		cfg.API.Socket = path
		d := *k.d
		d.Config = &cfg
		return &d
	}
	dir := apiSocketDir(t)
	t.Run("stale socket removed", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // what a killed kioskd leaves
		a, err := newAPI(other(path), nil)
		if err != nil {
			t.Fatalf("newAPI over a stale socket: %v", err)
		}
		a.close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file after close: %v, want it removed", err)
		}
	})
	t.Run("file in the way", func(t *testing.T) {
		path := filepath.Join(dir, "file.sock")
		os.WriteFile(path, []byte("x"), 0o600)
		if _, err := newAPI(other(path), nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("newAPI over a regular file: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "x" {
			t.Error("the file in the way was touched")
		}
	})
	t.Run("path too long", func(t *testing.T) {
		path := filepath.Join(dir, strings.Repeat("s", 110))
		if _, err := newAPI(other(path), nil); err == nil || !strings.Contains(err.Error(), "api.socket") {
			t.Errorf("newAPI with a %d-byte path: %v", len(path), err)
		}
	})
	t.Run("unknown endpoint and method", func(t *testing.T) {
		if code, b := k.call(http.MethodGet, "/v1/nope", ""); code != http.StatusNotFound {
			t.Errorf("GET /v1/nope: %d %s", code, b)
		}
		if code, _ := k.call(http.MethodGet, "/v1/unlock", ""); code != http.StatusMethodNotAllowed {
			t.Errorf("GET /v1/unlock: %d, want 405", code)
		}
	})

	// Streams end and the socket goes when kioskd stops.
	s := k.stream("/v1/events?follow=1")
	k.stop()
	s.ended()
	if _, err := os.Lstat(k.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after stop: %v, want it removed", err)
	}
}

func TestAPIStatus(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	var st statusReply
	k.callJSON(http.MethodGet, "/v1/status", "", http.StatusOK, &st)
	if st.DeviceID != apiDevice || st.Version != version || st.Hardware != "sim" || st.Config != k.cfgPath {
		t.Errorf("status header: %+v", st)
	}
	if st.Board == "" || st.Board != boardInfo().String() || st.BoardInfo.Model != boardInfo().Model {
		t.Errorf("board %q (%+v), want %q", st.Board, st.BoardInfo, boardInfo())
	}
	if len(st.Doors) != 2 || st.Doors[0].ID != "main" || st.Doors[0].Kind != kiosk.DoorRoom || !st.Doors[0].Contact ||
		st.Doors[0].PulseMS != 100 || st.Doors[1].ID != "locker-1" || st.Doors[1].Kind != kiosk.DoorLocker || st.Doors[1].Contact {
		t.Errorf("doors %+v", st.Doors)
	}
	if len(st.Inputs) != 2 || st.Inputs[0] != (inputReply{Name: "term", Type: "terminal", Connected: true}) ||
		st.Inputs[1].Name != "scanner" || !st.Inputs[1].Connected || st.Inputs[1].Device == "" {
		t.Errorf("inputs %+v", st.Inputs)
	}
	if st.Credentials != 0 || st.Backlog < 3 { // device.started, 2 × input.connected
		t.Errorf("credentials %d, backlog %d", st.Credentials, st.Backlog)
	}
	if st.Sync.Portal != "" || st.Sync.Cursor != "" || st.Sync.AgeS != nil {
		t.Errorf("sync before any document: %+v", st.Sync)
	}
	if !st.Clock.Synced || st.Clock.Now.IsZero() || st.Clock.Floor.IsZero() {
		t.Errorf("clock %+v", st.Clock)
	}
	if len(st.Errors) != 0 {
		t.Errorf("errors %v", st.Errors)
	}

	// Relay and contact show as they are.
	contact, err := k.bank.FindInput("gpiochip0", 27)
	if err != nil {
		t.Fatal(err)
	}
	contact.Set(true)
	k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorForced })
	k.callJSON(http.MethodGet, "/v1/status", "", http.StatusOK, &st)
	if !st.Doors[0].Open {
		t.Errorf("main with its contact open: %+v", st.Doors[0])
	}
}

func TestAPIUnlockAndTestRelay(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	tests := []struct {
		path, door string
		test       bool
	}{
		{"/v1/unlock", "main", false},
		{"/v1/test-relay", "locker-1", true},
		{"/v1/unlock", "locker-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.door, func(t *testing.T) {
			var r unlockReply
			k.callJSON(http.MethodPost, tt.path, `{"door": "`+tt.door+`"}`, http.StatusOK, &r)
			if r != (unlockReply{Door: tt.door, PulseMS: 100, Test: tt.test}) {
				t.Errorf("reply %+v", r)
			}
			apiPulse(t, k.relay(tt.door))
			ev := k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
			if ev.Door != tt.door || ev.Source != kiosk.SourceTechnician || ev.Detail["pulse_ms"] != float64(100) || (ev.Detail["test"] == true) != tt.test {
				t.Errorf("event %+v", ev)
			}
		})
	}

	bad := []struct {
		name, path, body string
		code             int
		say              string
	}{
		{"unknown door", "/v1/unlock", `{"door": "back"}`, http.StatusNotFound, `unknown door \"back\"; this kiosk has main, locker-1`},
		{"no door", "/v1/unlock", `{}`, http.StatusBadRequest, "door"},
		{"empty door", "/v1/test-relay", `{"door": ""}`, http.StatusBadRequest, "door"},
		{"not JSON", "/v1/unlock", `main`, http.StatusBadRequest, "request body"},
		{"unknown field", "/v1/unlock", `{"door": "main", "pulse": "30s"}`, http.StatusBadRequest, "unknown field"},
		{"two objects", "/v1/unlock", `{"door": "main"}{"door": "main"}`, http.StatusBadRequest, "after the JSON object"},
		{"empty body", "/v1/test-relay", ``, http.StatusBadRequest, "request body"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, b := k.call(http.MethodPost, tt.path, tt.body)
			if code != tt.code || !strings.Contains(string(b), tt.say) {
				t.Errorf("status %d body %s; want %d saying %q", code, b, tt.code, tt.say)
			}
		})
	}
	// None of them moved a relay.
	for _, door := range []string{"main", "locker-1"} {
		select {
		case v := <-k.relay(door).Changes():
			t.Errorf("relay of %s changed to %v after a bad request", door, v)
		default:
		}
	}
}

func TestAPIEvents(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	last, err := k.d.Store.LastSeq()
	if err != nil {
		t.Fatal(err)
	}
	readAll := func(path string) []kiosk.Event {
		t.Helper()
		code, b := k.call(http.MethodGet, path, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		var evs []kiosk.Event
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if line == "" {
				continue
			}
			var e kiosk.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			evs = append(evs, e)
		}
		return evs
	}
	all := readAll("/v1/events")
	if len(all) == 0 || all[0].Type != kiosk.EvDeviceStarted || all[len(all)-1].Seq != last {
		t.Fatalf("journal %+v, want device.started first and seq %d last", all, last)
	}
	for i := range all {
		if all[i].Seq != uint64(i+1) {
			t.Fatalf("seq %d at %d", all[i].Seq, i)
		}
	}
	if after := readAll("/v1/events?after=1"); len(after) != len(all)-1 || len(after) == 0 || after[0].Seq != 2 {
		t.Errorf("after=1: %+v", after)
	}
	if none := readAll(fmt.Sprintf("/v1/events?after=%d&follow=0", last)); len(none) != 0 {
		t.Errorf("after the last seq: %+v", none)
	}

	for _, q := range []string{"after=-1", "after=x", "follow=maybe"} {
		if code, b := k.call(http.MethodGet, "/v1/events?"+q, ""); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, code, b)
		}
	}

	// follow: the journal, then what happens next.
	s := k.stream(fmt.Sprintf("/v1/events?after=%d&follow=1", last-1))
	first := s.next("the last journal event", func(string) bool { return true })
	var e kiosk.Event
	if json.Unmarshal([]byte(first), &e); e.Seq != last {
		t.Errorf("first followed event %s, want seq %d", first, last)
	}
	k.callJSON(http.MethodPost, "/v1/unlock", `{"door": "main"}`, http.StatusOK, nil)
	line := s.next("door.unlocked", func(l string) bool { return strings.Contains(l, kiosk.EvDoorUnlocked) })
	if json.Unmarshal([]byte(line), &e); e.Seq != last+1 || e.Door != "main" || e.Source != kiosk.SourceTechnician {
		t.Errorf("followed %s", line)
	}
	// Many events at once come in order, none lost.
	for range 5 {
		k.callJSON(http.MethodPost, "/v1/test-relay", `{"door": "locker-1"}`, http.StatusOK, nil)
	}
	for i := range 5 {
		line := s.next("door.unlocked", func(string) bool { return true })
		if json.Unmarshal([]byte(line), &e); e.Seq != last+2+uint64(i) || e.Type != kiosk.EvDoorUnlocked {
			t.Errorf("event %d: %s", i, line)
		}
	}
}

func TestAPIWatchInput(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	s := k.stream("/v1/watch-input")
	var l watchLine
	json.Unmarshal([]byte(s.next("the watching line", func(string) bool { return true })), &l)
	if l.Type != "watching" || strings.Join(l.Inputs, ",") != "term,scanner" {
		t.Fatalf("first line %+v", l)
	}
	// The tap is on before the first line: every key typed now shows.
	k.typeKeys("12#*7A3")
	want := []watchLine{
		{Input: "term", Type: "key", Key: "•", Entry: 1},
		{Input: "term", Type: "key", Key: "•", Entry: 2},
		{Input: "term", Type: "key", Key: "#", Entry: 2, Submitted: true},
		{Input: "term", Type: "key", Key: "*", Cleared: true},
		{Input: "term", Type: "key", Key: "•", Entry: 1},
		{Input: "term", Type: "key", Key: "A", Entry: 1},
		{Input: "term", Type: "key", Key: "•", Entry: 2},
	}
	for i, w := range want {
		line := s.next("a key", func(string) bool { return true })
		for _, digit := range "0123456789" {
			if strings.Contains(line, `"key":"`+string(digit)) {
				t.Errorf("line %q shows a digit", line)
			}
		}
		var got watchLine
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatal(err)
		}
		if got.Time.IsZero() {
			t.Errorf("line %d has no time", i)
		}
		got.Time = time.Time{}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("line %d: %+v, want %+v", i, got, w)
		}
	}
	// A scanned code shows its length only; an overlong one is rejected.
	code := "SECRET-QR-TEXT-42"
	typeScanner(t, k.scanner, code+"\r")
	line := s.next("a code", func(l string) bool { return strings.Contains(l, `"code"`) })
	if strings.Contains(line, code) || !strings.Contains(line, fmt.Sprintf(`"detail":"%d bytes"`, len(code))) {
		t.Errorf("code line %s", line)
	}
	typeScanner(t, k.scanner, strings.Repeat("X", 1100)+"\r")
	line = s.next("a rejection", func(l string) bool { return strings.Contains(l, `"rejected"`) })
	if !strings.Contains(line, `"input":"scanner"`) || strings.Contains(line, "XXX") {
		t.Errorf("rejection line %s", line)
	}
	k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvInputRejected })

	// Metrics: the two short entries were decided; the rejection counted.
	k.until("the rejection counted", func() bool { return k.metric(`kioskd_input_rejected_total{input="scanner"}`) == "1" })
	if k.wired {
		if got := k.metric(`kioskd_decisions_total{reason="unknown"}`); got != "2" { // "12#" and the QR code
			t.Errorf("unknown decisions %q, want 2", got)
		}
	}
}

func typeScanner(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func TestAPIApplyAndGrant(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	dir := t.TempDir()
	doc := k.writeDoc(dir, "c-1", map[string]string{"c-ana": "246810"})

	var r applyReply
	k.callJSON(http.MethodPost, "/v1/apply", fmt.Sprintf(`{"path": %q}`, doc), http.StatusOK, &r)
	if !r.Full || !r.Changed || r.Cursor != "c-1" || r.Upserted != 1 || r.Credentials != 1 {
		t.Errorf("apply: %+v", r)
	}
	var st statusReply
	k.callJSON(http.MethodGet, "/v1/status", "", http.StatusOK, &st)
	if st.Credentials != 1 || st.Sync.Cursor != "c-1" || st.Sync.AgeS == nil || *st.Sync.AgeS > 60 {
		t.Errorf("status after apply: %d credentials, sync %+v", st.Credentials, st.Sync)
	}
	if age := k.metric("kioskd_sync_age_seconds"); age == "" || age == "+Inf" {
		t.Errorf("sync age %q after a document", age)
	}
	if got := k.metric("kioskd_credentials"); got != "1" {
		t.Errorf("kioskd_credentials %q", got)
	}

	// Applies are serialised: the same document four times at once is
	// applied once and found unchanged three times, with no error.
	var wg gosync.WaitGroup
	replies := make(chan applyReply, 4)
	for range 4 {
		wg.Go(func() {
			code, b := k.call(http.MethodPost, "/v1/apply", fmt.Sprintf(`{"path": %q}`, k.writeDocCopy(doc)))
			var r applyReply
			if code != http.StatusOK || json.Unmarshal(b, &r) != nil {
				t.Errorf("concurrent apply: %d %s", code, b)
			}
			replies <- r
		})
	}
	wg.Wait()
	close(replies)
	for r := range replies {
		if r.Changed || r.Cursor != "c-1" {
			t.Errorf("concurrent apply of the same set: %+v", r)
		}
	}

	// The PIN opens the door.
	k.typeKeys("246810")
	ev := k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvAccessGranted })
	if ev.CredentialID != "c-ana" {
		t.Errorf("granted %+v", ev)
	}
	apiPulse(t, k.relay("main"))
	k.until("the pulse counted", func() bool { return k.metric(`kioskd_pulses_total{door="main"}`) == "1" })
	if k.wired {
		if got := k.metric("kioskd_grants_total"); got != "1" {
			t.Errorf("grants %q", got)
		}
		if got := k.metric("kioskd_decision_seconds_count"); got != "1" {
			t.Errorf("decision_seconds_count %q", got)
		}
	}

	forged := filepath.Join(dir, "forged.json")
	body, _ := os.ReadFile(doc)
	os.WriteFile(forged, bytes.Replace(body, []byte(`"c-1"`), []byte(`"c-9"`), 1), 0o644)
	sig, _ := os.ReadFile(doc + ".sig")
	os.WriteFile(forged+".sig", sig, 0o644)
	bad := []struct {
		name, body string
		code       int
		say        string
	}{
		{"forged", fmt.Sprintf(`{"path": %q}`, forged), http.StatusUnprocessableEntity, `"reason": "bad_signature"`},
		{"relative", `{"path": "c-1.json"}`, http.StatusBadRequest, "absolute path"},
		{"missing", fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "none.json")), http.StatusBadRequest, "no such file"},
		{"no path", `{}`, http.StatusBadRequest, "absolute path"},
		{"unknown field", `{"file": "/x.json"}`, http.StatusBadRequest, "unknown field"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, b := k.call(http.MethodPost, "/v1/apply", tt.body)
			if code != tt.code || !strings.Contains(string(b), tt.say) {
				t.Errorf("status %d %s; want %d saying %q", code, b, tt.code, tt.say)
			}
		})
	}
	k.event(func(e kiosk.Event) bool {
		return e.Type == kiosk.EvSyncRejected && e.Detail["reason"] == "bad_signature"
	})
	if got := k.d.Store.Count(); got != 1 {
		t.Errorf("%d credentials after the bad applies, want 1", got)
	}
}

// writeDocCopy copies a document pair to a fresh name.
func (k *apiKiosk) writeDocCopy(path string) string {
	dir, err := os.MkdirTemp(filepath.Dir(path), "copy")
	if err != nil {
		k.t.Error(err)
		return path
	}
	for _, suffix := range []string{"", ".sig"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			k.t.Error(err)
		}
		os.WriteFile(filepath.Join(dir, filepath.Base(path)+suffix), b, 0o644)
	}
	return filepath.Join(dir, filepath.Base(path))
}

func TestAPIMetrics(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	code, b := k.call(http.MethodGet, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	text := string(b)
	backlog, _ := k.d.Store.Backlog()
	for _, want := range []string{
		`kioskd_decisions_total{reason="granted"} 0`,
		`kioskd_decisions_total{reason="locked_out"} 0`,
		"kioskd_grants_total 0",
		`kioskd_decision_seconds_bucket{le="0.001"} 0`,
		`kioskd_pulses_total{door="main"} 0`,
		`kioskd_pulses_total{door="locker-1"} 0`,
		"kioskd_sync_age_seconds +Inf",
		fmt.Sprintf("kioskd_event_backlog %d", backlog),
		"kioskd_credentials 0",
		`kioskd_input_connected{input="term"} 1`,
		`kioskd_input_connected{input="scanner"} 1`,
		`kioskd_input_rejected_total{input="scanner"} 0`,
		"kioskd_clock_synced 1",
		fmt.Sprintf(`kioskd_build_info{version=%q} 1`, version),
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(text, want+"\n") && !strings.Contains(text, want+" ") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.HasPrefix(k.metric("kioskd_start_time_seconds"), "1.") {
		t.Errorf("start time %q", k.metric("kioskd_start_time_seconds"))
	}

	// A disconnected input shows at once.
	k.keys.Close()
	k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvInputDisconnected && e.Input == "term" })
	if got := k.metric(`kioskd_input_connected{input="term"}`); got != "0" {
		t.Errorf("term after its end of input: %q", got)
	}
}

// TestAPIDecidedHook feeds outcomes straight into the hook, as the
// engine does, including one the store could not record.
func TestAPIDecidedHook(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	a := &apiServer{metrics: newMetrics(k.d, time.Now(), 0)}
	a.decided(kiosk.Outcome{Reason: kiosk.Granted, Latency: 300 * time.Microsecond, Opened: []string{"main"}})
	a.decided(kiosk.Outcome{Reason: kiosk.Unknown, Latency: 2 * time.Millisecond})
	a.decided(kiosk.Outcome{Reason: kiosk.Granted, Err: errors.New("disk full"), Latency: time.Millisecond})
	rec := httptest.NewRecorder()
	a.metrics.handler(slog.Default()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := rec.Body
	for _, want := range []string{
		`kioskd_decisions_total{reason="granted"} 2`,
		`kioskd_decisions_total{reason="unknown"} 1`,
		"kioskd_grants_total 1",
		"kioskd_decision_errors_total 1",
		`kioskd_decision_seconds_bucket{le="0.0005"} 1`,
		`kioskd_decision_seconds_bucket{le="0.001"} 2`,
		`kioskd_decision_seconds_bucket{le="0.0025"} 3`,
		"kioskd_decision_seconds_count 3",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestAPISyncWithoutPortal(t *testing.T) {
	k := startAPIKiosk(t, apiKioskOpts{})
	code, b := k.call(http.MethodPost, "/v1/sync", "")
	if code != http.StatusConflict || !strings.Contains(string(b), "no portal configured (portal.url is not set in "+k.cfgPath) {
		t.Errorf("sync without a portal: %d %s", code, b)
	}
}

// ---- with a portal ----

// apiPortal is a devportal served in process on loopback.
type apiPortal struct {
	dir, url               string
	priv                   ed25519.PrivateKey
	siteKey                []byte
	siteKeyFile, tokenFile string
	p                      *portal.Portal
	srv                    *http.Server
}

func newAPIPortal(t *testing.T) *apiPortal {
	t.Helper()
	tp := &apiPortal{dir: t.TempDir()}
	keygen(t, tp.dir) // the files devportal keygen writes
	priv, err := portal.ReadPortalKey(filepath.Join(tp.dir, portal.PortalKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	site, err := portal.ReadSiteKey(filepath.Join(tp.dir, portal.SiteKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	token, err := portal.ReadTokenFile(filepath.Join(tp.dir, portal.TokenFile), "token")
	if err != nil {
		t.Fatal(err)
	}
	tp.priv, tp.siteKey = priv, site
	tp.siteKeyFile, tp.tokenFile = filepath.Join(tp.dir, portal.SiteKeyFile), filepath.Join(tp.dir, portal.TokenFile)
	logs := &syncBuffer{}
	tp.p, err = portal.Open(portal.Options{Dir: tp.dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.p.AddDevice(context.Background(), portal.DeviceSpec{ID: apiDevice, Token: portal.SecretText(token)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp.p.Start(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp.url = "http://" + ln.Addr().String()
	tp.srv = &http.Server{Handler: tp.p.Handler()}
	go tp.srv.Serve(ln)
	t.Cleanup(func() {
		tp.srv.Close()
		cancel()
		if err := tp.p.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("portal log:\n%s", logs)
		}
	})
	return tp
}

func TestAPISyncWithPortal(t *testing.T) {
	tp := newAPIPortal(t)
	k := startAPIKiosk(t, apiKioskOpts{portal: tp})
	var a syncReplyBody
	k.callJSON(http.MethodPost, "/v1/sync?wait=10s", "", http.StatusOK, &a)
	if !a.Done || !a.OK || a.Status.LastPull.IsZero() || a.Status.Cursor == "" {
		t.Errorf("sync: %+v", a)
	}
	var st statusReply
	k.callJSON(http.MethodGet, "/v1/status", "", http.StatusOK, &st)
	if st.Sync.Portal != tp.url || st.Sync.LastPull.IsZero() || st.Sync.AgeS == nil || st.Sync.Cursor != a.Status.Cursor {
		t.Errorf("status sync %+v", st.Sync)
	}
	k.callJSON(http.MethodPost, "/v1/sync?wait=0", "", http.StatusAccepted, &a)
	if a.Done {
		t.Errorf("sync without waiting: %+v", a)
	}
	if code, b := k.call(http.MethodPost, "/v1/sync?wait=forever", ""); code != http.StatusBadRequest {
		t.Errorf("wait=forever: %d %s", code, b)
	}

	// The portal goes away: the pull asked for fails, and says why. A
	// sync waits for the next pull to finish, which may be one that the
	// sync without waiting started while the portal was up: at most one.
	tp.srv.Close()
	var code int
	var b []byte
	for range 2 {
		if code, b = k.call(http.MethodPost, "/v1/sync?wait=10s", ""); code != http.StatusOK {
			break
		}
	}
	if code != http.StatusBadGateway || !strings.Contains(string(b), "pull failed") {
		t.Errorf("sync with the portal down: %d %s", code, b)
	}
}

// ---- kioskctl against a running kioskd ----

// buildKioskctl builds kioskctl into a temp dir.
func buildKioskctl(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds kioskctl; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build kioskctl")
	}
	bin := filepath.Join(t.TempDir(), "kioskctl")
	if out, err := exec.Command(goTool, "build", "-o", bin, "kioskd/cmd/kioskctl").CombinedOutput(); err != nil {
		t.Fatalf("build kioskctl: %v\n%s", err, out)
	}
	return bin
}

// ctl runs kioskctl to its end and returns its exit status and output.
func (k *apiKiosk) ctl(dir string, args ...string) (code int, stdout, stderr string) {
	k.t.Helper()
	cmd := exec.Command(k.ctlBin, append([]string{"-config", k.cfgPath}, args...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		k.t.Fatalf("kioskctl %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// ctlStream is a kioskctl that runs until interrupted.
type ctlStream struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
	errb  *bytes.Buffer
}

func (k *apiKiosk) ctlStart(args ...string) *ctlStream {
	k.t.Helper()
	cmd := exec.Command(k.ctlBin, append([]string{"-config", k.cfgPath}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	s := &ctlStream{t: k.t, cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{}), errb: &bytes.Buffer{}}
	cmd.Stderr = s.errb
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	k.t.Cleanup(func() { cmd.Process.Kill(); <-s.done; cmd.Wait() })
	return s
}

func (s *ctlStream) next(what string, pred func(string) bool) string {
	s.t.Helper()
	deadline := time.After(apiDeadline)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("kioskctl ended before %s; stderr: %s", what, s.errb)
			}
			if pred(l) {
				return l
			}
		case <-deadline:
			s.t.Fatalf("no %s from kioskctl within %v", what, apiDeadline)
		}
	}
}

// interrupt stops kioskctl with Ctrl-C and wants exit status 0.
func (s *ctlStream) interrupt() {
	s.t.Helper()
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(apiDeadline):
		s.t.Fatal("kioskctl did not stop on Ctrl-C")
	}
	if err := s.cmd.Wait(); err != nil {
		s.t.Errorf("kioskctl after Ctrl-C: %v; stderr %s", err, s.errb)
	}
}

func TestKioskctl(t *testing.T) {
	bin := buildKioskctl(t)
	k := startAPIKiosk(t, apiKioskOpts{})
	k.ctlBin = bin
	wd := t.TempDir()

	t.Run("status", func(t *testing.T) {
		code, out, errOut := k.ctl(wd, "status")
		norm := strings.Join(strings.Fields(out), " ") // tabwriter pads columns
		for _, want := range []string{"device: " + apiDevice + " (kioskd " + version, "hardware: sim", "credentials: 0", "board: " + boardInfo().String(),
			"main room relay off closed pulse 100ms", "locker-1 locker relay off no contact pulse 100ms",
			"term terminal connected", "scanner serial-scanner connected /dev/", "sync: offline (no portal"} {
			if !strings.Contains(norm, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		if code != 0 || errOut != "" {
			t.Errorf("exit %d, stderr %s\n%s", code, errOut, out)
		}
	})
	t.Run("status --json", func(t *testing.T) {
		for _, args := range [][]string{{"--json", "status"}, {"status", "--json"}} {
			code, out, errOut := k.ctl(wd, args...)
			var st statusReply
			if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.DeviceID != apiDevice || len(st.Doors) != 2 {
				t.Errorf("%v: exit %d, %v, %+v; stderr %s", args, code, err, st, errOut)
			}
		}
	})
	t.Run("unlock", func(t *testing.T) {
		code, out, errOut := k.ctl(wd, "unlock", "main")
		if code != 0 || !strings.Contains(out, "main unlocked: relay pulsed for 100ms") {
			t.Errorf("exit %d, %s %s", code, out, errOut)
		}
		apiPulse(t, k.relay("main"))
		code, _, errOut = k.ctl(wd, "unlock", "back")
		if code != 1 || !strings.Contains(errOut, `unknown door "back"`) {
			t.Errorf("unknown door: exit %d, %s", code, errOut)
		}
		code, _, errOut = k.ctl(wd, "unlock")
		if code != 2 || !strings.Contains(errOut, "want one door id") {
			t.Errorf("no door: exit %d, %s", code, errOut)
		}
	})
	t.Run("test-relay", func(t *testing.T) {
		code, out, errOut := k.ctl(wd, "--json", "test-relay", "locker-1")
		var r unlockReply
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r != (unlockReply{Door: "locker-1", PulseMS: 100, Test: true}) {
			t.Errorf("exit %d, %s %s", code, out, errOut)
		}
		apiPulse(t, k.relay("locker-1"))
		ev := k.event(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked && e.Door == "locker-1" })
		if ev.Detail["test"] != true || ev.Source != kiosk.SourceTechnician {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("events", func(t *testing.T) {
		code, out, _ := k.ctl(wd, "events")
		norm := strings.Join(strings.Fields(out), " ")
		if code != 0 || !strings.Contains(norm, "device.started version=") || !strings.Contains(norm, "door.unlocked door=main source=technician pulse_ms=100") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		code, out, _ = k.ctl(wd, "events", "--after", "1", "--json")
		var e kiosk.Event
		if first, _, _ := strings.Cut(out, "\n"); code != 0 || json.Unmarshal([]byte(first), &e) != nil || e.Seq != 2 {
			t.Errorf("--after 1 --json: exit %d:\n%s", code, out)
		}
	})
	t.Run("events --follow", func(t *testing.T) {
		last, _ := k.d.Store.LastSeq()
		s := k.ctlStart("events", "--follow", "--after", fmt.Sprint(last-1))
		s.next("the last event", func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), fmt.Sprint(last)+" ") })
		k.callJSON(http.MethodPost, "/v1/unlock", `{"door": "locker-1"}`, http.StatusOK, nil)
		s.next("the new door.unlocked", func(l string) bool {
			return strings.Contains(l, "door.unlocked") && strings.Contains(l, "door=locker-1")
		})
		s.interrupt()
	})
	t.Run("watch-input", func(t *testing.T) {
		s := k.ctlStart("watch-input")
		s.next("the watching line", func(l string) bool { return strings.HasPrefix(l, "watching term, scanner") })
		k.typeKeys("90")
		l1 := s.next("the first key", func(string) bool { return true })
		l2 := s.next("the second key", func(string) bool { return true })
		if !strings.Contains(l1, "term") || !strings.Contains(l1, "key •  1 digit") || !strings.Contains(l2, "key •  2 digits") {
			t.Errorf("watch-input shows\n%s\n%s", l1, l2)
		}
		if strings.ContainsAny(l1[12:], "9") || strings.ContainsAny(l2[12:], "0") {
			t.Errorf("a typed digit shows:\n%s\n%s", l1, l2)
		}
		k.typeKeys("*")
		s.next("the clear", func(l string) bool { return strings.Contains(l, "key *  entry cleared") })
		s.interrupt()
	})
	t.Run("sync without portal", func(t *testing.T) {
		code, out, errOut := k.ctl(wd, "sync")
		if code != 1 || out != "" || !strings.Contains(errOut, "kioskctl: sync: no portal configured") {
			t.Errorf("exit %d, %q %q", code, out, errOut)
		}
	})
	t.Run("apply through kioskd", func(t *testing.T) {
		k.writeDoc(wd, "c-7", map[string]string{"c-bo": "135790"})
		code, out, errOut := k.ctl(wd, "apply", "c-7.json") // relative: made absolute
		if code != 0 || strings.TrimSpace(out) != "applied full document c-7: 1 credentials, 0 removed (through kioskd)" {
			t.Errorf("exit %d, %q %q", code, out, errOut)
		}
		if n := k.d.Store.Count(); n != 1 {
			t.Errorf("%d credentials", n)
		}
		code, _, errOut = k.ctl(wd, "apply", "none.json")
		if code != 1 || !strings.Contains(errOut, "none.json: no such file") {
			t.Errorf("missing file: exit %d, %q", code, errOut)
		}
	})
	t.Run("check-config", func(t *testing.T) {
		code, out, _ := k.ctl(wd, "check-config")
		if code != 0 || !strings.HasPrefix(out, "OK "+k.cfgPath) {
			t.Errorf("good config: exit %d, %s", code, out)
		}
		bad := filepath.Join(wd, "bad.toml")
		cfg, _ := os.ReadFile(k.cfgPath)
		os.WriteFile(bad, bytes.Replace(cfg, []byte("[keypad]\n"), []byte("[keypad]\nbeep = true\n"), 1), 0o600)
		line := bytes.Count(cfg[:bytes.Index(cfg, []byte("[keypad]\n"))], []byte("\n")) + 2
		code, out, errOut := k.ctl(wd, "check-config", bad)
		if want := fmt.Sprintf("%s:%d: keypad.beep: unknown key", bad, line); code != 1 || !strings.HasPrefix(out, want) {
			t.Errorf("bad key: exit %d, %q, want %q (stderr %q)", code, out, want, errOut)
		}
	})
	t.Run("doctor", func(t *testing.T) {
		code, out, errOut := k.ctl(wd, "doctor")
		for _, want := range []string{
			"ok   config: " + k.cfgPath + " parses",
			"ok   state_dir: ",
			"ok   gpio: hardware = sim",
			"ok   input term: terminal input",
			"ok   input scanner: serial-scanner",
			"ok   site key: ",
			"ok   portal: none configured",
			"ok   kioskd: kioskd " + version + " answers on " + k.socket,
		} {
			if !strings.Contains(out, "\n"+want) && !strings.HasPrefix(out, want) {
				t.Errorf("doctor lacks %q", want)
			}
		}
		if strings.Contains(out, "fail ") || code != 0 {
			t.Errorf("doctor: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("not running", func(t *testing.T) {
		sock := filepath.Join(apiSocketDir(t), "kioskd.sock")
		for _, cmd := range []string{"status", "events", "watch-input", "sync"} {
			code, _, errOut := k.ctl(wd, "-socket", sock, cmd)
			if want := "kioskctl: kioskd is not running (no answer on " + sock + "): "; code != 1 || !strings.HasPrefix(errOut, want) &&
				!strings.HasPrefix(errOut, "kioskctl: sync: kioskd is not running (no answer on "+sock) {
				t.Errorf("%s: exit %d, %q", cmd, code, errOut)
			}
		}
	})
}

// ---- pure parts ----

func TestMaskKey(t *testing.T) {
	for _, tt := range []struct {
		k    rune
		want string
	}{{'0', "•"}, {'9', "•"}, {'*', "*"}, {'#', "#"}, {'A', "A"}, {'D', "D"}, {'E', "?"}, {'a', "?"}, {'\n', "?"}} {
		if got := maskKey(tt.k); got != tt.want {
			t.Errorf("maskKey(%q) = %q, want %q", tt.k, got, tt.want)
		}
	}
}

func TestEntryWatch(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	type step struct {
		k                  rune
		at                 time.Duration
		entry              int
		submitted, cleared bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"pin length submits", []step{{'1', 0, 1, false, false}, {'2', 0, 2, false, false}, {'3', 0, 3, false, false}, {'4', 0, 4, true, false}, {'5', 0, 1, false, false}}},
		{"hash submits", []step{{'1', 0, 1, false, false}, {'#', 0, 1, true, false}, {'#', 0, 0, false, false}}},
		{"star clears", []step{{'1', 0, 1, false, false}, {'*', 0, 0, false, true}, {'2', 0, 1, false, false}}},
		{"A-D ignored", []step{{'1', 0, 1, false, false}, {'B', 0, 1, false, false}, {'2', 0, 2, false, false}}},
		{"timeout", []step{{'1', 0, 1, false, false}, {'2', 9 * time.Second, 2, false, false}, {'3', 19 * time.Second, 1, false, false}}},
		{"A-D do not refresh", []step{{'1', 0, 1, false, false}, {'A', 9 * time.Second, 1, false, false}, {'2', 10 * time.Second, 1, false, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e entryWatch
			for i, s := range tt.steps {
				var l watchLine
				e.key(s.k, t0.Add(s.at), 4, 10*time.Second, &l)
				if l.Entry != s.entry || l.Submitted != s.submitted || l.Cleared != s.cleared {
					t.Errorf("step %d (%q): %+v, want entry %d submitted %v cleared %v", i, s.k, l, s.entry, s.submitted, s.cleared)
				}
			}
		})
	}
}

func TestSyncAge(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name           string
		lastPull, issd time.Time
		want           float64
		ok             bool
	}{
		{"never", time.Time{}, time.Time{}, 0, false},
		{"pull only", now.Add(-time.Minute), time.Time{}, 60, true},
		{"file only", time.Time{}, now.Add(-time.Hour), 3600, true},
		{"later wins", now.Add(-time.Minute), now.Add(-time.Hour), 60, true},
		{"future clamps", now.Add(time.Minute), time.Time{}, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := syncAge(now, tt.lastPull, tt.issd)
			if got != tt.want || ok != tt.ok {
				t.Errorf("syncAge = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzDecodeDoor: whatever the body, decodeDoor returns a door or an
// error, never both, never an empty door.
func FuzzDecodeDoor(f *testing.F) {
	for _, s := range []string{`{"door":"main"}`, `{}`, `{"door":""}`, `{"door":"main"} x`, `[]`, `{"door":1}`, `{"door":"a","x":1}`, "", `{"door":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		door, err := decodeDoor(bytes.NewReader(body))
		if (err == nil) == (door == "") {
			t.Fatalf("decodeDoor(%q) = %q, %v", body, door, err)
		}
		if err == nil && !utf8.ValidString(door) {
			t.Fatalf("door %q is not UTF-8", door)
		}
	})
}

// FuzzWatchKeys: whatever keys are typed, no watch line shows a digit,
// and the entry count stays within the PIN length.
func FuzzWatchKeys(f *testing.F) {
	for _, s := range []string{"123456", "12#*3A", "#", "9999999999999", "*D0"} {
		f.Add(s, uint8(6))
	}
	f.Fuzz(func(t *testing.T, keys string, pinLength uint8) {
		pl := int(pinLength%9) + 4
		var e entryWatch
		at := time.Unix(1e9, 0)
		for _, k := range keys {
			var l watchLine
			l.Key = maskKey(k)
			e.key(k, at, pl, 10*time.Second, &l)
			if strings.ContainsAny(l.Key, "0123456789") {
				t.Fatalf("key %q shown as %q", k, l.Key)
			}
			if l.Entry < 0 || l.Entry > pl || e.digits >= pl {
				t.Fatalf("entry %d (kept %d) with PIN length %d", l.Entry, e.digits, pl)
			}
			at = at.Add(time.Second)
		}
	})
}
