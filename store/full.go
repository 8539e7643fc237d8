package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// Tuning of the full load, chosen by measurement (bench_test.go); tests
// shrink them to exercise many batches and runs on small sets.
var (
	// batchBytes is how much encoded data one staging transaction
	// writes (in-order credentials, merged runs). bbolt holds a node per
	// touched page and an inode per key until the commit, and the Go
	// heap doubles what is live: 4 MiB batches peaked at 70 MiB RSS for
	// 100k credentials, 512 KiB ones at about 35 MiB for 1M, for the
	// same CPU time.
	batchBytes = 512 << 10
	// sortBytes is the memory arena of each external sorter (three of
	// them: out-of-order credentials, ids, revoked ids); 1M ids make
	// about 28 runs of 2 MiB.
	sortBytes = 2 << 20
	// writebackChunk is how much of a new credential file is written
	// out (and flushed) between two chances for decisions to go first;
	// an old file is shrunk four chunks at a time before it is deleted.
	writebackChunk int64 = 1 << 20
	// dropEvery is how many old ids are read between two releases of
	// the old file's mapped pages while counting removed credentials.
	dropEvery = 1 << 15
)

// FullLoad stages a full snapshot (SPEC §6.1) into a new credential file
// while the old set keeps serving. Feed it with Put and Revoke, then
// Commit (or Abort). It is not safe for concurrent use.
//
// Credentials may come in any order; in ascending digest order (as the
// portal sends them) they stream straight into the file. The id index is
// built by an external merge sort in a staging directory, so memory stays
// bounded whatever the size of the set.
//
// After an error from Put or Revoke the load is failed: later calls and
// Commit return the same error. Commit and Abort end the load whatever
// their result.
type FullLoad struct {
	s        *Store
	gen      uint64
	path     string
	stageDir string
	db       *bolt.DB
	err      error
	done     bool

	n int // credentials put

	// In-order path: records (see sorter) appended in ascending key
	// order, written every batchBytes.
	buf        []byte
	offs       []int
	lastKey    []byte
	lastActive bool // an active credential with lastKey's digest was put
	unordered  bool // a key came out of order: the rest goes through outOfOrder

	outOfOrder *sorter // credentials after the first out-of-order one
	ids        *sorter // id → digest, for the id index
	revoked    *sorter // revoked token ids

	key, val []byte // scratch
}

// BeginFull starts a full load into a new credential file. It fails with
// ErrBusy while another one is in progress.
func (s *Store) BeginFull() (*FullLoad, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("begin full load: %w", bolt.ErrDatabaseNotOpen)
	}
	if s.load != nil {
		return nil, ErrBusy
	}
	gen := s.nextGen
	s.nextGen++
	stageDir := filepath.Join(s.dir, stagePrefix+strconv.FormatUint(gen, 10))
	if err := os.RemoveAll(stageDir); err != nil {
		return nil, fmt.Errorf("begin full load: %w", err)
	}
	if err := os.Mkdir(stageDir, 0o700); err != nil {
		return nil, fmt.Errorf("begin full load: %w", err)
	}
	cf, err := s.createCreds(gen, true)
	if err != nil {
		os.RemoveAll(stageDir)
		return nil, fmt.Errorf("begin full load: %w", err)
	}
	l := &FullLoad{
		s:          s,
		gen:        gen,
		path:       cf.path,
		stageDir:   stageDir,
		db:         cf.db,
		buf:        make([]byte, 0, batchBytes+batchBytes/8),
		outOfOrder: newSorter(stageDir, "creds", sortBytes),
		ids:        newSorter(stageDir, "ids", sortBytes),
		revoked:    newSorter(stageDir, "revoked", sortBytes),
	}
	s.load, s.loadDB = l, cf.db
	return l, nil
}

func (l *FullLoad) fail(err error) error {
	if l.err == nil {
		l.err = err
	}
	return l.err
}

