package gpio

import (
	"errors"
	"io/fs"
	"log/slog"
	"testing"
	"time"

	"github.com/warthog618/go-gpiosim"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
)

// newSim creates a gpio-sim chip of 8 lines, or skips: gpio-sim needs the
// kernel's gpio-sim module and configfs, which these build machines lack.
// `make test-hw` runs these tests inside a VM that has them.
func newSim(t *testing.T) *gpiosim.Simpleton {
	t.Helper()
	return hwtest.GPIOSim(t, 8)
}

func openSim(t *testing.T, s *gpiosim.Simpleton) *Chip {
	t.Helper()
	c, err := Open(s.ChipName(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open(%q): %v", s.ChipName(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func simLevel(t *testing.T, s *gpiosim.Simpleton, offset int) int {
	t.Helper()
	v, err := s.Level(offset)
	if err != nil {
		t.Fatalf("gpiosim level of line %d: %v", offset, err)
	}
	return v
}

func setPull(t *testing.T, s *gpiosim.Simpleton, offset, v int) {
	t.Helper()
	if err := s.SetPull(offset, v); err != nil {
		t.Fatalf("gpiosim set pull of line %d to %d: %v", offset, v, err)
	}
}

// next waits for the next line event, failing after a deadline.
func next(t *testing.T, ch <-chan kiosk.LineEvent) kiosk.LineEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("events channel closed early")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no line event within 5 s")
	}
	panic("unreachable")
}

// Runs everywhere on Linux: a missing chip is a clear, wrapped error.
func TestOpenMissingChip(t *testing.T) {
	_, err := Open("gpiochip-kioskd-missing", nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing chip: %v, want fs.ErrNotExist", err)
	}
}

// Runs everywhere: argument checks come before the kernel.
func TestBadArguments(t *testing.T) {
	c := &Chip{name: "gpiochipX", log: slog.New(slog.DiscardHandler)}
	if _, err := c.Output(-1, false, "t"); !errors.Is(err, ErrBadOffset) {
		t.Errorf("Output(-1): %v, want ErrBadOffset", err)
	}
	if _, err := c.Input(-1, false, "t", 0); !errors.Is(err, ErrBadOffset) {
		t.Errorf("Input(-1): %v, want ErrBadOffset", err)
	}
	if _, err := c.Input(1, false, "t", -time.Millisecond); !errors.Is(err, ErrBadDebounce) {
		t.Errorf("Input(debounce -1ms): %v, want ErrBadDebounce", err)
	}
	if _, err := c.Output(1, false, "t"); !errors.Is(err, ErrClosed) {
		t.Errorf("Output on a closed chip: %v, want ErrClosed", err)
	}
}

