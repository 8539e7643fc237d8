package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/warthog618/go-gpiocdev"

	"kioskd/kiosk"
)

// Chip is an open GPIO chip (/dev/gpiochipN). Lines are requested from it
// by offset; each requested line is independent of the chip afterwards
// and must be closed on its own.
type Chip struct {
	name string // as given to Open, for logs and errors
	log  *slog.Logger

	mu   sync.Mutex
	chip *gpiocdev.Chip // nil once closed
}

// Open opens the GPIO chip name, "gpiochip0" or "/dev/gpiochip0". Its
// lines log to log (nil: slog.Default()).
func Open(name string, log *slog.Logger) (*Chip, error) {
	if log == nil {
		log = slog.Default()
	}
	c, err := gpiocdev.NewChip(name)
	if err != nil {
		return nil, fmt.Errorf("open gpio chip %q: %w", name, err)
	}
	log.Debug("gpio chip opened", "chip", name, "label", c.Label, "lines", c.Lines())
	return &Chip{name: name, log: log, chip: c}, nil
}

// Name returns the chip's name as given to Open.
func (c *Chip) Name() string { return c.name }

// Close closes the chip. Lines already requested stay requested until
// they are closed themselves. Closing twice is harmless.
func (c *Chip) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chip == nil {
		return nil
	}
	err := c.chip.Close()
	c.chip = nil
	if err != nil {
		return fmt.Errorf("close gpio chip %q: %w", c.name, err)
	}
	return nil
}

func (c *Chip) request(offset int, opts ...gpiocdev.LineReqOption) (*gpiocdev.Line, error) {
	if offset < 0 {
		return nil, fmt.Errorf("gpio chip %q line %d: %w", c.name, offset, ErrBadOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chip == nil {
		return nil, fmt.Errorf("gpio chip %q line %d: chip %w", c.name, offset, ErrClosed)
	}
	l, err := c.chip.RequestLine(offset, opts...)
	if err != nil {
		return nil, fmt.Errorf("gpio chip %q request line %d: %w", c.name, offset, err)
	}
	return l, nil
}

// Output requests the line at offset as an output whose inactive value is
// part of the request (physical level high when activeLow, else low): the
// kernel drives the inactive level from the first instant, so a relay
// never blips. consumer labels the line in the kernel (gpioinfo).
func (c *Chip) Output(offset int, activeLow bool, consumer string) (*Output, error) {
	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer(consumer), gpiocdev.AsOutput(0)}
	if activeLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	l, err := c.request(offset, opts...)
	if err != nil {
		return nil, err
	}
	c.log.Debug("gpio line requested", "chip", c.name, "line", offset, "consumer", consumer,
		"direction", "output", "active", false, "level", level(false, activeLow))
	return &Output{chip: c.name, log: c.log, offset: offset, activeLow: activeLow, consumer: consumer, line: l}, nil
}

// Input requests the line at offset as an input with edge events on both
// edges. Active-low inputs get the internal pull-up and active-high
// inputs the pull-down, so an open contact or unpressed button reads
// inactive. debounce > 0 asks the kernel to debounce the line by that
// period (edges shorter than it are suppressed); 0 means none.
func (c *Chip) Input(offset int, activeLow bool, consumer string, debounce time.Duration) (*Input, error) {
	if debounce < 0 {
		return nil, fmt.Errorf("gpio chip %q line %d: %v: %w", c.name, offset, debounce, ErrBadDebounce)
	}
	in := &Input{chip: c.name, log: c.log, offset: offset, activeLow: activeLow, consumer: consumer,
		events: newEventQueue(EventBuffer), now: time.Now}
	opts := []gpiocdev.LineReqOption{
		gpiocdev.WithConsumer(consumer),
		gpiocdev.AsInput,
		gpiocdev.WithBothEdges,
		gpiocdev.WithEventHandler(in.handle),
	}
	if activeLow {
		opts = append(opts, gpiocdev.AsActiveLow, gpiocdev.WithPullUp)
	} else {
		opts = append(opts, gpiocdev.WithPullDown)
	}
	if debounce > 0 {
		opts = append(opts, gpiocdev.WithDebounce(debounce))
	}
	l, err := c.request(offset, opts...)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	in.line = l
	in.mu.Unlock()
	c.log.Debug("gpio line requested", "chip", c.name, "line", offset, "consumer", consumer,
		"direction", "input", "bias", bias(activeLow), "debounce", debounce)
	return in, nil
}

// Output is a requested output line (relay, LED, buzzer). It implements
// kiosk.OutputLine. Safe for concurrent use.
type Output struct {
	chip      string
	log       *slog.Logger
	offset    int
	activeLow bool
	consumer  string

	mu       sync.Mutex
	line     *gpiocdev.Line // nil once closed
	active   bool
	logLevel slog.Level // of "gpio line set"; Info unless SetLogLevel
}

var _ kiosk.OutputLine = (*Output)(nil)

// SetLogLevel sets the level at which the line's changes are logged
// (default Info), as sim.Output.SetLogLevel: kioskd logs buzzer and LED
// changes at Debug so that key beeps do not drown the relays.
func (o *Output) SetLogLevel(l slog.Level) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logLevel = l
}

