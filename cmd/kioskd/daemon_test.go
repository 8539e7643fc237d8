package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
)

// TestReasonsThroughDaemon produces every reason code of SPEC §2 through
// the whole daemon: bytes typed on a serial keypad or scanner (a pseudo-
// terminal), a decision by the engine against the real store, an event in
// the journal.
func TestReasonsThroughDaemon(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tokenClaims := func(cid string) kiosk.TokenClaims {
		return kiosk.TokenClaims{CID: cid, HID: "h-" + cid, Role: kiosk.RoleStaff, EXP: testNow.Add(time.Hour).Unix()}
	}
	h.applyFull("c-1", testNow.Add(-time.Minute), []string{"tok-revoked"},
		pinCred("res", "246810", nil),
		pinCred("deact", "135792", func(c *kiosk.Credential) { c.Status = kiosk.StatusDeactivated }),
		pinCred("early", "258036", func(c *kiosk.Credential) { c.ValidFrom = testNow.Add(time.Hour) }),
		pinCred("late", "369147", func(c *kiosk.Credential) { c.ValidUntil = testNow.Add(-time.Hour) }),
		pinCred("sched", "470258", func(c *kiosk.Credential) {
			// Wednesday 13:00–14:00 New York; the test clock says 12:00.
			c.Holder.Role = kiosk.RoleCourier
			c.Schedule = []kiosk.Window{{Days: []time.Weekday{time.Wednesday}, From: 13 * 60, To: 14 * 60}}
		}),
		pinCred("locker", "581369", func(c *kiosk.Credential) { c.Doors = []string{"locker-1"} }),
		pinCred("once", "692470", func(c *kiosk.Credential) { c.Uses = 1 }),
	)

	cases := []struct {
		name   string
		input  string
		typed  string
		reason kiosk.Reason
		credID string
	}{
		{"granted", "keypad", "246810", kiosk.Granted, "res"},
		{"unknown", "keypad", "975318", kiosk.Unknown, ""},
		{"short entry submitted with # is looked up and fails", "keypad", "24#", kiosk.Unknown, ""},
		{"star clears", "keypad", "99*246810", kiosk.Granted, "res"},
		{"deactivated", "keypad", "135792", kiosk.Deactivated, "deact"},
		{"not_yet_valid", "keypad", "258036", kiosk.NotYetValid, "early"},
		{"expired", "keypad", "369147", kiosk.Expired, "late"},
		{"outside_schedule", "keypad", "470258", kiosk.OutsideSchedule, "sched"},
		{"wrong_door: a locker credential at the room keypad", "keypad", "581369", kiosk.WrongDoor, "locker"},
		{"one-time PIN granted once", "keypad", "692470", kiosk.Granted, "once"},
		{"used_up", "keypad", "692470", kiosk.UsedUp, "once"},
		{"bad_token", "scanner", "KQ1.bm90LWpzb24.AAAA\r\n", kiosk.BadToken, ""},
		{"revoked", "scanner", kiosk.SignToken(tokenClaims("tok-revoked"), h.priv) + "\r", kiosk.Revoked, "tok-revoked"},
		{"signed token granted offline", "scanner", kiosk.SignToken(tokenClaims("tok-ok"), h.priv) + "\n", kiosk.Granted, "tok-ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := h.keypad
			if tc.input == "scanner" {
				w = h.scanner
			}
			typeKeys(t, w, tc.typed)
			ev := h.decision(tc.input)
			if ev.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q\n%s", ev.Reason, tc.reason, h.dump())
			}
			if ev.CredentialID != tc.credID {
				t.Errorf("credential_id = %q, want %q", ev.CredentialID, tc.credID)
			}
			if tc.credID != "" && (ev.HolderID == "" || ev.Role == "") {
				t.Errorf("decision about a known credential lacks holder_id/role: %+v", ev)
			}
			if !ev.ClockSynced || !ev.Time.Equal(testNow) {
				t.Errorf("time/clock_synced = %v/%v, want %v/true", ev.Time, ev.ClockSynced, testNow)
			}
			if tc.reason == kiosk.Granted {
				u := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
				if u.Door != "main" || u.Source != kiosk.SourceCredential || u.Detail["pulse_ms"] != float64(150) {
					t.Errorf("door.unlocked = %+v", u)
				}
			}
		})
	}

	t.Run("used_up event follows the last use", func(t *testing.T) {
		found := false
		for _, e := range h.events {
			if e.Type == kiosk.EvCredentialUsedUp && e.CredentialID == "once" {
				found = true
			}
		}
		if !found {
			t.Errorf("no credential.used_up for the one-time PIN\n%s", h.dump())
		}
	})

	t.Run("no secret in the events or the log", func(t *testing.T) {
		all, err := h.d.Store.Pending(0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(all)
		logs := h.logBuf.String()
		secrets := []string{"246810", "135792", "692470", "975318", "KQ1."}
		for _, secret := range secrets {
			if strings.Contains(string(js), secret) {
				t.Errorf("events contain the secret %q", secret)
			}
			if strings.Contains(logs, secret) {
				t.Errorf("log contains the secret %q", secret)
			}
		}
	})
}

