package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"kioskd/hw/sim"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// wait bounds every wait of these tests; nothing sleeps.
const wait = 10 * time.Second

// testNow is the injected system clock: Wednesday 25 November 2026, 12:00
// in New York (the configured zone).
var testNow = time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)

// harness runs a real kioskd in process: a real config file, a real bbolt
// store in a temp dir, serial keypad and scanner on pseudo-terminals, and
// simulated lines the test can watch and poke.
type harness struct {
	t       *testing.T
	dir     string
	cfgPath string
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	siteKey []byte

	keypad, keypad2, scanner *os.File // pty masters: what the devices "type"
	slaves                   []*os.File

	bank   *sim.Bank
	logBuf *syncBuffer

	d      *Daemon
	cancel context.CancelFunc
	done   chan error
	seen   uint64 // events read so far
	// appended wakes waitEvent when the journal grows (store.Subscribe:
	// the syncer owns Store.Appended).
	appended <-chan struct{}
	events   []kiosk.Event

	// portal is the devportal the kiosk syncs with (nil: none).
	portal *testPortal
	// decisions receives every decision the engine logs, for tests that
	// cannot read the journal (see waitEvent).
	decisions chan decision
	// sysClock and synced, when set, are the daemon's system clock and
	// its synchronised state from the next start on (default: testNow,
	// or the real time with a portal; synchronised).
	sysClock func() time.Time
	synced   func() bool
}

type harnessOpts struct {
	maxFailures int    // lockout max_failures; 0 = 100 (no lockout in the way)
	lockWindow  string // default "10m"
	extra       string // appended to the config

	// portal, when set, makes the kiosk sync with this devportal: its
	// keys, URL and device token, and the real system clock (the portal
	// stamps its documents with it and pushes are judged against it).
	portal            *testPortal
	syncInterval      string // [portal] sync_interval with a portal; "" = "1s"
	heartbeatInterval string // [portal] heartbeat_interval with a portal; "" = "1h"
	pushListen        string // [portal] push_listen; "" = no push server
	maxDocumentBytes  int64  // [portal] max_document_bytes; 0 = the default

	// hardware is the config's hardware; "" = "sim".
	hardware string
	// doors replaces the [[door]] tables (doors main and locker-1 on
	// simulated lines); the inputs name door main.
	doors string
}

// simDoors are the harness's default doors.
const simDoors = `[[door]]
id              = "main"
relay           = { chip = "gpiochip0", line = 17 }
pulse           = "150ms"
contact         = { chip = "gpiochip0", line = 27 }
exit_button     = { chip = "gpiochip0", line = 22 }
held_open_after = "300ms"

[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = "gpiochip1", line = 0 }
pulse = "150ms"
`

// decision is one decision as the engine logs it (its "decision" line).
type decision struct {
	Input, Reason, Credential string
}

// tapHandler passes log records on and copies each "decision" record to
// a channel, so tests see decisions without reading the journal.
type tapHandler struct {
	slog.Handler
	ch chan<- decision
}

func (t tapHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "decision" {
		var d decision
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "input":
				d.Input = a.Value.String()
			case "reason":
				d.Reason = a.Value.String()
			case "credential":
				d.Credential = a.Value.String()
			}
			return true
		})
		select {
		case t.ch <- d:
		default: // a test that reads no decisions
		}
	}
	return t.Handler.Handle(ctx, r)
}

func (t tapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return tapHandler{t.Handler.WithAttrs(as), t.ch}
}

func (t tapHandler) WithGroup(name string) slog.Handler {
	return tapHandler{t.Handler.WithGroup(name), t.ch}
}

type syncBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
	// limit, when > 0, bounds the buffer: beyond it the older half is
	// dropped, so a long run (the soak) keeps only its recent log.
	limit int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && s.b.Len()+len(p) > s.limit {
		tail := append([]byte(nil), s.b.Bytes()[s.b.Len()/2:]...)
		s.b.Reset()
		s.b.WriteString("… (older log dropped)\n")
		s.b.Write(tail)
	}
	return s.b.Write(p)
}

