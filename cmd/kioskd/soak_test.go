package main

// The soak (issue 6): kioskd in process under mixed traffic for a
// bounded time — PINs granted and denied, signed QR tokens, pushes good
// and bad, deltas the portal pushes, event uploads to a loopback
// devportal, door contact changes — sampling the live heap, the
// goroutines and the store's files, which must stay flat.
//
//	go test ./cmd/kioskd -run TestSoak                        # 30 s (make test)
//	go test ./cmd/kioskd -run TestSoak -soak.duration=10m -timeout=20m
//	KIOSKD_SOAK_DURATION=1h go test ./cmd/kioskd -run TestSoak -timeout=2h

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

var soakDuration = flag.Duration("soak.duration", 30*time.Second, "how long TestSoak runs traffic (KIOSKD_SOAK_DURATION overrides)")

// soakSample is one sample of the soak.
type soakSample struct {
	at         time.Duration // since the traffic started
	heap       uint64        // live heap after a GC (HeapAlloc)
	goroutines int
	mainDB     int64 // size of kioskd.db
	credsDB    int64 // size of the live creds-N.db files together
	backlog    int   // events not yet uploaded
	lastSeq    uint64
}

// soakFlat judges a series: the maximum of its last third must be within
// pct percent plus slack of the maximum of its first third. A leak grows
// the last third above the first; noise (a GC cycle, an idle connection)
// stays within the allowance.
func soakFlat(name string, first, last []float64, pct, slack float64) error {
	f, l := slices.Max(first), slices.Max(last)
	if l > f*(1+pct/100)+slack {
		return fmt.Errorf("%s grew: max %.0f in the last third, %.0f in the first (allowed %.0f)", name, l, f, f*(1+pct/100)+slack)
	}
	return nil
}

