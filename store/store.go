// Package store is kioskd's storage on bbolt. It implements kiosk.Store
// for the decision path and gives the sync package what it needs to apply
// portal documents and to upload events.
//
// Two database files live in the state directory (docs/design.md, "Two
// database files"):
//
//   - kioskd.db, the main database: the event journal, local spends,
//     lockout state, the clock floor, the no-rollback watermark, push
//     nonces, the ids of commands already run, and the generation number
//     of the live credential file.
//   - creds-N.db, the live credential file: credentials keyed by
//     digest || id (a lookup is one seek), an id → digest index for deltas,
//     the revoked token ids, the sync cursor and issued_at of the set.
//
// A full snapshot streams into a new file creds-(N+1).db without fsyncs,
// is fsynced once, and becomes live in one small transaction of kioskd.db
// that names it; the old file is then closed and unlinked. A crash at any
// point leaves kioskd.db naming a complete file; Open deletes every other
// creds-*.db and the staging directories of an interrupted load.
//
// A delta is one transaction on the live credential file, together with
// its cursor. The events that report it are written in that same
// transaction to a pending list in the credential file and then moved
// into the journal of kioskd.db; a mark in kioskd.db records how far the
// move got, so a crash between the two neither loses nor repeats them.
package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// Compile-time check that Store implements the port of the decision path.
var _ kiosk.Store = (*Store)(nil)

// Sentinel errors; test with errors.Is.
var (
	// ErrLocked is returned by Open when another process holds the
	// database's file lock past Options.Timeout: a second kioskd, or a
	// kioskctl that has the database open.
	ErrLocked = errors.New("store is locked by another process (a second kioskd, or kioskctl with the database open)")
	// ErrStale is returned by FullLoad.Commit when the document was issued
	// before the newest issued_at ever accepted (no rollback, SPEC §6).
	ErrStale = errors.New("document is older than the newest one accepted")
	// ErrBaseMismatch is returned by ApplyDelta when the delta's base is not
	// the current cursor; nothing is changed.
	ErrBaseMismatch = errors.New("delta base is not the current cursor")
	// ErrDuplicateDigest is returned when a document, or a delta on the
	// stored set, would hold two active credentials with one digest;
	// nothing is changed.
	ErrDuplicateDigest = errors.New("two active credentials with one digest")
	// ErrDuplicateID is returned when a full snapshot or a delta lists one
	// credential id twice; nothing is changed.
	ErrDuplicateID = errors.New("credential id listed twice")
	// ErrBusy is returned by BeginFull while another full load is in
	// progress.
	ErrBusy = errors.New("a full load is already in progress")
	// ErrLoadDone is returned by the methods of a FullLoad that has been
	// committed or aborted.
	ErrLoadDone = errors.New("full load already committed or aborted")
)

const (
	mainFile    = "kioskd.db"
	credsPrefix = "creds-"
	credsSuffix = ".db"
	stagePrefix = "staging-"

	// maxIDLen bounds credential, token and command ids (bbolt keys are
	// at most 32 KiB and a credential key is digest || id).
	maxIDLen = 4096
)

// Buckets and keys of kioskd.db.
var (
	bMeta     = []byte("meta")
	bEvents   = []byte("events")   // seq (8 bytes big endian) → JSON kiosk.Event
	bSpends   = []byte("spends")   // credential or token id → uint64 local spends
	bLockouts = []byte("lockouts") // input name → JSON kiosk.LockoutState
	bNonces   = []byte("nonces")   // push nonce → issued_at (12 bytes)
	bCommands = []byte("commands") // command id → time first run (12 bytes)

	kStoreID     = []byte("store_id")     // 16 hex chars, made with the database
	kLive        = []byte("live")         // uint64 generation N of the live creds-N.db
	kNewest      = []byte("newest")       // newest issued_at accepted (watermark)
	kFloor       = []byte("floor")        // clock floor
	kPendingMark = []byte("pending_mark") // uint64: pending records of the live file moved up to here
)

// Buckets and keys of a credential file.
var (
	bCreds   = []byte("creds")   // digest || id → encoded credential
	bIDs     = []byte("ids")     // id → digest
	bRevoked = []byte("revoked") // token cid → 1
	bPending = []byte("pending") // sequence → JSON pendingRecord, awaiting their move to kioskd.db
	// bMeta is shared: kCursor, kIssuedAt, kCount, kGen.
	kCursor   = []byte("cursor")
	kIssuedAt = []byte("issued_at")
	kCount    = []byte("count")
	kGen      = []byte("gen")
)

