package lockboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kioskd/kiosk"
)

// Board is one lock control board on a Bus: an address and its channels
// (locks), numbered from 1. Safe for concurrent use.
type Board struct {
	bus      *Bus
	addr     int
	channels int
	inverted bool
	log      *slog.Logger

	mu       sync.Mutex
	sensors  map[*Sensor]struct{}
	stopPoll chan struct{} // non-nil while a poller runs
	pollDone chan struct{} // closed when that poller has returned
	fresh    bool          // the last status read succeeded
	failing  bool          // polling is failing (logged once per outage)
}

// BoardOption adapts a Board to the wiring of its locks.
type BoardOption func(*Board)

// InvertedFeedback is for locks whose feedback switch closes when the
// lock is open: a set status bit then means open. Without it a set bit
// means locked (door shut), the common wiring.
func InvertedFeedback() BoardOption { return func(b *Board) { b.inverted = true } }

// Address returns the board's address.
func (b *Board) Address() int { return b.addr }

// Channels returns the board's number of channels.
func (b *Board) Channels() int { return b.channels }

func (b *Board) wrap(err error) error {
	return fmt.Errorf("lock board %d on %s: %w", b.addr, b.bus.o.Device, err)
}

func (b *Board) checkChannel(ch int) error {
	if ch < 1 || ch > b.channels {
		return b.wrap(fmt.Errorf("channel %d (1-%d): %w", ch, b.channels, ErrBadChannel))
	}
	return nil
}

// Status reads the board's feedback: one entry per channel, index 0 for
// channel 1, true when the channel is open (lock released, door open).
// Sensors of the board see the result too.
func (b *Board) Status(ctx context.Context) ([]bool, error) {
	open, err := b.status(ctx)
	if err != nil {
		return nil, b.wrap(err)
	}
	return open, nil
}

func (b *Board) status(ctx context.Context) ([]bool, error) {
	rep, err := b.bus.transact(ctx, Request{Op: OpStatus, Address: b.addr}, b.channels, b.bus.tries())
	if err != nil {
		b.mu.Lock()
		b.fresh = false
		b.mu.Unlock()
		return nil, err
	}
	open := make([]bool, b.channels)
	for i := range open {
		open[i] = rep.Bits[i] == b.inverted // set bit = locked, unless inverted
	}
	b.deliver(open, time.Now())
	return open, nil
}

// Open pulses the latch of channel (the board times the pulse itself)
// and confirms it by reading the status back: the channel must show
// open. When it does not, the open is sent again, up to OpenAttempts
// times in all. A lost or damaged reply to the open request itself is
// not resent at once (that would pulse twice): the status read decides.
// Open fails at once while the device is unavailable, and returns
// ErrNotConfirmed when no attempt was confirmed.
func (b *Board) Open(ctx context.Context, channel int) error {
	if err := b.checkChannel(channel); err != nil {
		return err
	}
	req := Request{Op: OpOpen, Address: b.addr, Channel: channel}
	var last error
	for attempt := 1; attempt <= b.bus.o.OpenAttempts; attempt++ {
		if _, err := b.bus.transact(ctx, req, b.channels, 1); err != nil {
			if fatal(err) {
				return b.wrap(fmt.Errorf("open channel %d: %w", channel, err))
			}
			last = err // the status read decides
		}
		open, err := b.status(ctx)
		if err != nil {
			if fatal(err) {
				return b.wrap(fmt.Errorf("open channel %d: %w", channel, err))
			}
			last = err
			continue
		}
		if open[channel-1] {
			if attempt > 1 {
				b.log.Info("lock board open confirmed after retry", "channel", channel, "attempt", attempt)
			}
			return nil
		}
		last = nil
		b.log.Warn("lock board open not confirmed", "channel", channel, "attempt", attempt)
	}
	err := fmt.Errorf("open channel %d: %d attempts: %w", channel, b.bus.o.OpenAttempts, ErrNotConfirmed)
	if last != nil {
		err = fmt.Errorf("open channel %d: %d attempts: %w: %w", channel, b.bus.o.OpenAttempts, ErrNotConfirmed, last)
	}
	b.bus.noteFailure(b.wrap(err))
	return b.wrap(err)
}

// Lock returns channel as a door relay (kiosk.OutputLine): Set(true)
// opens the compartment through Open.
func (b *Board) Lock(channel int) (*Lock, error) {
	if err := b.checkChannel(channel); err != nil {
		return nil, err
	}
	return &Lock{b: b, ch: channel}, nil
}

// Lock is one channel of a board as a door's relay. The board pulses the
// latch itself, so only the start of a pulse does anything.
type Lock struct {
	b  *Board
	ch int
}

var _ kiosk.OutputLine = (*Lock)(nil)

