package kiosk_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"kioskd/hw/sim"
	"kioskd/kiosk"
	"kioskd/kiosk/config"
	"kioskd/store"
	"kioskd/store/storetest"
)

// Brute force at the keypad (issue 6): an attacker types wrong 6-digit
// PINs into one keypad as fast as the lockout of SPEC §2 lets entries be
// looked up, against the real engine, the real bbolt store and the
// default [lockout] of SPEC §7, on a simulated clock. The number of
// entries that were looked up (not denied locked_out) is compared with
// the number the lockout rules allow, computed independently below.

const (
	bfWait  = 5 * time.Second // real time to wait for one decision
	bfInput = "keypad"
	// bfTyping is how long the attacker needs for one 6-digit entry: a
	// fast typist, or a device wired to the keypad's serial line.
	bfTyping = time.Second
	// bfPINSpace is the number of 6-digit PINs.
	bfPINSpace = 1_000_000
)

var bfT0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// bfClock is the simulated system clock (synchronised) the engine reads.
type bfClock struct{ ns atomic.Int64 }

func (c *bfClock) now() time.Time        { return time.Unix(0, c.ns.Load()).UTC() }
func (c *bfClock) set(t time.Time)       { c.ns.Store(t.UnixNano()) }
func (c *bfClock) synced() bool          { return true }
func (c *bfClock) since0() time.Duration { return c.now().Sub(bfT0) }

// bfKiosk is a kiosk with one keypad and one door on simulated hardware,
// its engine running on the simulated clock over a real store in dir.
type bfKiosk struct {
	t        *testing.T
	dir      string
	clock    *bfClock
	policy   kiosk.LockoutPolicy
	st       *store.Store
	in       chan kiosk.InputEvent
	outcomes chan kiosk.Outcome
	stop     func()
}

// bfStart opens the store in dir and starts the engine, configured from
// the defaults of SPEC §7 as cmd/kioskd configures it.
func bfStart(t *testing.T, dir string, clock *bfClock) *bfKiosk {
	t.Helper()
	cfg := config.Default()
	log := slog.New(slog.DiscardHandler)
	k := &bfKiosk{
		t: t, dir: dir, clock: clock,
		policy:   kiosk.LockoutPolicy{MaxFailures: cfg.Lockout.MaxFailures, Window: cfg.Lockout.Window, Duration: cfg.Lockout.Duration},
		st:       storetest.OpenDir(t, dir),
		in:       make(chan kiosk.InputEvent),
		outcomes: make(chan kiosk.Outcome, 1),
	}
	relay, err := sim.NewChip("gpiochip0", log).Output(17, false, "kioskd")
	if err != nil {
		t.Fatal(err)
	}
	kc := kiosk.NewClock(clock.now, clock.synced, time.Time{})
	door := kiosk.NewDoor(kiosk.DoorSpec{Door: kiosk.Door{ID: "main", Kind: kiosk.DoorRoom}, Relay: relay}, k.st.Record, kc.Now, log)
	eng, err := kiosk.NewEngine(kiosk.EngineConfig{
		Device: "spr-0001", Location: time.UTC, SiteKey: storetest.TestSiteKey,
		Lockout: k.policy, PINLength: cfg.Keypad.PINLength, EntryTimeout: cfg.Keypad.EntryTimeout,
		Inputs: []kiosk.InputSpec{{Name: bfInput}}, Doors: []*kiosk.DoorController{door},
		Store: k.st, Clock: kc, Log: log,
		Decided: func(o kiosk.Outcome) { k.outcomes <- o },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx, k.in); close(done) }()
	stopped := false
	k.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		door.Close()
		if err := k.st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
	t.Cleanup(k.stop)
	return k
}

// restart stops the kiosk (a power cut between two entries) and starts
// it again on the same state directory.
func (k *bfKiosk) restart() *bfKiosk {
	k.stop()
	return bfStart(k.t, k.dir, k.clock)
}

// enter types one PIN at the current simulated time and returns the
// decision.
func (k *bfKiosk) enter(pin string) kiosk.Outcome {
	k.t.Helper()
	for _, key := range pin {
		k.in <- kiosk.InputEvent{Input: bfInput, Type: kiosk.InputKey, Key: key, Time: time.Now()}
	}
	select {
	case o := <-k.outcomes:
		if o.Err != nil {
			k.t.Fatalf("decision not recorded: %v", o.Err)
		}
		return o
	case <-time.After(bfWait):
		k.t.Fatalf("no decision within %v for an entry at +%v", bfWait, k.clock.since0())
	}
	return kiosk.Outcome{}
}

