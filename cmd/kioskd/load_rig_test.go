package main

// The load rig of the load benchmarks and their bounded tests
// (load_full_test.go, load_flood_test.go): the real decision engine with
// a simulated relay on the store of a kiosk that synced its credential
// set from a real devportal (sync_bench_test.go's sbPortal, sbFill,
// sbCapture and startSBKiosk), so that decisions, pulls, pushes and
// uploads meet in one store as they do in kioskd.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"kioskd/hw/sim"
	"kioskd/kiosk"
)

// loadBenchSize is the credential count of the load benchmarks: 10 000
// with KIOSKD_BENCH_QUICK=1 (kioskbench -quick), else sbBenchSize's
// (100 000, or 1 000 000 with KIOSKD_BENCH_LARGE=1).
func loadBenchSize() int {
	if os.Getenv("KIOSKD_BENCH_QUICK") != "" {
		return 10_000
	}
	return sbBenchSize()
}

// loadDecisionWait bounds the wait for one decision of the load rig.
const loadDecisionWait = time.Minute

// loadNow is the decision clock of the load rig: the last Wednesday noon
// (UTC) before the set was made, inside the couriers' weekday hours and
// before any validity end of sbFill's set, so that every PIN of the set
// is granted.
func loadNow() time.Time {
	t := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	for t.Weekday() != time.Wednesday || t.After(time.Now()) {
		t = t.Add(-24 * time.Hour)
	}
	return t
}

// loadKiosk is a kiosk under load: a synced store (sbKiosk) with the
// decision engine on it, one keypad input and the door "main" on a
// simulated relay with a 1 ms pulse.
type loadKiosk struct {
	*sbKiosk
	sp       *sbPortal
	n        int // credentials in the set
	in       chan kiosk.InputEvent
	outcomes chan kiosk.Outcome
	cancel   context.CancelFunc
	next     int // the next position of the PIN walk (see pin)
	granted  int // grants so far
}

// newLoadKiosk fills a devportal with n credentials (sbFill), serves its
// snapshot from captured pages (sbCapture: any pull with a cursor is
// answered 410, so PullNow pulls the full snapshot again), starts a kiosk
// that pulls it, waits for the set to commit, and starts the engine.
func newLoadKiosk(tb testing.TB, n int) *loadKiosk {
	tb.Helper()
	sp := newSBPortalIn(tb, remotePortalDir(tb))
	sbFill(tb, sp, n)
	pages := sbCaptureIn(tb, sp, remotePortalDir(tb))
	dir := tb.TempDir()
	if d := os.Getenv("KIOSKD_BENCH_DIR"); d != "" { // as BenchmarkDecision: another file system
		var err error
		if dir, err = os.MkdirTemp(d, "kioskd-load"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	k, err := startSBKiosk(sbKioskConfig{URL: pages.URL, Token: sp.token, Pub: sp.pub, Dir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(k.stop)
	if _, err := k.waitCommit(); err != nil {
		tb.Fatalf("first pull: %v", err)
	}
	if k.st.Count() != n {
		tb.Fatalf("kiosk holds %d credentials after the first pull, want %d", k.st.Count(), n)
	}

	bank := sim.NewBank(discardLog())
	relay, err := bank.Chip("gpiochip0").Output(17, false, "load")
	if err != nil {
		tb.Fatal(err)
	}
	now := loadNow()
	clock := kiosk.NewClock(func() time.Time { return now }, func() bool { return true }, time.Time{})
	door := kiosk.NewDoor(kiosk.DoorSpec{Door: kiosk.Door{ID: "main", Kind: kiosk.DoorRoom}, Relay: relay, Pulse: time.Millisecond},
		k.st.Record, clock.Now, discardLog())
	lk := &loadKiosk{sbKiosk: k, sp: sp, n: n, in: make(chan kiosk.InputEvent), outcomes: make(chan kiosk.Outcome, 1)}
	eng, err := kiosk.NewEngine(kiosk.EngineConfig{
		Device: sbDevice, Location: time.UTC, SiteKey: sp.site,
		Lockout: kiosk.LockoutPolicy{MaxFailures: 1 << 30},
		Inputs:  []kiosk.InputSpec{{Name: "keypad"}}, Doors: []*kiosk.DoorController{door},
		Store: k.st, Clock: clock, Log: discardLog(),
		Decided: func(o kiosk.Outcome) { lk.outcomes <- o },
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lk.cancel = cancel
	done := make(chan struct{})
	go func() {
		defer close(done)
		eng.Run(ctx, lk.in)
	}()
	// Registered after k.stop, so it runs first: the engine stops before
	// the store closes.
	tb.Cleanup(func() {
		cancel()
		<-done
		door.Close()
	})
	return lk
}

// pin returns the next PIN of the set to type: the walk visits the
// credentials i·104729 mod n (a permutation, 104729 being a prime that
// divides no set size here) and keeps the PINs among them, so no
// one-time PIN comes twice. ok is false once the walk has visited the
// whole set.
func (lk *loadKiosk) pin() (pin string, ok bool) {
	for lk.next < lk.n {
		i := lk.next * 104729 % lk.n
		lk.next++
		if kind, secret := sbSecret(i); kind == kiosk.KindPIN {
			return secret, true
		}
	}
	return "", false
}

// decide types pin on the keypad and returns the decision. The last key
// carries the time, as in BenchmarkDecision; Outcome.Latency runs from
// it to the relay line switched on.
func (lk *loadKiosk) decide(pin string) (kiosk.Outcome, error) {
	for _, k := range pin[:len(pin)-1] {
		lk.in <- kiosk.InputEvent{Input: "keypad", Type: kiosk.InputKey, Key: k}
	}
	lk.in <- kiosk.InputEvent{Input: "keypad", Type: kiosk.InputKey, Key: rune(pin[len(pin)-1]), Time: time.Now()}
	select {
	case o := <-lk.outcomes:
		return o, nil
	case <-time.After(loadDecisionWait):
		return kiosk.Outcome{}, fmt.Errorf("no decision within %v", loadDecisionWait)
	}
}

// grant decides the next PIN of the walk and returns its latency; any
// decision but a grant that opened "main" is an error.
func (lk *loadKiosk) grant() (time.Duration, error) {
	pin, ok := lk.pin()
	if !ok {
		return 0, errLoadWalkDone
	}
	o, err := lk.decide(pin)
	switch {
	case err != nil:
		return 0, err
	case o.Err != nil:
		return 0, fmt.Errorf("decision not recorded: %w", o.Err)
	case o.Reason != kiosk.Granted || !slices.Equal(o.Opened, []string{"main"}):
		return 0, fmt.Errorf("decision %s opening %v, want granted opening [main]", o.Reason, o.Opened)
	}
	lk.granted++
	return o.Latency, nil
}

// errLoadWalkDone is returned by grant when every PIN of the set has been
// typed once.
var errLoadWalkDone = errors.New("every PIN of the set typed once")

// latencies summarises decision latencies.
type latencies []time.Duration

// quantile returns the q-quantile (nearest rank below) in milliseconds;
// 0 when there are no samples.
func (l latencies) quantile(q float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}

// report reports p50, p99 and max in ms, with prefix before each unit.
func (l latencies) report(b *testing.B, prefix string) {
	b.ReportMetric(l.quantile(0.50), prefix+"p50-ms")
	b.ReportMetric(l.quantile(0.99), prefix+"p99-ms")
	b.ReportMetric(l.quantile(1), prefix+"max-ms")
}