// Set drives the line active or inactive; the kernel applies the active
// level. It fails with ErrClosed after Close.
func (o *Output) Set(active bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.line == nil {
		return fmt.Errorf("gpio chip %q line %d: %w", o.chip, o.offset, ErrClosed)
	}
	return o.setLocked(active)
}

func (o *Output) setLocked(active bool) error {
	v := 0
	if active {
		v = 1
	}
	if err := o.line.SetValue(v); err != nil {
		return fmt.Errorf("gpio chip %q set line %d: %w", o.chip, o.offset, err)
	}
	if o.active != active {
		o.active = active
		o.log.Log(context.Background(), o.logLevel, "gpio line set", "chip", o.chip, "line", o.offset,
			"consumer", o.consumer, "active", active, "level", level(active, o.activeLow))
	}
	return nil
}

// Active reports the logical state the line was last set to.
func (o *Output) Active() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active
}

// Close drives the line inactive, then releases it. The release happens
// even when driving it inactive fails; both errors are returned. Closing
// twice is harmless.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.line == nil {
		return nil
	}
	errSet := o.setLocked(false)
	errClose := o.line.Close()
	o.line = nil
	if errClose != nil {
		errClose = fmt.Errorf("gpio chip %q release line %d: %w", o.chip, o.offset, errClose)
	}
	o.log.Debug("gpio line released", "chip", o.chip, "line", o.offset, "consumer", o.consumer)
	return errors.Join(errSet, errClose)
}

// Input is a requested input line (door contact, exit button). It
// implements kiosk.InputLine. Safe for concurrent use.
type Input struct {
	chip      string
	log       *slog.Logger
	offset    int
	activeLow bool
	consumer  string
	events    *eventQueue
	now       func() time.Time

	mu   sync.Mutex
	line *gpiocdev.Line // nil once closed
}

var _ kiosk.InputLine = (*Input)(nil)

// handle is the kernel event handler: it turns an edge into a
// kiosk.LineEvent and queues it without ever blocking. go-gpiocdev calls
// it serially, and Close waits for it to return before the queue closes.
func (i *Input) handle(e gpiocdev.LineEvent) {
	ev := kiosk.LineEvent{Active: e.Type == gpiocdev.LineEventRisingEdge, Time: i.now()}
	if i.events.push(ev) {
		i.log.Warn("gpio line event dropped: reader too slow", "chip", i.chip, "line", i.offset,
			"consumer", i.consumer, "dropped_total", i.events.droppedCount())
	}
}

// Active reads the line's current logical state (debounced when a
// debounce period was requested). It fails with ErrClosed after Close.
func (i *Input) Active() (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.line == nil {
		return false, fmt.Errorf("gpio chip %q line %d: %w", i.chip, i.offset, ErrClosed)
	}
	v, err := i.line.Value()
	if err != nil {
		return false, fmt.Errorf("gpio chip %q read line %d: %w", i.chip, i.offset, err)
	}
	return v == 1, nil
}

// Events returns the channel on which changes arrive, one per debounced
// edge. It holds up to EventBuffer events; beyond that the oldest is
// dropped (and logged). It is closed when the line is closed.
func (i *Input) Events() <-chan kiosk.LineEvent { return i.events.ch }

// Close releases the line and then closes the Events channel. It must not
// be called from a reader that blocks the event handler (it never does:
// the handler does not block). Closing twice is harmless.
func (i *Input) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.line == nil {
		return nil
	}
	err := i.line.Close() // waits for a running handler to return
	i.line = nil
	i.events.close()
	i.log.Debug("gpio line released", "chip", i.chip, "line", i.offset, "consumer", i.consumer)
	if err != nil {
		return fmt.Errorf("gpio chip %q release line %d: %w", i.chip, i.offset, err)
	}
	return nil
}