// lockedUntil returns the end of the keypad's lockout as stored.
func (k *bfKiosk) lockedUntil() time.Time {
	k.t.Helper()
	ls, err := k.st.Lockouts()
	if err != nil {
		k.t.Fatal(err)
	}
	return ls[bfInput].Until
}

// bfResult is what one attack achieved.
type bfResult struct {
	lookups   []time.Duration // since bfT0, of every entry that was looked up
	lockouts  []time.Duration // lengths of the lockouts, in order
	lockedOut int             // entries denied locked_out (the attacker's probes)
}

// lookupsIn counts the looked-up entries in [from, to).
func (r *bfResult) lookupsIn(from, to time.Duration) int {
	n := 0
	for _, at := range r.lookups {
		if at >= from && at < to {
			n++
		}
	}
	return n
}

// bfAttack runs the attacker from bfT0 until horizon: it types a new
// wrong PIN every bfTyping while the keypad takes entries; once locked
// out it probes twice (just after the lockout starts and one second
// before it ends: both must be denied locked_out) and types again the
// moment it ends. With restartAt > 0 the kiosk loses power at the first
// entry from then on, and must keep the lockout across the restart.
func bfAttack(t *testing.T, horizon, restartAt time.Duration) bfResult {
	clock := &bfClock{}
	clock.set(bfT0)
	k := bfStart(t, t.TempDir(), clock)
	// The residents' PINs all start with 9; the attacker enumerates from
	// 000000, so every guess is wrong and none is skipped.
	var creds []*kiosk.Credential
	for i := range 50 {
		creds = append(creds, storetest.Cred(fmt.Sprint("r-", i), storetest.Secret(kiosk.KindPIN, fmt.Sprintf("9%05d", i*1997))))
	}
	storetest.Load(t, k.st, "c-1", bfT0.Add(-time.Hour), creds)

	var res bfResult
	guess := 0
	nextPIN := func() string { guess++; return fmt.Sprintf("%06d", guess-1) }
	probe := func(at time.Time) {
		clock.set(at)
		if o := k.enter(nextPIN()); o.Reason != kiosk.LockedOut {
			t.Fatalf("entry at +%v during a lockout until +%v: %s, want locked_out", clock.since0(), k.lockedUntil().Sub(bfT0), o.Reason)
		}
		res.lockedOut++
	}
	restarted := restartAt <= 0
	at := bfT0
	for at.Sub(bfT0) < horizon {
		if !restarted && at.Sub(bfT0) >= restartAt {
			k = k.restart()
			restarted = true
		}
		clock.set(at)
		if o := k.enter(nextPIN()); o.Reason != kiosk.Unknown {
			t.Fatalf("guess %d at +%v: %s, want unknown", guess, clock.since0(), o.Reason)
		}
		res.lookups = append(res.lookups, at.Sub(bfT0))
		until := k.lockedUntil()
		if !until.After(at) {
			at = at.Add(bfTyping)
			continue
		}
		res.lockouts = append(res.lockouts, until.Sub(at))
		probe(at.Add(bfTyping))
		if !restarted && until.Add(-time.Second).Sub(bfT0) >= restartAt {
			// The power cut falls inside this lockout: it must hold.
			k = k.restart()
			restarted = true
		}
		probe(until.Add(-time.Second))
		at = until
	}
	return res
}

// bfExpected computes from the rules alone (SPEC §2 with its §7
// defaults) how many entries an attacker typing one entry per typing can
// have looked up before horizon, and the lockout lengths: MaxFailures
// failures (typing apart, so within Window) start a lockout at the last
// one; the lockout lasts Duration doubled for each earlier lockout of
// the chain, capped at 1 h; the chain never resets, since the attacker
// never leaves the keypad alone for 24 h.
func bfExpected(maxFailures int, window, duration, typing, horizon time.Duration) (lookups int, lockouts []time.Duration) {
	if time.Duration(maxFailures-1)*typing > window {
		panic("the attacker is too slow for the window; this model does not cover it")
	}
	t := time.Duration(0)
	for level := 0; t < horizon; level++ {
		for i := range maxFailures {
			if t >= horizon {
				return lookups, lockouts
			}
			lookups++
			if i < maxFailures-1 {
				t += typing
			}
		}
		length := duration << level
		if length > time.Hour || length <= 0 {
			length = time.Hour
		}
		lockouts = append(lockouts, length)
		t += length
	}
	return lookups, lockouts
}

