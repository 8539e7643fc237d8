package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

// ErrWrongDevice is returned when a document names another device_id than
// this kiosk's.
var ErrWrongDevice = errors.New("document is for another device")

// ErrDeltaTooLarge is returned when a delta carries more changes
// (credentials, removed and revoked ids, over all its pages) than the
// configured cap: so large a change must come as a full document, which
// streams, instead of being held in memory. It wraps ErrTooLarge. A pull
// that meets it asks for a full document (no cursor), as after a 410.
var ErrDeltaTooLarge = fmt.Errorf("%w: delta has too many changes", ErrTooLarge)

// DefaultMaxDeltaChanges is the default cap on the changes of one delta.
// A delta's upserts are held in memory until they commit together, about
// 0.7 KB each for a credential with a schedule, doors and spend counts
// (measured), so the cap keeps a delta near 14 MiB, well inside kioskd's
// memory budget (SPEC §8: 64 MiB while applying); real deltas carry a
// handful of changes, and a portal sends a full document for more.
const DefaultMaxDeltaChanges = 20_000

// The reasons of sync.rejected and push.rejected events, as RejectReason
// returns them.
const (
	ReasonBadSignature    = "bad_signature"
	ReasonMalformed       = "malformed"
	ReasonWrongDevice     = "wrong_device"
	ReasonTooLarge        = "too_large"
	ReasonStale           = "stale"
	ReasonDuplicateDigest = "duplicate_digest"
	ReasonBaseMismatch    = "base_mismatch"
)

// RejectReason returns the reason code of a rejected document for its
// sync.rejected or push.rejected event, or "" when err is not a rejection
// of the document (nil, a read error, a cancelled context, a store
// failure): then nothing was wrong with the document and no rejection
// event is due.
func RejectReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, ErrMalformed), errors.Is(err, store.ErrDuplicateID):
		return ReasonMalformed
	case errors.Is(err, ErrWrongDevice):
		return ReasonWrongDevice
	case errors.Is(err, store.ErrStale):
		return ReasonStale
	case errors.Is(err, store.ErrDuplicateDigest):
		return ReasonDuplicateDigest
	case errors.Is(err, store.ErrBaseMismatch):
		return ReasonBaseMismatch
	}
	return ""
}

// Applier is what applying documents needs from the store. *store.Store
// provides it through StoreApplier; tests use fakes.
type Applier interface {
	// BeginFull starts staging a full credential set; the live set keeps
	// serving until Commit.
	BeginFull() (FullLoad, error)
	// ApplyDelta applies a delta on base in one transaction.
	ApplyDelta(base string, meta store.DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mkEvents func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error)
	// Record appends events durably.
	Record(evs ...*kiosk.Event) error
	// SyncState returns the cursor, issued_at and no-rollback watermark
	// of the live set.
	SyncState() (store.SyncState, error)
}

// FullLoad is a full credential set being staged (store.FullLoad). Commit
// and Abort end it whatever their result; Abort after the end is a no-op.
type FullLoad interface {
	// Put stages one credential.
	Put(c *kiosk.Credential) error
	// Revoke stages one revoked token id.
	Revoke(cid string) error
	// Commit makes the staged set live atomically, with the events
	// mkEvents returns; ErrStale for a document older than the newest
	// accepted.
	Commit(meta store.DocMeta, mkEvents func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error)
	// Abort drops the staged set.
	Abort() error
}

// StoreApplier returns s as an Applier.
func StoreApplier(s *store.Store) Applier { return storeApplier{s} }

type storeApplier struct{ *store.Store }

