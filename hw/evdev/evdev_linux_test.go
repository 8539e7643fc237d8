package evdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goevdev "github.com/holoplot/go-evdev"
	"golang.org/x/sys/unix"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
)

// wait bounds every wait on the kernel: generous, for the VM's software
// emulation.
const wait = 60 * time.Second

// The package's key codes are the kernel's.
func TestKeyCodesMatchKernel(t *testing.T) {
	pairs := []struct {
		name      string
		ours, lib uint16
	}{
		{"EV_SYN", EvSyn, uint16(goevdev.EV_SYN)}, {"EV_KEY", EvKey, uint16(goevdev.EV_KEY)},
		{"SYN_REPORT", SynReport, uint16(goevdev.SYN_REPORT)}, {"SYN_DROPPED", SynDropped, uint16(goevdev.SYN_DROPPED)},
		{"KEY_ESC", KeyEsc, uint16(goevdev.KEY_ESC)}, {"KEY_1", Key1, uint16(goevdev.KEY_1)}, {"KEY_0", Key0, uint16(goevdev.KEY_0)},
		{"KEY_MINUS", KeyMinus, uint16(goevdev.KEY_MINUS)}, {"KEY_EQUAL", KeyEqual, uint16(goevdev.KEY_EQUAL)},
		{"KEY_BACKSPACE", KeyBackspace, uint16(goevdev.KEY_BACKSPACE)}, {"KEY_TAB", KeyTab, uint16(goevdev.KEY_TAB)},
		{"KEY_Q", KeyQ, uint16(goevdev.KEY_Q)}, {"KEY_P", KeyQ + 9, uint16(goevdev.KEY_P)},
		{"KEY_LEFTBRACE", KeyLeftBrace, uint16(goevdev.KEY_LEFTBRACE)}, {"KEY_RIGHTBRACE", KeyRightBrace, uint16(goevdev.KEY_RIGHTBRACE)},
		{"KEY_ENTER", KeyEnter, uint16(goevdev.KEY_ENTER)}, {"KEY_LEFTCTRL", KeyLeftCtrl, uint16(goevdev.KEY_LEFTCTRL)},
		{"KEY_A", KeyA, uint16(goevdev.KEY_A)}, {"KEY_B", KeyB, uint16(goevdev.KEY_B)}, {"KEY_C", KeyC, uint16(goevdev.KEY_C)},
		{"KEY_D", KeyD, uint16(goevdev.KEY_D)}, {"KEY_E", KeyE, uint16(goevdev.KEY_E)}, {"KEY_S", KeyS, uint16(goevdev.KEY_S)},
		{"KEY_L", KeyA + 8, uint16(goevdev.KEY_L)},
		{"KEY_SEMICOLON", KeySemicolon, uint16(goevdev.KEY_SEMICOLON)}, {"KEY_APOSTROPHE", KeyApostrophe, uint16(goevdev.KEY_APOSTROPHE)},
		{"KEY_GRAVE", KeyGrave, uint16(goevdev.KEY_GRAVE)}, {"KEY_LEFTSHIFT", KeyLeftShift, uint16(goevdev.KEY_LEFTSHIFT)},
		{"KEY_BACKSLASH", KeyBackslash, uint16(goevdev.KEY_BACKSLASH)}, {"KEY_Z", KeyZ, uint16(goevdev.KEY_Z)},
		{"KEY_M", KeyZ + 6, uint16(goevdev.KEY_M)},
		{"KEY_COMMA", KeyComma, uint16(goevdev.KEY_COMMA)}, {"KEY_DOT", KeyDot, uint16(goevdev.KEY_DOT)},
		{"KEY_SLASH", KeySlash, uint16(goevdev.KEY_SLASH)}, {"KEY_RIGHTSHIFT", KeyRightShift, uint16(goevdev.KEY_RIGHTSHIFT)},
		{"KEY_KPASTERISK", KeyKPAsterisk, uint16(goevdev.KEY_KPASTERISK)}, {"KEY_LEFTALT", KeyLeftAlt, uint16(goevdev.KEY_LEFTALT)},
		{"KEY_SPACE", KeySpace, uint16(goevdev.KEY_SPACE)}, {"KEY_CAPSLOCK", KeyCapsLock, uint16(goevdev.KEY_CAPSLOCK)},
		{"KEY_NUMLOCK", KeyNumLock, uint16(goevdev.KEY_NUMLOCK)}, {"KEY_SCROLLLOCK", KeyScrollLock, uint16(goevdev.KEY_SCROLLLOCK)},
		{"KEY_KP7", KeyKP7, uint16(goevdev.KEY_KP7)}, {"KEY_KP8", KeyKP8, uint16(goevdev.KEY_KP8)}, {"KEY_KP9", KeyKP9, uint16(goevdev.KEY_KP9)},
		{"KEY_KPMINUS", KeyKPMinus, uint16(goevdev.KEY_KPMINUS)}, {"KEY_KP4", KeyKP4, uint16(goevdev.KEY_KP4)},
		{"KEY_KP5", KeyKP5, uint16(goevdev.KEY_KP5)}, {"KEY_KP6", KeyKP6, uint16(goevdev.KEY_KP6)},
		{"KEY_KPPLUS", KeyKPPlus, uint16(goevdev.KEY_KPPLUS)}, {"KEY_KP1", KeyKP1, uint16(goevdev.KEY_KP1)},
		{"KEY_KP2", KeyKP2, uint16(goevdev.KEY_KP2)}, {"KEY_KP3", KeyKP3, uint16(goevdev.KEY_KP3)}, {"KEY_KP0", KeyKP0, uint16(goevdev.KEY_KP0)},
		{"KEY_KPDOT", KeyKPDot, uint16(goevdev.KEY_KPDOT)}, {"KEY_KPENTER", KeyKPEnter, uint16(goevdev.KEY_KPENTER)},
		{"KEY_RIGHTCTRL", KeyRightCtrl, uint16(goevdev.KEY_RIGHTCTRL)}, {"KEY_KPSLASH", KeyKPSlash, uint16(goevdev.KEY_KPSLASH)},
		{"KEY_RIGHTALT", KeyRightAlt, uint16(goevdev.KEY_RIGHTALT)}, {"KEY_KPEQUAL", KeyKPEqual, uint16(goevdev.KEY_KPEQUAL)},
		{"KEY_LEFTMETA", KeyLeftMeta, uint16(goevdev.KEY_LEFTMETA)}, {"KEY_RIGHTMETA", KeyRightMeta, uint16(goevdev.KEY_RIGHTMETA)},
		{"KEY_NUMERIC_0", KeyNumeric0, uint16(goevdev.KEY_NUMERIC_0)}, {"KEY_NUMERIC_9", KeyNumeric0 + 9, uint16(goevdev.KEY_NUMERIC_9)},
		{"KEY_NUMERIC_STAR", KeyNumericStar, uint16(goevdev.KEY_NUMERIC_STAR)}, {"KEY_NUMERIC_POUND", KeyNumericPound, uint16(goevdev.KEY_NUMERIC_POUND)},
		{"KEY_NUMERIC_A", KeyNumericA, uint16(goevdev.KEY_NUMERIC_A)}, {"KEY_NUMERIC_D", KeyNumericD, uint16(goevdev.KEY_NUMERIC_D)},
	}
	for _, p := range pairs {
		if p.ours != p.lib {
			t.Errorf("%s: ours %d, kernel's %d", p.name, p.ours, p.lib)
		}
	}
}

