// Package sim is the simulated hardware of `hardware = "sim"` (SPEC §7):
// GPIO chips and lines held in memory, so the whole daemon runs on any
// Linux machine, and the `terminal` input, which reads keys typed on the
// controlling terminal.
//
// Any chip name is accepted and names a simulated chip. Every change of a
// line is logged with its chip, offset, consumer, logical state and
// physical level, so a bench run shows what the relays would have done.
// Output lines implement kiosk.OutputLine and input lines kiosk.InputLine;
// a Bank finds requested lines by (chip, offset) so that a technician tool
// or a test can poke a simulated door contact or exit button.
//
// Everything here is safe for concurrent use.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"kioskd/kiosk"
)

// ErrBusy is returned when a line is requested on an offset of a chip
// that is already requested (by an output or an input).
var ErrBusy = errors.New("line already requested")

// ErrClosed is returned when a closed line is set.
var ErrClosed = errors.New("line closed")

// ErrNotRequested is returned when a Bank or Chip lookup names a line that
// is not currently requested, or one of the other direction.
var ErrNotRequested = errors.New("line not requested")

// ErrBadOffset is returned when a line is requested at a negative offset.
var ErrBadOffset = errors.New("negative line offset")

// ChangesBuffer is the capacity of an Output's Changes channel and of an
// Input's Events channel. When a reader falls that far behind, the oldest
// pending value is dropped to make room, so the driver never blocks.
const ChangesBuffer = 1024

// Direction says whether a simulated line is an output or an input.
type Direction string

// The line directions.
const (
	DirOutput Direction = "output"
	DirInput  Direction = "input"
)

// LineInfo describes one requested line, for status displays.
type LineInfo struct {
	Chip      string
	Offset    int
	Consumer  string
	Direction Direction
	ActiveLow bool
	Active    bool
}

// Bank holds the simulated chips of one daemon, by name, so that every
// part of it that names "gpiochip0" gets the same chip.
type Bank struct {
	log   *slog.Logger
	mu    sync.Mutex
	chips map[string]*Chip
}

// NewBank returns an empty bank whose chips log to log (nil: slog.Default()).
func NewBank(log *slog.Logger) *Bank {
	if log == nil {
		log = slog.Default()
	}
	return &Bank{log: log, chips: make(map[string]*Chip)}
}

// Chip returns the chip of that name, creating it on first use; the same
// name always gives the same chip.
func (b *Bank) Chip(name string) *Chip {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.chips[name]
	if !ok {
		c = NewChip(name, b.log)
		b.chips[name] = c
	}
	return c
}

// FindInput returns the requested input line at (chip, offset), so a
// technician tool can simulate a door contact or a button. It fails with
// ErrNotRequested when there is none.
func (b *Bank) FindInput(chip string, offset int) (*Input, error) {
	c, err := b.existing(chip, offset)
	if err != nil {
		return nil, err
	}
	return c.FindInput(offset)
}

// FindOutput returns the requested output line at (chip, offset), so a
// status display can show a relay. It fails with ErrNotRequested when
// there is none.
func (b *Bank) FindOutput(chip string, offset int) (*Output, error) {
	c, err := b.existing(chip, offset)
	if err != nil {
		return nil, err
	}
	return c.FindOutput(offset)
}

func (b *Bank) existing(chip string, offset int) (*Chip, error) {
	b.mu.Lock()
	c, ok := b.chips[chip]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sim chip %q line %d: %w", chip, offset, ErrNotRequested)
	}
	return c, nil
}

// Lines lists every requested line of every chip, ordered by chip name
// and offset.
func (b *Bank) Lines() []LineInfo {
	b.mu.Lock()
	chips := make([]*Chip, 0, len(b.chips))
	for _, c := range b.chips {
		chips = append(chips, c)
	}
	b.mu.Unlock()
	sort.Slice(chips, func(i, j int) bool { return chips[i].name < chips[j].name })
	var all []LineInfo
	for _, c := range chips {
		all = append(all, c.Lines()...)
	}
	return all
}

// Chip is one simulated GPIO chip. Lines are requested by offset; an
// offset may be requested once at a time.
type Chip struct {
	name string
	log  *slog.Logger

	mu    sync.Mutex
	lines map[int]any // *Output or *Input
}