// Options configures Open.
type Options struct {
	// Dir is the state directory: kioskd.db and creds-N.db live here. It
	// is created with mode 0700 if missing. Required.
	Dir string
	// Timeout is how long Open waits for the database's file lock, held
	// by a second kioskd or by a kioskctl with the database open, before
	// it fails with ErrLocked. Zero means 1 s.
	Timeout time.Duration
	// Logger receives the store's few log lines (cleanup after a crash,
	// recoveries). Nil means slog.Default().
	Logger *slog.Logger
}

// Store is kioskd's storage. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	log     *slog.Logger
	timeout time.Duration
	main    *bolt.DB
	id      string // store id: the prefix of every event id

	// credsMu guards the creds pointer: readers of the live credential
	// file hold it shared; the flip to a new file takes it exclusively.
	// Lock order: the main database's write lock, then credsMu.
	credsMu sync.RWMutex
	creds   *credsFile
	count   atomic.Int64

	// applyMu serializes what writes the credential set: deltas, the flip
	// of a full load, and the move of pending events. It is held before
	// the main database's write lock. s.creds changes only while both
	// applyMu and credsMu are held, so either one makes reading it safe.
	applyMu sync.Mutex

	loadMu  sync.Mutex
	load    *FullLoad
	loadDB  *bolt.DB // the staging file of load, for Close
	nextGen uint64
	closed  bool

	prio priority

	// Decisions (decide.go): the locks wmu, amu, qmu; the decision log;
	// the decisions logged but not yet committed to kioskd.db (queue, in
	// LSN order, and queueBytes of log they hold) and what they wrote
	// (overlay); the events sequence counting them (nextSeq, 0 when
	// kioskd.db's is current); the applier's kick and stop.
	wmu, amu, qmu sync.Mutex
	dlog          *decLog
	queue         []*writeSet
	queueBytes    int64
	overlay       map[string]ovEntry
	nextSeq       uint64
	lastDecision  atomic.Int64 // unix ns of the last decision logged
	applyKick     chan struct{}
	applyStop     chan struct{}
	applyDone     chan struct{}

	holdApply chan struct{} // a test's: the applier waits for it to close

	// Events the portal accepted whose deletion is not committed yet
	// (see Ack): Pending and Backlog leave them out.
	ackMu    sync.Mutex
	acked    map[uint64]struct{}
	ackSince time.Time // when the oldest of acked was accepted

	appended chan struct{}
	subMu    sync.Mutex
	subs     map[chan struct{}]struct{}
}

// credsFile is an open credential file.
type credsFile struct {
	db   *bolt.DB
	gen  uint64
	path string
}

func credsName(gen uint64) string { return credsPrefix + strconv.FormatUint(gen, 10) + credsSuffix }

// boltOptions are the options of every database of the store: a bounded
// wait for the file lock (bbolt's default is forever), the hash-map
// freelist (much faster than the array one once a file has many free
// pages) and no statistics (a lock less on every read transaction).
func boltOptions(timeout time.Duration, noSync bool) *bolt.Options {
	return &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType,
		NoStatistics: true,
		NoSync:       noSync,
		NoGrowSync:   noSync,
	}
}

// Open opens (or creates) the store in opts.Dir. It removes what a crash
// may have left behind (credential files not named live, staging
// directories of an interrupted full load) and moves pending delta events
// into the journal. It fails with ErrLocked when another process holds
// the database.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open store: no state directory")
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(opts.Dir, mainFile)
	mainOpts := boltOptions(opts.Timeout, false)
	// The main database takes a durable commit per decision: not writing
	// the freelist saves a page write on each; the file is small (journal,
	// spends, lockouts), so rebuilding the freelist at open is cheap.
	mainOpts.NoFreelistSync = true
	db, err := bolt.Open(path, 0o600, mainOpts)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		dir:       opts.Dir,
		log:       opts.Logger,
		timeout:   opts.Timeout,
		main:      db,
		appended:  make(chan struct{}, 1),
		overlay:   map[string]ovEntry{},
		applyKick: make(chan struct{}, 1),
		applyStop: make(chan struct{}),
		applyDone: make(chan struct{}),
	}
	if err := s.init(); err != nil {
		if s.creds != nil {
			s.creds.db.Close()
		}
		if s.dlog != nil {
			s.dlog.close()
		}
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.applyLoop(s.applyStop, s.applyDone)
	if len(s.queue) > 0 {
		s.applyKick <- struct{}{}
	}
	return s, nil
}

