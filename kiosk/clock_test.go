package kiosk_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kioskd/kiosk"
)

// clockFake is a settable system clock and sync status.
type clockFake struct {
	mu     sync.Mutex
	t      time.Time
	synced atomic.Bool
}

func (f *clockFake) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *clockFake) set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = t
}

func TestLater(t *testing.T) {
	a := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := a.Add(time.Nanosecond)
	if !kiosk.Later(a, b).Equal(b) || !kiosk.Later(b, a).Equal(b) || !kiosk.Later(a, a).Equal(a) {
		t.Error("Later does not return the later time")
	}
}

func TestClockBackwards(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	build := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	boot := time.Date(1970, 1, 1, 0, 0, 10, 0, time.UTC) // a Pi without RTC
	f := &clockFake{t: boot}
	c := kiosk.NewClock(f.now, f.synced.Load, build)

	type step struct {
		name       string
		sys        time.Time
		synced     bool
		observe    time.Time // if non-zero, Observe before Now
		want       time.Time
		wantFloor  time.Time
		wantSynced bool
	}
	t1 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	steps := []step{
		{name: "boot without RTC uses build floor", sys: boot, want: build, wantFloor: build},
		{name: "unsynced clock ahead is used but not trusted", sys: t1, want: t1, wantFloor: build},
		{name: "unsynced clock back again falls to floor", sys: boot, want: build, wantFloor: build},
		{name: "verified document raises floor", sys: boot, observe: t1.Add(-time.Hour), want: t1.Add(-time.Hour), wantFloor: t1.Add(-time.Hour)},
		{name: "older observation ignored", sys: boot, observe: build, want: t1.Add(-time.Hour), wantFloor: t1.Add(-time.Hour)},
		{name: "synced clock raises floor", sys: t1, synced: true, want: t1, wantFloor: t1, wantSynced: true},
		{name: "synced clock going back does not lower floor", sys: t1.Add(-time.Minute), synced: true, want: t1, wantFloor: t1, wantSynced: true},
		{name: "clock losing sync and jumping back", sys: boot, want: t1, wantFloor: t1},
		{name: "zone of sys time does not leak", sys: t1.Add(time.Hour).In(ny), synced: true, want: t1.Add(time.Hour), wantFloor: t1.Add(time.Hour), wantSynced: true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.set(s.sys)
			f.synced.Store(s.synced)
			if !s.observe.IsZero() {
				c.Observe(s.observe)
			}
			got, synced := c.Now()
			if !got.Equal(s.want) || synced != s.wantSynced {
				t.Errorf("Now() = %v, %v; want %v, %v", got, synced, s.want, s.wantSynced)
			}
			if got.Location() != time.UTC {
				t.Errorf("Now() in %v, want UTC", got.Location())
			}
			if fl := c.Floor(); !fl.Equal(s.wantFloor) || fl.Location() != time.UTC {
				t.Errorf("Floor() = %v, want %v in UTC", fl, s.wantFloor)
			}
		})
	}
}

func TestClockDefaults(t *testing.T) {
	// nil sys is the system clock, nil synced is never synced.
	c := kiosk.NewClock(nil, nil, time.Time{})
	before := time.Now()
	got, synced := c.Now()
	after := time.Now()
	if synced {
		t.Error("nil synced func reported synced")
	}
	if got.Before(before.Truncate(time.Second)) || got.After(after.Add(time.Second)) {
		t.Errorf("Now() = %v, not between %v and %v", got, before, after)
	}
	if strings.Contains(got.String(), "m=") {
		t.Errorf("Now() keeps a monotonic reading: %v", got)
	}
	if !c.Floor().IsZero() {
		t.Errorf("unsynced Now raised the floor to %v", c.Floor())
	}
}

func TestClockConcurrent(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var n atomic.Int64
	sys := func() time.Time { return base.Add(time.Duration(n.Add(1)) * time.Second) }
	c := kiosk.NewClock(sys, func() bool { return true }, time.Time{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			last := time.Time{}
			for i := range 200 {
				if g%2 == 0 {
					c.Observe(base.Add(time.Duration(i) * time.Second))
				}
				now, _ := c.Now()
				if now.Before(last) {
					t.Errorf("Now went back from %v to %v", last, now)
					return
				}
				last = now
			}
		})
	}
	wg.Wait()
	// Every system reading was synced, so the floor is the latest of them.
	if fl, want := c.Floor(), base.Add(time.Duration(n.Load())*time.Second); !fl.Equal(want) {
		t.Errorf("Floor() = %v, want the latest system time %v", fl, want)
	}
}
