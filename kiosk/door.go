package kiosk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// MaxPulse is the longest relay pulse a door accepts (SPEC §4).
const MaxPulse = 30 * time.Second

// DefaultPulse is the pulse length when a door names none.
const DefaultPulse = 3 * time.Second

// DefaultHeldOpenAfter is how long a door may stand open before
// door.held_open when the door names no limit.
const DefaultHeldOpenAfter = 60 * time.Second

// unlockGrace is how long after the relay releases an opening still counts
// as the unlock's and not as forced: a latch takes a moment to engage
// again and people push the door as the strike clicks.
const unlockGrace = time.Second

// DoorSpec describes one door and its lines. Optional lines are nil.
type DoorSpec struct {
	Door
	// Relay is the door's (or compartment's) relay; required.
	Relay OutputLine
	// Pulse is the relay pulse; zero means DefaultPulse, longer than
	// MaxPulse is clamped to MaxPulse.
	Pulse time.Duration
	// Contact is the door contact (active = open); nil when none.
	Contact InputLine
	// ExitButton is the request-to-exit button (active = pressed); nil
	// when none.
	ExitButton InputLine
	// HeldOpenAfter is when an open door raises door.held_open; zero
	// means DefaultHeldOpenAfter.
	HeldOpenAfter time.Duration
	// Indicator holds the door's buzzer and LEDs; nil when none.
	Indicator *Indicator
}

// DoorStatus is a door's state for status reports and heartbeats.
type DoorStatus struct {
	ID      string   `json:"id"`
	Kind    DoorKind `json:"kind"`
	RelayOn bool     `json:"relay_on"`
	Open    bool     `json:"open"`
}

// DoorController drives one door: bounded relay pulses, the door contact
// (opened, closed, forced, held open) and the request-to-exit button.
//
// A pulse is switched off by a runtime timer that belongs to the
// controller, never by the caller, so a caller that panics or stalls cannot
// keep a relay energised past its pulse. Safe for concurrent use.
type DoorController struct {
	spec   DoorSpec
	record func(...*Event) error
	now    func() (time.Time, bool)
	log    *slog.Logger

	mu        sync.Mutex
	relayOn   bool
	offTimer  *time.Timer
	offAt     time.Time // when the current pulse ends
	releaseAt time.Time // when the last pulse ended
	open      bool
	heldTimer *time.Timer
	closed    bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// ErrDoorClosed is returned by Pulse after Close.
var ErrDoorClosed = errors.New("door controller closed")

// NewDoor makes the controller of one door. record durably appends events
// (Store.Record); now gives the effective time and whether the system clock
// is synchronised. The relay must already be requested inactive. Start
// watches the contact and exit button.
func NewDoor(spec DoorSpec, record func(...*Event) error, now func() (time.Time, bool), log *slog.Logger) *DoorController {
	if spec.Kind == "" {
		spec.Kind = DoorRoom
	}
	if spec.Pulse <= 0 {
		spec.Pulse = DefaultPulse
	}
	if spec.Pulse > MaxPulse {
		spec.Pulse = MaxPulse
	}
	if spec.HeldOpenAfter <= 0 {
		spec.HeldOpenAfter = DefaultHeldOpenAfter
	}
	if log == nil {
		log = slog.Default()
	}
	return &DoorController{spec: spec, record: record, now: now, log: log.With("door", spec.ID)}
}

// ID returns the door id.
func (d *DoorController) ID() string { return d.spec.ID }

// Door returns the door as the rules see it.
func (d *DoorController) Door() Door { return d.spec.Door }

// PulseLength returns the configured pulse.
func (d *DoorController) PulseLength() time.Duration { return d.spec.Pulse }

// Indicator returns the door's buzzer and LEDs (nil when none).
func (d *DoorController) Indicator() *Indicator { return d.spec.Indicator }

// Start watches the door contact and the exit button until ctx is done or
// Close is called.
func (d *DoorController) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	if c := d.spec.Contact; c != nil {
		if open, err := c.Active(); err == nil {
			d.mu.Lock()
			d.open = open
			d.mu.Unlock()
		}
		d.wg.Add(1)
		go d.watchContact(ctx, c)
	}
	if b := d.spec.ExitButton; b != nil {
		d.wg.Add(1)
		go d.watchExit(ctx, b)
	}
}

// Pulse energises the relay for the door's pulse length. A pulse during a
// pulse extends it to end one pulse length from now; it never stacks.
func (d *DoorController) Pulse() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrDoorClosed
	}
	if !d.relayOn {
		if err := d.spec.Relay.Set(true); err != nil {
			// Make sure a half-done switch is not left on.
			_ = d.spec.Relay.Set(false)
			return fmt.Errorf("door %s: relay on: %w", d.spec.ID, err)
		}
		d.relayOn = true
		d.log.Info("relay on", "pulse", d.spec.Pulse)
	}
	d.offAt = time.Now().Add(d.spec.Pulse)
	if d.offTimer == nil {
		d.offTimer = time.AfterFunc(d.spec.Pulse, d.pulseEnd)
	} else {
		d.offTimer.Reset(d.spec.Pulse)
	}
	return nil
}