func TestOpenNames(t *testing.T) {
	s := newSim(t)
	for _, name := range []string{s.ChipName(), s.DevPath()} {
		t.Run(name, func(t *testing.T) {
			c, err := Open(name, nil)
			if err != nil {
				t.Fatalf("Open(%q): %v", name, err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestOutput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		activeLow bool
	}{
		{"active high", false},
		{"active low", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			c := openSim(t, s)
			const off = 3
			// Worst case: the line floats at its active level before
			// the request. A request that did not carry the inactive
			// value would leave the relay energised.
			setPull(t, s, off, level(true, tc.activeLow))

			o, err := c.Output(off, tc.activeLow, "test-relay")
			if err != nil {
				t.Fatalf("Output: %v", err)
			}
			if got, want := simLevel(t, s, off), level(false, tc.activeLow); got != want {
				t.Fatalf("level right after request = %d, want inactive level %d", got, want)
			}
			if err := o.Set(true); err != nil {
				t.Fatalf("Set(true): %v", err)
			}
			if got, want := simLevel(t, s, off), level(true, tc.activeLow); got != want {
				t.Fatalf("level after Set(true) = %d, want %d", got, want)
			}
			if err := o.Set(false); err != nil {
				t.Fatalf("Set(false): %v", err)
			}
			if got, want := simLevel(t, s, off), level(false, tc.activeLow); got != want {
				t.Fatalf("level after Set(false) = %d, want %d", got, want)
			}

			// Busy: the kernel refuses a second request of the line.
			if _, err := c.Output(off, tc.activeLow, "second"); err == nil {
				t.Fatal("second request of a requested line succeeded")
			}

			if err := o.Set(true); err != nil {
				t.Fatalf("Set(true): %v", err)
			}
			if err := o.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if o.Active() {
				t.Error("Close left the output active")
			}
			if err := o.Set(true); !errors.Is(err, ErrClosed) {
				t.Errorf("Set after Close: %v, want ErrClosed", err)
			}
			if err := o.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			// Released: the line can be requested again, inactive.
			o2, err := c.Output(off, tc.activeLow, "again")
			if err != nil {
				t.Fatalf("request after Close: %v", err)
			}
			if got, want := simLevel(t, s, off), level(false, tc.activeLow); got != want {
				t.Errorf("level on re-request = %d, want %d", got, want)
			}
			_ = o2.Close()
		})
	}
}

func TestInputContact(t *testing.T) {
	for _, tc := range []struct {
		name      string
		activeLow bool
	}{
		{"active high, pull-down", false},
		{"active low, pull-up", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			c := openSim(t, s)
			const off = 5
			in, err := c.Input(off, tc.activeLow, "test-contact", 0)
			if err != nil {
				t.Fatalf("Input: %v", err)
			}
			defer in.Close()

			// The bias the driver asked for is the sim's pull now.
			pull, err := s.Pull(off)
			if err != nil {
				t.Fatalf("gpiosim pull: %v", err)
			}
			if want := level(false, tc.activeLow); pull != want {
				t.Fatalf("pull after request = %d, want %d (%s)", pull, want, bias(tc.activeLow))
			}
			if a, err := in.Active(); err != nil || a {
				t.Fatalf("Active() = %v, %v; want false (open contact)", a, err)
			}

			for _, active := range []bool{true, false, true} {
				setPull(t, s, off, level(active, tc.activeLow))
				e := next(t, in.Events())
				if e.Active != active {
					t.Fatalf("event Active = %v, want %v", e.Active, active)
				}
				if e.Time.IsZero() {
					t.Error("event without a time")
				}
				if a, err := in.Active(); err != nil || a != active {
					t.Fatalf("Active() = %v, %v; want %v", a, err, active)
				}
			}

			if err := in.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for {
				select {
				case _, ok := <-in.Events():
					if !ok {
						goto closed
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Events not closed after Close")
				}
			}
		closed:
			if _, err := in.Active(); !errors.Is(err, ErrClosed) {
				t.Errorf("Active after Close: %v, want ErrClosed", err)
			}
			if err := in.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// Without debounce the sim's bounce shows as two events: proof that the
// bounce in TestInputDebounce is real.
func TestInputBounceVisibleWithoutDebounce(t *testing.T) {
	s := newSim(t)
	c := openSim(t, s)
	const off = 6
	in, err := c.Input(off, true, "test-exit", 0)
	if err != nil {
		t.Fatalf("Input: %v", err)
	}
	defer in.Close()
	setPull(t, s, off, 0) // pressed
	setPull(t, s, off, 1) // released at once
	if e := next(t, in.Events()); !e.Active {
		t.Fatalf("first event Active = false, want true")
	}
	if e := next(t, in.Events()); e.Active {
		t.Fatalf("second event Active = true, want false")
	}
}

// A bounce shorter than the debounce period yields no event; the change
// that holds yields one, no sooner than the period after it.
func TestInputDebounce(t *testing.T) {
	const debounce = 50 * time.Millisecond
	s := newSim(t)
	c := openSim(t, s)
	const off = 6
	in, err := c.Input(off, true, "test-exit", debounce)
	if err != nil {
		t.Fatalf("Input: %v", err)
	}
	defer in.Close()

	t0 := time.Now()
	setPull(t, s, off, 0) // pressed ...
	setPull(t, s, off, 1) // ... bounced open ...
	setPull(t, s, off, 0) // ... and held pressed
	e := next(t, in.Events())
	if !e.Active {
		t.Fatalf("first event Active = false, want true (the bounce leaked through)")
	}
	if d := e.Time.Sub(t0); d < debounce {
		t.Fatalf("first event %v after the press, want at least the debounce period %v", d, debounce)
	}

	t1 := time.Now()
	setPull(t, s, off, 1) // released and held
	e = next(t, in.Events())
	if e.Active {
		t.Fatalf("second event Active = true, want false")
	}
	if !e.Time.After(t1) {
		t.Fatalf("second event at %v predates the release at %v: a bounce event leaked through", e.Time, t1)
	}
	if a, err := in.Active(); err != nil || a {
		t.Fatalf("Active() = %v, %v; want false", a, err)
	}
}
