// Package lockboard drives RS-485 lock control boards, the common 8-50
// channel boards of parcel and vending lockers ("lock control board",
// CU16/KR-CU style), through go.bug.st/serial, behind kiosk's door
// interface (SPEC §4: lockers driven by an RS-485 lock controller board).
//
// The protocol (docs/lockboard.md) is master/slave: the host sends
// `8A <board> <lock> 11 <xor>` to pulse a latch and `80 <board> 00 33
// <xor>` to read the feedback of every lock; the board answers each
// request. frame.go is the one place that knows the bytes.
//
// A Bus is one serial device shared by several boards (addresses). It
// runs one transaction at a time: flush stale input, write the request,
// read the reply within Timeout, check it, and retry a bounded number of
// times. When the device is missing or goes away every operation fails at
// once with ErrUnavailable naming the device, and the bus reopens it with
// back-off in the background; nothing blocks forever and nothing panics.
//
// A Board is one address on a bus. Board.Open pulses a channel and
// confirms it by reading the status back; Board.Lock adapts a channel to
// kiosk.OutputLine (the door's relay) and Board.Sensor to kiosk.InputLine
// (the door's contact, by status polling while a Sensor exists).
package lockboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bugst "go.bug.st/serial"
)

// Defaults of BusOptions.
const (
	DefaultBaud         = 9600
	DefaultTimeout      = 150 * time.Millisecond
	DefaultRetries      = 2
	DefaultOpenAttempts = 2
	DefaultPollInterval = 500 * time.Millisecond
)

// ErrNoDevice is returned by OpenBus when BusOptions.Device is empty.
var ErrNoDevice = errors.New("lockboard: no device configured")

// ErrBadOptions is returned by OpenBus for a negative baud rate,
// timeout, poll interval or back-off.
var ErrBadOptions = errors.New("lockboard: bad bus options")

// ErrBadAddress is returned by Bus.Board for an address outside 0-255.
var ErrBadAddress = errors.New("lockboard: board address out of range 0-255")

// ErrDuplicateBoard is returned by Bus.Board when the bus already has a
// board at that address.
var ErrDuplicateBoard = errors.New("lockboard: two boards with one address on one bus")

// ErrBadChannel is returned when a channel is outside 1..channels of its
// board, or a board's channel count is outside 1..MaxChannels.
var ErrBadChannel = errors.New("lockboard: channel out of range")

// ErrUnavailable is returned when the serial device is missing, cannot
// be opened or went away; the bus keeps reopening it with back-off. The
// message names the device and the cause.
var ErrUnavailable = errors.New("lockboard: serial device unavailable")

// ErrTimeout is returned when no valid reply came within the timeout on
// every attempt.
var ErrTimeout = errors.New("lockboard: no reply")

// ErrChecksum is returned when the last attempt got a frame from the
// board whose check byte was wrong.
var ErrChecksum = errors.New("lockboard: bad checksum")

// ErrWrongAddress is returned when the last attempt got a valid reply,
// but from another board address (two boards on one address, or a board
// set to the wrong address).
var ErrWrongAddress = errors.New("lockboard: reply from another board address")

// ErrNotConfirmed is returned by Board.Open (and Lock.Set(true)) when the
// status read after the open never showed the channel open.
var ErrNotConfirmed = errors.New("lockboard: open not confirmed")

// ErrClosed is returned after Bus.Close, and by a closed Sensor.
var ErrClosed = errors.New("lockboard: closed")

// BusOptions configure a Bus. The line is always 8N1.
type BusOptions struct {
	// Device is the serial device of the RS-485 adapter, such as
	// /dev/ttyUSB0 or a /dev/serial/by-id/... link. Required.
	Device string
	// Baud is the line speed; 0 means 9600 (the boards' factory
	// setting; some ship at 19200).
	Baud int
	// Timeout is how long one attempt waits for a reply after writing
	// its request; 0 means 150 ms.
	Timeout time.Duration
	// Retries is how many times a request is sent again after a timeout
	// or a damaged reply; 0 means 2, negative means none.
	Retries int
	// OpenAttempts is how many times Board.Open sends the open request
	// when the status read does not confirm it; 0 means 2.
	OpenAttempts int
	// PollInterval is how often a board with at least one Sensor reads
	// its status; 0 means 500 ms.
	PollInterval time.Duration
	// BackoffMin is the wait before the first reopen after the device
	// went away; it doubles after each failed reopen up to BackoffMax.
	// 0 means 100 ms.
	BackoffMin time.Duration
	// BackoffMax caps the wait between reopens; 0 means 5 s.
	BackoffMax time.Duration
	// Log receives connection changes and failed transactions; nil means
	// slog.Default().
	Log *slog.Logger
}