// pulseEnd runs on the runtime's timer goroutine when a pulse is over.
func (d *DoorController) pulseEnd() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.relayOn {
		return
	}
	if rest := time.Until(d.offAt); rest > 0 {
		// Extended after this timer fired but before we got the lock.
		d.offTimer.Reset(rest)
		return
	}
	d.relayOffLocked()
}

func (d *DoorController) relayOffLocked() {
	var err error
	for try := 0; try < 3; try++ {
		if err = d.spec.Relay.Set(false); err == nil {
			break
		}
	}
	if err != nil {
		d.log.Error("relay off failed", "err", err)
	}
	d.relayOn = false
	d.releaseAt = time.Now()
	d.log.Info("relay off")
}

// Status returns the door's current state.
func (d *DoorController) Status() DoorStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DoorStatus{ID: d.spec.ID, Kind: d.spec.Kind, RelayOn: d.relayOn, Open: d.open}
}

// Close stops watching, switches the relay off and releases every line of
// the door.
func (d *DoorController) Close() error {
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Lock()
	d.closed = true
	if d.offTimer != nil {
		d.offTimer.Stop()
	}
	if d.heldTimer != nil {
		d.heldTimer.Stop()
	}
	if d.relayOn {
		d.relayOffLocked()
	}
	d.mu.Unlock()
	var errs []error
	errs = append(errs, d.spec.Relay.Close())
	if d.spec.Contact != nil {
		errs = append(errs, d.spec.Contact.Close())
	}
	if d.spec.ExitButton != nil {
		errs = append(errs, d.spec.ExitButton.Close())
	}
	if d.spec.Indicator != nil {
		errs = append(errs, d.spec.Indicator.Close())
	}
	d.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close door %s: %w", d.spec.ID, err)
	}
	return nil
}

func (d *DoorController) event(typ string) *Event {
	t, synced := d.now()
	return &Event{Time: t, ClockSynced: synced, Type: typ, Door: d.spec.ID}
}

func (d *DoorController) emit(evs ...*Event) {
	if err := d.record(evs...); err != nil {
		d.log.Error("record door event", "err", err)
	}
}

func (d *DoorController) watchContact(ctx context.Context, c InputLine) {
	defer d.wg.Done()
	ch := c.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			d.contactChanged(ev.Active)
		}
	}
}

func (d *DoorController) contactChanged(open bool) {
	d.mu.Lock()
	if open == d.open || d.closed {
		d.mu.Unlock()
		return
	}
	d.open = open
	var evs []*Event
	if open {
		unlocked := d.relayOn || time.Since(d.releaseAt) <= unlockGrace
		ev := d.event(EvDoorOpened)
		evs = append(evs, ev)
		if !unlocked {
			ev.Detail = map[string]any{"forced": true}
			evs = append(evs, d.event(EvDoorForced))
		}
		if d.heldTimer != nil {
			d.heldTimer.Stop()
		}
		d.heldTimer = time.AfterFunc(d.spec.HeldOpenAfter, d.heldOpen)
	} else {
		if d.heldTimer != nil {
			d.heldTimer.Stop()
			d.heldTimer = nil
		}
		evs = append(evs, d.event(EvDoorClosed))
	}
	d.mu.Unlock()
	d.emit(evs...)
}

func (d *DoorController) heldOpen() {
	d.mu.Lock()
	if !d.open || d.closed {
		d.mu.Unlock()
		return
	}
	ev := d.event(EvDoorHeldOpen)
	ev.Detail = map[string]any{"after_ms": d.spec.HeldOpenAfter.Milliseconds()}
	d.mu.Unlock()
	d.emit(ev)
}

func (d *DoorController) watchExit(ctx context.Context, b InputLine) {
	defer d.wg.Done()
	ch := b.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Active {
				d.Unlock(SourceExitButton, nil)
			}
		}
	}
}

// Unlock records a door.unlocked event with the given source and pulses
// the relay. For the exit button (egress) the door opens even when the
// event cannot be recorded: people must be able to leave; other sources
// fail safe and do not open.
func (d *DoorController) Unlock(source string, detail map[string]any) error {
	ev := d.UnlockEvent(source)
	for k, v := range detail {
		ev.Detail[k] = v
	}
	if err := d.record(ev); err != nil {
		d.log.Error("record unlock", "source", source, "err", err)
		if source != SourceExitButton {
			return fmt.Errorf("door %s: record unlock: %w", d.spec.ID, err)
		}
	}
	return d.Pulse()
}

// UnlockEvent returns the door.unlocked event of one pulse of this door.
func (d *DoorController) UnlockEvent(source string) *Event {
	ev := d.event(EvDoorUnlocked)
	ev.Source = source
	ev.Detail = map[string]any{"pulse_ms": d.spec.Pulse.Milliseconds()}
	return ev
}
