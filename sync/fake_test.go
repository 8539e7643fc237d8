package sync

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"

	"kioskd/kiosk"
	"kioskd/store"
)

// fakeStore is an in-memory Applier with the semantics the store
// documents: staged full loads that replace the set at Commit, deltas on
// their base, stale fulls and duplicate active digests rejected with
// nothing changed. It counts calls so tests can see what was touched.
type fakeStore struct {
	creds   map[string]*kiosk.Credential // by id
	revoked map[string]bool
	state   store.SyncState
	events  []*kiosk.Event

	begins, puts, commits, aborts, deltas int
	putErr                                error // returned by the next Put
	loading                               *fakeLoad
}

var _ Applier = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{creds: map[string]*kiosk.Credential{}, revoked: map[string]bool{}}
}

func (s *fakeStore) BeginFull() (FullLoad, error) {
	if s.loading != nil {
		return nil, store.ErrBusy
	}
	s.begins++
	s.loading = &fakeLoad{s: s, creds: map[string]*kiosk.Credential{}, revoked: map[string]bool{},
		active: map[[kiosk.DigestSize]byte]string{}}
	return s.loading, nil
}

func dupDigest(set map[string]*kiosk.Credential) error {
	seen := map[[kiosk.DigestSize]byte]string{}
	for id, c := range set {
		if c.Status != kiosk.StatusActive {
			continue
		}
		if other, ok := seen[c.Digest]; ok {
			return fmt.Errorf("%w: %s and %s", store.ErrDuplicateDigest, other, id)
		}
		seen[c.Digest] = id
	}
	return nil
}

func (s *fakeStore) ApplyDelta(base string, meta store.DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mk func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error) {
	s.deltas++
	if base != s.state.Cursor {
		return store.ApplyStats{}, store.ErrBaseMismatch
	}
	next := maps.Clone(s.creds)
	var st store.ApplyStats
	for _, c := range upserts {
		next[c.ID] = c
		st.Upserted++
	}
	for _, id := range removed {
		if _, ok := next[id]; ok {
			delete(next, id)
			st.Removed++
		}
	}
	if err := dupDigest(next); err != nil {
		return store.ApplyStats{}, err
	}
	s.creds = next
	for _, cid := range revoked {
		s.revoked[cid] = true
	}
	s.setMeta(meta)
	s.events = append(s.events, mk(st)...)
	return st, nil
}

func (s *fakeStore) setMeta(meta store.DocMeta) {
	s.state.Cursor = meta.Cursor
	s.state.IssuedAt = meta.IssuedAt
	if meta.IssuedAt.After(s.state.Newest) {
		s.state.Newest = meta.IssuedAt
	}
	s.state.Credentials = len(s.creds)
}

func (s *fakeStore) Record(evs ...*kiosk.Event) error {
	s.events = append(s.events, evs...)
	return nil
}

func (s *fakeStore) SyncState() (store.SyncState, error) { return s.state, nil }

type fakeLoad struct {
	s       *fakeStore
	creds   map[string]*kiosk.Credential
	revoked map[string]bool
	active  map[[kiosk.DigestSize]byte]string // digest → id of active credentials
	done    bool
}

func (l *fakeLoad) Put(c *kiosk.Credential) error {
	if l.done {
		return store.ErrLoadDone
	}
	l.s.puts++
	if err := l.s.putErr; err != nil {
		l.s.putErr = nil
		return err
	}
	if _, ok := l.creds[c.ID]; ok {
		return store.ErrDuplicateID
	}
	if c.Status == kiosk.StatusActive {
		if other, ok := l.active[c.Digest]; ok {
			return fmt.Errorf("%w: %s and %s", store.ErrDuplicateDigest, other, c.ID)
		}
		l.active[c.Digest] = c.ID
	}
	l.creds[c.ID] = c
	return nil
}

func (l *fakeLoad) Revoke(cid string) error {
	if l.done {
		return store.ErrLoadDone
	}
	l.revoked[cid] = true
	return nil
}

func (l *fakeLoad) Commit(meta store.DocMeta, mk func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error) {
	if l.done {
		return store.ApplyStats{}, store.ErrLoadDone
	}
	l.done = true
	l.s.loading = nil
	if meta.IssuedAt.Before(l.s.state.Newest) {
		return store.ApplyStats{}, store.ErrStale
	}
	st := store.ApplyStats{Upserted: len(l.creds)}
	for id := range l.s.creds {
		if _, ok := l.creds[id]; !ok {
			st.Removed++
		}
	}
	l.s.commits++
	l.s.creds, l.s.revoked = l.creds, l.revoked
	l.s.setMeta(meta)
	l.s.events = append(l.s.events, mk(st)...)
	return st, nil
}

func (l *fakeLoad) Abort() error {
	if l.done {
		return nil
	}
	l.done = true
	l.s.loading = nil
	l.s.aborts++
	return nil
}

var errInjected = errors.New("injected failure")

// testPriv returns a fixed portal key for the tests.
func testPriv() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{42}, ed25519.SeedSize))
}