// TestLockoutThroughDaemon: five denied entries lock the keypad; the next
// entry is locked_out without lookup (even a valid PIN), the lockout is
// announced at once, it survives a restart, and the other keypad is not
// affected.
func TestLockoutThroughDaemon(t *testing.T) {
	h := newHarness(t, harnessOpts{maxFailures: 5})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, pinCred("res", "246810", nil))
	for i := 0; i < 5; i++ {
		typeKeys(t, h.keypad, "975318")
		if ev := h.decision("keypad"); ev.Reason != kiosk.Unknown {
			t.Fatalf("attempt %d: reason %q, want unknown", i+1, ev.Reason)
		}
	}
	lo := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvInputLockedOut })
	if lo.Input != "keypad" || lo.Detail["duration_ms"] != float64(5*time.Minute/time.Millisecond) {
		t.Errorf("input.locked_out = %+v", lo)
	}
	typeKeys(t, h.keypad, "246810")
	if ev := h.decision("keypad"); ev.Reason != kiosk.LockedOut || ev.CredentialID != "" {
		t.Fatalf("valid PIN during lockout: %+v, want locked_out without lookup", ev)
	}
	typeKeys(t, h.keypad2, "246810")
	if ev := h.decision("keypad2"); ev.Reason != kiosk.Granted {
		t.Fatalf("other keypad: %q, want granted", ev.Reason)
	}

	h.restart()
	typeKeys(t, h.keypad, "246810")
	if ev := h.decision("keypad"); ev.Reason != kiosk.LockedOut {
		t.Fatalf("after restart: %q, want locked_out (lockout survives a restart)", ev.Reason)
	}
}

// TestRelayPulse: a grant energises exactly the door's relay for its pulse
// and releases it; a remote unlock during the pulse extends it and is an
// event of its own; the locker relay never moves.
func TestRelayPulse(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, pinCred("res", "246810", nil))
	main, locker := h.relay("main"), h.relay("locker-1")
	if main.Active() || locker.Active() {
		t.Fatal("a relay is active at start")
	}
	typeKeys(t, h.keypad, "246810")
	waitLine(t, main, true)
	start := time.Now()
	if err := h.d.Engine.Unlock(context.Background(), "main", kiosk.SourceTechnician, nil); err != nil {
		t.Fatal(err)
	}
	waitLine(t, main, false)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("extended pulse ended %v after the second unlock, want ≥ 150ms", el)
	}
	if locker.Active() {
		t.Error("locker relay moved")
	}
	n := 0
	h.waitEvent(func(e kiosk.Event) bool {
		if e.Type == kiosk.EvDoorUnlocked {
			n++
		}
		return e.Type == kiosk.EvDoorUnlocked && e.Source == kiosk.SourceTechnician
	})
	if n != 2 {
		t.Errorf("door.unlocked events = %d, want 2 (grant and technician)", n)
	}
}

// TestDoorContactAndExit: contact and exit button on simulated lines.
func TestDoorContactAndExit(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	contact, err := h.bank.FindInput("gpiochip0", 27)
	if err != nil {
		t.Fatal(err)
	}
	exit, err := h.bank.FindInput("gpiochip0", 22)
	if err != nil {
		t.Fatal(err)
	}

	// Opened with no unlock: forced; held open; closed.
	contact.Set(true)
	if ev := h.waitEvent(func(e kiosk.Event) bool { return e.Door == "main" }); ev.Type != kiosk.EvDoorOpened {
		t.Fatalf("first door event %s, want door.opened", ev.Type)
	}
	h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorForced && e.Door == "main" })
	h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorHeldOpen && e.Door == "main" })
	contact.Set(false)
	h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorClosed && e.Door == "main" })

	// Exit button: pulses the relay, source exit_button; opening during
	// the pulse is not forced.
	exit.Set(true)
	exit.Set(false)
	waitLine(t, h.relay("main"), true)
	u := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
	if u.Source != kiosk.SourceExitButton {
		t.Errorf("unlock source %q, want exit_button", u.Source)
	}
	contact.Set(true)
	h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorOpened })
	contact.Set(false)
	ev := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorClosed || e.Type == kiosk.EvDoorForced })
	if ev.Type == kiosk.EvDoorForced {
		t.Error("opening during the exit pulse counted as forced")
	}
}

// TestEventsSeqAcrossRestart: seq runs 1, 2, 3, … without gaps across
// restarts, starts and stops are recorded, and relays are inactive after a
// stop.
func TestEventsSeqAcrossRestart(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, pinCred("res", "246810", nil))
	typeKeys(t, h.keypad, "246810")
	h.decision("keypad")
	h.restart()
	typeKeys(t, h.keypad, "975318")
	h.decision("keypad")
	all, err := h.d.Store.Pending(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d; want %d (no gaps)", i, e.Seq, i+1)
		}
		types = append(types, e.Type)
	}
	joined := strings.Join(types, " ")
	for _, want := range []string{kiosk.EvDeviceStarted, kiosk.EvDeviceStopping, kiosk.EvSyncApplied, kiosk.EvAccessGranted, kiosk.EvAccessDenied} {
		if !strings.Contains(joined, want) {
			t.Errorf("journal lacks %s: %s", want, joined)
		}
	}
	if strings.Count(joined, kiosk.EvDeviceStarted) != 2 {
		t.Errorf("want two device.started: %s", joined)
	}
	relay := h.relay("main")
	h.stop()
	if relay.Active() {
		t.Error("relay active after stop")
	}
}
