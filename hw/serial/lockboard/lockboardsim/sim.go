// Package lockboardsim is a simulated RS-485 lock control board bus: it
// serves the protocol of kioskd/hw/serial/lockboard on the master side of
// a pseudo-terminal, so the real driver opens the slave as its serial
// device. Tests use it through go.bug.st/serial; a bench or demo can run
// one and point a `[[lock_board]]` at Path().
//
// Each simulated board has channels whose latch opens on an open command
// (the compartment door springs open) and whose door the caller closes or
// opens with SetDoor; a jammed channel ignores open commands. Faults can
// be injected into the next replies: no reply, a bad checksum, a late
// reply, a reply from another address, garbage. The simulator counts
// requests that arrive while it is still answering the previous one
// (Stats.Overlaps): on a master/slave bus a correct host never does that.
//
// Everything here is safe for concurrent use.
package lockboardsim

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"

	"kioskd/hw/serial/lockboard"
)

// Fault is one injected misbehaviour, applied to one reply.
type Fault int

// The faults.
const (
	// Drop sends no reply (the host times out).
	Drop Fault = iota + 1
	// BadChecksum sends the reply with its check byte flipped.
	BadChecksum
	// Late holds the reply back and sends it just before the reply to
	// the next request, that is after the host has given up on it.
	Late
	// WrongAddress sends the reply as if from the next board address.
	WrongAddress
	// Garbage sends garbage bytes, then the correct reply.
	Garbage
	// Noise sends garbage bytes instead of the reply.
	Noise
)

// garbage is what Garbage and Noise send: bytes that include the head
// bytes of both frame kinds, so a reader must really check.
var garbage = []byte{0x00, 0x8A, 0xFF, 0x80, 0x01, 0x33, 0x55}

// ErrNoBoard is returned when a board address or channel is not
// simulated.
var ErrNoBoard = errors.New("lockboardsim: no such board or channel")

// Options configure a Sim.
type Options struct {
	// Link, when set, is a symbolic link made to point at the slave, as
	// udev makes /dev/serial/by-id links; Path returns it. Empty means
	// Path returns the slave's /dev/pts name.
	Link string
	// ReplyDelay is how long a board takes to answer; 0 means at once.
	ReplyDelay time.Duration
	// Log receives each request at debug level; nil means discard.
	Log *slog.Logger
}

// Stats are the simulator's counters.
type Stats struct {
	Requests int // well-formed requests received
	Replies  int // replies sent (faulty ones included)
	Ignored  int // requests for no simulated board, or unsupported
	Garbage  int // bytes received that were not part of a request
	Overlaps int // requests received while a reply was still pending
	Faults   int // faults applied
}

// Sim is a simulated bus of lock control boards on a pseudo-terminal.
type Sim struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	boards   map[int]*Board
	faults   []Fault
	held     []byte // a Late reply waiting for the next request
	stats    Stats
	requests []lockboard.Request
	pending  int // requests received and not yet answered
	closed   bool
	gen      *generation
	seen     chan struct{} // closed and replaced at each request
}

// generation is one pseudo-terminal: Unplug ends it, Replug starts the
// next.
type generation struct {
	master, tty *os.File
	reqs        chan lockboard.Request
	wg          sync.WaitGroup
}