func (s *Store) init() error {
	var gen uint64
	dlog, records, remake, err := openDecLog(s.dir)
	if err != nil {
		return err
	}
	s.dlog = dlog
	err = s.main.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bMeta, bEvents, bSpends, bLockouts, bNonces, bCommands} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		// Decisions made durable in the log that a crash kept from
		// kioskd.db go back into the queue, in order, up to the first
		// one missing (a torn record: its decision was never told); the
		// applier commits them. Open does not write them itself, so it
		// works on a full disk too.
		committed := getU64(m.Get(kLogLSN))
		seq := tx.Bucket(bEvents).Sequence()
		s.queue, s.queueBytes, s.nextSeq = nil, 0, 0
		for _, ws := range records {
			if ws.lsn <= committed {
				continue
			}
			if ws.lsn != committed+1 {
				break
			}
			s.queue = append(s.queue, ws)
			s.queueBytes += logRecordSize(ws)
			for _, p := range ws.puts {
				s.overlay[ovKey(p.bucket, p.key)] = ovEntry{val: p.val, lsn: ws.lsn}
			}
			if ws.seq > seq {
				s.nextSeq = ws.seq
			}
			committed = ws.lsn
		}
		if len(s.queue) > 0 {
			s.log.Info("decisions from the decision log to commit", "decisions", len(s.queue), "lsn", committed)
		}
		// LSNs only grow, even if the log was lost or made anew.
		s.dlog.lsn = max(s.dlog.lsn, committed)
		if id := m.Get(kStoreID); id != nil {
			s.id = string(id)
		} else {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			s.id = hex.EncodeToString(b[:])
			if err := m.Put(kStoreID, []byte(s.id)); err != nil {
				return err
			}
		}
		gen = getU64(m.Get(kLive))
		return nil
	})
	if err != nil {
		return err
	}
	if remake { // a log of the wrong size: commit its decisions, then make it anew
		if err := s.drain(); err != nil {
			s.log.Warn("decision log has the wrong size; it is made anew once its decisions are committed", "err", err)
		} else if err := s.dlog.remake(s.dir); err != nil {
			return err
		}
	}

	if gen != 0 {
		path := filepath.Join(s.dir, credsName(gen))
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			s.log.Error("live credential file is missing; starting with an empty set, the next pull fetches a full snapshot", "file", path)
			gen++
			if err := s.newEmptyCreds(gen); err != nil {
				return err
			}
		} else {
			db, err := bolt.Open(path, 0o600, boltOptions(s.timeout, false))
			if errors.Is(err, bolt.ErrTimeout) {
				return fmt.Errorf("credential file %s: %w", path, ErrLocked)
			}
			if err != nil {
				return fmt.Errorf("credential file %s: %w", path, err)
			}
			s.creds = &credsFile{db: db, gen: gen, path: path}
		}
	} else {
		gen = 1
		if err := s.newEmptyCreds(gen); err != nil {
			return err
		}
	}
	s.nextGen = s.creds.gen + 1
	s.cleanup()

	err = s.creds.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bCreds, bIDs, bRevoked, bPending, bMeta} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("credential file %s: bucket %q missing", s.creds.path, name)
			}
		}
		s.count.Store(int64(getU64(tx.Bucket(bMeta).Get(kCount))))
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := s.flushPending(); err != nil {
		return fmt.Errorf("move pending sync events: %w", err)
	}
	return nil
}

// newEmptyCreds creates an empty, durable credential file of generation
// gen and makes it live.
func (s *Store) newEmptyCreds(gen uint64) error {
	cf, err := s.createCreds(gen, false)
	if err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		cf.db.Close()
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if err := m.Put(kLive, u64(gen)); err != nil {
			return err
		}
		return m.Put(kPendingMark, u64(0))
	})
	if err != nil {
		cf.db.Close()
		return err
	}
	s.creds = cf
	return nil
}

