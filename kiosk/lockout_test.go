package kiosk_test

import (
	"testing"
	"time"

	"kioskd/kiosk"
)

var lockT0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// lockFailN feeds n failures one second apart from start and returns the
// state and what the last Fail said; it fails the test if a lockout
// starts before the n-th.
func lockFailN(t *testing.T, p kiosk.LockoutPolicy, s kiosk.LockoutState, start time.Time, n int) (kiosk.LockoutState, bool, time.Duration, time.Time) {
	t.Helper()
	var started bool
	var length time.Duration
	at := start
	for i := range n {
		at = start.Add(time.Duration(i) * time.Second)
		if p.Locked(s, at) {
			t.Fatalf("locked at failure %d (%v), until %v", i+1, at, s.Until)
		}
		s, started, length = p.Fail(s, at)
		if started && i < n-1 {
			t.Fatalf("lockout started at failure %d of %d", i+1, n)
		}
	}
	return s, started, length, at
}

func TestLockoutDefaults(t *testing.T) {
	var p kiosk.LockoutPolicy // zero: 5 failures, 10 min, 5 min
	s, started, length, at := lockFailN(t, p, kiosk.LockoutState{}, lockT0, 5)
	if !started || length != 5*time.Minute {
		t.Fatalf("5th failure: started=%v length=%v, want a 5 min lockout", started, length)
	}
	if !s.Until.Equal(at.Add(5*time.Minute)) || s.Level != 1 || !s.LastStart.Equal(at) || len(s.Failures) != 0 {
		t.Fatalf("state after lockout = %+v", s)
	}
	tests := []struct {
		at   time.Time
		want bool
	}{
		{at, true},
		{s.Until.Add(-time.Nanosecond), true},
		{s.Until, false},
		{s.Until.Add(time.Minute), false},
	}
	for _, tt := range tests {
		if got := p.Locked(s, tt.at); got != tt.want {
			t.Errorf("Locked at %v (until %v) = %v, want %v", tt.at, s.Until, got, tt.want)
		}
	}
	if p.Locked(kiosk.LockoutState{}, lockT0) {
		t.Error("zero state is locked")
	}
}

func TestLockoutFailWhileLockedIsIgnored(t *testing.T) {
	var p kiosk.LockoutPolicy
	s, _, _, at := lockFailN(t, p, kiosk.LockoutState{}, lockT0, 5)
	for i := range 10 {
		next, started, _ := p.Fail(s, at.Add(time.Duration(i)*time.Second))
		if started || !next.Until.Equal(s.Until) || next.Level != s.Level || len(next.Failures) != 0 {
			t.Fatalf("Fail while locked changed the state: %+v -> %+v (started %v)", s, next, started)
		}
	}
}

func TestLockoutDoubling(t *testing.T) {
	var p kiosk.LockoutPolicy
	want := []time.Duration{5, 10, 20, 40, 60, 60, 60}
	s := kiosk.LockoutState{}
	start := lockT0
	for i, w := range want {
		w *= time.Minute
		var started bool
		var length time.Duration
		var at time.Time
		s, started, length, at = lockFailN(t, p, s, start, 5)
		if !started || length != w {
			t.Fatalf("lockout %d: started=%v length=%v, want %v", i+1, started, length, w)
		}
		if s.Level != i+1 || !s.Until.Equal(at.Add(w)) {
			t.Fatalf("lockout %d: state %+v", i+1, s)
		}
		// The next round of failures starts an hour after this one ends.
		start = s.Until.Add(time.Hour)
	}
}

func TestLockoutChainReset(t *testing.T) {
	var p kiosk.LockoutPolicy
	// Build a chain of three lockouts (5, 10, 20 min).
	s := kiosk.LockoutState{}
	start := lockT0
	for range 3 {
		s, _, _, _ = lockFailN(t, p, s, start, 5)
		start = s.Until
	}
	if s.Level != 3 {
		t.Fatalf("level %d after three lockouts", s.Level)
	}
	end := s.Until
	tests := []struct {
		name       string
		lastFail   time.Time // the 5th failure
		wantLength time.Duration
		wantLevel  int
	}{
		{"just under 24 h after the end: doubles", end.Add(24*time.Hour - time.Second), 40 * time.Minute, 4},
		{"24 h after the start but not the end: doubles", s.LastStart.Add(24*time.Hour + time.Minute), 40 * time.Minute, 4},
		{"exactly 24 h after the end: resets", end.Add(24 * time.Hour), 5 * time.Minute, 1},
		{"days later: resets", end.Add(72 * time.Hour), 5 * time.Minute, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, started, length, _ := lockFailN(t, p, s, tt.lastFail.Add(-4*time.Second), 5)
			if !started || length != tt.wantLength || next.Level != tt.wantLevel {
				t.Fatalf("started=%v length=%v level=%d, want %v level %d", started, length, next.Level, tt.wantLength, tt.wantLevel)
			}
		})
	}
}

