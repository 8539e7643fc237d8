// Package serial reads the serial keypad and serial-mode scanners and card
// readers of SPEC §3 through go.bug.st/serial, behind kiosk.Input.
//
// The byte-level parsing is done by two pure decoders, KeypadDecoder and
// CodeDecoder; Keypad and Scanner add the port: they open the device,
// report kiosk.InputConnected, decode what they read, and when the device
// goes away (unplugged, or it cannot be opened) report
// kiosk.InputDisconnected once per outage and reopen it with exponential
// back-off until it is back. Garbage on the line is summarised at most
// once per interval so that noise cannot flood the journal, and on a
// keypad it clears the entry it breaks, so that noise is not submitted
// as PINs. A code is never logged and never put into an event other than
// InputCode.
package serial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bugst "go.bug.st/serial"

	"kioskd/kiosk"
)

// ErrNoDevice is returned by Run when Options.Device is empty: a
// configuration error, not an outage.
var ErrNoDevice = errors.New("serial input: no device configured")

// Options configure a Keypad or a Scanner. The line is always 8N1.
type Options struct {
	// Name is the input's configured name, carried by every event; empty
	// means the device path.
	Name string
	// Device is the path of the serial device, such as /dev/ttyUSB0 or a
	// /dev/serial/by-id/... link. Required.
	Device string
	// Baud is the line speed; 0 means 9600.
	Baud int

	// ReadTimeout bounds each read so that Run sees ctx cancellation and
	// flushes garbage summaries promptly; it does not delay data. 0 means
	// 100 ms.
	ReadTimeout time.Duration
	// BackoffMin is the wait before the first reopen after an outage; it
	// doubles with each failed open up to BackoffMax. 0 means 100 ms.
	BackoffMin time.Duration
	// BackoffMax caps the wait between reopens. 0 means 5 s.
	BackoffMax time.Duration
	// GarbageInterval is the least time between two InputRejected events
	// summarising garbage bytes. 0 means 10 s.
	GarbageInterval time.Duration
	// Now stamps events and paces garbage summaries; nil means time.Now.
	// Back-off waits use real timers.
	Now func() time.Time
	// Log receives connection changes (never data); nil means
	// slog.Default().
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = o.Device
	}
	if o.Baud == 0 {
		o.Baud = 9600
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 100 * time.Millisecond
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.GarbageInterval <= 0 {
		o.GarbageInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// decoder is what Keypad and Scanner plug into the shared port loop.
type decoder interface {
	// feed decodes b and appends the resulting events to evs.
	feed(b []byte, evs []kiosk.InputEvent) []kiosk.InputEvent
	// reset forgets partial input after a reconnect.
	reset()
	// garbage returns the bytes ignored so far.
	garbage() uint64
}

// DetailOverlong is the Detail of the InputRejected event for a code
// longer than MaxCodeLen.
const DetailOverlong = "overlong code"

// run is the port loop shared by Keypad and Scanner: open, read, decode,
// and reopen with back-off, until ctx is done.
func run(ctx context.Context, o Options, what string, dec decoder, out chan<- kiosk.InputEvent) error {
	if o.Device == "" {
		return ErrNoDevice
	}
	o = o.withDefaults()
	l := &loop{o: o, what: what, dec: dec, out: out, log: o.Log.With("input", o.Name, "device", o.Device)}
	return l.run(ctx)
}

type loop struct {
	o    Options
	what string
	dec  decoder
	out  chan<- kiosk.InputEvent
	log  *slog.Logger

	reported   uint64    // garbage bytes already summarised
	lastReport time.Time // when the last summary went out
}

func (l *loop) run(ctx context.Context) error {
	delay := l.o.BackoffMin
	down := false // an outage has been reported and not yet ended
	for {
		if ctx.Err() != nil {
			return nil
		}
		port, err := l.open()
		if err != nil {
			if !down {
				down = true
				l.log.Warn(l.what+" unavailable; retrying", "err", err)
				if !l.send(ctx, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()}) {
					return nil
				}
			} else {
				l.log.Debug(l.what+" still unavailable", "err", err, "retry_in", delay)
			}
			if !sleep(ctx, delay) {
				return nil
			}
			delay = min(delay*2, l.o.BackoffMax)
			continue
		}

		down = false
		l.log.Info(l.what + " connected")
		if !l.send(ctx, kiosk.InputEvent{Type: kiosk.InputConnected}) {
			port.Close()
			return nil
		}
		l.dec.reset()
		start := time.Now()
		healthy, err := l.read(ctx, port)
		port.Close()
		if ctx.Err() != nil {
			return nil
		}
		// A connection that delivered data or stayed up a while restarts
		// the back-off; one that fails at once keeps doubling it, so a
		// flapping device cannot flood the journal.
		if healthy || time.Since(start) >= l.o.BackoffMax {
			delay = l.o.BackoffMin
		}
		down = true
		l.log.Warn(l.what+" disconnected; reopening", "err", err, "retry_in", delay)
		if !l.send(ctx, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()}) {
			return nil
		}
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(delay*2, l.o.BackoffMax)
	}
}