// Start opens a pseudo-terminal and serves the protocol on it.
func Start(opts Options) (*Sim, error) {
	s := &Sim{opts: opts, log: opts.Log, boards: map[int]*Board{}, seen: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.plug(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sim) plug() error {
	master, tty, err := pty.Open()
	if err != nil {
		return fmt.Errorf("lockboardsim: open pseudo-terminal: %w", err)
	}
	if master, err = pollable(master); err != nil {
		tty.Close()
		return fmt.Errorf("lockboardsim: pseudo-terminal master: %w", err)
	}
	if s.opts.Link != "" {
		tmp := s.opts.Link + ".new"
		os.Remove(tmp)
		if err := os.Symlink(tty.Name(), tmp); err == nil {
			err = os.Rename(tmp, s.opts.Link)
		}
		if err != nil {
			master.Close()
			tty.Close()
			return fmt.Errorf("lockboardsim: link %s: %w", s.opts.Link, err)
		}
	}
	g := &generation{master: master, tty: tty, reqs: make(chan lockboard.Request, 64)}
	s.mu.Lock()
	s.gen = g
	s.held = nil
	s.pending = 0
	s.mu.Unlock()
	g.wg.Add(2)
	go s.read(g)
	go s.answer(g)
	return nil
}

// Path is the device to open: Options.Link, or the slave's name.
func (s *Sim) Path() string {
	if s.opts.Link != "" {
		return s.opts.Link
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == nil {
		return ""
	}
	return s.gen.tty.Name()
}

// AddBoard simulates a board at address with channels locks, all shut.
func (s *Sim) AddBoard(address, channels int) (*Board, error) {
	if address < 0 || address > lockboard.MaxAddress || channels < 1 || channels > lockboard.MaxChannels {
		return nil, fmt.Errorf("lockboardsim: board %d with %d channels: %w", address, channels, ErrNoBoard)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &Board{s: s, addr: address, open: make([]bool, channels), jammed: make([]bool, channels), opens: make([]int, channels)}
	s.boards[address] = b
	return b, nil
}

// Inject queues faults; each applies to one reply, in order.
func (s *Sim) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// Stats returns the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Requests returns every well-formed request received so far, in order.
func (s *Sim) Requests() []lockboard.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lockboard.Request(nil), s.requests...)
}

// Seen returns a channel closed when the next request arrives, so a
// caller can wait for traffic without sleeping.
func (s *Sim) Seen() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

// Unplug makes the device vanish as a USB unplug does: the link goes,
// then the pseudo-terminal closes, so the host's reads and writes fail.
func (s *Sim) Unplug() {
	s.mu.Lock()
	g := s.gen
	s.gen = nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	if s.opts.Link != "" {
		if target, err := os.Readlink(s.opts.Link); err == nil && target == g.tty.Name() {
			os.Remove(s.opts.Link)
		}
	}
	g.master.Close()
	g.tty.Close()
	g.wg.Wait()
}

// Replug brings the device back on a new pseudo-terminal (under the same
// Link); boards and their state are kept.
func (s *Sim) Replug() error {
	s.mu.Lock()
	closed, plugged := s.closed, s.gen != nil
	s.mu.Unlock()
	if closed {
		return errors.New("lockboardsim: closed")
	}
	if plugged {
		return nil
	}
	return s.plug()
}

// Close unplugs the device for good.
func (s *Sim) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.Unplug()
	return nil
}

// read parses requests from the master until the pseudo-terminal closes.
func (s *Sim) read(g *generation) {
	defer g.wg.Done()
	defer close(g.reqs)
	var buf []byte
	tmp := make([]byte, 256)
	for {
		n, err := g.master.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for len(buf) > 0 {
			req, used, perr := lockboard.ParseRequest(buf)
			if errors.Is(perr, lockboard.ErrShortFrame) {
				break
			}
			buf = buf[used:]
			s.mu.Lock()
			if perr != nil {
				s.stats.Garbage += used
				s.mu.Unlock()
				continue
			}
			s.stats.Requests++
			s.requests = append(s.requests, req)
			if s.pending > 0 {
				s.stats.Overlaps++
			}
			s.pending++
			close(s.seen)
			s.seen = make(chan struct{})
			s.mu.Unlock()
			s.log.Debug("lockboardsim request", "op", req.Op, "board", req.Address, "channel", req.Channel)
			g.reqs <- req
		}
		if err != nil {
			return
		}
	}
}

// answer acts on requests and writes the replies.
func (s *Sim) answer(g *generation) {
	defer g.wg.Done()
	for req := range g.reqs {
		if s.opts.ReplyDelay > 0 {
			time.Sleep(s.opts.ReplyDelay) // the board's own processing time
		}
		out := s.handle(req) // marks req answered: the host may send the next one once it has the reply
		if len(out) > 0 {
			g.master.Write(out)
		}
	}
}

// handle applies req to the boards and returns the bytes to send.
func (s *Sim) handle(req lockboard.Request) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	out := s.held
	s.held = nil
	b := s.boards[req.Address]
	if b == nil || (req.Op == lockboard.OpStatus && req.Channel != 0) || req.Channel > len(b.open) {
		s.stats.Ignored++
		return out
	}
	var rep lockboard.Reply
	switch req.Op {
	case lockboard.OpOpen:
		state := lockboard.StateLocked
		for i := range b.open {
			if req.Channel != 0 && i != req.Channel-1 {
				continue
			}
			b.opens[i]++
			if !b.jammed[i] {
				b.open[i] = true // the latch releases and the door springs open
				state = lockboard.StateUnlocked
			}
		}
		rep = lockboard.Reply{Op: lockboard.OpOpen, Address: b.addr, Channel: req.Channel, State: state}
	case lockboard.OpStatus:
		bits := make([]bool, len(b.open))
		for i, open := range b.open {
			bits[i] = !open // set = locked, door shut
		}
		rep = lockboard.Reply{Op: lockboard.OpStatus, Address: b.addr, Bits: bits}
	}
	frame := rep.Bytes()
	s.stats.Replies++
	if len(s.faults) == 0 {
		return append(out, frame...)
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	s.stats.Faults++
	switch f {
	case Drop:
		s.stats.Replies--
	case BadChecksum:
		frame[len(frame)-1] ^= 0xFF
		out = append(out, frame...)
	case Late:
		s.held = frame
	case WrongAddress:
		rep.Address = (rep.Address + 1) & 0xFF
		out = append(out, rep.Bytes()...)
	case Garbage:
		out = append(append(out, garbage...), frame...)
	case Noise:
		out = append(out, garbage...)
	}
	return out
}

// Board is one simulated lock control board.
type Board struct {
	s      *Sim
	addr   int
	open   []bool // door open, per channel
	jammed []bool
	opens  []int
}

func (b *Board) index(ch int) int {
	if ch < 1 || ch > len(b.open) {
		panic(fmt.Sprintf("lockboardsim: board %d has no channel %d", b.addr, ch))
	}
	return ch - 1
}

// SetDoor opens or shuts the door of channel, as a person does. Like
// every Board method it panics for a channel the board lacks: that is a
// mistake in the test or demo driving it.
func (b *Board) SetDoor(ch int, open bool) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.open[b.index(ch)] = open
}

// Door reports whether channel's door is open.
func (b *Board) Door(ch int) bool {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.open[b.index(ch)]
}

// Opens returns how many open commands channel has received.
func (b *Board) Opens(ch int) int {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.opens[b.index(ch)]
}

// Jam makes channel's latch ignore open commands (jammed) or obey them
// again.
func (b *Board) Jam(ch int, jammed bool) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.jammed[b.index(ch)] = jammed
}