// setLimit bounds the buffer to about n bytes (see limit).
func (s *syncBuffer) setLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = n
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openPTY(t *testing.T, h *harness) (*os.File, string) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	h.slaves = append(h.slaves, slave)
	t.Cleanup(func() { master.Close(); slave.Close() })
	return master, slave.Name()
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), logBuf: &syncBuffer{}, portal: o.portal, decisions: make(chan decision, 256)}
	var siteKeyFile, portalSection string
	if tp := o.portal; tp != nil {
		h.pub, h.priv, h.siteKey = tp.pub, tp.priv, tp.siteKey
		siteKeyFile = tp.siteKeyFile
		if o.syncInterval == "" {
			o.syncInterval = "1s"
		}
		if o.heartbeatInterval == "" {
			o.heartbeatInterval = "1h"
		}
		portalSection = fmt.Sprintf("url                = %q\ntoken_file         = %q\nsync_interval      = %q\nheartbeat_interval = %q\n",
			tp.URL(), tp.tokenFile, o.syncInterval, o.heartbeatInterval)
		if o.pushListen != "" {
			portalSection += fmt.Sprintf("push_listen        = %q\n", o.pushListen)
		}
		if o.maxDocumentBytes != 0 {
			portalSection += fmt.Sprintf("max_document_bytes = %d\n", o.maxDocumentBytes)
		}
	} else {
		var err error
		h.pub, h.priv, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h.siteKey = make([]byte, 32)
		rand.Read(h.siteKey)
		siteKeyFile = filepath.Join(h.dir, "site.key")
		if err := os.WriteFile(siteKeyFile, []byte(base64.StdEncoding.EncodeToString(h.siteKey)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var kp, kp2, sc string
	h.keypad, kp = openPTY(t, h)
	h.keypad2, kp2 = openPTY(t, h)
	h.scanner, sc = openPTY(t, h)
	if o.maxFailures == 0 {
		o.maxFailures = 100
	}
	if o.lockWindow == "" {
		o.lockWindow = "10m"
	}
	if o.hardware == "" {
		o.hardware = "sim"
	}
	if o.doors == "" {
		o.doors = simDoors
	}
	cfg := fmt.Sprintf(`
device_id = "spr-test"
state_dir = %q
timezone  = "America/New_York"
hardware  = %q

[portal]
%ssite_key_file = %q
public_key    = %q

[keypad]
pin_length    = 6
entry_timeout = "10s"

[lockout]
max_failures = %d
window       = %q
duration     = "5m"

[[input]]
name   = "keypad"
type   = "serial-keypad"
device = %q
doors  = ["main"]

[[input]]
name   = "keypad2"
type   = "serial-keypad"
device = %q

[[input]]
name   = "scanner"
type   = "serial-scanner"
device = %q
kind   = "qr"
doors  = ["main"]

%s
[api]
socket = %q
%s`, filepath.Join(h.dir, "state"), o.hardware, portalSection, siteKeyFile, base64.StdEncoding.EncodeToString(h.pub),
		o.maxFailures, o.lockWindow, kp, kp2, sc, o.doors, filepath.Join(apiSocketDir(t), "kioskd.sock"), o.extra)
	h.cfgPath = filepath.Join(h.dir, "kioskd.toml")
	if err := os.WriteFile(h.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// start runs the daemon and waits until it serves and every input is
// connected.
func (h *harness) start() {
	h.t.Helper()
	ready := make(chan *Daemon, 1)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	log := slog.New(tapHandler{slog.NewTextHandler(h.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}), h.decisions})
	h.bank = sim.NewBank(log)
	sysClock, synced := h.sysClock, h.synced
	switch {
	case sysClock != nil:
	case h.portal != nil:
		sysClock = time.Now // the portal's documents carry the real time
	default:
		sysClock = func() time.Time { return testNow }
	}
	if synced == nil {
		synced = func() bool { return true }
	}
	go func() {
		h.done <- run(ctx, Options{
			ConfigPath: h.cfgPath, Log: log, Bank: h.bank,
			Terminal: strings.NewReader(""),
			SysClock: sysClock,
			Synced:   synced,
			Ready:    func(d *Daemon) { ready <- d },
		})
	}()
	select {
	case h.d = <-ready:
		var unsub func()
		h.appended, unsub = h.d.Store.Subscribe()
		h.t.Cleanup(unsub)
	case err := <-h.done:
		h.t.Fatalf("kioskd did not start: %v\n%s", err, h.logBuf)
	case <-time.After(wait):
		h.t.Fatalf("kioskd not ready within %v", wait)
	}
	if h.portal != nil {
		// The uploader deletes what the portal accepts, so the
		// input.connected events may be gone before waitEvent reads
		// them (see there): ask the engine instead.
		waitFor(h.t, "every input connected", h.appended, func() bool {
			return h.d.Engine.Connected("keypad") && h.d.Engine.Connected("keypad2") && h.d.Engine.Connected("scanner")
		})
		return
	}
	connected := map[string]bool{}
	for len(connected) < 3 {
		e := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvInputConnected })
		connected[e.Input] = true
	}
}

// stop stops the daemon (as SIGTERM would) and waits for it.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("kioskd stopped with error: %v", err)
		}
	case <-time.After(wait):
		h.t.Errorf("kioskd did not stop within %v", wait)
	}
}

// restart stops the daemon and starts it again on the same state.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

