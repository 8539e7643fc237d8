package store

import "kioskd/kiosk"

// SetTuning shrinks the full load's batch and sort sizes for a test and
// returns a function restoring them.
func SetTuning(batch, sort, drop int) (restore func()) {
	b, s, d := batchBytes, sortBytes, dropEvery
	batchBytes, sortBytes, dropEvery = batch, sort, drop
	return func() { batchBytes, sortBytes, dropEvery = b, s, d }
}

// ApplyDeltaNoFlush applies a delta to the credential file but leaves its
// events pending, as a crash right after the delta's commit would.
func (s *Store) ApplyDeltaNoFlush(base string, meta DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mkEvents func(ApplyStats) []*kiosk.Event) (ApplyStats, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.applyDeltaCreds(base, meta, upserts, removed, revoked, mkEvents)
}

// OnYieldWait sets a hook called when background work starts to wait for
// a decision in progress (see priority).
func (s *Store) OnYieldWait(fn func()) {
	s.prio.mu.Lock()
	s.prio.waiting = fn
	s.prio.mu.Unlock()
}

// FlushAcks commits the deletion of the accepted events now.
func (s *Store) FlushAcks() error { return s.flushAcks(false) }

// SetWritebackChunk changes the write-back chunk of full loads for a test
// and returns a function restoring it.
func SetWritebackChunk(n int64) (restore func()) {
	old := writebackChunk
	writebackChunk = n
	return func() { writebackChunk = old }
}

// HoldCommits stops the applier until release is called: meanwhile the
// decisions are durable in the decision log only, as a crash would find
// them (unless a reader settles them).
func (s *Store) HoldCommits() (release func()) {
	ch := make(chan struct{})
	s.holdApply = ch
	return func() { close(ch) }
}
