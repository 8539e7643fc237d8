// Package evdev reads USB QR scanners, USB card readers and keypads that
// the kernel presents as input devices (SPEC §3), through
// github.com/holoplot/go-evdev, behind kiosk.Input.
//
// Scanners and card readers are HID keyboards: Input opens the configured
// device (normally a /dev/input/by-id/... link, resolved afresh on every
// open), grabs it exclusively so that its keystrokes reach no console or
// other reader, and turns key events into codes with CodeDecoder (US
// layout with shift, Enter ends a code). A kernel matrix-keypad or a USB
// numeric keypad is read with KeypadDecoder, one kiosk.InputKey per key
// press. The decoders are pure and work without a device.
//
// When the device is missing, cannot be grabbed, or goes away (unplugged:
// ENODEV), Input reports kiosk.InputDisconnected once per outage, discards
// any partial code, and reopens the device with jittered exponential
// back-off until ctx is done; it never fails because of the device. A
// code is never logged and never put into an error or a Detail.
package evdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"kioskd/kiosk"
)

// The kinds of input device.
const (
	KindQR     = "qr"     // a QR scanner: each code is one kiosk.InputCode
	KindCard   = "card"   // a card or fob reader: each number is one kiosk.InputCode
	KindKeypad = "keypad" // a keypad: each key press is one kiosk.InputKey
)

// ErrNoDevice is returned by New when Options.Device is empty.
var ErrNoDevice = errors.New("evdev input: no device configured")

// ErrKind is returned by New when Options.Kind is not qr, card or keypad.
var ErrKind = errors.New("evdev input: unknown kind")

// ErrMaxCode is returned by New when Options.MaxCode is negative.
var ErrMaxCode = errors.New("evdev input: negative maximum code length")

// Options configure an Input.
type Options struct {
	// Name is the input's configured name, carried by every event; empty
	// means Device.
	Name string
	// Device is the input device: a /dev/input/by-id/... link (resolved
	// afresh on every open, so a replugged device is found under its new
	// node) or a /dev/input/eventN node. Required.
	Device string
	// Kind is KindQR, KindCard or KindKeypad. Required.
	Kind string
	// MaxCode is the longest code in bytes for kinds qr and card; longer
	// codes are discarded with an InputRejected. 0 means DefaultMaxCode
	// (1024, SPEC §3). Ignored for keypads.
	MaxCode int
	// Log receives connection changes (never codes or keys); nil means
	// slog.Default().
	Log *slog.Logger
}

// Reopen back-off: the first wait, the cap, and the jitter (± fraction).
const (
	backoffMin    = 250 * time.Millisecond
	backoffMax    = 30 * time.Second
	backoffJitter = 0.2
)

// Input is a scanner, card reader or keypad read through evdev. It
// implements kiosk.Input.
type Input struct {
	o   Options
	log *slog.Logger

	// afterRead, when set (by tests), is called with the number of raw
	// events after each read from the device has been decoded and its
	// events sent.
	afterRead func(n int)
}

var _ kiosk.Input = (*Input)(nil)

// New checks o and returns an Input; it opens nothing, so a device that is
// missing now is no error (Run waits for it).
func New(o Options) (*Input, error) {
	if o.Device == "" {
		return nil, ErrNoDevice
	}
	switch o.Kind {
	case KindQR, KindCard, KindKeypad:
	default:
		return nil, fmt.Errorf("input %q: %w %q (want qr, card or keypad)", o.Name, ErrKind, o.Kind)
	}
	if o.MaxCode < 0 {
		return nil, fmt.Errorf("input %q: %w: %d", o.Name, ErrMaxCode, o.MaxCode)
	}
	if o.Name == "" {
		o.Name = o.Device
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Input{o: o, log: o.Log.With("input", o.Name, "device", o.Device, "kind", o.Kind)}, nil
}

// Name returns the input's configured name.
func (in *Input) Name() string { return in.o.Name }

// decoder is what Run feeds raw events to: a CodeDecoder or a
// KeypadDecoder.
type decoder interface {
	Event(typ, code uint16, value int32) (kiosk.InputEvent, bool)
	Reset()
}

func (in *Input) newDecoder() decoder {
	if in.o.Kind == KindKeypad {
		return &KeypadDecoder{}
	}
	return &CodeDecoder{Max: in.o.MaxCode}
}

// send delivers ev stamped with the input's name and the time; false when
// ctx ended first.
func (in *Input) send(ctx context.Context, out chan<- kiosk.InputEvent, ev kiosk.InputEvent) bool {
	ev.Input = in.o.Name
	ev.Time = time.Now()
	return kiosk.SendInput(ctx, out, ev)
}

// backoff is the reopen delay: exponential from backoffMin to backoffMax,
// each wait jittered by ±backoffJitter so that many inputs replugged
// together do not retry in step.
type backoff struct{ next time.Duration }

func (b *backoff) reset() { b.next = 0 }

// wait returns the next delay and doubles the one after.
func (b *backoff) wait() time.Duration {
	if b.next == 0 {
		b.next = backoffMin
	}
	d := b.next
	b.next = min(b.next*2, backoffMax)
	f := 1 + backoffJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// sleep waits the next delay or until ctx is done; false when ctx ended
// first.
func (b *backoff) sleep(ctx context.Context) bool {
	t := time.NewTimer(b.wait())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