// waitEvent returns the first event after those already read that matches
// pred, reading the daemon's journal as it grows.
//
// It must not be used with a portal: the uploader deletes the events the
// portal accepted, so an event may be gone before it is read. Portal tests
// read the events the portal received (testPortal.waitEvent) and the
// decisions (harness.nextDecision) instead.
func (h *harness) waitEvent(pred func(kiosk.Event) bool) kiosk.Event {
	h.t.Helper()
	if h.portal != nil {
		h.t.Fatal("harness.waitEvent with a portal: the uploader deletes accepted events; use nextDecision or the portal's events")
	}
	deadline := time.After(wait)
	for {
		evs, err := h.d.Store.Pending(h.seen, 1000)
		if err != nil {
			h.t.Fatalf("read journal: %v", err)
		}
		for _, e := range evs {
			h.seen = e.Seq
			h.events = append(h.events, e)
			if pred(e) {
				return e
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-h.appended:
		case <-deadline:
			h.t.Fatalf("no matching event within %v; events so far:\n%s", wait, h.dump())
		}
	}
}

func (h *harness) dump() string {
	var b strings.Builder
	for _, e := range h.events {
		fmt.Fprintf(&b, "  %d %s input=%s door=%s reason=%s cred=%s source=%s %v\n", e.Seq, e.Type, e.Input, e.Door, e.Reason, e.CredentialID, e.Source, e.Detail)
	}
	return b.String()
}

// nextDecision waits for the next decision the engine logs for the named
// input, skipping those of other inputs. It reads no journal, so it works
// with a portal.
func (h *harness) nextDecision(input string) decision {
	h.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case d := <-h.decisions:
			if d.Input == input {
				return d
			}
		case <-deadline:
			h.t.Fatalf("no decision from %s within %v", input, wait)
		}
	}
}

// enter types a PIN on the keypad and returns the decision.
func (h *harness) enter(pin string) decision {
	h.t.Helper()
	typeKeys(h.t, h.keypad, pin)
	return h.nextDecision("keypad")
}

// waitFor waits until cond holds: it checks at once, on every receive
// from wake (which may be nil) and on a short ticker, and fails the test
// after the common deadline. It is for state that announces itself
// nowhere a test can listen (a store read, a portal record).
func waitFor(t testing.TB, what string, wake <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-wake:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
	}
}

// decision waits for the next access decision from the named input.
func (h *harness) decision(input string) kiosk.Event {
	h.t.Helper()
	return h.waitEvent(func(e kiosk.Event) bool {
		return (e.Type == kiosk.EvAccessGranted || e.Type == kiosk.EvAccessDenied) && e.Input == input
	})
}

// typeKeys writes bytes to a pty, as the keypad or scanner would.
func typeKeys(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("type: %v", err)
	}
}

// cred describes a test credential with its secret in the clear.
type cred struct {
	kiosk.Credential
	secret string
}

func pinCred(id, pin string, mod func(*kiosk.Credential)) cred {
	c := cred{secret: pin, Credential: kiosk.Credential{
		ID: id, Kind: kiosk.KindPIN, Rev: 1, Status: kiosk.StatusActive,
		Holder: kiosk.Holder{ID: "h-" + id, Role: kiosk.RoleResident, Name: "Holder " + id},
	}}
	if mod != nil {
		mod(&c.Credential)
	}
	return c
}

// applyFull signs a full document holding creds and applies it to the
// running daemon's store through the file path of SPEC §6.5.
func (h *harness) applyFull(cursor string, issued time.Time, revoked []string, creds ...cred) {
	h.t.Helper()
	doc := &portalsync.Document{Header: portalsync.Header{
		DeviceID: "spr-test", IssuedAt: issued, Full: true, Cursor: cursor, Revoked: revoked,
	}}
	for _, c := range creds {
		k := c.Credential
		k.Digest = kiosk.Digest(h.siteKey, k.Kind, []byte(c.secret))
		doc.Credentials = append(doc.Credentials, *portalsync.NewWireCredential(&k))
	}
	body, err := doc.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.dir, cursor+".json")
	if err := portalsync.WriteFile(path, body, h.priv); err != nil {
		h.t.Fatal(err)
	}
	_, err = portalsync.ApplyFile(context.Background(), portalsync.StoreApplier(h.d.Store),
		portalsync.FileOptions{DeviceID: "spr-test", PublicKey: h.pub, Now: h.d.Clock.Now}, path)
	if err != nil {
		h.t.Fatalf("apply %s: %v", path, err)
	}
}

// relay returns the simulated relay line of a door.
func (h *harness) relay(door string) *sim.Output {
	h.t.Helper()
	return simRelay(h.t, h.bank, door)
}

// simRelay finds the simulated relay of a door of the test configs: main
// on gpiochip0 line 17, locker-1 on gpiochip1 line 0.
func simRelay(t testing.TB, bank *sim.Bank, door string) *sim.Output {
	t.Helper()
	chip, line := "gpiochip0", 17
	if door == "locker-1" {
		chip, line = "gpiochip1", 0
	}
	o, err := bank.FindOutput(chip, line)
	if err != nil {
		t.Fatalf("relay of %s: %v", door, err)
	}
	return o
}

// waitLine waits for the next logical change of an output line.
func waitLine(t *testing.T, o *sim.Output, want bool) {
	t.Helper()
	select {
	case got := <-o.Changes():
		if got != want {
			t.Fatalf("line changed to %v, want %v", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("line did not change to %v within %v", want, wait)
	}
}