// createCreds creates a credential file of generation gen with its
// buckets, replacing any file of that name.
func (s *Store) createCreds(gen uint64, noSync bool) (*credsFile, error) {
	path := filepath.Join(s.dir, credsName(gen))
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("credential file %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, boltOptions(s.timeout, noSync))
	if err != nil {
		// bolt.Open creates the file before it writes the first pages;
		// on a full disk it fails after the create. Leave no stray file.
		os.Remove(path)
		return nil, fmt.Errorf("credential file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bCreds, bIDs, bRevoked, bPending, bMeta} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(kGen, u64(gen))
	})
	if err != nil {
		db.Close()
		os.Remove(path)
		return nil, fmt.Errorf("credential file %s: %w", path, err)
	}
	return &credsFile{db: db, gen: gen, path: path}, nil
}

// cleanup removes credential files other than the live one and staging
// directories: what a crash during a full load leaves behind.
func (s *Store) cleanup() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("store cleanup", "dir", s.dir, "err", err)
		return
	}
	live := credsName(s.creds.gen)
	for _, e := range entries {
		name := e.Name()
		var stray bool
		switch {
		case strings.HasPrefix(name, credsPrefix) && strings.HasSuffix(name, credsSuffix):
			stray = name != live
		case strings.HasPrefix(name, stagePrefix) && e.IsDir():
			stray = true
		}
		if !stray {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
			s.log.Warn("store cleanup: cannot remove leftover of an interrupted full load", "path", filepath.Join(s.dir, name), "err", err)
			continue
		}
		s.log.Info("store cleanup: removed leftover of an interrupted full load", "path", filepath.Join(s.dir, name))
	}
}

// Close closes the databases. A full load still in progress fails from
// then on (its files go at the next Open, as after a crash). Stop the
// users of the store first: calls after Close fail.
func (s *Store) Close() error {
	s.loadMu.Lock()
	s.closed = true
	if s.loadDB != nil {
		s.loadDB.Close()
	}
	s.loadMu.Unlock()
	ackErr := s.flushAcks(false)
	// The applier stops; what it has not committed is committed here
	// (or, failing that, replayed from the log by the next Open).
	// Lock order: applyMu, wmu, credsMu.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.dlog != nil {
		close(s.applyStop)
		<-s.applyDone
		if err := s.drain(); err != nil {
			s.log.Error("closing with decisions not committed to kioskd.db; the next open replays them from the decision log", "err", err)
		}
		s.dlog.close()
		s.dlog = nil
	}
	s.credsMu.Lock()
	defer s.credsMu.Unlock()
	err := s.creds.db.Close()
	if merr := s.main.Close(); err == nil {
		err = merr
	}
	if err == nil {
		err = ackErr
	}
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// ID returns the store id: 16 hex characters made with the database, the
// prefix of every event id, so a wiped store never reuses an old id.
func (s *Store) ID() string { return s.id }

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// Count returns the number of live credentials.
func (s *Store) Count() int { return int(s.count.Load()) }

// Lookup returns the live credential with this digest, as
// kiosk.AccessTx.Lookup does, outside any decision (status, tools).
func (s *Store) Lookup(digest [kiosk.DigestSize]byte) (*kiosk.Credential, error) {
	var c *kiosk.Credential
	s.credsMu.RLock()
	defer s.credsMu.RUnlock()
	err := s.creds.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = lookup(tx, &digest)
		return err
	})
	return c, err
}