// Runs everywhere: a device missing at start is an outage, not an error,
// and Run returns when ctx is done.
func TestRunMissingDevice(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "usb-missing-event-kbd")
	h := start(t, Options{Name: "scanner", Device: dev, Kind: KindQR})
	ev := h.next(kiosk.InputDisconnected)
	if !strings.Contains(ev.Detail, dev) {
		t.Fatalf("Detail %q does not name the device %s", ev.Detail, dev)
	}
	h.stop()
}

// keyboard is a uinput keyboard: a stand-in for a USB scanner, card
// reader or keypad.
type keyboard struct {
	dev  *goevdev.InputDevice
	node string // its /dev/input/eventN
	gone bool
}

var kbdSeq atomic.Int64

// newKeyboard creates a uinput keyboard with the key codes a scanner or
// keypad uses, or ends the test when /dev/uinput is missing.
func newKeyboard(t *testing.T) *keyboard {
	t.Helper()
	var codes []goevdev.EvCode
	for c := goevdev.EvCode(1); c < 256; c++ {
		codes = append(codes, c)
	}
	for c := goevdev.EvCode(KeyNumeric0); c <= KeyNumericD; c++ {
		codes = append(codes, c)
	}
	name := fmt.Sprintf("kioskd-test-%d-%d", os.Getpid(), kbdSeq.Add(1))
	dev, err := goevdev.CreateDevice(name, goevdev.InputID{BusType: 0x03, Vendor: 0x1eab, Product: 0x0d10, Version: 1},
		map[goevdev.EvType][]goevdev.EvCode{goevdev.EV_KEY: codes})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			hwtest.Unavailable(t, "/dev/uinput", err)
		}
		t.Fatalf("create uinput keyboard: %v", err)
	}
	k := &keyboard{dev: dev}
	t.Cleanup(k.unplug)
	k.node = eventNode(t, name)
	return k
}