// Put stages one credential. It fails with ErrDuplicateDigest when a
// second active credential has the digest of an earlier one (two with one
// digest of which at most one is active are allowed; Lookup prefers the
// active one) and with ErrDuplicateID when an id comes twice. Checks
// that need the whole set (out-of-order input, repeated ids with
// different digests) report at Commit.
func (l *FullLoad) Put(c *kiosk.Credential) error {
	if l.done {
		return ErrLoadDone
	}
	if l.err != nil {
		return l.err
	}
	l.s.prio.yield()
	if err := checkCred(c); err != nil {
		return l.fail(fmt.Errorf("full load: %w", err))
	}
	l.key = credKey(l.key[:0], &c.Digest, c.ID)
	l.val = appendCred(l.val[:0], c)
	active := c.Status == kiosk.StatusActive
	l.n++
	if err := l.ids.add([]byte(c.ID), c.Digest[:]); err != nil {
		return l.fail(fmt.Errorf("full load: %w", err))
	}
	if !l.unordered {
		cmp := 1
		if l.lastKey != nil {
			cmp = bytes.Compare(l.key, l.lastKey)
		}
		switch {
		case cmp == 0:
			return l.fail(fmt.Errorf("full load: %w: %q", ErrDuplicateID, c.ID))
		case cmp > 0:
			if l.lastKey != nil && bytes.Equal(l.key[:kiosk.DigestSize], l.lastKey[:kiosk.DigestSize]) {
				if active && l.lastActive {
					return l.fail(fmt.Errorf("full load: %w: credential %q", ErrDuplicateDigest, c.ID))
				}
				l.lastActive = l.lastActive || active
			} else {
				l.lastActive = active
			}
			l.lastKey = append(l.lastKey[:0], l.key...)
			l.offs = append(l.offs, len(l.buf))
			l.buf = appendRecord(l.buf, l.key, l.val)
			if len(l.buf) >= batchBytes {
				if err := l.flushBatch(); err != nil {
					return l.fail(err)
				}
			}
			return nil
		}
		l.unordered = true
		if err := l.flushBatch(); err != nil {
			return l.fail(err)
		}
	}
	if err := l.outOfOrder.add(l.key, l.val); err != nil {
		return l.fail(fmt.Errorf("full load: %w", err))
	}
	return nil
}

// appendRecord appends a sorter record.
func appendRecord(dst, k, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(k)))
	dst = append(dst, k...)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// Revoke stages a revoked signed-token id.
func (l *FullLoad) Revoke(cid string) error {
	if l.done {
		return ErrLoadDone
	}
	if l.err != nil {
		return l.err
	}
	if cid == "" || len(cid) > maxIDLen {
		return l.fail(fmt.Errorf("full load: revoked token id of length %d", len(cid)))
	}
	if err := l.revoked.add([]byte(cid), []byte{1}); err != nil {
		return l.fail(fmt.Errorf("full load: %w", err))
	}
	return nil
}

// flushBatch writes the in-order batch in one staging transaction.
func (l *FullLoad) flushBatch() error {
	if len(l.offs) == 0 {
		return nil
	}
	l.s.prio.yield()
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCreds)
		b.FillPercent = 1 // appending in key order: fill pages
		for _, off := range l.offs {
			k, v := record(l.buf, off)
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("full load: write %s: %w", l.path, err)
	}
	l.buf, l.offs = l.buf[:0], l.offs[:0]
	return nil
}