func TestLockoutWindow(t *testing.T) {
	var p kiosk.LockoutPolicy
	m := func(d float64) time.Time { return lockT0.Add(time.Duration(d * float64(time.Minute))) }
	tests := []struct {
		name         string
		fails        []time.Time
		wantStarted  bool
		wantFailures int // after the last Fail
	}{
		{"five within the window", []time.Time{m(0), m(1), m(2), m(3), m(4)}, true, 0},
		{"four only", []time.Time{m(0), m(1), m(2), m(3)}, false, 4},
		{"oldest exactly window ago still counts", []time.Time{m(0), m(1), m(2), m(3), m(10)}, true, 0},
		{"oldest just outside the window is dropped", []time.Time{m(0), m(1), m(2), m(3), m(10).Add(time.Second)}, false, 4},
		{"all old ones dropped", []time.Time{m(0), m(1), m(2), m(3), m(30)}, false, 1},
		{"slow trickle never locks", []time.Time{m(0), m(3), m(6), m(9), m(12), m(15), m(18), m(21)}, false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := kiosk.LockoutState{}
			var started bool
			for i, at := range tt.fails {
				s, started, _ = p.Fail(s, at)
				if started && i < len(tt.fails)-1 {
					t.Fatalf("lockout started at failure %d", i+1)
				}
			}
			if started != tt.wantStarted || len(s.Failures) != tt.wantFailures {
				t.Fatalf("started=%v failures=%d, want %v and %d", started, len(s.Failures), tt.wantStarted, tt.wantFailures)
			}
		})
	}
}

func TestLockoutGrant(t *testing.T) {
	var p kiosk.LockoutPolicy
	// One lockout, then four failures and a grant.
	s, _, _, _ := lockFailN(t, p, kiosk.LockoutState{}, lockT0, 5)
	first := s
	s, started, _, at := lockFailN(t, p, s, first.Until, 4)
	if started || len(s.Failures) != 4 {
		t.Fatalf("after 4 failures: started=%v, %d failures", started, len(s.Failures))
	}
	s = p.Grant(s)
	if len(s.Failures) != 0 || s.Level != first.Level || !s.Until.Equal(first.Until) || !s.LastStart.Equal(first.LastStart) {
		t.Fatalf("Grant: %+v, want no failures and the history of %+v", s, first)
	}
	// Four more do not lock; the fifth does, and the chain continues (10 min).
	s, started, length, _ := lockFailN(t, p, s, at.Add(time.Second), 5)
	if !started || length != 10*time.Minute || s.Level != 2 {
		t.Fatalf("after grant: started=%v length=%v level=%d, want second lockout of 10 min", started, length, s.Level)
	}
}

func TestLockoutCustomPolicy(t *testing.T) {
	tests := []struct {
		name    string
		p       kiosk.LockoutPolicy
		lengths []time.Duration
	}{
		{"3 failures, 45 min, capped at 1 h", kiosk.LockoutPolicy{MaxFailures: 3, Window: time.Minute, Duration: 45 * time.Minute},
			[]time.Duration{45 * time.Minute, time.Hour, time.Hour}},
		{"duration over 1 h is not doubled", kiosk.LockoutPolicy{MaxFailures: 3, Window: time.Minute, Duration: 2 * time.Hour},
			[]time.Duration{2 * time.Hour, 2 * time.Hour}},
		{"one failure, 1 s", kiosk.LockoutPolicy{MaxFailures: 1, Window: time.Second, Duration: time.Second},
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := kiosk.LockoutState{}
			start := lockT0
			for i, want := range tt.lengths {
				var started bool
				var length time.Duration
				s, started, length, _ = lockFailN(t, tt.p, s, start, tt.p.MaxFailures)
				if !started || length != want {
					t.Fatalf("lockout %d: started=%v length=%v, want %v", i+1, started, length, want)
				}
				start = s.Until
			}
		})
	}
	// Failures outside a short window do not add up.
	p := kiosk.LockoutPolicy{MaxFailures: 3, Window: time.Minute, Duration: time.Minute}
	s := kiosk.LockoutState{}
	for i := range 10 {
		var started bool
		s, started, _ = p.Fail(s, lockT0.Add(time.Duration(i)*31*time.Second))
		if started {
			t.Fatalf("lockout at failure %d though at most 2 fall in 1 min", i+1)
		}
	}
}
