package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"log/slog"

	"kioskd/hw/sim"
	"kioskd/kiosk"
	"kioskd/store"
)

// benchCreds is the size of the credential set of BenchmarkDecision:
// 1 000 000 with KIOSKD_BENCH_LARGE=1 (SPEC §8), else 100 000.
func benchCreds() int {
	if os.Getenv("KIOSKD_BENCH_LARGE") != "" {
		return 1_000_000
	}
	return 100_000
}

// loadPINs fills a store with n PIN credentials whose PINs are the
// numbers 0…n-1 written with six digits; every tenth one has a use limit,
// so that a share of the grants also spends a use.
func loadPINs(b *testing.B, st *store.Store, key []byte, n int) {
	b.Helper()
	type kd struct {
		d [kiosk.DigestSize]byte
		i int
	}
	all := make([]kd, n)
	for i := range all {
		all[i] = kd{kiosk.Digest(key, kiosk.KindPIN, fmt.Appendf(nil, "%06d", i)), i}
	}
	sort.Slice(all, func(x, y int) bool { return bytes.Compare(all[x].d[:], all[y].d[:]) < 0 })
	fl, err := st.BeginFull()
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range all {
		c := &kiosk.Credential{ID: fmt.Sprintf("c-%d", e.i), Kind: kiosk.KindPIN, Digest: e.d, Rev: 1,
			Status: kiosk.StatusActive, Holder: kiosk.Holder{ID: fmt.Sprintf("h-%d", e.i), Role: kiosk.RoleResident}}
		if e.i%10 == 0 {
			c.Uses = 1_000_000
		}
		if err := fl.Put(c); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := fl.Commit(store.DocMeta{Cursor: "bench", IssuedAt: time.Now()}, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDecision measures SPEC §8's decision latency: from the last key
// of a PIN reaching the decision loop to the relay line switched on, with
// the grant (and, for one credential in ten, the spend) durably committed
// to the real bbolt store in between. It reports p50/p99/max in µs.
//
// Set KIOSKD_BENCH_DIR to put the store on another file system (for
// instance a tmpfs, to separate the code's cost from the disk's fsync).
func BenchmarkDecision(b *testing.B) {
	n := benchCreds()
	dir := os.Getenv("KIOSKD_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "kioskd-bench"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	key := []byte("bench-site-key-0123456789abcdef!")
	loadPINs(b, st, key, n)

	bank := sim.NewBank(discardLog())
	relay, err := bank.Chip("gpiochip0").Output(17, false, "bench")
	if err != nil {
		b.Fatal(err)
	}
	clock := kiosk.NewClock(nil, func() bool { return true }, time.Time{})
	door := kiosk.NewDoor(kiosk.DoorSpec{Door: kiosk.Door{ID: "main", Kind: kiosk.DoorRoom}, Relay: relay, Pulse: time.Millisecond}, st.Record, clock.Now, discardLog())
	defer door.Close()
	outcomes := make(chan kiosk.Outcome, 1)
	eng, err := kiosk.NewEngine(kiosk.EngineConfig{
		Device: "bench", Location: time.UTC, SiteKey: key,
		Lockout: kiosk.LockoutPolicy{MaxFailures: 1 << 30},
		Inputs:  []kiosk.InputSpec{{Name: "kp"}}, Doors: []*kiosk.DoorController{door},
		Store: st, Clock: clock, Log: discardLog(),
		Decided: func(o kiosk.Outcome) { outcomes <- o },
	})
	if err != nil {
		b.Fatal(err)
	}
	in := make(chan kiosk.InputEvent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go eng.Run(ctx, in)

	const perOp = 2000 // decisions per benchmark iteration
	var lat []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for j := 0; j < perOp; j++ {
			pin := fmt.Sprintf("%06d", (it*perOp+j)*7919%n)
			for _, k := range pin[:5] {
				in <- kiosk.InputEvent{Input: "kp", Type: kiosk.InputKey, Key: k}
			}
			in <- kiosk.InputEvent{Input: "kp", Type: kiosk.InputKey, Key: rune(pin[5]), Time: time.Now()}
			o := <-outcomes
			if o.Reason != kiosk.Granted || len(o.Opened) != 1 {
				b.Fatalf("PIN %s: %+v", pin, o)
			}
			lat = append(lat, o.Latency)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(n), "credentials")
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
