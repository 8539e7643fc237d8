package kiosk

import (
	"sync"
	"time"
)

// Later returns the later of a and b (a when they are equal).
func Later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Clock gives the effective time of the kiosk: the later of the system
// clock and a floor, the latest trusted time seen (SPEC §2 "Clock without
// RTC"). A board without a real-time clock boots with a wrong system
// clock; the floor keeps decisions from going back to a time before what
// the kiosk already knows to be past (before a credential's valid_until,
// say). The floor is raised to the system time while the system clock is
// synchronised, and by Observe for other trusted times (the issued_at of a
// verified portal document, the build time). The caller persists Floor.
//
// All times Clock returns are in UTC without a monotonic reading. A Clock
// is safe for concurrent use.
type Clock struct {
	sys    func() time.Time
	synced func() bool

	mu    sync.Mutex
	floor time.Time
}

// NewClock returns a Clock reading the system time from sys and its
// synchronisation status from synced, starting from the given floor (the
// persisted one, or the build time, whichever is later). A nil sys means
// time.Now; a nil synced means never synchronised.
func NewClock(sys func() time.Time, synced func() bool, floor time.Time) *Clock {
	if sys == nil {
		sys = time.Now
	}
	if synced == nil {
		synced = func() bool { return false }
	}
	return &Clock{sys: sys, synced: synced, floor: clockWall(floor)}
}

// clockWall returns t in UTC with any monotonic reading stripped, so that
// every comparison of the clock is one of wall times (the floor is a
// persisted wall time and has none).
func clockWall(t time.Time) time.Time {
	return t.UTC()
}

// Now returns the effective time, the later of the system clock and the
// floor, and whether the system clock is synchronised. While it is, the
// floor is raised to the system time.
func (c *Clock) Now() (t time.Time, synced bool) {
	sys := clockWall(c.sys())
	synced = c.synced()
	c.mu.Lock()
	defer c.mu.Unlock()
	if synced && sys.After(c.floor) {
		c.floor = sys
	}
	return Later(sys, c.floor), synced
}

// Observe raises the floor to t if t is later; an earlier t is ignored,
// so the floor never goes back.
func (c *Clock) Observe(t time.Time) {
	t = clockWall(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.floor) {
		c.floor = t
	}
}

// Floor returns the current floor (in UTC), for the caller to persist.
func (c *Clock) Floor() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.floor
}
