package kiosk

// Clock faults (issue 6): the system clock jumps backwards and forwards
// under a running engine, with and without synchronisation.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// jumpClock is a system clock that tests move at will.
type jumpClock struct {
	ns     atomic.Int64
	synced atomic.Bool
}

func (c *jumpClock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

func (c *jumpClock) set(t time.Time, synced bool) {
	c.ns.Store(t.UnixNano())
	c.synced.Store(synced)
}

// TestEngineClockJumps drives decisions while the system clock jumps. A
// clock that goes back (a board that lost its time, an NTP step) never
// takes decisions below the floor: an expired credential stays expired, a
// lockout stays on, a credential whose window has begun still opens, and
// event times stay at the floor with clock_synced false. A clock that
// jumps forward ends lockouts and validity windows by the new time, and a
// synchronised forward jump raises the floor, so going back afterwards
// changes nothing. Seqs are 1, 2, 3, ... whatever the times. Keypad
// entries time out on the monotonic clock: a wall-clock jump between two
// keys neither clears nor stretches an entry.
func TestEngineClockJumps(t *testing.T) {
	t1 := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	sys := &jumpClock{}
	sys.set(t1, true)
	clock := NewClock(sys.now, sys.synced.Load, t1.Add(-30*24*time.Hour))
	st := newMemStore()
	key := []byte("0123456789abcdef0123456789abcdef")
	add := func(id, pin string, from, until time.Time) {
		c := &Credential{ID: id, Kind: KindPIN, Status: StatusActive, Holder: Holder{ID: "h-" + id, Role: RoleResident},
			ValidFrom: from, ValidUntil: until}
		c.Digest = Digest(key, KindPIN, []byte(pin))
		st.creds[c.Digest] = c
	}
	add("win", "246810", t1.Add(-time.Hour), t1.Add(time.Hour))
	add("old", "135792", time.Time{}, t1.Add(-time.Minute))
	add("fut", "975310", t1.Add(3*time.Hour), time.Time{})

	relay := newFakeLine()
	door := NewDoor(DoorSpec{Door: Door{ID: "main", Kind: DoorRoom}, Relay: relay, Pulse: 20 * time.Millisecond}, st.Record, clock.Now, nil)
	outcomes := make(chan Outcome, 16)
	in := make(chan InputEvent)
	eng, err := NewEngine(EngineConfig{
		Device: "dev-1", Location: time.UTC, SiteKey: key,
		Lockout: LockoutPolicy{MaxFailures: 3, Window: 10 * time.Minute, Duration: 5 * time.Minute},
		Inputs:  []InputSpec{{Name: "kp"}}, Doors: []*DoorController{door},
		Store: st, Clock: clock, Decided: func(o Outcome) { outcomes <- o },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx, in); close(done) }()
	t.Cleanup(func() { cancel(); <-done; door.Close() })

	typ := func(keys string) {
		for _, k := range keys {
			in <- InputEvent{Input: "kp", Type: InputKey, Key: k}
		}
	}
	// decide types pin and returns the outcome and its access event.
	decide := func(t *testing.T, pin string) (Outcome, *Event) {
		t.Helper()
		typ(pin)
		select {
		case o := <-outcomes:
			if o.Err != nil {
				t.Fatalf("decision not recorded: %v", o.Err)
			}
			if o.Reason == Granted {
				expectChange(t, relay, true)
				expectChange(t, relay, false)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			for i := len(st.events) - 1; i >= 0; i-- {
				if e := st.events[i]; e.Type == EvAccessGranted || e.Type == EvAccessDenied {
					return o, e
				}
			}
			t.Fatal("no access event recorded")
		case <-time.After(testWait):
			t.Fatal("no decision")
		}
		return Outcome{}, nil
	}

	type try struct {
		pin    string
		reason Reason
	}
	steps := []struct {
		name   string
		sys    time.Time
		synced bool
		tries  []try
		// the time and clock_synced every decision of the step carries
		time       time.Time
		wantSynced bool
	}{
		{"synchronised at t1", t1, true,
			[]try{{"246810", Granted}, {"135792", Expired}, {"975310", NotYetValid}}, t1, true},
		{"back a year, unsynchronised: the floor decides", t1.Add(-365 * 24 * time.Hour), false,
			[]try{{"246810", Granted}, {"135792", Expired}, {"975310", NotYetValid}}, t1, false},
		{"back an hour while still claiming sync: the floor decides", t1.Add(-time.Hour), true,
			[]try{{"246810", Granted}, {"135792", Expired}}, t1, true},
		{"three failures lock the keypad at the floor", t1.Add(-time.Hour), false,
			[]try{{"246810", Granted}, {"000001", Unknown}, {"000002", Unknown}, {"000003", Unknown}, {"246810", LockedOut}}, t1, false},
		{"back a day: still locked out", t1.Add(-24 * time.Hour), false,
			[]try{{"246810", LockedOut}}, t1, false},
		{"unsynchronised forward jump past the lockout ends it", t1.Add(6 * time.Minute), false,
			[]try{{"246810", Granted}}, t1.Add(6 * time.Minute), false},
		// That jump was not synchronised, so it did not raise the floor:
		// back at the floor the lockout (until t1+5m) holds again.
		{"and back again: times fall back to the floor, the lockout holds", t1.Add(-24 * time.Hour), false,
			[]try{{"246810", LockedOut}}, t1, false},
		{"synchronised forward jump past valid_until and valid_from", t1.Add(3 * time.Hour), true,
			[]try{{"246810", Expired}, {"975310", Granted}, {"135792", Expired}}, t1.Add(3 * time.Hour), true},
		{"back to t1 after it: the raised floor keeps the window shut", t1, false,
			[]try{{"246810", Expired}, {"975310", Granted}}, t1.Add(3 * time.Hour), false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			sys.set(s.sys, s.synced)
			for _, tr := range s.tries {
				o, ev := decide(t, tr.pin)
				if o.Reason != tr.reason {
					t.Errorf("PIN %s: %s, want %s", tr.pin, o.Reason, tr.reason)
				}
				if !ev.Time.Equal(s.time) || ev.ClockSynced != s.wantSynced {
					t.Errorf("PIN %s: event at %v synced %v, want %v synced %v", tr.pin, ev.Time, ev.ClockSynced, s.time, s.wantSynced)
				}
			}
		})
	}

	t.Run("a wall-clock jump between keys neither clears nor stretches an entry", func(t *testing.T) {
		sys.set(t1.Add(3*time.Hour), true)
		typ("97")
		sys.set(t1.Add(5*time.Hour), true) // two hours later by the wall clock
		if o, _ := decide(t, "5310"); o.Reason != Granted || o.CredentialID != "fut" {
			t.Fatalf("entry typed across a forward jump: %+v, want fut granted", o)
		}
		typ("97")
		sys.set(t1.Add(3*time.Hour), true) // and back
		if o, _ := decide(t, "5310"); o.Reason != Granted || o.CredentialID != "fut" {
			t.Fatalf("entry typed across a backward jump: %+v, want fut granted", o)
		}
	})

	st.mu.Lock()
	defer st.mu.Unlock()
	for i, e := range st.events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d (%s at %v) has seq %d", i, e.Type, e.Time, e.Seq)
		}
	}
	if len(st.events) == 0 {
		t.Fatal("no events")
	}
}
