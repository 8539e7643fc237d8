package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"kioskd/kiosk"
)

const deadline = 10 * time.Second

// ptyDev is a real pseudo-terminal pair: the test types on master, the
// input opens the slave through link, a symlink in the test's temporary
// directory, as it would a /dev/serial/by-id link. Inputs never open the
// /dev/pts/N path itself: after an unplug that number may be reused by a
// pty of another test process, and a retrying input would steal its bytes.
type ptyDev struct {
	master, tty *os.File // tty: the test's own fd of the slave
	link        string
}

func newPTY(t *testing.T) *ptyDev {
	t.Helper()
	return newPTYAt(t, filepath.Join(t.TempDir(), "tty"))
}

// newPTYAt opens a pty pair and points link at its slave.
func newPTYAt(t *testing.T, link string) *ptyDev {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	p := &ptyDev{master: master, tty: tty, link: link}
	pointLink(t, link, tty.Name())
	t.Cleanup(p.unplug)
	return p
}

// unplug makes the device vanish as a USB unplug does: its link goes,
// then the pty closes (the input's reads fail).
func (p *ptyDev) unplug() {
	if target, err := os.Readlink(p.link); err == nil && target == p.tty.Name() {
		os.Remove(p.link)
	}
	p.master.Close()
	p.tty.Close()
}

func (p *ptyDev) path() string { return p.link }

func (p *ptyDev) typ(t *testing.T, s string) {
	t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		t.Fatalf("type on pty: %v", err)
	}
}

// clearExcl clears the TIOCEXCL that go.bug.st/serial sets, which
// outlives the port's close while the master stays open.
func (p *ptyDev) clearExcl(t *testing.T) {
	t.Helper()
	rc, err := p.tty.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TIOCNXCL, 0) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("TIOCNXCL: %v", ierr)
	}
}

// pointLink makes link point at target, atomically, as udev re-points a
// /dev/serial/by-id link when a device comes back.
func pointLink(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// logs is a slog handler that passes each record's message on a channel,
// so a test can wait for something the input logged.
type logs chan string

func (l logs) Enabled(context.Context, slog.Level) bool { return true }
func (l logs) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}
func (l logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logs) WithGroup(string) slog.Handler      { return l }

type running struct {
	events chan kiosk.InputEvent
	stop   func()
}

// start runs in and returns its events and a stop that cancels and
// waits for Run to return nil.
func start(t *testing.T, in kiosk.Input) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan kiosk.InputEvent, 256)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, out) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(deadline):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return &running{events: out, stop: stop}
}

func (r *running) next(t *testing.T) kiosk.InputEvent {
	t.Helper()
	select {
	case ev := <-r.events:
		if ev.Time.IsZero() {
			t.Fatalf("event %+v has no time", ev)
		}
		return ev
	case <-time.After(deadline):
		t.Fatal("no input event within deadline")
		return kiosk.InputEvent{}
	}
}

func (r *running) expect(t *testing.T, typ kiosk.InputEventType) kiosk.InputEvent {
	t.Helper()
	ev := r.next(t)
	if ev.Type != typ {
		t.Fatalf("event %+v, want type %d", ev, typ)
	}
	return ev
}

// keys reads key events until it has len(want) and compares.
func (r *running) keys(t *testing.T, want string) {
	t.Helper()
	var got []rune
	for len(got) < len([]rune(want)) {
		ev := r.next(t)
		if ev.Type != kiosk.InputKey {
			t.Fatalf("event %+v while waiting for keys %q (have %q)", ev, want, string(got))
		}
		got = append(got, ev.Key)
	}
	if string(got) != want {
		t.Fatalf("keys %q, want %q", string(got), want)
	}
}

func fastOpts(name, dev string) Options {
	return Options{
		Name: name, Device: dev,
		ReadTimeout: 10 * time.Millisecond,
		BackoffMin:  time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	}
}