// eventNode finds the /dev/input/eventN of the input device named name
// through sysfs (the VM has no udev and so no by-id links).
func eventNode(t *testing.T, name string) string {
	t.Helper()
	dirs, err := filepath.Glob("/sys/class/input/event*")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "device", "name"))
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		node := filepath.Join("/dev/input", filepath.Base(d))
		if _, err := os.Stat(node); err != nil {
			t.Fatalf("input device %s is %s in sysfs, but: %v", name, filepath.Base(d), err)
		}
		return node
	}
	t.Fatalf("no event node for input device %s in /sys/class/input", name)
	return ""
}

// unplug destroys the device, as pulling its USB plug does.
func (k *keyboard) unplug() {
	if k.gone {
		return
	}
	k.gone = true
	_ = goevdev.DestroyDevice(k.dev)
	_ = k.dev.Close()
}

// link points the by-id stand-in at the keyboard's node, atomically.
func link(t *testing.T, byID, node string) {
	t.Helper()
	tmp := byID + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(node, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, byID); err != nil {
		t.Fatal(err)
	}
}

// plugged creates a keyboard and a by-id link to it.
func plugged(t *testing.T) (*keyboard, string) {
	t.Helper()
	k := newKeyboard(t)
	byID := filepath.Join(t.TempDir(), "usb-Test_Scanner-event-kbd")
	link(t, byID, k.node)
	return k, byID
}

// harness runs an Input and collects its events.
type harness struct {
	t        *testing.T
	in       *Input
	out      chan kiosk.InputEvent
	cancel   context.CancelFunc
	done     chan error
	consumed atomic.Int64 // raw events Run has read
	progress chan struct{}
	written  int64 // raw events the test has written

	logs  lockedBuffer // everything Run logged, at debug level
	codes []string     // codes read, which must not be in logs
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{t: t, out: make(chan kiosk.InputEvent, 256), done: make(chan error, 1), progress: make(chan struct{}, 1)}
	o.Log = slog.New(slog.NewTextHandler(&h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	in, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.in = in
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	in.afterRead = func(n int) {
		h.consumed.Add(int64(n))
		select {
		case h.progress <- struct{}{}:
		default:
		}
	}
	go func() { h.done <- in.Run(ctx, h.out) }()
	t.Cleanup(func() {
		h.stop()
		logs := h.logs.String()
		for _, c := range h.codes {
			if len(c) >= 5 && strings.Contains(logs, c) {
				t.Errorf("the log holds code %q:\n%s", c, logs)
			}
		}
	})
	return h
}

// stop cancels Run and waits for it to return nil.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(wait):
		h.t.Fatalf("Run did not return within %v of cancel", wait)
	}
}

