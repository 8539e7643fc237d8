package main

// Clock faults through the whole daemon (issue 6): the system clock of
// Options.SysClock jumps backwards and forwards, across restarts, with
// and without synchronisation.

import (
	"sync/atomic"
	"testing"
	"time"

	"kioskd/kiosk"
)

// wallClock is a system clock and sync status that a test moves.
type wallClock struct {
	ns     atomic.Int64
	synced atomic.Bool
}

func (c *wallClock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

func (c *wallClock) set(t time.Time, synced bool) {
	c.ns.Store(t.UnixNano())
	c.synced.Store(synced)
}

// startClock is start with the system clock c.
func (h *harness) startClock(c *wallClock) {
	h.t.Helper()
	h.sysClock, h.synced = c.now, c.synced.Load
	h.start()
}

// TestClockJumpsThroughDaemon: kioskd restarted on a board that lost its
// time (the system clock at 1970, not synchronised) decides by the floor
// it persisted, so an expired credential stays expired and a lockout
// holds, with events stamped at the floor and clock_synced false; a
// forward jump ends the lockout and the validity windows by the new time,
// a synchronised one raises the floor, which the next restart keeps.
// Seqs run on without a gap through every jump and restart.
func TestClockJumpsThroughDaemon(t *testing.T) {
	h := newHarness(t, harnessOpts{maxFailures: 3})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil,
		pinCred("win", "246810", func(c *kiosk.Credential) {
			c.ValidFrom, c.ValidUntil = testNow.Add(-time.Hour), testNow.Add(time.Hour)
		}),
		pinCred("old", "135792", func(c *kiosk.Credential) { c.ValidUntil = testNow.Add(-time.Minute) }),
		pinCred("fut", "975310", func(c *kiosk.Credential) { c.ValidFrom = testNow.Add(3 * time.Hour) }),
	)
	h.stop() // persists the floor: testNow, the synchronised clock

	epoch := time.Unix(10, 0).UTC()
	clk := &wallClock{}
	clk.set(epoch, false)
	type try struct {
		pin    string
		reason kiosk.Reason
	}
	steps := []struct {
		name    string
		restart bool // restart the daemon before the step
		sys     time.Time
		synced  bool
		tries   []try
		at      time.Time // time of every decision of the step
	}{
		{"restart at 1970 without sync: the persisted floor decides", true, epoch, false,
			[]try{{"246810", kiosk.Granted}, {"135792", kiosk.Expired}, {"975310", kiosk.NotYetValid}}, testNow},
		{"three failures lock the keypad", false, epoch, false,
			[]try{{"246810", kiosk.Granted}, {"000001", kiosk.Unknown}, {"000002", kiosk.Unknown}, {"000003", kiosk.Unknown}, {"246810", kiosk.LockedOut}}, testNow},
		{"the lockout survives a restart at 1970", true, epoch, false,
			[]try{{"246810", kiosk.LockedOut}}, testNow},
		{"an unsynchronised jump past the lockout ends it", false, testNow.Add(6 * time.Minute), false,
			[]try{{"246810", kiosk.Granted}}, testNow.Add(6 * time.Minute)},
		{"a synchronised jump past the windows", false, testNow.Add(3 * time.Hour), true,
			[]try{{"246810", kiosk.Expired}, {"975310", kiosk.Granted}}, testNow.Add(3 * time.Hour)},
		{"restart at 1970 again: the raised floor holds", true, epoch, false,
			[]try{{"246810", kiosk.Expired}, {"975310", kiosk.Granted}, {"135792", kiosk.Expired}}, testNow.Add(3 * time.Hour)},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clk.set(s.sys, s.synced)
			if s.restart {
				h.stop()
				h.startClock(clk)
				var started kiosk.Event // read by startClock on its way to input.connected
				for _, e := range h.events {
					if e.Type == kiosk.EvDeviceStarted {
						started = e
					}
				}
				if !started.Time.Equal(s.at) || started.ClockSynced {
					t.Errorf("device.started at %v synced %v, want %v unsynchronised", started.Time, started.ClockSynced, s.at)
				}
			}
			for _, tr := range s.tries {
				typeKeys(t, h.keypad, tr.pin)
				ev := h.decision("keypad")
				if ev.Reason != tr.reason {
					t.Errorf("PIN %s: %s, want %s", tr.pin, ev.Reason, tr.reason)
				}
				if !ev.Time.Equal(s.at) || ev.ClockSynced != s.synced {
					t.Errorf("PIN %s: decided at %v synced %v, want %v synced %v", tr.pin, ev.Time, ev.ClockSynced, s.at, s.synced)
				}
			}
		})
	}

	t.Run("a jump between two keys neither clears nor stretches the entry", func(t *testing.T) {
		taps, cancel := h.d.Engine.Tap(64)
		defer cancel()
		typeKeys(t, h.keypad, "97")
		for got := 0; got < 2; {
			select {
			case ev := <-taps:
				if ev.Input == "keypad" && ev.Type == kiosk.InputKey {
					got++
				}
			case <-time.After(wait):
				t.Fatal("the decision loop did not take the first keys")
			}
		}
		clk.set(testNow.Add(5*time.Hour), false)
		typeKeys(t, h.keypad, "5310")
		if ev := h.decision("keypad"); ev.Reason != kiosk.Granted || ev.CredentialID != "fut" {
			t.Fatalf("PIN typed across a jump: %s %s, want fut granted", ev.Reason, ev.CredentialID)
		}
	})

	all, err := h.d.Store.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d (%s) has seq %d: a gap", i, e.Type, e.Seq)
		}
	}
}
