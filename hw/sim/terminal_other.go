//go:build !linux

package sim

import (
	"fmt"
	"os"

	"golang.org/x/term"
)

// openControllingTerminal returns standard input.
func openControllingTerminal() (*os.File, error) { return os.Stdin, nil }

// makeRaw puts f in raw mode when it is a terminal and returns the
// function that restores it (nil when f is not a terminal).
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return nil, nil
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("set raw mode on %s: %w", f.Name(), err)
	}
	return func() { _ = term.Restore(fd, old) }, nil
}

// interruptSelf sends an interrupt to this process where the platform can.
func interruptSelf() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Signal(os.Interrupt)
	}
}