// next returns the next event, which must be of type want.
func (h *harness) next(want kiosk.InputEventType) kiosk.InputEvent {
	h.t.Helper()
	select {
	case ev := <-h.out:
		if ev.Type != want {
			h.t.Fatalf("event %+v (%s), want type %d", ev, show([]kiosk.InputEvent{ev}), want)
		}
		if ev.Input != h.in.Name() || ev.Time.IsZero() {
			h.t.Fatalf("event %+v not stamped with input %q and a time", ev, h.in.Name())
		}
		return ev
	case <-time.After(wait):
		h.t.Fatalf("no event within %v, want type %d", wait, want)
	}
	panic("unreachable")
}

// inFlight bounds the events written but not yet read, well below the
// kernel's 64-event buffer of a keyboard's evdev client, so that no
// SYN_DROPPED happens however slow the reader is.
const inFlight = 24

// typeRaw writes evs to the keyboard a packet at a time, waiting for the
// reader whenever too many are in flight. Packets end at SYN_REPORT.
func (h *harness) typeRaw(k *keyboard, evs []raw) {
	h.t.Helper()
	deadline := time.After(wait)
	for len(evs) > 0 {
		n := 1
		for n < len(evs) && !(evs[n-1].typ == EvSyn && evs[n-1].code == SynReport) {
			n++
		}
		for h.written+int64(n)-h.consumed.Load() > inFlight {
			select {
			case <-h.progress:
			case <-deadline:
				h.t.Fatalf("reader consumed %d of %d events within %v", h.consumed.Load(), h.written, wait)
			}
		}
		for _, e := range evs[:n] {
			if err := k.dev.WriteOne(&goevdev.InputEvent{Type: goevdev.EvType(e.typ), Code: goevdev.EvCode(e.code), Value: e.value}); err != nil {
				h.t.Fatalf("write to uinput: %v", err)
			}
		}
		h.written += int64(n)
		evs = evs[n:]
	}
}

// scan types s and Enter, as a scanner does.
func (h *harness) scan(k *keyboard, s string) {
	h.t.Helper()
	h.typeRaw(k, mustType(h.t, s))
}

func (h *harness) wantCode(s string) {
	h.t.Helper()
	ev := h.next(kiosk.InputCode)
	h.codes = append(h.codes, string(ev.Code))
	if string(ev.Code) != s {
		h.t.Fatalf("code %q, want %q", string(ev.Code), s)
	}
}

func TestScannerReadsCodes(t *testing.T) {
	tests := []struct {
		kind string
		code string
	}{
		{KindQR, qrText},
		{KindQR, "https://example.com/p?id=42&t=A~b"},
		{KindCard, "0004127823"},
	}
	for i, tt := range tests {
		// Not named by the code: the name is in the device's path, which
		// is logged, and no code may be.
		t.Run(fmt.Sprintf("%s#%d", tt.kind, i), func(t *testing.T) {
			k, byID := plugged(t)
			h := start(t, Options{Name: "front-" + tt.kind, Device: byID, Kind: tt.kind})
			h.next(kiosk.InputConnected)
			h.scan(k, tt.code)
			h.wantCode(tt.code)
			// Enter alone is nothing: the next event is the next code.
			h.typeRaw(k, tap(KeyEnter))
			h.scan(k, "2")
			h.wantCode("2")
		})
	}
}

func TestScannerOverlongCode(t *testing.T) {
	k, byID := plugged(t)
	h := start(t, Options{Name: "qr", Device: byID, Kind: KindQR})
	h.next(kiosk.InputConnected)
	h.scan(k, strings.Repeat("Ab1", 400)) // 1200 bytes, over the default 1024
	if ev := h.next(kiosk.InputRejected); ev.Detail != "overlong code, 1200 bytes" {
		t.Fatalf("Detail %q, want %q", ev.Detail, "overlong code, 1200 bytes")
	}
	h.scan(k, "KQ1.next")
	h.wantCode("KQ1.next")
}

func TestScannerUnmappedKey(t *testing.T) {
	k, byID := plugged(t)
	h := start(t, Options{Name: "qr", Device: byID, Kind: KindQR})
	h.next(kiosk.InputConnected)
	h.typeRaw(k, cat(tap(KeyA), tap(59 /* F1 */), tap(KeyEnter)))
	if ev := h.next(kiosk.InputRejected); ev.Detail != DetailUnmapped {
		t.Fatalf("Detail %q, want %q", ev.Detail, DetailUnmapped)
	}
	h.scan(k, "a")
	h.wantCode("a")
}

