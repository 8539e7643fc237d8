package kiosk

import (
	"math"
	"time"
)

// EvalInput is what a decision needs besides the credential and its local
// spends.
type EvalInput struct {
	// Now is the effective time: the later of the system clock and the
	// floor (see Clock).
	Now time.Time
	// Loc is the kiosk's configured time zone, in which schedules are
	// read; nil means UTC.
	Loc *time.Location
	// Device is this kiosk's device id, for Spent.
	Device string
	// Doors are the doors the input serves, already resolved: all
	// configured doors when the input lists none.
	Doors []Door
	// Revoked is true when a signed token's cid is on the revoked list.
	Revoked bool
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Reason is the single reason code; Granted when access is given.
	Reason Reason
	// Open lists the ids of the doors to open when granted, in the order
	// of EvalInput.Doors, each once; nil when denied.
	Open []string
	// Spend is true when the credential has a use limit: the caller
	// spends one use in the same transaction that grants.
	Spend bool
	// LastUse is true when this grant spends the last use; the caller
	// then also emits credential.used_up.
	LastUse bool
}

// Evaluate applies the access rules of SPEC §2 to the credential c (nil
// when its digest is unknown), given how many uses of it this device has
// spent (localSpent) and the input's context. It is pure: the caller looks
// the credential up, decides locked_out and bad_token before calling, and
// records the decision and the spend.
//
// Where several reasons apply the first of this order wins: unknown,
// revoked, deactivated, not_yet_valid, expired, wrong_door,
// outside_schedule, used_up.
//
// Readings where the spec leaves room, each the safer one:
//   - A credential is expired from the instant ValidUntil on (Now at or
//     after it), and valid from the instant ValidFrom on.
//   - Any status other than active is treated as deactivated.
//   - A negative use limit, which no valid credential has, is used_up.
//   - A door whose kind is empty counts as a room door (room is the
//     default kind of SPEC §4); a locker is never opened by a credential
//     without an explicit door list.
func Evaluate(c *Credential, localSpent int, in EvalInput) Decision {
	if c == nil {
		return Decision{Reason: Unknown}
	}
	if in.Revoked {
		return Decision{Reason: Revoked}
	}
	if c.Status != StatusActive {
		return Decision{Reason: Deactivated}
	}
	if !c.ValidFrom.IsZero() && in.Now.Before(c.ValidFrom) {
		return Decision{Reason: NotYetValid}
	}
	if !c.ValidUntil.IsZero() && !in.Now.Before(c.ValidUntil) {
		return Decision{Reason: Expired}
	}
	open := rulesDoors(c.Doors, in.Doors)
	if len(open) == 0 {
		return Decision{Reason: WrongDoor}
	}
	if !InSchedule(c.Schedule, in.Now, in.Loc) {
		return Decision{Reason: OutsideSchedule}
	}
	d := Decision{Reason: Granted, Open: open}
	switch {
	case c.Uses == 0:
		// Unlimited.
	case c.Uses < 0:
		return Decision{Reason: UsedUp}
	default:
		spent := Spent(c, in.Device, localSpent)
		if spent >= c.Uses {
			return Decision{Reason: UsedUp}
		}
		d.Spend = true
		d.LastUse = spent+1 >= c.Uses
	}
	return d
}

// rulesDoors returns the ids of the doors in served that the credential
// opens: those listed in credDoors, or every room door when credDoors is
// empty. Order is that of served; each id appears once.
func rulesDoors(credDoors []string, served []Door) []string {
	var open []string
	for _, d := range served {
		ok := false
		if len(credDoors) == 0 {
			ok = d.Kind == DoorRoom || d.Kind == ""
		} else {
			for _, id := range credDoors {
				if id == d.ID {
					ok = true
					break
				}
			}
		}
		if !ok {
			continue
		}
		dup := false
		for _, id := range open {
			if id == d.ID {
				dup = true
				break
			}
		}
		if !dup {
			open = append(open, d.ID)
		}
	}
	return open
}

// Spent returns how many uses of c count as spent on this device (SPEC
// §2, §6.3): the sum of the portal's counts c.Used over the other devices
// plus the larger of the portal's count for this device and the local
// count, so that no sync can give a spent use back. Negative counts,
// which no valid document holds, count as zero; the sum saturates instead
// of overflowing.
func Spent(c *Credential, device string, local int) int {
	total := 0
	add := func(n int) {
		if n <= 0 {
			return
		}
		if n > math.MaxInt-total {
			total = math.MaxInt
			return
		}
		total += n
	}
	for dev, n := range c.Used {
		if dev != device {
			add(n)
		}
	}
	add(max(c.Used[device], local))
	return total
}
