package main

// Lockers on an RS-485 lock controller board (SPEC §4): a locker door
// names a board channel instead of a relay line; kioskd talks to a
// simulated board (hw/serial/lockboard/lockboardsim) on a real
// pseudo-terminal through go.bug.st/serial.

import (
	"fmt"
	"testing"

	"kioskd/hw/serial/lockboard/lockboardsim"
	"kioskd/kiosk"
)

func TestLockerOnLockBoard(t *testing.T) {
	sim, err := lockboardsim.Start(lockboardsim.Options{})
	if err != nil {
		t.Fatalf("start lock board simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	board, err := sim.AddBoard(1, 16)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpts{doors: simDoors[:len(simDoors)-len(`[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = "gpiochip1", line = 0 }
pulse = "150ms"
`)] + fmt.Sprintf(`
[[lock_board]]
name    = "bank-a"
device  = %q
address = 1

[[door]]
id    = "locker-1"
kind  = "locker"
lock  = { board = "bank-a", channel = 3 }
pulse = "150ms"
held_open_after = "1h"
`, sim.Path())})

	h.applyFull("c-1", testNow.Add(-3600e9), nil,
		pinCred("c-locker", "135791", func(c *kiosk.Credential) { c.Doors = []string{"locker-1"}; c.Uses = 1 }))

	typeKeys(t, h.keypad2, "135791")
	if d := h.decision("keypad2"); d.Reason != kiosk.Granted {
		t.Fatalf("decision %+v, want granted", d)
	}
	e := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
	if e.Door != "locker-1" {
		t.Fatalf("unlocked %+v, want locker-1", e)
	}
	// The board's feedback, polled, shows the compartment open: an
	// opening after an unlock, not a forced one.
	e = h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorOpened || e.Type == kiosk.EvDoorForced })
	if e.Type != kiosk.EvDoorOpened || e.Door != "locker-1" {
		t.Fatalf("after the open: %+v, want door.opened of locker-1", e)
	}
	if n := board.Opens(3); n != 1 {
		t.Errorf("channel 3 got %d open commands, want 1", n)
	}
	for ch := 1; ch <= 16; ch++ {
		if ch != 3 && board.Opens(ch) != 0 {
			t.Errorf("channel %d got an open command", ch)
		}
	}
	board.SetDoor(3, false) // the courier shuts the compartment
	h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorClosed && e.Door == "locker-1" })

	// A one-time PIN: the second entry is used up and sends nothing.
	typeKeys(t, h.keypad2, "135791")
	if d := h.decision("keypad2"); d.Reason != kiosk.UsedUp {
		t.Fatalf("second decision %+v, want used_up", d)
	}
	if n := board.Opens(3); n != 1 {
		t.Errorf("after a used-up entry channel 3 has %d open commands, want 1", n)
	}

	// A channel no door uses is nobody's business; channel 3 opened by
	// hand is seen (door.forced needs the unlock grace to pass first;
	// kiosk's door tests cover it).
	board.SetDoor(5, true)
	board.SetDoor(3, true)
	e = h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorOpened || e.Type == kiosk.EvDoorForced })
	if e.Door != "locker-1" {
		t.Errorf("event %+v, want locker-1", e)
	}

	st := h.d.lockBoards.stats()
	if len(st) != 1 || st[0].Transactions == 0 || !st[0].Connected {
		t.Errorf("bus stats %+v", st)
	}
}