func TestScannerUnplugReplug(t *testing.T) {
	k, byID := plugged(t)
	h := start(t, Options{Name: "qr", Device: byID, Kind: KindQR})
	h.next(kiosk.InputConnected)
	h.scan(k, "first")
	h.wantCode("first")

	// Unplugged halfway through a code: the part is discarded.
	part, _ := typeText("half")
	h.typeRaw(k, part)
	k.unplug()
	if ev := h.next(kiosk.InputDisconnected); ev.Detail == "" {
		t.Fatal("InputDisconnected without a reason")
	}

	k2 := newKeyboard(t)
	link(t, byID, k2.node)
	h.next(kiosk.InputConnected)
	h.scan(k2, "second")
	h.wantCode("second")
}

func TestScannerMissingAtStart(t *testing.T) {
	byID := filepath.Join(t.TempDir(), "usb-Test_Scanner-event-kbd")
	h := start(t, Options{Name: "card", Device: byID, Kind: KindCard})
	h.next(kiosk.InputDisconnected)
	k := newKeyboard(t)
	link(t, byID, k.node)
	h.next(kiosk.InputConnected)
	h.scan(k, "12345")
	h.wantCode("12345")
}

func TestGrabIsExclusive(t *testing.T) {
	k, byID := plugged(t)

	// A reader that does not grab, such as the console: it must see
	// nothing of a code while the input holds the device.
	spy, err := unix.Open(k.node, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", k.node, err)
	}
	defer unix.Close(spy)

	h := start(t, Options{Name: "qr", Device: byID, Kind: KindQR})
	h.next(kiosk.InputConnected)

	other, err := goevdev.OpenWithFlags(k.node, os.O_RDONLY)
	if err != nil {
		t.Fatalf("open %s: %v", k.node, err)
	}
	if err := other.Grab(); err == nil {
		t.Fatal("a second grab succeeded while Run holds the device")
	}
	other.Close()

	h.scan(k, "private")
	h.wantCode("private")
	// The kernel hands events to readers as they are written, so by now
	// the spy would hold them if the grab let them through.
	buf := make([]byte, 1024)
	if n, err := unix.Read(spy, buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("non-grabbing reader read %d bytes (err %v) while the device was grabbed", n, err)
	}

	// Once Run has returned, the grab is released.
	h.stop()
	again, err := goevdev.OpenWithFlags(k.node, os.O_RDONLY)
	if err != nil {
		t.Fatalf("open %s: %v", k.node, err)
	}
	defer again.Close()
	if err := again.Grab(); err != nil {
		t.Fatalf("grab after Run returned: %v", err)
	}
}

func TestKeypad(t *testing.T) {
	k, byID := plugged(t)
	h := start(t, Options{Name: "keypad", Device: byID, Kind: KindKeypad})
	h.next(kiosk.InputConnected)
	shift8 := cat([]raw{press(KeyLeftShift), syn()}, tap(Key1+7), []raw{release(KeyLeftShift), syn()})
	h.typeRaw(k, cat(tap(KeyKP1), tap(Key1+1), tap(KeyNumeric0+3), tap(KeyKPAsterisk), shift8,
		tap(KeyNumericA), tap(KeyKPPlus), tap(KeyKPEnter), tap(KeyNumericPound)))
	var got []rune
	for range 8 {
		got = append(got, h.next(kiosk.InputKey).Key)
	}
	if string(got) != "123**A##" {
		t.Fatalf("keys %q, want %q", string(got), "123**A##")
	}
}

// Run returns promptly on cancel while blocked reading an idle device.
func TestRunReturnsOnCancelWhileReading(t *testing.T) {
	_, byID := plugged(t)
	h := start(t, Options{Name: "qr", Device: byID, Kind: KindQR})
	h.next(kiosk.InputConnected)
	h.stop()
}