func (s storeApplier) BeginFull() (FullLoad, error) {
	l, err := s.Store.BeginFull()
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Options configure applying documents.
type Options struct {
	// DeviceID is this kiosk's device id; a document for any other
	// (including none) is ErrWrongDevice. Required.
	DeviceID string
	// Now returns the time stamped on events and whether the system
	// clock is synchronised (kiosk.Clock's Now); nil means the system
	// clock, reported as not synchronised.
	Now func() (time.Time, bool)
	// MaxDeltaChanges caps the changes of one delta (ErrDeltaTooLarge);
	// zero means DefaultMaxDeltaChanges.
	MaxDeltaChanges int
}

func (o *Options) now() (time.Time, bool) {
	if o.Now == nil {
		return time.Now().UTC(), false
	}
	t, synced := o.Now()
	return t.UTC(), synced
}

func (o *Options) event(typ string, detail map[string]any) *kiosk.Event {
	t, synced := o.now()
	return &kiosk.Event{Time: t, ClockSynced: synced, Type: typ, Detail: detail}
}

// Result says what applying a document did.
type Result struct {
	// Full, Base, Cursor and IssuedAt are the document's.
	Full     bool
	Base     string
	Cursor   string
	IssuedAt time.Time
	// Pages is the number of pages applied; Credentials the number of
	// credentials they carried.
	Pages       int
	Credentials int
	// Stats are the store's counts.
	Stats store.ApplyStats
	// Changed is true when the document changed something and a
	// sync.applied event was recorded with it.
	Changed bool
	// Commands are the commands of every page, in order, for the caller
	// to run; applying a document does not run them.
	Commands []Command
}

// Session applies one sync document page by page (SPEC §6.1): feed the
// verified body of each page to Page in order, fetching the next page
// while Page returns a non-empty page token; the document is applied when
// the last page (next empty) has been fed. A full document is staged page
// by page into one store.FullLoad and replaces the live set atomically
// after the last page; a delta's changes are gathered over its pages and
// committed in one transaction. Until then the live set keeps serving; an
// error or Abort leaves it as it was.
//
// A Session is not safe for concurrent use, and the caller serialises
// sessions (pull, push, file) so that one document applies at a time.
//
// sync.applied follows every document that changed something, and no
// other (SPEC §6.1). The event is made inside the store transaction that
// commits the document, so the two are durable together.
//   - A delta changed something when it upserted, removed or revoked
//     anything, or moved the cursor; the empty delta (cursor = base)
//     changed nothing.
//   - A full document changed something when its cursor differs from the
//     live set's. The portal's cursor names one version of this device's
//     credential set, and the store's set only ever changes by applying a
//     document that names the cursor it leaves, so a full document whose
//     cursor equals the live cursor holds the set the kiosk already has.
//     Comparing contents instead would cost a second walk of up to a
//     million credentials for each full document. Such a no-op full is
//     still committed (it is valid and the newest document accepted, so
//     the no-rollback watermark advances), only without an event.
type Session struct {
	st   Applier
	opts Options

	first   *Header // fixed fields of the first page
	pages   int
	creds   int
	load    FullLoad // full documents
	upserts []*kiosk.Credential
	removed []string
	revoked []string
	changes int
	cmds    []Command
	done    bool
	failed  error
	result  Result
	single  bool // Apply: the document must be one page

	// onHeader, if set, is told each page's header once the page has
	// been checked and before its credentials are applied: the pull loop
	// starts fetching the next page then, so that the portal builds page
	// N+1 while the kiosk applies page N.
	onHeader func(*Header)
}

// NewSession returns a Session that applies one document into st.
func NewSession(st Applier, opts Options) *Session {
	if opts.MaxDeltaChanges <= 0 {
		opts.MaxDeltaChanges = DefaultMaxDeltaChanges
	}
	return &Session{st: st, opts: opts}
}

// Page applies the next page of the document, read from the size bytes of
// src, whose signature the caller has verified. It returns the document's
// next page token, or "" when this was the last page and the document is
// applied (see Result). On any error the session is aborted and the live
// set is untouched; RejectReason tells whether the document was at fault.
func (s *Session) Page(ctx context.Context, src io.ReaderAt, size int64) (next string, err error) {
	if s.failed != nil {
		return "", fmt.Errorf("apply: session already failed: %w", s.failed)
	}
	if s.done {
		return "", errors.New("apply: document already applied")
	}
	next, err = s.page(ctx, src, size)
	if err != nil {
		s.failed = err
		if aerr := s.abort(); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return "", err
	}
	return next, nil
}

func (s *Session) page(ctx context.Context, src io.ReaderAt, size int64) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r, err := NewDocReader(src, size)
	if err != nil {
		return "", err
	}
	h := r.Header()
	if err := s.checkHeader(h); err != nil {
		return "", err
	}
	if s.single && h.Next != "" {
		return "", fmt.Errorf("%w: document has more pages (next %q); a file or push is one page", ErrMalformed, h.Next)
	}
	s.pages++
	s.creds += h.NumCredentials
	s.cmds = append(s.cmds, h.Commands...)
	if s.onHeader != nil {
		s.onHeader(h)
	}

	if h.Full {
		if s.load == nil {
			if s.load, err = s.st.BeginFull(); err != nil {
				return "", fmt.Errorf("apply full document: %w", err)
			}
		}
		n := 0
		err = r.Credentials(func(c *kiosk.Credential) error {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := s.load.Put(c); err != nil {
				return fmt.Errorf("credential %q: %w", c.ID, err)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("apply full document %s: %w", h.Cursor, err)
		}
		for _, cid := range h.Revoked {
			if err := s.load.Revoke(cid); err != nil {
				return "", fmt.Errorf("apply full document %s: revoked %q: %w", h.Cursor, cid, err)
			}
		}
		// removed has no meaning in a full document: whatever it does
		// not list is gone.
	} else {
		s.changes += h.NumCredentials + len(h.Removed) + len(h.Revoked)
		if s.changes > s.opts.MaxDeltaChanges {
			return "", fmt.Errorf("apply delta %s: %w: more than %d; the portal must send a full document",
				h.Cursor, ErrDeltaTooLarge, s.opts.MaxDeltaChanges)
		}
		err = r.Credentials(func(c *kiosk.Credential) error {
			s.upserts = append(s.upserts, c)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("apply delta %s: %w", h.Cursor, err)
		}
		s.removed = append(s.removed, h.Removed...)
		s.revoked = append(s.revoked, h.Revoked...)
	}
	if h.Next != "" {
		return h.Next, nil
	}
	return "", s.finish(ctx)
}

// checkHeader checks a page's header against this kiosk and the first
// page, and on the first page checks staleness and base early, so that a
// document bound to fail is not streamed in vain (the store checks both
// again when it commits).
func (s *Session) checkHeader(h *Header) error {
	if h.DeviceID != s.opts.DeviceID {
		return fmt.Errorf("%w: document is for %q, this kiosk is %q", ErrWrongDevice, h.DeviceID, s.opts.DeviceID)
	}
	if h.IssuedAt.IsZero() {
		return fmt.Errorf("%w: issued_at is missing", ErrMalformed)
	}
	if h.Cursor == "" {
		return fmt.Errorf("%w: cursor is missing", ErrMalformed)
	}
	if !h.Full && h.Base == "" {
		return fmt.Errorf("%w: delta %s has no base", ErrMalformed, h.Cursor)
	}
	if f := s.first; f != nil {
		if h.Full != f.Full || h.Base != f.Base || h.Cursor != f.Cursor || !h.IssuedAt.Equal(f.IssuedAt) {
			return fmt.Errorf("%w: page %d does not match the first page (full, base, cursor, issued_at)", ErrMalformed, s.pages+1)
		}
		return nil
	}
	first := *h
	first.Removed, first.Revoked, first.Commands = nil, nil, nil
	s.first = &first
	st, err := s.st.SyncState()
	if err != nil {
		return fmt.Errorf("apply: read sync state: %w", err)
	}
	if h.Full && h.IssuedAt.Before(st.Newest) {
		return fmt.Errorf("apply full document %s: %w: issued at %s, older than the newest accepted document (%s)",
			h.Cursor, store.ErrStale, h.IssuedAt.UTC().Format(time.RFC3339), st.Newest.UTC().Format(time.RFC3339))
	}
	if !h.Full && h.Base != st.Cursor {
		return fmt.Errorf("apply delta %s: %w: base %q, the kiosk is at %q", h.Cursor, store.ErrBaseMismatch, h.Base, st.Cursor)
	}
	return nil
}

// finish commits the document after its last page.
func (s *Session) finish(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f := s.first
	meta := store.DocMeta{Cursor: f.Cursor, IssuedAt: f.IssuedAt}
	res := Result{Full: f.Full, Base: f.Base, Cursor: f.Cursor, IssuedAt: f.IssuedAt,
		Pages: s.pages, Credentials: s.creds, Commands: s.cmds}
	var changedFn func(store.ApplyStats) bool
	if f.Full {
		st, err := s.st.SyncState()
		if err != nil {
			return fmt.Errorf("apply: read sync state: %w", err)
		}
		live := st.Cursor
		changedFn = func(store.ApplyStats) bool { return f.Cursor != live }
	} else {
		nrevoked := len(s.revoked)
		changedFn = func(a store.ApplyStats) bool {
			return a.Upserted > 0 || a.Removed > 0 || nrevoked > 0 || f.Cursor != f.Base
		}
	}
	mk := func(a store.ApplyStats) []*kiosk.Event {
		if !changedFn(a) {
			return nil
		}
		res.Changed = true
		return []*kiosk.Event{s.opts.event(kiosk.EvSyncApplied, map[string]any{
			"cursor": f.Cursor, "full": f.Full, "upserted": a.Upserted, "removed": a.Removed,
		})}
	}
	var err error
	if f.Full {
		load := s.load
		s.load = nil // Commit ends the load whatever its result
		res.Stats, err = load.Commit(meta, mk)
		if err != nil {
			return fmt.Errorf("apply full document %s: %w", f.Cursor, err)
		}
	} else {
		res.Stats, err = s.st.ApplyDelta(f.Base, meta, s.upserts, s.removed, s.revoked, mk)
		s.upserts, s.removed, s.revoked = nil, nil, nil
		if err != nil {
			return fmt.Errorf("apply delta %s on %s: %w", f.Cursor, f.Base, err)
		}
	}
	s.done = true
	s.result = res
	return nil
}

// Abort drops whatever the session has staged; the live set is as it was.
// It is a no-op after the document was applied or a page failed.
func (s *Session) Abort() error {
	if s.done {
		return nil
	}
	if s.failed == nil {
		s.failed = errors.New("aborted")
	}
	return s.abort()
}

func (s *Session) abort() error {
	s.upserts, s.removed, s.revoked = nil, nil, nil
	if s.load == nil {
		return nil
	}
	l := s.load
	s.load = nil
	if err := l.Abort(); err != nil {
		return fmt.Errorf("abort full load: %w", err)
	}
	return nil
}

// Result returns what the applied document did; it is the zero Result
// until the last page has been applied.
func (s *Session) Result() Result { return s.result }

// Apply applies a single-page document (a file, a push) read from the size
// bytes of src, whose signature the caller has verified. A document that
// announces a next page is malformed here.
func Apply(ctx context.Context, st Applier, opts Options, src io.ReaderAt, size int64) (Result, error) {
	s := NewSession(st, opts)
	s.single = true
	if _, err := s.Page(ctx, src, size); err != nil {
		return Result{}, err
	}
	return s.Result(), nil
}
