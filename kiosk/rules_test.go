package kiosk_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"kioskd/kiosk"
)

func TestEvaluate(t *testing.T) {
	ny := schedLoad(t, "America/New_York")
	now := time.Date(2026, 6, 1, 16, 0, 0, 0, time.UTC) // Monday 12:00 EDT
	main := kiosk.Door{ID: "main", Kind: kiosk.DoorRoom}
	back := kiosk.Door{ID: "back", Kind: kiosk.DoorRoom}
	plain := kiosk.Door{ID: "side"} // kind left empty: the default, room
	l1 := kiosk.Door{ID: "locker-1", Kind: kiosk.DoorLocker}
	all := []kiosk.Door{main, l1, back}
	weekdays := schedWindow(t, "mon tue wed thu fri", "07:00", "20:00")
	weekend := schedWindow(t, "sat sun", "07:00", "20:00")

	// base returns an active, unlimited credential for every room door.
	base := func(mod func(c *kiosk.Credential)) *kiosk.Credential {
		c := &kiosk.Credential{ID: "c-1", Kind: kiosk.KindPIN, Holder: kiosk.Holder{ID: "h-1", Role: kiosk.RoleCourier}, Status: kiosk.StatusActive}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		name    string
		c       *kiosk.Credential
		local   int
		in      kiosk.EvalInput // Now, Loc and Device default below
		want    kiosk.Reason
		open    []string
		spend   bool
		lastUse bool
	}{
		{name: "unknown", c: nil, in: kiosk.EvalInput{Doors: all}, want: kiosk.Unknown},
		{name: "granted, every room door, no locker", c: base(nil), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
		{name: "empty kind counts as room", c: base(nil), in: kiosk.EvalInput{Doors: []kiosk.Door{l1, plain}}, want: kiosk.Granted, open: []string{"side"}},
		{name: "revoked beats deactivated", c: base(func(c *kiosk.Credential) { c.Status = kiosk.StatusDeactivated }), in: kiosk.EvalInput{Doors: all, Revoked: true}, want: kiosk.Revoked},
		{name: "deactivated", c: base(func(c *kiosk.Credential) { c.Status = kiosk.StatusDeactivated }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Deactivated},
		{name: "unknown status is deactivated", c: base(func(c *kiosk.Credential) { c.Status = "" }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Deactivated},
		{name: "deactivated beats expired", c: base(func(c *kiosk.Credential) {
			c.Status = kiosk.StatusDeactivated
			c.ValidUntil = now.Add(-time.Hour)
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.Deactivated},
		{name: "not yet valid", c: base(func(c *kiosk.Credential) { c.ValidFrom = now.Add(time.Second) }), in: kiosk.EvalInput{Doors: all}, want: kiosk.NotYetValid},
		{name: "valid from the instant", c: base(func(c *kiosk.Credential) { c.ValidFrom = now }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
		{name: "expired at the instant", c: base(func(c *kiosk.Credential) { c.ValidUntil = now }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Expired},
		{name: "valid until just after now", c: base(func(c *kiosk.Credential) { c.ValidUntil = now.Add(time.Nanosecond) }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
		{name: "not yet valid beats expired", c: base(func(c *kiosk.Credential) {
			c.ValidFrom = now.Add(time.Hour)
			c.ValidUntil = now.Add(-time.Hour)
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.NotYetValid},
		{name: "expired beats wrong door", c: base(func(c *kiosk.Credential) {
			c.ValidUntil = now.Add(-time.Hour)
			c.Doors = []string{"elsewhere"}
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.Expired},
		{name: "listed doors in the input's order", c: base(func(c *kiosk.Credential) { c.Doors = []string{"back", "locker-1", "elsewhere"} }),
			in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"locker-1", "back"}},
		{name: "duplicate served door opens once", c: base(nil), in: kiosk.EvalInput{Doors: []kiosk.Door{main, main}}, want: kiosk.Granted, open: []string{"main"}},
		{name: "wrong door: not served by this input", c: base(func(c *kiosk.Credential) { c.Doors = []string{"back"} }), in: kiosk.EvalInput{Doors: []kiosk.Door{main}}, want: kiosk.WrongDoor},
		{name: "wrong door: only lockers served, no door list", c: base(nil), in: kiosk.EvalInput{Doors: []kiosk.Door{l1}}, want: kiosk.WrongDoor},
		{name: "wrong door: input serves nothing", c: base(nil), in: kiosk.EvalInput{}, want: kiosk.WrongDoor},
		{name: "wrong door beats outside schedule", c: base(func(c *kiosk.Credential) {
			c.Doors = []string{"back"}
			c.Schedule = []kiosk.Window{weekend}
		}), in: kiosk.EvalInput{Doors: []kiosk.Door{main}}, want: kiosk.WrongDoor},
		{name: "inside schedule", c: base(func(c *kiosk.Credential) { c.Schedule = []kiosk.Window{weekend, weekdays} }), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
		{name: "outside schedule", c: base(func(c *kiosk.Credential) { c.Schedule = []kiosk.Window{weekend} }), in: kiosk.EvalInput{Doors: all}, want: kiosk.OutsideSchedule},
		{name: "schedule read in the kiosk's zone", c: base(func(c *kiosk.Credential) { c.Schedule = []kiosk.Window{schedWindow(t, "mon", "12:00", "12:01")} }),
			in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
		{name: "outside schedule beats used up", c: base(func(c *kiosk.Credential) {
			c.Schedule = []kiosk.Window{weekend}
			c.Uses = 1
		}), local: 1, in: kiosk.EvalInput{Doors: all}, want: kiosk.OutsideSchedule},
		{name: "one-time PIN, first use is the last", c: base(func(c *kiosk.Credential) { c.Uses = 1 }), in: kiosk.EvalInput{Doors: all},
			want: kiosk.Granted, open: []string{"main", "back"}, spend: true, lastUse: true},
		{name: "one-time PIN, used locally", c: base(func(c *kiosk.Credential) { c.Uses = 1 }), local: 1, in: kiosk.EvalInput{Doors: all}, want: kiosk.UsedUp},
		{name: "one-time PIN, used on another device", c: base(func(c *kiosk.Credential) {
			c.Uses = 1
			c.Used = map[string]int{"spr-0002": 1}
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.UsedUp},
		{name: "three uses, one left", c: base(func(c *kiosk.Credential) {
			c.Uses = 3
			c.Used = map[string]int{"spr-0001": 1, "spr-0002": 1}
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}, spend: true, lastUse: true},
		{name: "three uses, two left", c: base(func(c *kiosk.Credential) {
			c.Uses = 3
			c.Used = map[string]int{"spr-0002": 1}
		}), in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}, spend: true},
		{name: "portal's count for this device below local: local wins", c: base(func(c *kiosk.Credential) {
			c.Uses = 3
			c.Used = map[string]int{"spr-0001": 0, "spr-0002": 1}
		}), local: 2, in: kiosk.EvalInput{Doors: all}, want: kiosk.UsedUp},
		{name: "negative use limit is used up", c: base(func(c *kiosk.Credential) { c.Uses = -1 }), in: kiosk.EvalInput{Doors: all}, want: kiosk.UsedUp},
		{name: "unlimited ignores spends", c: base(func(c *kiosk.Credential) { c.Used = map[string]int{"spr-0001": 99} }), local: 100,
			in: kiosk.EvalInput{Doors: all}, want: kiosk.Granted, open: []string{"main", "back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Now, in.Loc, in.Device = now, ny, "spr-0001"
			got := kiosk.Evaluate(tt.c, tt.local, in)
			if got.Reason != tt.want || !slices.Equal(got.Open, tt.open) || got.Spend != tt.spend || got.LastUse != tt.lastUse {
				t.Fatalf("Evaluate = %+v, want {Reason:%s Open:%v Spend:%v LastUse:%v}", got, tt.want, tt.open, tt.spend, tt.lastUse)
			}
		})
	}
}

// TestEvaluateUsesRunOut spends a 3-use credential through Evaluate the
// way the caller does and checks that exactly three grants are given.
func TestEvaluateUsesRunOut(t *testing.T) {
	c := &kiosk.Credential{ID: "c-3", Kind: kiosk.KindQR, Status: kiosk.StatusActive, Uses: 3, Used: map[string]int{"spr-0002": 1}}
	in := kiosk.EvalInput{Now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), Device: "spr-0001", Doors: []kiosk.Door{{ID: "main", Kind: kiosk.DoorRoom}}}
	local, grants, lastUses := 0, 0, 0
	for range 5 {
		d := kiosk.Evaluate(c, local, in)
		if d.Reason == kiosk.Granted {
			grants++
			if d.Spend {
				local++
			}
			if d.LastUse {
				lastUses++
			}
		} else if d.Reason != kiosk.UsedUp {
			t.Fatalf("reason %s", d.Reason)
		}
	}
	if grants != 2 || lastUses != 1 || local != 2 {
		t.Fatalf("grants=%d lastUses=%d local=%d, want 2, 1, 2", grants, lastUses, local)
	}
	// A later sync reporting this device's spends gives nothing back.
	c.Used = map[string]int{"spr-0001": 2, "spr-0002": 1}
	if d := kiosk.Evaluate(c, local, in); d.Reason != kiosk.UsedUp {
		t.Fatalf("after sync: %s, want used_up", d.Reason)
	}
	c.Used = map[string]int{"spr-0001": 0, "spr-0002": 1} // before the portal ingested ours
	if d := kiosk.Evaluate(c, local, in); d.Reason != kiosk.UsedUp {
		t.Fatalf("older counts: %s, want used_up", d.Reason)
	}
}

func TestSpent(t *testing.T) {
	tests := []struct {
		name  string
		used  map[string]int
		local int
		want  int
	}{
		{"nothing", nil, 0, 0},
		{"local only", nil, 2, 2},
		{"portal ahead for this device", map[string]int{"me": 3}, 1, 3},
		{"local ahead of portal", map[string]int{"me": 1}, 4, 4},
		{"other devices add up", map[string]int{"a": 2, "b": 3, "me": 1}, 1, 6},
		{"other devices plus local", map[string]int{"a": 2}, 1, 3},
		{"negative counts are zero", map[string]int{"a": -5, "me": -1}, 0, 0},
		{"saturates", map[string]int{"a": math.MaxInt, "b": math.MaxInt}, 1, math.MaxInt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &kiosk.Credential{Used: tt.used}
			if got := kiosk.Spent(c, "me", tt.local); got != tt.want {
				t.Fatalf("Spent = %d, want %d", got, tt.want)
			}
		})
	}
}
