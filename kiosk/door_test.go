package kiosk

import (
	"errors"
	gosync "sync"
	"testing"
	"time"
)

// fakeLine is an OutputLine that reports every change on a channel.
type fakeLine struct {
	mu      gosync.Mutex
	active  bool
	closed  bool
	failSet error
	changes chan lineChange
}

// lineChange is one change of a fakeLine, stamped when it happened.
type lineChange struct {
	active bool
	at     time.Time
}

func newFakeLine() *fakeLine { return &fakeLine{changes: make(chan lineChange, 64)} }

func (f *fakeLine) Set(a bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSet != nil && a {
		return f.failSet
	}
	if f.active != a {
		f.active = a
		f.changes <- lineChange{a, time.Now()}
	}
	return nil
}

func (f *fakeLine) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active {
		f.active = false
		f.changes <- lineChange{false, time.Now()}
	}
	f.closed = true
	return nil
}

func (f *fakeLine) isActive() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

const testWait = 5 * time.Second

func expectChange(t *testing.T, f *fakeLine, want bool) time.Time {
	t.Helper()
	select {
	case got := <-f.changes:
		if got.active != want {
			t.Fatalf("line went %v, want %v", got.active, want)
		}
		return got.at
	case <-time.After(testWait):
		t.Fatalf("line did not go %v within %v", want, testWait)
	}
	return time.Time{}
}

func newTestDoor(relay OutputLine, pulse time.Duration) (*DoorController, *[]*Event) {
	var mu gosync.Mutex
	var evs []*Event
	rec := func(e ...*Event) error {
		mu.Lock()
		defer mu.Unlock()
		evs = append(evs, e...)
		return nil
	}
	now := func() (time.Time, bool) { return time.Unix(1_800_000_000, 0), true }
	return NewDoor(DoorSpec{Door: Door{ID: "main"}, Relay: relay, Pulse: pulse}, rec, now, nil), &evs
}

func TestPulseEndsEvenWhenCallerPanics(t *testing.T) {
	relay := newFakeLine()
	d, _ := newTestDoor(relay, 80*time.Millisecond)
	func() {
		defer func() { _ = recover() }()
		if err := d.Pulse(); err != nil {
			t.Fatal(err)
		}
		panic("caller dies mid-grant")
	}()
	on := expectChange(t, relay, true)
	off := expectChange(t, relay, false)
	if el := off.Sub(on); el < 80*time.Millisecond || el > 80*time.Millisecond+time.Second {
		t.Errorf("pulse lasted %v, want 80ms", el)
	}
}

func TestPulseExtendsNeverStacks(t *testing.T) {
	relay := newFakeLine()
	d, _ := newTestDoor(relay, 200*time.Millisecond)
	if err := d.Pulse(); err != nil {
		t.Fatal(err)
	}
	expectChange(t, relay, true)
	second := time.Now()
	for i := 0; i < 5; i++ { // five grants at once must not make a 1 s pulse
		if err := d.Pulse(); err != nil {
			t.Fatal(err)
		}
	}
	off := expectChange(t, relay, false)
	if el := off.Sub(second); el < 200*time.Millisecond || el >= 950*time.Millisecond {
		t.Errorf("relay released %v after the last grants, want about one pulse (200ms), never five stacked", el)
	}
	select {
	case c := <-relay.changes:
		t.Fatalf("extra relay change %v: pulses stacked", c.active)
	default:
	}
}

func TestPulseClampedAndReleasedOnClose(t *testing.T) {
	relay := newFakeLine()
	d, _ := newTestDoor(relay, time.Hour)
	if d.PulseLength() != MaxPulse {
		t.Fatalf("pulse %v, want clamped to %v", d.PulseLength(), MaxPulse)
	}
	if err := d.Pulse(); err != nil {
		t.Fatal(err)
	}
	expectChange(t, relay, true)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if relay.isActive() || !relay.closed {
		t.Fatal("relay not released inactive on close")
	}
	if err := d.Pulse(); !errors.Is(err, ErrDoorClosed) {
		t.Fatalf("pulse after close: %v, want ErrDoorClosed", err)
	}
}

func TestPulseRelayErrorLeavesRelayOff(t *testing.T) {
	relay := newFakeLine()
	relay.failSet = errors.New("gpio: line busy")
	d, _ := newTestDoor(relay, time.Second)
	if err := d.Pulse(); err == nil {
		t.Fatal("pulse on a failing relay succeeded")
	}
	if relay.isActive() || d.Status().RelayOn {
		t.Fatal("relay reported on after a failed pulse")
	}
}