func (l *loop) open() (bugst.Port, error) {
	mode := &bugst.Mode{BaudRate: l.o.Baud, DataBits: 8, Parity: bugst.NoParity, StopBits: bugst.OneStopBit}
	port, err := bugst.Open(l.o.Device, mode)
	if err != nil {
		// EBUSY (another holder, or TIOCEXCL left on a pty) is retried
		// like any other open error.
		return nil, fmt.Errorf("open %s: %w", l.o.Device, err)
	}
	if err := port.SetReadTimeout(l.o.ReadTimeout); err != nil {
		port.Close()
		return nil, fmt.Errorf("set read timeout on %s: %w", l.o.Device, err)
	}
	return port, nil
}

// read reads and decodes until a read error or ctx is done. healthy says
// whether any data arrived.
func (l *loop) read(ctx context.Context, port bugst.Port) (healthy bool, err error) {
	buf := make([]byte, 512)
	var evs []kiosk.InputEvent
	for {
		if ctx.Err() != nil {
			return healthy, nil
		}
		n, err := port.Read(buf)
		if n > 0 {
			healthy = true
			evs = l.dec.feed(buf[:n], evs[:0])
			for i := range evs {
				if !l.send(ctx, evs[i]) {
					return healthy, nil
				}
				evs[i] = kiosk.InputEvent{} // drop our reference to a code
			}
		}
		if !l.flushGarbage(ctx) {
			return healthy, nil
		}
		if err != nil {
			return healthy, fmt.Errorf("read %s: %w", l.o.Device, err)
		}
		// n == 0 and no error: the read timed out; loop to look at ctx.
	}
}

// flushGarbage reports garbage bytes not yet reported, at most once per
// GarbageInterval; false when ctx ended first.
func (l *loop) flushGarbage(ctx context.Context) bool {
	g := l.dec.garbage()
	if g == l.reported {
		return true
	}
	now := l.o.Now()
	if !l.lastReport.IsZero() && now.Sub(l.lastReport) < l.o.GarbageInterval {
		return true
	}
	n := g - l.reported
	l.reported, l.lastReport = g, now
	l.log.Info(l.what+" ignored garbage bytes", "bytes", n)
	return l.send(ctx, kiosk.InputEvent{Type: kiosk.InputRejected, Detail: fmt.Sprintf("%d garbage bytes", n)})
}

// send delivers ev stamped with the input's name and time; false when ctx
// ended first.
func (l *loop) send(ctx context.Context, ev kiosk.InputEvent) bool {
	ev.Input = l.o.Name
	ev.Time = l.o.Now()
	return kiosk.SendInput(ctx, l.out, ev)
}

// sleep waits d or until ctx is done; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Keypad is a serial keypad (SPEC §3): one ASCII byte per key. It
// implements kiosk.Input, emitting InputKey events (and a '*' when
// garbage breaks an entry, see KeypadDecoder), and InputRejected
// summaries ("N garbage bytes") for ignored bytes.
type Keypad struct {
	opts Options
}

var _ kiosk.Input = (*Keypad)(nil)

// NewKeypad returns a serial keypad on opts.Device.
func NewKeypad(opts Options) *Keypad { return &Keypad{opts: opts} }

// Name returns the input's configured name.
func (k *Keypad) Name() string { return k.opts.withDefaults().Name }

// Run reads keys until ctx is done, reopening the device with back-off
// whenever it goes away, and returns nil then. It returns ErrNoDevice at
// once when no device is configured.
func (k *Keypad) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	return run(ctx, k.opts, "serial keypad", &keypadSession{}, out)
}

type keypadSession struct{ d KeypadDecoder }

func (s *keypadSession) feed(b []byte, evs []kiosk.InputEvent) []kiosk.InputEvent {
	s.d.Feed(b, func(r rune) { evs = append(evs, kiosk.InputEvent{Type: kiosk.InputKey, Key: r}) })
	return evs
}
func (s *keypadSession) reset()          { s.d.Reset() }
func (s *keypadSession) garbage() uint64 { return s.d.Garbage() }

// Scanner is a serial-mode QR scanner or card reader (SPEC §3): a code
// ends at CR or LF. It implements kiosk.Input, emitting InputCode events,
// and an InputRejected with Detail DetailOverlong for each code over
// MaxCodeLen bytes.
type Scanner struct {
	opts Options
}

var _ kiosk.Input = (*Scanner)(nil)

// NewScanner returns a serial scanner or card reader on opts.Device.
func NewScanner(opts Options) *Scanner { return &Scanner{opts: opts} }

// Name returns the input's configured name.
func (s *Scanner) Name() string { return s.opts.withDefaults().Name }

// Run reads codes until ctx is done, reopening the device with back-off
// whenever it goes away, and returns nil then. It returns ErrNoDevice at
// once when no device is configured.
func (s *Scanner) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	return run(ctx, s.opts, "serial scanner", &scannerSession{}, out)
}

type scannerSession struct{ d CodeDecoder }

func (s *scannerSession) feed(b []byte, evs []kiosk.InputEvent) []kiosk.InputEvent {
	s.d.Feed(b,
		func(code kiosk.Secret) { evs = append(evs, kiosk.InputEvent{Type: kiosk.InputCode, Code: code}) },
		func() { evs = append(evs, kiosk.InputEvent{Type: kiosk.InputRejected, Detail: DetailOverlong}) })
	return evs
}
func (s *scannerSession) reset()          { s.d.Reset() }
func (s *scannerSession) garbage() uint64 { return 0 }
