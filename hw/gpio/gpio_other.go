//go:build !linux

package gpio

import (
	"fmt"
	"log/slog"
	"time"

	"kioskd/kiosk"
)

// Chip is an open GPIO chip. Outside Linux none can be opened.
type Chip struct{ name string }

// Open fails with ErrUnsupported: the GPIO character device is Linux's.
func Open(name string, log *slog.Logger) (*Chip, error) {
	return nil, fmt.Errorf("open gpio chip %q: %w", name, ErrUnsupported)
}

// Name returns the chip's name as given to Open.
func (c *Chip) Name() string { return c.name }

// Close does nothing outside Linux.
func (c *Chip) Close() error { return nil }

// Output fails with ErrUnsupported outside Linux.
func (c *Chip) Output(offset int, activeLow bool, consumer string) (*Output, error) {
	return nil, fmt.Errorf("gpio chip %q line %d: %w", c.name, offset, ErrUnsupported)
}

// Input fails with ErrUnsupported outside Linux.
func (c *Chip) Input(offset int, activeLow bool, consumer string, debounce time.Duration) (*Input, error) {
	return nil, fmt.Errorf("gpio chip %q line %d: %w", c.name, offset, ErrUnsupported)
}

// Output is a requested output line; none exists outside Linux.
type Output struct{}

var _ kiosk.OutputLine = (*Output)(nil)

// SetLogLevel does nothing outside Linux.
func (o *Output) SetLogLevel(slog.Level) {}

// Set fails with ErrUnsupported outside Linux.
func (o *Output) Set(active bool) error { return ErrUnsupported }

// Active reports false outside Linux.
func (o *Output) Active() bool { return false }

// Close does nothing outside Linux.
func (o *Output) Close() error { return nil }

// Input is a requested input line; none exists outside Linux.
type Input struct{}

var _ kiosk.InputLine = (*Input)(nil)

// Active fails with ErrUnsupported outside Linux.
func (i *Input) Active() (bool, error) { return false, ErrUnsupported }

// Events returns nil outside Linux.
func (i *Input) Events() <-chan kiosk.LineEvent { return nil }

// Close does nothing outside Linux.
func (i *Input) Close() error { return nil }