// TestSoak: see the file comment. Flat means: the live heap's maximum in
// the last third of the run within 25 % + 1 MiB of the first third's;
// goroutines within 10 % + 10; kioskd.db within 100 % + 1 MiB (bbolt
// grows its file in doubling steps while it is small, and nonces of
// good pushes stay for 5 minutes); the event backlog drains to zero
// once the traffic stops. Every decision must be what the traffic
// expects. Skipped with -short.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak; skipped with -short")
	}
	dur := *soakDuration
	if v := os.Getenv("KIOSKD_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KIOSKD_SOAK_DURATION: %v", err)
		}
		dur = d
	}
	ctx := context.Background()
	addr := freePort(t)
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s", pushListen: addr})
	// The heap measured is this process's: the logs the test keeps for
	// a failure's dump must not grow with the run and pass for a leak.
	h.logBuf.setLimit(256 << 10)
	tp.logs.setLimit(256 << 10)
	waitFor(t, "first pull", nil, func() bool { return !h.d.Syncer.Status().LastPull.IsZero() })
	tp.setPushURL("http://" + h.d.PushAddr) // deltas are pushed from now on
	pc := &pushClient{t: t, url: "http://" + h.d.PushAddr, priv: tp.priv}
	_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
	contact, err := h.bank.FindInput("gpiochip0", 27)
	if err != nil {
		t.Fatal(err)
	}

	// The PIN granted now, rotated every rotateEvery rounds: a new one is
	// issued (a delta the portal pushes), then the old one deactivated
	// (another delta).
	const rotateEvery = 20
	cur, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("the first PIN", pin, isActive)

	var samples []soakSample
	sampleEvery := max(dur/30, 500*time.Millisecond)
	warmup := dur / 10
	sample := func(at time.Duration) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := soakSample{at: at, heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
		state := filepath.Join(h.dir, "state")
		if fi, err := os.Stat(filepath.Join(state, "kioskd.db")); err == nil {
			s.mainDB = fi.Size()
		}
		creds, _ := filepath.Glob(filepath.Join(state, "creds-*.db"))
		for _, c := range creds {
			if fi, err := os.Stat(c); err == nil {
				s.credsDB += fi.Size()
			}
		}
		var err error
		if s.backlog, err = h.d.Store.Backlog(); err != nil {
			t.Fatal(err)
		}
		if s.lastSeq, err = h.d.Store.LastSeq(); err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
	}

	counts := map[string]int{}
	start := time.Now()
	nextSample := warmup
	for round := 0; time.Since(start) < dur; round++ {
		// A grant and a denial on the keypad (the grant resets the
		// failure count, so the denials never lock it out).
		h.wantDecision(pin, kiosk.Granted, cur.ID)
		// Five digits and '#': the portal issues six-digit PINs only, so
		// this entry can never match one (a six-digit guess eventually
		// hit a PIN the soak had issued and deactivated).
		h.wantDecision(fmt.Sprintf("%05d#", round%100000), kiosk.Unknown, "")
		// A signed QR token on the scanner, and every fifth round a
		// forged one.
		tok := kiosk.SignToken(kiosk.TokenClaims{CID: fmt.Sprintf("tok-%d", round), HID: "h-tok", Role: kiosk.RoleCourier,
			EXP: time.Now().Add(time.Hour).Unix()}, tp.priv)
		want := kiosk.Granted
		if round%5 == 4 {
			tok = kiosk.SignToken(kiosk.TokenClaims{CID: "forged", HID: "h-x", Role: kiosk.RoleCourier, EXP: time.Now().Add(time.Hour).Unix()}, wrongKey)
			want = kiosk.BadToken
		}
		typeScanner(t, h.scanner, tok+"\r")
		if d := h.nextDecision("scanner"); d.Reason != string(want) {
			t.Fatalf("round %d: token decided %s, want %s", round, d.Reason, want)
		}
		// A good hint push and a badly signed one.
		hint := pc.body(&portalsync.Document{Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(), Cursor: "x", Nonce: nonce(), Kind: portalsync.PushHint}})
		if code, body := pc.post(hint, portalsync.Sign(tp.priv, hint), false); code != 200 {
			t.Fatalf("round %d: good hint push answered %d %s", round, code, body)
		}
		bad := pc.body(&portalsync.Document{Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(), Cursor: "x", Nonce: nonce(), Kind: portalsync.PushHint}})
		if code, body := pc.post(bad, portalsync.Sign(wrongKey, bad), false); code != 401 {
			t.Fatalf("round %d: badly signed push answered %d %s, want 401", round, code, body)
		}
		// The door: opened after the grant (or forced), then closed.
		if err := contact.Set(true); err != nil {
			t.Fatal(err)
		}
		if err := contact.Set(false); err != nil {
			t.Fatal(err)
		}
		// Deltas: a new PIN, then the old one deactivated.
		if round%rotateEvery == rotateEvery-1 {
			next, nextPIN := tp.issue(portal.TypePIN, 0)
			h.waitCred("the new PIN", nextPIN, isActive)
			if _, err := tp.p.SetStatus(ctx, cur.ID, kiosk.StatusDeactivated); err != nil {
				t.Fatal(err)
			}
			old := pin
			h.waitCred("the old PIN deactivated", old, func(c *kiosk.Credential) bool { return c != nil && c.Status == kiosk.StatusDeactivated })
			h.wantDecision(old, kiosk.Deactivated, cur.ID)
			cur, pin = next, nextPIN
			counts["deltas"] += 2
		}
		counts["rounds"]++
		if at := time.Since(start); at >= nextSample {
			sample(at)
			nextSample = at + sampleEvery
		}
	}
	elapsed := time.Since(start)
	// The uploader catches up once the traffic stops.
	waitFor(t, "the event backlog to drain", nil, func() bool {
		n, err := h.d.Store.Backlog()
		return err == nil && n == 0
	})

	if len(samples) < 9 {
		t.Fatalf("%d samples in %v; run the soak longer (-soak.duration)", len(samples), elapsed)
	}
	third := len(samples) / 3
	first, last := samples[:third], samples[len(samples)-third:]
	series := func(ss []soakSample, f func(soakSample) float64) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = f(s)
		}
		return out
	}
	heap := func(s soakSample) float64 { return float64(s.heap) }
	gor := func(s soakSample) float64 { return float64(s.goroutines) }
	mainDB := func(s soakSample) float64 { return float64(s.mainDB) }
	for _, err := range []error{
		soakFlat("live heap", series(first, heap), series(last, heap), 25, 1<<20),
		soakFlat("goroutines", series(first, gor), series(last, gor), 10, 10),
		soakFlat("kioskd.db", series(first, mainDB), series(last, mainDB), 100, 1<<20),
	} {
		if err != nil {
			t.Error(err)
		}
	}
	s0, sN := samples[0], samples[len(samples)-1]
	events := sN.lastSeq - s0.lastSeq
	t.Logf("soak: %v, %d rounds (%.1f/s), %d credential changes pushed, %d events recorded (%.0f/s) between the first and last sample",
		elapsed.Round(time.Second), counts["rounds"], float64(counts["rounds"])/elapsed.Seconds(), counts["deltas"], events,
		float64(events)/(sN.at-s0.at).Seconds())
	t.Logf("soak: live heap %.1f → %.1f MiB (max %.1f), goroutines %d → %d (max %d), kioskd.db %.2f → %.2f MiB, creds files %.2f → %.2f MiB, backlog at most %d",
		float64(s0.heap)/(1<<20), float64(sN.heap)/(1<<20), slices.Max(series(samples, heap))/(1<<20),
		s0.goroutines, sN.goroutines, int(slices.Max(series(samples, gor))),
		float64(s0.mainDB)/(1<<20), float64(sN.mainDB)/(1<<20), float64(s0.credsDB)/(1<<20), float64(sN.credsDB)/(1<<20),
		slices.MaxFunc(samples, func(a, b soakSample) int { return a.backlog - b.backlog }).backlog)
}