// TestBruteForceKeypad measures and asserts the lookups an attacker gets
// at one keypad in 1 h and in 24 h (with a power cut half way), and logs
// the figures as a BRUTEFORCE line for docs/reliability.md.
func TestBruteForceKeypad(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a day of attack on a real store")
	}
	cfg := config.Default()
	maxF, window, dur := cfg.Lockout.MaxFailures, cfg.Lockout.Window, cfg.Lockout.Duration
	if maxF != 5 || window != 10*time.Minute || dur != 5*time.Minute {
		t.Fatalf("defaults are %d / %v / %v, SPEC §7 says 5 / 10m / 5m", maxF, window, dur)
	}

	var day bfResult
	for _, tt := range []struct {
		name      string
		horizon   time.Duration
		restartAt time.Duration
	}{
		{"1h", time.Hour, 0},
		{"24h with a power cut at 12h", 24 * time.Hour, 12 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := bfAttack(t, tt.horizon, tt.restartAt)
			wantN, wantLocks := bfExpected(maxF, window, dur, bfTyping, tt.horizon)
			if len(res.lookups) != wantN {
				t.Errorf("%d entries looked up in %v, the lockout rules allow %d", len(res.lookups), tt.horizon, wantN)
			}
			if fmt.Sprint(res.lockouts) != fmt.Sprint(wantLocks) {
				t.Errorf("lockouts %v, the rules say %v", res.lockouts, wantLocks)
			}
			if res.lockedOut != 2*len(res.lockouts) {
				t.Errorf("%d probes denied locked_out, want %d", res.lockedOut, 2*len(res.lockouts))
			}
			if tt.horizon == 24*time.Hour {
				day = res
			}
		})
	}
	if len(day.lookups) == 0 {
		return
	}

	// Figures. The steady state is one cycle of MaxFailures entries and a
	// 1 h lockout; the measured hours 12-24 must agree with it.
	cycle := time.Duration(maxF-1)*bfTyping + time.Hour
	steady := float64(maxF) * float64(time.Hour) / float64(cycle)
	firstHour := day.lookupsIn(0, time.Hour)
	late := float64(day.lookupsIn(12*time.Hour, 24*time.Hour)) / 12
	if math.Abs(late-steady) > float64(maxF)/12+0.01 {
		t.Errorf("hours 12-24: %.2f lookups/h, the steady state is %.2f/h", late, steady)
	}
	firstDay := len(day.lookups)
	perDay := steady * 24
	// Guessing one PIN: the attacker tries distinct PINs; on average half
	// the space. With N active PINs, each guess hits one with N/10^6.
	meanGuesses := float64(bfPINSpace+1) / 2
	meanDays := 1 + (meanGuesses-float64(firstDay))/perDay
	pDay := func(n int) float64 { return 1 - math.Pow(1-float64(n)/bfPINSpace, perDay) }
	t.Logf("BRUTEFORCE: one keypad, default lockout (5 failures / 10 min, 5 min doubling to 1 h), 1 entry/s: "+
		"%d lookups in the first hour, %d in the first 24 h, steady state %.2f/h (%.0f/day); "+
		"one given 6-digit PIN: %.0f days (%.1f years) on average, %.1f years at worst; "+
		"chance per day of hitting any of N active PINs: N=10 %.3f%%, N=100 %.2f%%, N=1000 %.1f%%; "+
		"lockout survives a restart; per keypad (K keypads: K times as many)",
		firstHour, firstDay, steady, perDay, meanDays, meanDays/365.25,
		(1+(bfPINSpace-float64(firstDay))/perDay)/365.25,
		100*pDay(10), 100*pDay(100), 100*pDay(1000))
}

// TestBruteForceModel checks bfExpected on the first hour by hand, so
// that the comparison above compares with the rules and not with a copy
// of the code: bursts of 5 at 0 s, 304 s, 908 s and 2112 s (after
// lockouts of 5, 10 and 20 min), then a 40 min lockout to 4516 s.
func TestBruteForceModel(t *testing.T) {
	n, locks := bfExpected(5, 10*time.Minute, 5*time.Minute, time.Second, time.Hour)
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute}
	if n != 20 || fmt.Sprint(locks) != fmt.Sprint(want) {
		t.Errorf("first hour: %d lookups, lockouts %v; want 20 and %v", n, locks, want)
	}
	// Day: 20 in the first 4516 s, then one burst every 3604 s, the burst
	// counting when its first entry is before the end.
	n, locks = bfExpected(5, 10*time.Minute, 5*time.Minute, time.Second, 24*time.Hour)
	bursts := int(math.Ceil(float64(24*3600-4516) / 3604))
	if n != 20+5*bursts || len(locks) != 4+bursts {
		t.Errorf("day: %d lookups, %d lockouts; want %d and %d", n, len(locks), 20+5*bursts, 4+bursts)
	}
}