// Set(true) opens the compartment and returns once the board confirms it
// (Board.Open), or an error wrapping ErrNotConfirmed, ErrUnavailable,
// ErrTimeout ... It runs on the decision path, so it is cut off at
// Bus.OpenBound. Set(false) does nothing: the latch re-locks by itself.
func (l *Lock) Set(active bool) error {
	if !active {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.b.bus.OpenBound())
	defer cancel()
	return l.b.Open(ctx, l.ch)
}

// Close does nothing and never fails: there is no line to release, and
// the latch is locked whenever it is not being pulsed.
func (l *Lock) Close() error { return nil }

// Channel returns the lock's channel.
func (l *Lock) Channel() int { return l.ch }

// SensorBuffer is the capacity of a Sensor's Events channel; when a
// reader falls that far behind the oldest event is dropped.
const SensorBuffer = 64

// Sensor returns channel's door state as a door contact
// (kiosk.InputLine, active = open), learnt by polling the board's status
// every PollInterval while the board has at least one open Sensor.
func (b *Board) Sensor(channel int) (*Sensor, error) {
	if err := b.checkChannel(channel); err != nil {
		return nil, err
	}
	s := &Sensor{b: b, ch: channel, events: make(chan kiosk.LineEvent, SensorBuffer)}
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	if b.bus.closed {
		return nil, ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sensors[s] = struct{}{}
	if b.stopPoll == nil {
		b.stopPoll, b.pollDone = make(chan struct{}), make(chan struct{})
		b.bus.wg.Add(1)
		go b.poll(b.stopPoll, b.pollDone)
	}
	return s, nil
}

// poll reads the status every PollInterval until stop is closed or the
// bus is closed.
func (b *Board) poll(stop, done chan struct{}) {
	defer b.bus.wg.Done()
	defer close(done)
	t := time.NewTicker(b.bus.o.PollInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), b.bus.txnBound()+b.bus.o.Timeout)
		_, err := b.status(ctx)
		cancel()
		failing := err != nil && !errors.Is(err, ErrClosed)
		b.mu.Lock()
		was := b.failing
		b.failing = failing
		b.mu.Unlock()
		switch {
		case failing && !was:
			b.log.Warn("lock board status poll failing", "err", err)
		case !failing && was:
			b.log.Info("lock board status poll recovered")
		}
		select {
		case <-stop:
			return
		case <-b.bus.done:
			return
		case <-t.C:
		}
	}
}

// deliver hands a status read to the board's sensors.
func (b *Board) deliver(open []bool, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fresh = true
	for s := range b.sensors {
		s.update(open[s.ch-1], at)
	}
}

// removeSensor forgets s and stops the poller with the last sensor.
func (b *Board) removeSensor(s *Sensor) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sensors, s)
	if len(b.sensors) == 0 && b.stopPoll != nil {
		close(b.stopPoll)
		b.stopPoll = nil
	}
}

// closeSensors closes every sensor (Bus.Close).
func (b *Board) closeSensors() {
	b.mu.Lock()
	ss := make([]*Sensor, 0, len(b.sensors))
	for s := range b.sensors {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
}

// Sensor is one channel of a board as a door contact (active = open).
type Sensor struct {
	b  *Board
	ch int

	// guarded by b.mu
	known  bool
	open   bool
	closed bool
	events chan kiosk.LineEvent
}

var _ kiosk.InputLine = (*Sensor)(nil)

// update records a polled state; b.mu is held. The first state known is
// the baseline; each change after it is an event.
func (s *Sensor) update(open bool, at time.Time) {
	if s.closed {
		return
	}
	changed := s.known && s.open != open
	s.known, s.open = true, open
	if !changed {
		return
	}
	ev := kiosk.LineEvent{Active: open, Time: at}
	for {
		select {
		case s.events <- ev:
			return
		default:
		}
		select { // full: drop the oldest
		case <-s.events:
		default:
		}
	}
}

// Active returns whether the compartment is open: the last polled state
// while polling succeeds, otherwise a fresh status read (bounded by one
// transaction), whose error it returns.
func (s *Sensor) Active() (bool, error) {
	b := s.b
	b.mu.Lock()
	closed, known, open, fresh := s.closed, s.known, s.open, b.fresh
	b.mu.Unlock()
	if closed {
		return false, ErrClosed
	}
	if known && fresh {
		return open, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.bus.txnBound()*2)
	defer cancel()
	st, err := b.Status(ctx)
	if err != nil {
		return false, err
	}
	return st[s.ch-1], nil
}

// Events returns the channel of door changes; it is closed by Close.
func (s *Sensor) Events() <-chan kiosk.LineEvent { return s.events }

// Close stops the sensor and closes its Events channel; polling stops
// with the board's last sensor.
func (s *Sensor) Close() error {
	s.b.removeSensor(s)
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.events)
	}
	return nil
}

// Channel returns the sensor's channel.
func (s *Sensor) Channel() int { return s.ch }