// insertSorted writes the records of s, in key order, into bucket name of
// the staging file, batchBytes per transaction. check, if not nil, runs
// before each Put with the bucket as it is so far.
func (l *FullLoad) insertSorted(s *sorter, name []byte, fill float64, check func(b *bolt.Bucket, k, v []byte) error) error {
	it, err := s.iter()
	if err != nil {
		return err
	}
	defer it.Close()
	more := it.Next()
	var arena []byte
	for more {
		l.s.prio.yield()
		err := l.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			b.FillPercent = fill
			arena = arena[:0]
			for ; more && len(arena) < batchBytes; more = it.Next() {
				k := it.Key()
				if check != nil {
					if err := check(b, k, it.Value()); err != nil {
						return err
					}
				}
				// bbolt keeps a reference to the value until commit, and
				// the iterator reuses its buffers: copy into the arena,
				// which is not reallocated while a batch is open.
				start := len(arena)
				if cap(arena)-start < len(it.Value()) {
					if start > 0 {
						return nil // batch full for this arena; commit
					}
					arena = make([]byte, 0, max(batchBytes+len(it.Value()), 2*cap(arena)))
				}
				arena = append(arena, it.Value()...)
				if err := b.Put(k, arena[start:len(arena):len(arena)]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	return it.Err()
}

// Commit makes the staged set live (SPEC §6.1), atomically: it builds the
// id index, fsyncs the staging file once, and in one transaction of
// kioskd.db names the new file live, appends the events mkEvents returns
// (it may be nil), and raises the watermark and the clock floor to
// meta.IssuedAt. The old file is then closed and deleted. It fails with
// ErrStale if meta.IssuedAt is before the watermark, and with
// ErrDuplicateDigest or ErrDuplicateID for a set that breaks the rules;
// on any failure the old set keeps serving. Stats: Upserted is the
// number of credentials, Removed the number of previously live
// credentials (by id) not in the new set.
func (l *FullLoad) Commit(meta DocMeta, mkEvents func(ApplyStats) []*kiosk.Event) (ApplyStats, error) {
	if l.done {
		return ApplyStats{}, ErrLoadDone
	}
	stats, attempted, err := l.commit(meta, mkEvents)
	if err != nil {
		if attempted {
			// The flip's transaction failed in a way that may or may not
			// have reached the disk: leave the file for Open to judge.
			l.close(false)
		} else {
			l.close(true)
		}
		return ApplyStats{}, fmt.Errorf("commit full load: %w", err)
	}
	return stats, nil
}

func (l *FullLoad) commit(meta DocMeta, mkEvents func(ApplyStats) []*kiosk.Event) (stats ApplyStats, attempted bool, err error) {
	s := l.s
	if l.err != nil {
		return stats, false, l.err
	}
	if err := l.checkStale(meta); err != nil {
		return stats, false, err
	}
	if err := l.flushBatch(); err != nil {
		return stats, false, err
	}
	if l.outOfOrder.n > 0 {
		err := l.insertSorted(l.outOfOrder, bCreds, 0.5, func(b *bolt.Bucket, k, v []byte) error {
			if b.Get(k) != nil {
				return fmt.Errorf("%w: %q", ErrDuplicateID, k[kiosk.DigestSize:])
			}
			if isActiveValue(v) && activeWithDigest(b.Cursor(), (*[kiosk.DigestSize]byte)(k)) > 0 {
				return fmt.Errorf("%w: credential %q", ErrDuplicateDigest, k[kiosk.DigestSize:])
			}
			return nil
		})
		if err != nil {
			return stats, false, err
		}
		l.outOfOrder.remove()
	}
	if err := l.insertSorted(l.revoked, bRevoked, 1, nil); err != nil {
		return stats, false, err
	}
	l.revoked.remove()

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	old := s.creds
	removed, err := l.buildIDs(old)
	if err != nil {
		return stats, false, err
	}
	l.ids.remove()
	stats = ApplyStats{Upserted: l.n, Removed: removed}

	err = l.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if err := m.Put(kCursor, []byte(meta.Cursor)); err != nil {
			return err
		}
		if err := m.Put(kIssuedAt, encTime(meta.IssuedAt)); err != nil {
			return err
		}
		return m.Put(kCount, u64(uint64(l.n)))
	})
	if err != nil {
		return stats, false, fmt.Errorf("write %s: %w", l.path, err)
	}
	// Write the file out a chunk at a time, decisions first, so the one
	// sync below finds little left and no decision's flush queues behind
	// the whole file.
	if err := writeback(l.path, writebackChunk, l.s.prio.yield); err != nil {
		return stats, false, err
	}
	if err := l.db.Sync(); err != nil {
		return stats, false, fmt.Errorf("sync %s: %w", l.path, err)
	}
	if err := syncDir(s.dir); err != nil {
		return stats, false, err
	}
	l.db.NoSync, l.db.NoGrowSync = false, false
	// Release the pages bbolt read while writing: the new set starts
	// serving with only what lookups touch resident.
	if err := l.db.View(func(tx *bolt.Tx) error {
		dropPages(l.db, tx.Size())
		return nil
	}); err != nil {
		return stats, false, err
	}

	var appended int
	attempted = false // set when the transaction gets as far as its commit
	err = s.update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if newest := decTime(m.Get(kNewest)); meta.IssuedAt.Before(newest) {
			return fmt.Errorf("%w: issued at %s, newest accepted %s", ErrStale, meta.IssuedAt.Format(timeFmt), newest.Format(timeFmt))
		}
		// Events of deltas on the old file that are still pending.
		n, err := s.flushPendingTx(tx, old.db)
		if err != nil {
			return err
		}
		appended += n
		if err := m.Put(kLive, u64(l.gen)); err != nil {
			return err
		}
		if err := m.Put(kPendingMark, u64(0)); err != nil {
			return err
		}
		if err := raiseTime(m, kNewest, meta.IssuedAt); err != nil {
			return err
		}
		if err := raiseTime(m, kFloor, meta.IssuedAt); err != nil {
			return err
		}
		if mkEvents != nil {
			for _, ev := range mkEvents(stats) {
				if _, _, err := s.appendEvent(tx, ev); err != nil {
					return err
				}
				appended++
			}
		}
		attempted = true
		return nil
	})
	if err != nil {
		return stats, attempted, err
	}
	if appended > 0 {
		s.notify()
	}

	s.credsMu.Lock()
	s.creds = &credsFile{db: l.db, gen: l.gen, path: l.path}
	s.credsMu.Unlock()
	s.count.Store(int64(l.n))
	if err := old.db.Close(); err != nil {
		s.log.Warn("close old credential file", "file", old.path, "err", err)
	}
	if err := removeGently(old.path, writebackChunk*4, s.prio.yield); err != nil {
		s.log.Warn("remove old credential file (Open retries)", "file", old.path, "err", err)
	}
	l.db = nil // now the store's
	l.close(true)
	return stats, true, nil
}

