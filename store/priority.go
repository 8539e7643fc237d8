package store

import (
	"sync"
	"sync/atomic"
)

// priority lets decisions go first. A decision (Store.Access) is inside
// from enter to leave; background work — a full load, the deletion of
// uploaded events, the write-back of a new credential file — calls yield
// between its steps and waits there while a decision is inside. On a
// small board the bulk work would otherwise hold both the processor and
// the disk queue while a person waits at the door; with it, a decision
// shares them only with the step already under way.
//
// Decisions are bounded by the people at the inputs (a PIN takes seconds
// to type), so background work cannot be starved for long; under a
// flood of back-to-back decisions it slows down, and that is the
// intended trade.
type priority struct {
	n    atomic.Int32 // decisions inside
	mu   sync.Mutex
	cond *sync.Cond // signalled when n drops to zero; lazily made

	waiting func() // a test's hook, called (under mu) when yield starts to wait
}

// enter marks a decision as in progress.
func (p *priority) enter() { p.n.Add(1) }

// leave ends what enter began and wakes the waiting background work when
// no decision is left.
func (p *priority) leave() {
	if p.n.Add(-1) == 0 {
		p.mu.Lock()
		if p.cond != nil {
			p.cond.Broadcast()
		}
		p.mu.Unlock()
	}
}

// yield returns at once when no decision is in progress and otherwise
// waits until none is. The caller must hold nothing a decision needs
// (the main database's write lock, credsMu).
func (p *priority) yield() {
	if p.n.Load() == 0 {
		return
	}
	p.mu.Lock()
	if p.cond == nil {
		p.cond = sync.NewCond(&p.mu)
	}
	if p.n.Load() > 0 && p.waiting != nil {
		p.waiting()
	}
	for p.n.Load() > 0 {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

// Yield returns when no decision (Access) is in progress, waiting for
// the ones that are: background work of other packages — pushes being
// read, say — calls it between steps so that the people at the door go
// first. The caller must not be inside Access.
func (s *Store) Yield() { s.prio.yield() }