// Revoked reports whether a signed token id is on the revoked list of the
// live set, as kiosk.AccessTx.Revoked does.
func (s *Store) Revoked(cid string) (bool, error) {
	var r bool
	s.credsMu.RLock()
	defer s.credsMu.RUnlock()
	err := s.creds.db.View(func(tx *bolt.Tx) error {
		r = tx.Bucket(bRevoked).Get([]byte(cid)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("revoked: %w", err)
	}
	return r, nil
}

// DocMeta describes an applied sync document.
type DocMeta struct {
	Cursor   string    // the document's cursor; the next delta's base
	IssuedAt time.Time // the document's issued_at
}

// ApplyStats says what applying a document changed.
type ApplyStats struct {
	Upserted int // credentials written (for a full: all of them)
	Removed  int // live credentials dropped
}

// SyncState is the sync position of the store.
type SyncState struct {
	Cursor   string    // cursor of the live set; "" before the first sync
	IssuedAt time.Time // issued_at of the document that made the live set
	// Newest is the newest issued_at ever accepted: the no-rollback
	// watermark below which a full document is stale.
	Newest      time.Time
	Credentials int // live credentials
}

// SyncState returns the current sync position.
func (s *Store) SyncState() (SyncState, error) {
	var st SyncState
	s.credsMu.RLock()
	err := s.creds.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		st.Cursor = string(m.Get(kCursor))
		st.IssuedAt = decTime(m.Get(kIssuedAt))
		st.Credentials = int(getU64(m.Get(kCount)))
		return nil
	})
	s.credsMu.RUnlock()
	if err != nil {
		return st, fmt.Errorf("sync state: %w", err)
	}
	err = s.main.View(func(tx *bolt.Tx) error {
		st.Newest = decTime(tx.Bucket(bMeta).Get(kNewest))
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("sync state: %w", err)
	}
	return st, nil
}

// raiseTime sets key in bucket m to t if t is later than what it holds.
func raiseTime(m *bolt.Bucket, key []byte, t time.Time) error {
	if t.IsZero() || !t.After(decTime(m.Get(key))) {
		return nil
	}
	return m.Put(key, encTime(t))
}

// ClockFloor returns the persisted clock floor: the latest trusted time
// seen (zero if none yet).
func (s *Store) ClockFloor() (time.Time, error) {
	var t time.Time
	err := s.main.View(func(tx *bolt.Tx) error {
		t = decTime(tx.Bucket(bMeta).Get(kFloor))
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("clock floor: %w", err)
	}
	return t, nil
}

// RaiseClockFloor raises the clock floor to t; a t not later than the
// floor changes nothing (and costs no write).
func (s *Store) RaiseClockFloor(t time.Time) error {
	cur, err := s.ClockFloor()
	if err != nil {
		return err
	}
	if !t.After(cur) {
		return nil
	}
	err = s.update(func(tx *bolt.Tx) error {
		return raiseTime(tx.Bucket(bMeta), kFloor, t)
	})
	if err != nil {
		return fmt.Errorf("raise clock floor: %w", err)
	}
	return nil
}

// RaiseWatermark records that a document issued at issuedAt was accepted
// without going through FullLoad or ApplyDelta (a pushed hint or
// command): it raises the no-rollback watermark and the clock floor to
// issuedAt. Neither ever goes down.
func (s *Store) RaiseWatermark(issuedAt time.Time) error {
	err := s.update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if err := raiseTime(m, kNewest, issuedAt); err != nil {
			return err
		}
		return raiseTime(m, kFloor, issuedAt)
	})
	if err != nil {
		return fmt.Errorf("raise watermark: %w", err)
	}
	return nil
}

// UseNonce records a push nonce and reports whether it was fresh (false:
// a replay). issuedAt is the push's issued_at. It also forgets nonces
// whose issued_at is more than window before both now and the
// watermark: the push freshness check (SPEC §6.2, the same window)
// rejects those pushes anyway, so keeping them would only grow the
// bucket.
func (s *Store) UseNonce(nonce string, issuedAt, now time.Time, window time.Duration) (fresh bool, err error) {
	if nonce == "" || len(nonce) > maxIDLen {
		return false, fmt.Errorf("use nonce: bad nonce length %d", len(nonce))
	}
	if issuedAt.IsZero() {
		issuedAt = now
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bNonces)
		ref := now
		if newest := decTime(tx.Bucket(bMeta).Get(kNewest)); !newest.IsZero() && newest.Before(ref) {
			ref = newest
		}
		horizon := ref.Add(-window)
		var old [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if decTime(v).Before(horizon) {
				old = append(old, k)
			}
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if b.Get([]byte(nonce)) != nil {
			return nil
		}
		fresh = true
		return b.Put([]byte(nonce), encTime(issuedAt))
	})
	if err != nil {
		return false, fmt.Errorf("use nonce: %w", err)
	}
	return fresh, nil
}

// RunOnce records a command id and reports whether this is its first run
// (SPEC §6.2: each command id runs at most once, whatever way it came).
// Command ids are kept for good; they are few and small.
func (s *Store) RunOnce(commandID string) (first bool, err error) {
	if commandID == "" || len(commandID) > maxIDLen {
		return false, fmt.Errorf("run once: bad command id length %d", len(commandID))
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCommands)
		if b.Get([]byte(commandID)) != nil {
			return nil
		}
		first = true
		return b.Put([]byte(commandID), encTime(time.Now()))
	})
	if err != nil {
		return false, fmt.Errorf("run once %q: %w", commandID, err)
	}
	return first, nil
}

// Lockouts returns the stored lockout state of every input, by name.
func (s *Store) Lockouts() (map[string]kiosk.LockoutState, error) {
	s.settle()
	out := make(map[string]kiosk.LockoutState)
	err := s.main.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bLockouts).ForEach(func(k, v []byte) error {
			var st kiosk.LockoutState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("input %q: %w", k, err)
			}
			out[string(k)] = st
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("lockouts: %w", err)
	}
	return out, nil
}

// syncDir fsyncs a directory so that file creations and removals in it
// are durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for sync there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