func TestKeypadKeysOverPTY(t *testing.T) {
	p := newPTY(t)
	r := start(t, NewKeypad(fastOpts("keypad", p.path())))
	if ev := r.expect(t, kiosk.InputConnected); ev.Input != "keypad" {
		t.Fatalf("Connected from %q", ev.Input)
	}
	// CR LF is one '#', two CRs are two; the trailing 4 shows nothing
	// more came in between.
	p.typ(t, "123456#")
	r.keys(t, "123456#")
	p.typ(t, "AB*D9\r\n0\r\r4")
	r.keys(t, "AB*D9#0##4")
}

func TestKeypadGarbageSummarised(t *testing.T) {
	p := newPTY(t)
	var clock atomic.Int64
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	opts := fastOpts("keypad", p.path())
	opts.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	r := start(t, NewKeypad(opts))
	r.expect(t, kiosk.InputConnected)

	var reported, reports int
	var lastReport kiosk.InputEvent
	collect := func(ev kiosk.InputEvent) bool {
		if ev.Type != kiosk.InputRejected {
			return false
		}
		var n int
		if _, err := fmt.Sscanf(ev.Detail, "%d garbage bytes", &n); err != nil {
			t.Fatalf("Detail %q: %v", ev.Detail, err)
		}
		reported += n
		reports++
		lastReport = ev
		return true
	}
	// The first garbage is reported at once; it clears the entry it
	// broke (one '*' for the run), and the keys around it come through.
	p.typ(t, "1xyz2")
	var keys []rune
	for len(keys) < 3 || reports == 0 {
		ev := r.next(t)
		if !collect(ev) {
			keys = append(keys, ev.Key)
		}
	}
	if string(keys) != "1*2" {
		t.Fatalf("keys %q, want 1*2", string(keys))
	}
	// More garbage within the interval is held back...
	p.typ(t, "ab!\x003")
	keys = keys[:0]
	for len(keys) < 2 {
		ev := r.next(t)
		if !collect(ev) {
			keys = append(keys, ev.Key)
		}
	}
	if string(keys) != "*3" {
		t.Fatalf("keys %q, want *3", string(keys))
	}
	// ...and summarised once the interval has passed.
	t1 := t0.Add(10 * time.Second)
	clock.Store(t1.UnixNano())
	for reported < 7 {
		if !collect(r.next(t)) {
			t.Fatal("unexpected event while waiting for the summary")
		}
	}
	if reported != 7 || reports != 2 {
		t.Fatalf("%d garbage bytes in %d reports, want 7 in 2", reported, reports)
	}
	if !lastReport.Time.Equal(t1) {
		t.Fatalf("second report at %v, want after the interval at %v", lastReport.Time, t1)
	}
}

func TestScannerOverPTY(t *testing.T) {
	p := newPTY(t)
	r := start(t, NewScanner(fastOpts("scanner", p.path())))
	r.expect(t, kiosk.InputConnected)

	p.typ(t, "KQ1.abc.def\r\n")
	if ev := r.expect(t, kiosk.InputCode); string(ev.Code) != "KQ1.abc.def" || ev.Input != "scanner" {
		t.Fatalf("code %q from %q", ev.Code, ev.Input)
	}
	// A 2000-byte code is rejected once; the next code still arrives.
	p.typ(t, strings.Repeat("Z", 2000)+"\r")
	p.typ(t, "0012345678\r")
	ev := r.expect(t, kiosk.InputRejected)
	if ev.Detail != DetailOverlong || ev.Code != nil {
		t.Fatalf("rejection %+v, want Detail %q and no code", ev, DetailOverlong)
	}
	if ev := r.expect(t, kiosk.InputCode); string(ev.Code) != "0012345678" {
		t.Fatalf("code after overlong: %q", ev.Code)
	}
}

