//go:build !linux

package evdev

import (
	"context"
	"errors"

	"kioskd/kiosk"
)

// ErrUnsupported is returned by Run on systems other than Linux, which
// have no evdev.
var ErrUnsupported = errors.New("evdev input: only supported on Linux")

// Run returns ErrUnsupported at once: evdev is Linux's.
func (in *Input) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	return ErrUnsupported
}
