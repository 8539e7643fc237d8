package main

// Serial line noise through the whole daemon (issue 6): random bytes
// written into the keypad's and the scanner's pseudo-terminals as fast as
// they take them, with real PINs typed between the bursts.

import (
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"kioskd/kiosk"
)

// lineNoise writes n bytes drawn by pick to w as fast as w takes them;
// the returned channel receives the write error when done.
func lineNoise(w io.Writer, seed uint64, n int, pick func(*rand.Rand) byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, ^seed))
		buf := make([]byte, 4096)
		for n > 0 {
			k := min(n, len(buf))
			for i := range k {
				buf[i] = pick(rng)
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

// noKey draws bytes that a serial keypad ignores and that never end a
// scanner's line: no 0-9 * # A-D, no CR or LF.
func noKey(r *rand.Rand) byte {
	for {
		c := byte(r.UintN(256))
		switch {
		case c >= '0' && c <= '9', c == '*', c == '#', c >= 'A' && c <= 'D', c == '\r', c == '\n':
			continue
		}
		return c
	}
}

func waitNoise(t *testing.T, done ...<-chan error) {
	t.Helper()
	for _, d := range done {
		select {
		case err := <-d:
			if err != nil {
				t.Fatalf("write noise: %v", err)
			}
		case <-time.After(wait):
			t.Fatalf("noise not taken within %v: the input stopped reading", wait)
		}
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSerialNoiseThroughDaemon: garbage at full speed on the keypad and
// the scanner neither stalls nor grows the daemon: a PIN typed between
// bursts opens at once, garbage is one input.rejected per keypad per
// interval (10 s) however much comes, each overlong scanner line is one
// input.rejected and never a decision, and the heap stays flat. Random
// bytes hold key bytes, but garbage clears the entry it breaks, so only
// a run of keys with no garbage in it can be submitted: at most one
// decision per KiB (about 0.5 on average, 10 before the clear); the
// daemon still decides a PIN on another keypad during the flood and on
// the noisy one after it.
func TestSerialNoiseThroughDaemon(t *testing.T) {
	h := newHarness(t, harnessOpts{maxFailures: 1000})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, pinCred("res", "246810", nil))
	relay := h.relay("main")
	heap0 := liveHeap()
	began := time.Now()

	const bursts = 3
	var slowest time.Duration
	for i := range bursts {
		waitNoise(t,
			lineNoise(h.keypad, uint64(i), 512<<10, noKey),
			lineNoise(h.scanner, uint64(100+i), 512<<10, noKey))
		typeKeys(t, h.scanner, "\r\n")
		typed := time.Now()
		typeKeys(t, h.keypad, "*246810")
		ev := h.decision("keypad")
		slowest = max(slowest, time.Since(typed))
		if ev.Reason != kiosk.Granted || ev.CredentialID != "res" {
			t.Fatalf("PIN after burst %d: %s %s, want res granted", i, ev.Reason, ev.CredentialID)
		}
		waitLine(t, relay, true)
		waitLine(t, relay, false)
	}
	typeKeys(t, h.scanner, "NOT-A-CODE\r")
	if ev := h.decision("scanner"); ev.Reason != kiosk.Unknown {
		t.Fatalf("scanner after the noise: %s, want unknown", ev.Reason)
	}
	elapsed := time.Since(began)
	t.Logf("%d bursts of 512 KiB per input in %v; slowest PIN after a burst decided in %v", bursts, elapsed.Round(time.Millisecond), slowest)

	var keypadRejected, scannerRejected, decisions int
	for _, e := range h.events {
		switch {
		case e.Type == kiosk.EvInputRejected && e.Input == "keypad":
			keypadRejected++
		case e.Type == kiosk.EvInputRejected && e.Input == "scanner":
			scannerRejected++
			if e.Detail["reason"] != "overlong code" {
				t.Errorf("scanner rejection %v, want an overlong code", e.Detail)
			}
		case e.Type == kiosk.EvAccessGranted || e.Type == kiosk.EvAccessDenied:
			decisions++
		}
	}
	if limit := 1 + int(elapsed/(10*time.Second)); keypadRejected < 1 || keypadRejected > limit {
		t.Errorf("%d keypad input.rejected events in %v, want 1 to %d (one per 10 s)", keypadRejected, elapsed, limit)
	}
	if scannerRejected != bursts {
		t.Errorf("%d scanner input.rejected events, want one per overlong line: %d", scannerRejected, bursts)
	}
	if decisions != bursts+1 {
		t.Errorf("%d decisions, want the %d PINs and the one code: garbage made decisions", decisions, bursts+1)
	}
	if grown := int64(liveHeap()) - int64(heap0); grown > 8<<20 {
		t.Errorf("heap grew by %d bytes over %d KiB of noise", grown, 2*bursts*512)
	}

	// Random bytes: about one in fourteen is a key, but a key sequence
	// broken by garbage is cleared, so the noisy keypad makes only a few
	// decisions. Another keypad is decided meanwhile.
	seen := len(h.events)
	noisy := lineNoise(h.keypad, 42, 16<<10, func(r *rand.Rand) byte { return byte(r.UintN(256)) })
	typed := time.Now()
	typeKeys(t, h.keypad2, "246810")
	ev := h.decision("keypad2")
	other := time.Since(typed)
	if ev.Reason != kiosk.Granted {
		t.Fatalf("keypad2 during the noise: %s, want granted", ev.Reason)
	}
	waitLine(t, relay, true)
	waitNoise(t, noisy)
	typed = time.Now()
	typeKeys(t, h.keypad, "*246810")
	h.waitEvent(func(e kiosk.Event) bool {
		return e.Type == kiosk.EvAccessGranted && e.Input == "keypad" && e.CredentialID == "res"
	})
	after := time.Since(typed)
	noiseDecisions, noiseEvents := 0, len(h.events)-seen
	for _, e := range h.events[seen:] {
		if e.Input == "keypad" && e.Type == kiosk.EvAccessDenied {
			noiseDecisions++
		}
	}
	if noiseDecisions > 16 {
		t.Errorf("16 KiB of random bytes made %d decisions, want at most one per KiB: noise is submitted as PINs", noiseDecisions)
	}
	t.Logf("16 KiB of random bytes on a keypad: %d denied decisions, %d events in all; keypad2 decided in %v during it, the noisy keypad in %v after it",
		noiseDecisions, noiseEvents, other.Round(time.Millisecond), after.Round(time.Millisecond))
}