// Unplug: the device vanishes (master closed, read error), the input
// reports one InputDisconnected however many reopens fail, and when the
// device is back under the same name it reconnects and keys flow again.
func TestKeypadUnplugReplug(t *testing.T) {
	link := filepath.Join(t.TempDir(), "usb-keypad")
	p1 := newPTYAt(t, link)

	lg := make(logs, 1024)
	opts := fastOpts("keypad", link)
	opts.Log = slog.New(lg)
	r := start(t, NewKeypad(opts))
	r.expect(t, kiosk.InputConnected)
	p1.typ(t, "12")
	r.keys(t, "12")

	p1.unplug()
	ev := r.expect(t, kiosk.InputDisconnected)
	if ev.Detail == "" || !strings.Contains(ev.Detail, link) {
		t.Fatalf("Disconnected detail %q, want the error naming %s", ev.Detail, link)
	}
	// Wait until at least two reopens have failed.
	for failed := 0; failed < 2; {
		select {
		case m := <-lg:
			if strings.Contains(m, "still unavailable") {
				failed++
			}
		case <-time.After(deadline):
			t.Fatal("no failed reopen logged")
		}
	}

	p2 := newPTYAt(t, link)
	// Only Connected may follow: no second Disconnected for this outage,
	// no stale key.
	r.expect(t, kiosk.InputConnected)
	p2.typ(t, "3\r\n4")
	r.keys(t, "3#4")
}

// A device missing at start is reported once and picked up when it
// appears.
func TestScannerDeviceAppearsLater(t *testing.T) {
	link := filepath.Join(t.TempDir(), "scanner")
	r := start(t, NewScanner(fastOpts("scanner", link)))
	ev := r.expect(t, kiosk.InputDisconnected)
	if !strings.Contains(ev.Detail, link) {
		t.Fatalf("detail %q does not name %s", ev.Detail, link)
	}
	p := newPTYAt(t, link)
	r.expect(t, kiosk.InputConnected)
	p.typ(t, "CARD1\n")
	if ev := r.expect(t, kiosk.InputCode); string(ev.Code) != "CARD1" {
		t.Fatalf("code %q", ev.Code)
	}
}

// A restarted input (daemon restart) reopens the same pty slave once the
// TIOCEXCL the first run left is cleared.
func TestKeypadReopenSamePTY(t *testing.T) {
	p := newPTY(t)
	r := start(t, NewKeypad(fastOpts("keypad", p.path())))
	r.expect(t, kiosk.InputConnected)
	p.typ(t, "5")
	r.keys(t, "5")
	r.stop()

	p.clearExcl(t)
	r2 := start(t, NewKeypad(fastOpts("keypad", p.path())))
	r2.expect(t, kiosk.InputConnected)
	p.typ(t, "6#")
	r2.keys(t, "6#")
}

// Run returns promptly on cancel while the line is idle, and at once
// without a device configured.
func TestRunStops(t *testing.T) {
	p := newPTY(t)
	r := start(t, NewScanner(fastOpts("scanner", p.path())))
	r.expect(t, kiosk.InputConnected)
	begin := time.Now()
	r.stop()
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Run took %v to stop", d)
	}

	err := NewKeypad(Options{Name: "k"}).Run(context.Background(), make(chan kiosk.InputEvent))
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Run without device = %v, want ErrNoDevice", err)
	}
}

func TestNameDefaultsToDevice(t *testing.T) {
	if n := NewKeypad(Options{Device: "/dev/ttyUSB0"}).Name(); n != "/dev/ttyUSB0" {
		t.Fatalf("Name = %q", n)
	}
	if n := NewScanner(Options{Name: "scanner", Device: "/dev/ttyACM0"}).Name(); n != "scanner" {
		t.Fatalf("Name = %q", n)
	}
}

// Codes never reach the log.
func TestScannerNeverLogsCodes(t *testing.T) {
	p := newPTY(t)
	var buf safeBuf
	opts := fastOpts("scanner", p.path())
	opts.Log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := start(t, NewScanner(opts))
	r.expect(t, kiosk.InputConnected)
	p.typ(t, "TOPSECRET-QR\r"+strings.Repeat("S", 1500)+"\r")
	r.expect(t, kiosk.InputCode)
	r.expect(t, kiosk.InputRejected)
	p.unplug()
	r.expect(t, kiosk.InputDisconnected)
	r.stop()
	if s := buf.String(); strings.Contains(s, "TOPSECRET") || strings.Contains(s, "SSSS") {
		t.Fatalf("log holds a code: %s", s)
	}
}

type safeBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
