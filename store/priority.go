package store

import (
	"sync"
	"sync/atomic"
)

// priority lets decisions go first. A decision (Store.Access) is inside
// from enter to leave; background work — a full load, the deletion of
// uploaded events, the write-back of a new credential file, the reading
// of a push — calls yield between its steps and waits there until the
// decisions that were in progress when it called have left. On a small
// board the bulk work would otherwise hold the processor and the disk
// queue while a person waits at the door; with it, a decision shares them
// only with the step already under way.
//
// yield waits for the decisions in progress when it is called, not for
// later ones, so background work always makes a step between two
// decisions, however close they come: it slows down under a flood of
// decisions but is never starved.
type priority struct {
	entered atomic.Uint64 // decisions that have entered
	left    atomic.Uint64 // decisions that have left
	mu      sync.Mutex
	cond    *sync.Cond // signalled when a decision leaves; lazily made

	waiting func() // a test's hook, called (under mu) when yield starts to wait
}

// enter marks a decision as in progress.
func (p *priority) enter() { p.entered.Add(1) }

// leave ends what enter began and wakes the waiting background work.
func (p *priority) leave() {
	p.left.Add(1)
	p.mu.Lock()
	if p.cond != nil {
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

// yield returns when every decision that was in progress when it was
// called has left (at once when none was). The caller must hold nothing
// a decision needs (wmu, qmu, credsMu).
func (p *priority) yield() {
	target := p.entered.Load()
	if p.left.Load() >= target {
		return
	}
	p.mu.Lock()
	if p.cond == nil {
		p.cond = sync.NewCond(&p.mu)
	}
	if p.left.Load() < target && p.waiting != nil {
		p.waiting()
	}
	for p.left.Load() < target {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

// Yield returns once the decisions (Access) in progress when it is
// called have ended, at once when there are none: background work of
// other packages — pushes being read, say — calls it between steps so
// that the people at the door go first. The caller must not be inside
// Access.
func (s *Store) Yield() { s.prio.yield() }
