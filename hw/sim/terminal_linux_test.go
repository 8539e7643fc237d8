package sim

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"kioskd/kiosk"
)

func newPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close(); tty.Close() })
	return master, tty
}

func lflag(t *testing.T, f *os.File) uint32 {
	t.Helper()
	var tio *unix.Termios
	err := control(f, func(fd int) (err error) {
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag
}

// On a real terminal, keys arrive one by one without Enter (raw mode),
// Ctrl-C is a byte rather than a signal, and the terminal's mode is
// restored when Run returns.
func TestTerminalRawModeOnPTY(t *testing.T) {
	master, tty := newPTY(t)
	before := lflag(t, tty)
	if before&unix.ICANON == 0 || before&unix.ECHO == 0 {
		t.Fatalf("fresh pty not canonical with echo: lflag %#x", before)
	}
	out, interrupts, stop := startTerminal(t, tty)
	if ev := next(t, out); ev.Type != kiosk.InputConnected {
		t.Fatalf("first event %+v", ev)
	}
	if l := lflag(t, tty); l&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 {
		t.Fatalf("during Run lflag %#x still has ICANON/ECHO/ISIG", l)
	}
	if _, err := master.Write([]byte("7")); err != nil {
		t.Fatal(err)
	}
	// In canonical mode this key would wait for a newline.
	if ev := next(t, out); ev.Type != kiosk.InputKey || ev.Key != '7' {
		t.Fatalf("event %+v, want key 7", ev)
	}
	if _, err := master.Write([]byte("\x03\r8")); err != nil {
		t.Fatal(err)
	}
	for _, want := range "#8" {
		if ev := next(t, out); ev.Type != kiosk.InputKey || ev.Key != want {
			t.Fatalf("event %+v, want key %c", ev, want)
		}
	}
	if n := interrupts.Load(); n != 1 {
		t.Fatalf("interrupts %d, want 1", n)
	}
	stop()
	if after := lflag(t, tty); after != before {
		t.Fatalf("lflag after Run %#x, want restored %#x", after, before)
	}
}

// A panic inside Run still restores the terminal.
func TestTerminalRestoresOnPanic(t *testing.T) {
	_, tty := newPTY(t)
	before := lflag(t, tty)
	term := NewTerminal("term", tty, slog.New(slog.DiscardHandler))
	out := make(chan kiosk.InputEvent)
	close(out) // the first send panics
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		term.Run(context.Background(), out)
	}()
	if p := <-panicked; p == nil {
		t.Fatal("Run did not panic on a closed channel")
	}
	if after := lflag(t, tty); after != before {
		t.Fatalf("lflag after panic %#x, want restored %#x", after, before)
	}
}