func (o BusOptions) withDefaults() (BusOptions, error) {
	if o.Device == "" {
		return o, ErrNoDevice
	}
	if o.Baud < 0 || o.Timeout < 0 || o.PollInterval < 0 || o.BackoffMin < 0 || o.BackoffMax < 0 || o.OpenAttempts < 0 {
		return o, fmt.Errorf("%w for %s", ErrBadOptions, o.Device)
	}
	if o.Baud == 0 {
		o.Baud = DefaultBaud
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.OpenAttempts == 0 {
		o.OpenAttempts = DefaultOpenAttempts
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 5 * time.Second
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o, nil
}

// Stats are a bus's counters and state, for kioskctl doctor and status.
type Stats struct {
	Device    string `json:"device"`
	Connected bool   `json:"connected"`
	// Transactions counts request frames written, retries included.
	Transactions uint64 `json:"transactions"`
	// Replies counts valid replies received.
	Replies uint64 `json:"replies"`
	// Retries counts requests sent again after a failed attempt.
	Retries uint64 `json:"retries"`
	// Timeouts counts attempts that got nothing usable in time.
	Timeouts uint64 `json:"timeouts"`
	// ChecksumErrors counts attempts that got a damaged frame.
	ChecksumErrors uint64 `json:"checksum_errors"`
	// WrongAddress counts attempts answered by another board address.
	WrongAddress uint64 `json:"wrong_address"`
	// Failures counts operations that failed after every attempt.
	Failures uint64 `json:"failures"`
	// Reconnects counts reopens of the device after it went away.
	Reconnects uint64 `json:"reconnects"`
	// LastError is the last failure, empty when none.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

// Bus is one RS-485 serial device shared by the boards on it. Safe for
// concurrent use; transactions are serialised.
type Bus struct {
	o    BusOptions
	log  *slog.Logger
	line chan struct{} // holding its one slot is owning the line
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu           sync.Mutex
	port         bugst.Port // nil while disconnected
	downErr      error      // why port is nil
	closed       bool
	reconnecting bool
	boards       map[int]*Board
	stats        Stats
	connected    chan struct{} // closed and replaced at each reconnect
}

// OpenBus opens the serial device and returns its bus. A device that
// cannot be opened now is an error (ErrUnavailable, naming the device):
// a missing lock board stops the start like a missing relay line. Later
// outages are handled by reopening in the background.
func OpenBus(o BusOptions) (*Bus, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Bus{
		o:         o,
		log:       o.Log.With("lock_bus", o.Device),
		line:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		boards:    map[int]*Board{},
		connected: make(chan struct{}),
	}
	b.stats.Device = o.Device
	p, err := b.openPort()
	if err != nil {
		return nil, err
	}
	b.port = p
	b.stats.Connected = true
	b.log.Info("lock bus open", "baud", o.Baud)
	return b, nil
}

func (b *Bus) openPort() (bugst.Port, error) {
	mode := &bugst.Mode{BaudRate: b.o.Baud, DataBits: 8, Parity: bugst.NoParity, StopBits: bugst.OneStopBit}
	p, err := bugst.Open(b.o.Device, mode)
	if err != nil {
		// EBUSY (another holder, or TIOCEXCL left on a pty) is retried
		// like any other open error.
		return nil, fmt.Errorf("%w: open %s: %w", ErrUnavailable, b.o.Device, err)
	}
	return p, nil
}

// Device returns the bus's serial device.
func (b *Bus) Device() string { return b.o.Device }

// Stats returns the bus's counters and state.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// tries is how many attempts one request gets.
func (b *Bus) tries() int { return 1 + b.o.Retries }

// txnBound is the longest one transaction can hold the line.
func (b *Bus) txnBound() time.Duration { return time.Duration(b.tries()) * b.o.Timeout }

// OpenBound is the longest Board.Open, and so Lock.Set(true), can take
// when the bus is connected: waiting for a transaction in flight, then
// OpenAttempts times an open request (one attempt) and a status read
// (1+Retries attempts), each attempt waiting up to Timeout. With the
// defaults: 450 ms + 2 × (150 ms + 450 ms) = 1.65 s. Set(true) is cut off
// at this bound. While the device is unavailable Open fails at once.
func (b *Bus) OpenBound() time.Duration {
	return b.txnBound() + time.Duration(b.o.OpenAttempts)*(b.o.Timeout+b.txnBound())
}

// Board adds the board at address (0-255, its DIP switches) with
// channels locks (1..MaxChannels) to the bus. Options adapt it to the
// wiring of its locks.
func (b *Bus) Board(address, channels int, opts ...BoardOption) (*Board, error) {
	if address < 0 || address > MaxAddress {
		return nil, fmt.Errorf("lock bus %s: board %d: %w", b.o.Device, address, ErrBadAddress)
	}
	if channels < 1 || channels > MaxChannels {
		return nil, fmt.Errorf("lock bus %s: board %d: %d channels (1-%d): %w", b.o.Device, address, channels, MaxChannels, ErrBadChannel)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if _, dup := b.boards[address]; dup {
		return nil, fmt.Errorf("lock bus %s: board %d: %w", b.o.Device, address, ErrDuplicateBoard)
	}
	bd := &Board{bus: b, addr: address, channels: channels, sensors: map[*Sensor]struct{}{},
		log: b.log.With("board", address)}
	for _, opt := range opts {
		opt(bd)
	}
	b.boards[address] = bd
	return bd, nil
}

// Close stops polling, closes every Sensor, waits for a transaction in
// flight (at most one transaction's bound) and closes the device.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	boards := make([]*Board, 0, len(b.boards))
	for _, bd := range b.boards {
		boards = append(boards, bd)
	}
	b.mu.Unlock()

	for _, bd := range boards {
		bd.closeSensors()
	}
	b.line <- struct{}{} // the line is never given back: later transactions see done
	b.mu.Lock()
	p := b.port
	b.port = nil
	b.stats.Connected = false
	b.mu.Unlock()
	b.wg.Wait()
	if p != nil {
		if err := p.Close(); err != nil {
			return fmt.Errorf("close lock bus %s: %w", b.o.Device, err)
		}
	}
	b.log.Info("lock bus closed")
	return nil
}

// acquire takes the line for one transaction.
func (b *Bus) acquire(ctx context.Context) error {
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	select {
	case b.line <- struct{}{}:
		return nil
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Bus) release() { <-b.line }

// fatal reports whether err ends an operation at once instead of being
// retried: the device is gone, the bus closed or the caller gave up.
func fatal(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// transact runs one request on the line: up to tries attempts, each
// flushing stale input, writing req and waiting up to Timeout for its
// reply. channels is the board's channel count (status reply length).
func (b *Bus) transact(ctx context.Context, req Request, channels, tries int) (Reply, error) {
	if err := b.acquire(ctx); err != nil {
		return Reply{}, err
	}
	defer b.release()
	var err error
	for try := 0; try < tries; try++ {
		b.mu.Lock()
		port, closed, down := b.port, b.closed, b.downErr
		if try > 0 && port != nil {
			b.stats.Retries++
		}
		b.mu.Unlock()
		if closed {
			return Reply{}, ErrClosed
		}
		if port == nil {
			err = down
			break
		}
		var rep Reply
		rep, err = b.attempt(ctx, port, req, channels)
		if err == nil {
			return rep, nil
		}
		if fatal(err) {
			break
		}
		b.log.Debug("lock board attempt failed", "board", req.Address, "op", req.Op, "try", try+1, "err", err)
	}
	b.noteFailure(err)
	return Reply{}, err
}

// attempt is one request and its reply.
func (b *Bus) attempt(ctx context.Context, port bugst.Port, req Request, channels int) (Reply, error) {
	if err := port.ResetInputBuffer(); err != nil {
		return Reply{}, b.lost(port, fmt.Errorf("flush: %w", err))
	}
	frame := req.Bytes()
	b.count(func(s *Stats) { s.Transactions++ })
	if n, err := port.Write(frame); err != nil || n != len(frame) {
		if err == nil {
			err = fmt.Errorf("short write (%d of %d bytes)", n, len(frame))
		}
		return Reply{}, b.lost(port, fmt.Errorf("write: %w", err))
	}
	deadline := time.Now().Add(b.o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var buf []byte
	var tmp [64]byte
	for {
		if err := ctx.Err(); err != nil {
			return Reply{}, err
		}
		rest := time.Until(deadline)
		if rest <= 0 {
			if err := ctx.Err(); err != nil {
				return Reply{}, err
			}
			err := diagnose(buf, req, channels)
			b.count(func(s *Stats) {
				switch err {
				case ErrChecksum:
					s.ChecksumErrors++
				case ErrWrongAddress:
					s.WrongAddress++
				default:
					s.Timeouts++
				}
			})
			return Reply{}, fmt.Errorf("%s: no valid reply within %v (%d bytes): %w", req.Op, b.o.Timeout, len(buf), err)
		}
		if err := port.SetReadTimeout(rest); err != nil {
			return Reply{}, b.lost(port, fmt.Errorf("set read timeout: %w", err))
		}
		n, err := port.Read(tmp[:])
		if n > 0 {
			buf = append(buf, tmp[:n]...)
			if len(buf) > 256 { // a babbling line: keep the recent bytes
				buf = append(buf[:0], buf[len(buf)-128:]...)
			}
			if rep, ok := findReply(buf, req, channels); ok {
				b.count(func(s *Stats) { s.Replies++ })
				return rep, nil
			}
		}
		if err != nil {
			return Reply{}, b.lost(port, fmt.Errorf("read: %w", err))
		}
	}
}

func (b *Bus) count(f func(*Stats)) {
	b.mu.Lock()
	f(&b.stats)
	b.mu.Unlock()
}

func (b *Bus) noteFailure(err error) {
	if err == nil || errors.Is(err, ErrClosed) {
		return
	}
	b.mu.Lock()
	b.stats.Failures++
	b.stats.LastError = err.Error()
	b.stats.LastErrorTime = time.Now()
	b.mu.Unlock()
}

// lost marks port as gone after an I/O error, closes it and starts the
// reopen loop. It returns the error callers see.
func (b *Bus) lost(port bugst.Port, cause error) error {
	err := fmt.Errorf("%w: %s: %w", ErrUnavailable, b.o.Device, cause)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.port != port {
		return err
	}
	port.Close()
	b.port = nil
	b.downErr = err
	b.stats.Connected = false
	b.log.Warn("lock bus lost; reopening", "err", cause)
	if !b.reconnecting {
		b.reconnecting = true
		b.wg.Add(1)
		go b.reopen()
	}
	return err
}

// reopen reopens the device with exponential back-off until it is back
// or the bus is closed.
func (b *Bus) reopen() {
	defer b.wg.Done()
	delay := b.o.BackoffMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-b.done:
			t.Stop()
			return
		case <-t.C:
		}
		p, err := b.openPort()
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			if p != nil {
				p.Close()
			}
			return
		}
		if err != nil {
			b.downErr = err
			b.mu.Unlock()
			b.log.Debug("lock bus still unavailable", "err", err, "retry_in", delay)
			delay = min(2*delay, b.o.BackoffMax)
			continue
		}
		b.port = p
		b.downErr = nil
		b.reconnecting = false
		b.stats.Connected = true
		b.stats.Reconnects++
		close(b.connected)
		b.connected = make(chan struct{})
		b.mu.Unlock()
		b.log.Info("lock bus reconnected")
		return
	}
}