const timeFmt = "2006-01-02T15:04:05.999999999Z07:00"

func (l *FullLoad) checkStale(meta DocMeta) error {
	st, err := l.s.SyncState()
	if err != nil {
		return err
	}
	if meta.IssuedAt.Before(st.Newest) {
		return fmt.Errorf("%w: issued at %s, newest accepted %s", ErrStale, meta.IssuedAt.Format(timeFmt), st.Newest.Format(timeFmt))
	}
	return nil
}

// buildIDs writes the id index from the id sorter, rejecting repeated
// ids, and counts the ids of old not in the new set. The caller holds
// applyMu, so old does not change meanwhile.
func (l *FullLoad) buildIDs(old *credsFile) (removed int, err error) {
	it, err := l.ids.iter()
	if err != nil {
		return 0, err
	}
	defer it.Close()

	otx, err := old.db.Begin(false)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", old.path, err)
	}
	defer otx.Rollback()
	oldCount := int(getU64(otx.Bucket(bMeta).Get(kCount)))
	oc := otx.Bucket(bIDs).Cursor()
	oldKey, _ := oc.First()
	steps := 0
	retained := 0

	var prev []byte
	more := it.Next()
	arena := make([]byte, 0, batchBytes)
	for more {
		l.s.prio.yield()
		err := l.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bIDs)
			b.FillPercent = 1
			arena = arena[:0]
			for ; more && len(arena)+kiosk.DigestSize <= cap(arena); more = it.Next() {
				k := it.Key()
				if prev != nil && bytes.Equal(k, prev) {
					return fmt.Errorf("%w: %q", ErrDuplicateID, k)
				}
				prev = append(prev[:0], k...)
				start := len(arena)
				arena = append(arena, it.Value()...)
				if err := b.Put(k, arena[start:len(arena):len(arena)]); err != nil {
					return err
				}
				// Merge-join with the old index, in the same key order.
				for oldKey != nil && bytes.Compare(oldKey, k) < 0 {
					oldKey, _ = oc.Next()
					if steps++; steps%dropEvery == 0 {
						dropPages(old.db, otx.Size())
					}
				}
				if oldKey != nil && bytes.Equal(oldKey, k) {
					retained++
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	dropPages(old.db, otx.Size())
	return oldCount - retained, nil
}

// Abort drops the staging; the old set keeps serving. It is a no-op on a
// load already committed or aborted.
func (l *FullLoad) Abort() error {
	if l.done {
		return nil
	}
	l.close(true)
	return nil
}

// close ends the load: closes (and if remove, deletes) the staging file
// and removes the staging directory.
func (l *FullLoad) close(remove bool) {
	l.done = true
	s := l.s
	s.loadMu.Lock()
	if s.load == l {
		s.load, s.loadDB = nil, nil
	}
	s.loadMu.Unlock()
	if l.db != nil {
		l.db.Close()
		if remove {
			os.Remove(l.path)
		}
		l.db = nil
	}
	l.outOfOrder.remove()
	l.ids.remove()
	l.revoked.remove()
	os.RemoveAll(l.stageDir)
	l.buf, l.offs = nil, nil
}