// NewChip returns a simulated chip of that name, logging to log (nil:
// slog.Default()). Use a Bank to share chips by name.
func NewChip(name string, log *slog.Logger) *Chip {
	if log == nil {
		log = slog.Default()
	}
	return &Chip{name: name, log: log, lines: make(map[int]any)}
}

// Name returns the chip's name.
func (c *Chip) Name() string { return c.name }

// Output requests the line at offset as an output, already inactive
// (physical level high when activeLow, else low), so a relay never blips
// when it is requested. It fails with ErrBusy when the offset is taken.
func (c *Chip) Output(offset int, activeLow bool, consumer string) (*Output, error) {
	o := &Output{
		chip: c, offset: offset, activeLow: activeLow, consumer: consumer,
		changes: make(chan bool, ChangesBuffer),
	}
	if err := c.request(offset, o); err != nil {
		return nil, err
	}
	c.log.Debug("sim line requested", "chip", c.name, "line", offset, "consumer", consumer,
		"direction", DirOutput, "active", false, "level", level(false, activeLow))
	return o, nil
}

// Input requests the line at offset as an input, inactive until Set. It
// fails with ErrBusy when the offset is taken.
func (c *Chip) Input(offset int, activeLow bool, consumer string) (*Input, error) {
	i := &Input{
		chip: c, offset: offset, activeLow: activeLow, consumer: consumer,
		events: make(chan kiosk.LineEvent, ChangesBuffer),
		now:    time.Now,
	}
	if err := c.request(offset, i); err != nil {
		return nil, err
	}
	c.log.Debug("sim line requested", "chip", c.name, "line", offset, "consumer", consumer,
		"direction", DirInput, "active", false, "level", level(false, activeLow))
	return i, nil
}

func (c *Chip) request(offset int, l any) error {
	if offset < 0 {
		return fmt.Errorf("sim chip %q line %d: %w", c.name, offset, ErrBadOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, taken := c.lines[offset]; taken {
		return fmt.Errorf("sim chip %q line %d: %w", c.name, offset, ErrBusy)
	}
	c.lines[offset] = l
	return nil
}

func (c *Chip) release(offset int, l any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lines[offset] == l {
		delete(c.lines, offset)
	}
}

// FindInput returns the requested input line at offset, or ErrNotRequested.
func (c *Chip) FindInput(offset int) (*Input, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.lines[offset].(*Input); ok {
		return i, nil
	}
	return nil, fmt.Errorf("sim chip %q input line %d: %w", c.name, offset, ErrNotRequested)
}

// FindOutput returns the requested output line at offset, or
// ErrNotRequested.
func (c *Chip) FindOutput(offset int) (*Output, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.lines[offset].(*Output); ok {
		return o, nil
	}
	return nil, fmt.Errorf("sim chip %q output line %d: %w", c.name, offset, ErrNotRequested)
}

// Lines lists the chip's requested lines by offset.
func (c *Chip) Lines() []LineInfo {
	c.mu.Lock()
	ls := make([]any, 0, len(c.lines))
	for _, l := range c.lines {
		ls = append(ls, l)
	}
	c.mu.Unlock()
	infos := make([]LineInfo, 0, len(ls))
	for _, l := range ls {
		switch l := l.(type) {
		case *Output:
			infos = append(infos, LineInfo{Chip: c.name, Offset: l.offset, Consumer: l.consumer,
				Direction: DirOutput, ActiveLow: l.activeLow, Active: l.Active()})
		case *Input:
			a, _ := l.Active()
			infos = append(infos, LineInfo{Chip: c.name, Offset: l.offset, Consumer: l.consumer,
				Direction: DirInput, ActiveLow: l.activeLow, Active: a})
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Offset < infos[j].Offset })
	return infos
}

// level is the physical level (0 or 1) of a line in a logical state.
func level(active, activeLow bool) int {
	if active != activeLow {
		return 1
	}
	return 0
}

// Output is a simulated output line (relay, LED, buzzer). It implements
// kiosk.OutputLine.
type Output struct {
	chip      *Chip
	offset    int
	activeLow bool
	consumer  string

	mu      sync.Mutex
	active  bool
	closed  bool
	changes chan bool

	logLevel slog.Level // of "sim line set"; slog.LevelInfo unless SetLogLevel
}

var _ kiosk.OutputLine = (*Output)(nil)

// SetLogLevel sets the level at which the line's changes are logged
// (default Info). kioskd logs buzzer and LED changes at Debug so that a
// key beep does not drown the relay's changes.
func (o *Output) SetLogLevel(l slog.Level) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logLevel = l
}

// Set drives the line active or inactive. Setting the state it already
// has changes nothing and logs nothing. It fails with ErrClosed after
// Close.
func (o *Output) Set(active bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("sim chip %q line %d: %w", o.chip.name, o.offset, ErrClosed)
	}
	o.setLocked(active)
	return nil
}

