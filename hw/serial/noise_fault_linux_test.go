package serial

// Line noise at full speed (issue 6): a pseudo-terminal written as fast
// as it accepts bytes, with the input reading it and the test consuming
// events as the decision loop would.

import (
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"kioskd/kiosk"
)

// noise writes n pseudo-random bytes (from seed, each drawn by pick) to
// w as fast as w takes them, in 4 KiB writes, and returns them through
// the decoder-side callback feed (so the test can compute what the input
// must report without keeping megabytes). done receives the write error.
func noise(w io.Writer, seed uint64, n int, pick func(*rand.Rand) byte, feed func([]byte)) <-chan error {
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		buf := make([]byte, 4096)
		for n > 0 {
			k := min(n, len(buf))
			for i := range k {
				buf[i] = pick(rng)
			}
			if feed != nil {
				feed(buf[:k])
			}
			if _, err := w.Write(buf[:k]); err != nil {
				done <- err
				return
			}
			n -= k
		}
		done <- nil
	}()
	return done
}

func anyByte(r *rand.Rand) byte { return byte(r.UintN(256)) }

// garbageByte is a byte the keypad ignores: no key, no CR or LF.
func garbageByte(r *rand.Rand) byte {
	for {
		if c := byte(r.UintN(256)); !keyByte(c) && c != '\r' && c != '\n' {
			return c
		}
	}
}

// noEOL is any byte but CR and LF: a code that never ends.
func noEOL(r *rand.Rand) byte {
	for {
		if c := byte(r.UintN(256)); c != '\r' && c != '\n' {
			return c
		}
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestKeypadNoiseAtFullSpeed: random bytes written to a serial keypad as
// fast as the pty takes them lose nothing and invent nothing (every key
// byte in the noise comes out as that key, in order, and the first byte
// of each run of garbage after a digit or A-D as one '*' that clears the
// entry, as keypadModel reads the bytes), garbage is summarised at most
// once per interval however much of it comes, memory stays flat, and a
// PIN typed after the noise comes out whole.
func TestKeypadNoiseAtFullSpeed(t *testing.T) {
	for _, tc := range []struct {
		name string
		pick func(*rand.Rand) byte
		n    int
	}{
		{"random bytes", anyByte, 256 << 10},
		{"garbage only", garbageByte, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPTY(t)
			opts := fastOpts("keypad", p.path())
			opts.GarbageInterval = time.Hour // one summary at once, the rest held back
			r := start(t, NewKeypad(opts))
			r.expect(t, kiosk.InputConnected)

			var want []rune
			var ref keypadModel
			heap0 := heapInUse()
			began := time.Now()
			done := noise(p.master, 7, tc.n, tc.pick, func(b []byte) {
				ref.feed(b, func(k rune) { want = append(want, k) })
			})
			var got []rune
			summaries := 0
			for finished := false; !finished || len(got) < len(want); {
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("write noise: %v", err)
					}
					finished, done = true, nil
				case ev := <-r.events:
					switch ev.Type {
					case kiosk.InputKey:
						got = append(got, ev.Key)
					case kiosk.InputRejected:
						summaries++
					default:
						t.Fatalf("event %+v during noise", ev)
					}
				case <-time.After(deadline):
					t.Fatalf("stalled: %d of %d keys after %v", len(got), len(want), time.Since(began))
				}
			}
			elapsed := time.Since(began)
			if string(got) != string(want) {
				t.Fatalf("keys differ from the noise's key bytes: got %d keys, want %d", len(got), len(want))
			}
			if ref.garbage > 0 && summaries != 1 {
				t.Errorf("%d garbage summaries for %d garbage bytes within one interval, want 1", summaries, ref.garbage)
			}
			if grown := int64(heapInUse()) - int64(heap0); grown > 4<<20 {
				t.Errorf("heap grew by %d bytes over %d bytes of noise", grown, tc.n)
			}
			entries := entrySubmits(string(got), 6)
			t.Logf("%d bytes of noise in %v (%.1f MB/s): %d keys, %d garbage bytes, %d summary; %d entries submitted (%.2f per KiB)",
				tc.n, elapsed.Round(time.Millisecond), float64(tc.n)/elapsed.Seconds()/1e6, len(got), ref.garbage, summaries,
				len(entries), float64(len(entries))/float64(tc.n>>10))

			p.typ(t, "*246810#")
			r.keys(t, "*246810#")
		})
	}
}

// TestScannerNoiseAtFullSpeed: a serial scanner flooded at full speed
// reports exactly the codes and overlong rejections the bytes make (no
// code over MaxCodeLen ever reaches the engine), holds at most
// MaxCodeLen bytes whatever the flood, and reads a real code after it.
func TestScannerNoiseAtFullSpeed(t *testing.T) {
	for _, tc := range []struct {
		name string
		pick func(*rand.Rand) byte
		n    int
	}{
		{"random bytes", anyByte, 256 << 10},
		{"one endless line", noEOL, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPTY(t)
			r := start(t, NewScanner(fastOpts("scanner", p.path())))
			r.expect(t, kiosk.InputConnected)

			type out struct {
				code     string
				overlong bool
			}
			var want []out
			var ref CodeDecoder
			heap0 := heapInUse()
			began := time.Now()
			done := noise(p.master, 11, tc.n, tc.pick, func(b []byte) {
				ref.Feed(b, func(c kiosk.Secret) { want = append(want, out{code: string(c)}) },
					func() { want = append(want, out{overlong: true}) })
			})
			var got []out
			for finished := false; !finished || len(got) < len(want); {
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("write noise: %v", err)
					}
					finished, done = true, nil
				case ev := <-r.events:
					switch {
					case ev.Type == kiosk.InputCode:
						if len(ev.Code) > MaxCodeLen {
							t.Fatalf("a %d-byte code reached the engine", len(ev.Code))
						}
						got = append(got, out{code: string(ev.Code)})
					case ev.Type == kiosk.InputRejected && ev.Detail == DetailOverlong:
						got = append(got, out{overlong: true})
					default:
						t.Fatalf("event %+v during noise", ev)
					}
				case <-time.After(deadline):
					t.Fatalf("stalled: %d of %d codes after %v", len(got), len(want), time.Since(began))
				}
			}
			elapsed := time.Since(began)
			if len(got) != len(want) {
				t.Fatalf("%d codes and rejections, want %d", len(got), len(want))
			}
			overlong := 0
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("report %d differs from what the bytes make (overlong %v/%v, %d/%d bytes)",
						i, got[i].overlong, want[i].overlong, len(got[i].code), len(want[i].code))
				}
				if got[i].overlong {
					overlong++
				}
			}
			if grown := int64(heapInUse()) - int64(heap0); grown > 4<<20 {
				t.Errorf("heap grew by %d bytes over %d bytes of noise", grown, tc.n)
			}
			t.Logf("%d bytes of noise in %v (%.1f MB/s): %d codes, %d overlong",
				tc.n, elapsed.Round(time.Millisecond), float64(tc.n)/elapsed.Seconds()/1e6, len(got)-overlong, overlong)

			// The line ends (the noise after its last CR or LF, if any, is
			// one more code); the next code is read whole.
			p.typ(t, "\r\nKIOSK-STAFF-7F3K9Q\r\n")
			for extra := 0; ; extra++ {
				ev := r.expect(t, kiosk.InputCode)
				if string(ev.Code) == "KIOSK-STAFF-7F3K9Q" {
					break
				}
				if extra > 0 {
					t.Fatalf("code after the noise: %d bytes, want the staff code", len(ev.Code))
				}
			}
		})
	}
}
