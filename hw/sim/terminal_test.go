package sim

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"kioskd/kiosk"
)

const wait = 5 * time.Second

func next(t *testing.T, ch <-chan kiosk.InputEvent) kiosk.InputEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(wait):
		t.Fatal("no input event within deadline")
		return kiosk.InputEvent{}
	}
}

// startTerminal runs a Terminal on r and returns its events, the count of
// Ctrl-C interrupts and a stop function that waits for Run to return.
func startTerminal(t *testing.T, r io.Reader) (<-chan kiosk.InputEvent, *atomic.Int32, func()) {
	t.Helper()
	term := NewTerminal("term", r, slog.New(slog.DiscardHandler))
	var interrupts atomic.Int32
	term.Interrupt = func() { interrupts.Add(1) }
	if term.Name() != "term" {
		t.Fatalf("Name = %q", term.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan kiosk.InputEvent, 64)
	done := make(chan error, 1)
	go func() { done <- term.Run(ctx, out) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after cancel")
		}
	}
	return out, &interrupts, stop
}

func TestTerminalKeys(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         string
		keys       string
		interrupts int32
	}{
		{"digits and specials", "0123456789*#", "0123456789*#", 0},
		{"letters both cases", "ABCDabcd", "ABCDABCD", 0},
		{"CR LF is one Enter", "12\r\n3", "12#3", 0},
		{"LF CR is one Enter", "1\n\r2", "1#2", 0},
		{"two CRs are two Enters", "1\r\r2", "1##2", 0},
		{"LF alone", "4\n5\n", "4#5#", 0},
		{"CR LF LF", "\r\n\n", "##", 0},
		{"other bytes ignored", "1xE e\x002", "12", 0},
		{"arrow and function keys ignored", "1\x1b[A\x1b[1;5B\x1bOD\x1b[15~2", "12", 0},
		{"lone ESC then key", "\x1b3", "3", 0},
		{"garbage breaks a CR LF pair", "\rx\n", "##", 0},
		{"Ctrl-C interrupts", "1\x032\x03", "12", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			out, interrupts, stop := startTerminal(t, pr)
			if ev := next(t, out); ev.Type != kiosk.InputConnected || ev.Input != "term" {
				t.Fatalf("first event %+v, want InputConnected from term", ev)
			}
			go func() {
				pw.Write([]byte(tc.in))
				pw.Close()
			}()
			var got []rune
			for {
				ev := next(t, out)
				if ev.Type == kiosk.InputDisconnected {
					if ev.Detail != "end of input" {
						t.Errorf("Disconnected detail %q", ev.Detail)
					}
					break
				}
				if ev.Type != kiosk.InputKey || ev.Input != "term" || ev.Time.IsZero() {
					t.Fatalf("event %+v, want a stamped InputKey", ev)
				}
				got = append(got, ev.Key)
			}
			if string(got) != tc.keys {
				t.Errorf("keys %q, want %q", string(got), tc.keys)
			}
			if n := interrupts.Load(); n != tc.interrupts {
				t.Errorf("interrupts %d, want %d", n, tc.interrupts)
			}
			stop()
		})
	}
}

// Run returns promptly on cancel even while its reader is blocked.
func TestTerminalStopsWhileReading(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	out, _, stop := startTerminal(t, pr)
	if ev := next(t, out); ev.Type != kiosk.InputConnected {
		t.Fatalf("first event %+v", ev)
	}
	stop()
}

func FuzzTermDecoder(f *testing.F) {
	f.Add([]byte("123456#"), 3)
	f.Add([]byte("12\r\n3\n\r\r4"), 4)
	f.Add([]byte("1\x1b[A\x1b[1;5B\x1bOD\x1b[15~2\x03abcd"), 7)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if len(b) > 0 {
			split = int(uint(split) % uint(len(b)+1))
		} else {
			split = 0
		}
		var whole, parts termDecoder
		var all, got []rune
		var nAll, nGot int
		whole.feed(b, func(k rune) { all = append(all, k) }, func() { nAll++ })
		parts.feed(b[:split], func(k rune) { got = append(got, k) }, func() { nGot++ })
		parts.feed(b[split:], func(k rune) { got = append(got, k) }, func() { nGot++ })
		if string(all) != string(got) || nAll != nGot {
			t.Fatalf("split at %d: %q/%d, whole %q/%d", split, string(got), nGot, string(all), nAll)
		}
		for _, k := range all {
			if !(k >= '0' && k <= '9' || k == '*' || k == '#' || k >= 'A' && k <= 'D') {
				t.Fatalf("emitted non-key %q", k)
			}
		}
	})
}