func (o *Output) setLocked(active bool) {
	if o.active == active {
		return
	}
	o.active = active
	o.chip.log.Log(context.Background(), o.logLevel, "sim line set", "chip", o.chip.name, "line", o.offset, "consumer", o.consumer,
		"active", active, "level", level(active, o.activeLow))
	// Never block the driver: drop the oldest change when the reader is
	// ChangesBuffer behind. Only this method sends, under o.mu.
	for {
		select {
		case o.changes <- active:
			return
		default:
		}
		select {
		case <-o.changes:
		default:
		}
	}
}

// Close drives the line inactive, then releases it so its offset can be
// requested again. Changes is closed after the last change. Closing twice
// is harmless.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.setLocked(false)
	o.closed = true
	close(o.changes)
	o.chip.release(o.offset, o)
	o.chip.log.Debug("sim line released", "chip", o.chip.name, "line", o.offset, "consumer", o.consumer,
		"active", false, "level", level(false, o.activeLow))
	return nil
}

// Active reports the line's logical state.
func (o *Output) Active() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active
}

// Level reports the line's physical level, 0 or 1.
func (o *Output) Level() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return level(o.active, o.activeLow)
}

// Changes returns a channel that receives every logical change of the
// line, for tests and status displays. It holds up to ChangesBuffer
// changes; beyond that the oldest is dropped so the driver never blocks.
// It is closed when the line is closed.
func (o *Output) Changes() <-chan bool { return o.changes }

// Input is a simulated input line (door contact, exit button). It
// implements kiosk.InputLine; Set simulates the contact or button.
type Input struct {
	chip      *Chip
	offset    int
	activeLow bool
	consumer  string
	now       func() time.Time

	mu     sync.Mutex
	active bool
	closed bool
	events chan kiosk.LineEvent
}

var _ kiosk.InputLine = (*Input)(nil)

// Active returns the line's logical state; it fails with ErrClosed after
// Close.
func (i *Input) Active() (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return false, fmt.Errorf("sim chip %q line %d: %w", i.chip.name, i.offset, ErrClosed)
	}
	return i.active, nil
}

// Events returns the channel on which changes arrive. It holds up to
// ChangesBuffer events; beyond that the oldest is dropped (Active stays
// exact). It is closed when the line is closed.
func (i *Input) Events() <-chan kiosk.LineEvent { return i.events }

// Set simulates the contact or button changing to active; a change
// delivers one kiosk.LineEvent, setting the state the line already has
// delivers nothing. It fails with ErrClosed after Close.
func (i *Input) Set(active bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return fmt.Errorf("sim chip %q line %d: %w", i.chip.name, i.offset, ErrClosed)
	}
	if i.active == active {
		return nil
	}
	i.active = active
	i.chip.log.Info("sim line changed", "chip", i.chip.name, "line", i.offset, "consumer", i.consumer,
		"active", active, "level", level(active, i.activeLow))
	ev := kiosk.LineEvent{Active: active, Time: i.now()}
	for {
		select {
		case i.events <- ev:
			return nil
		default:
		}
		select {
		case <-i.events:
			i.chip.log.Warn("sim line event dropped: reader too slow", "chip", i.chip.name, "line", i.offset)
		default:
		}
	}
}

// Close releases the line and closes its Events channel. Closing twice is
// harmless.
func (i *Input) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	close(i.events)
	i.chip.release(i.offset, i)
	i.chip.log.Info("sim line released", "chip", i.chip.name, "line", i.offset, "consumer", i.consumer)
	return nil
}
