package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// pendingRecord is what a delta leaves in its credential file's pending
// bucket, in the delta's own transaction: the events that report it and
// its issued_at, until both reach kioskd.db (journal, watermark, floor).
type pendingRecord struct {
	IssuedAt time.Time      `json:"issued_at"`
	Events   []*kiosk.Event `json:"events,omitempty"`
}

// ApplyDelta applies a delta document on top of base (SPEC §6.1):
// upsert by credential id (a changed digest drops the old entry), remove
// by id (unknown ids are ignored and not counted), add revoked token
// ids, and set the cursor and issued_at, all in one transaction of the
// live credential file. It fails with ErrBaseMismatch unless base is the
// current cursor, with ErrDuplicateDigest if the result would hold two
// active credentials with one digest, and with ErrDuplicateID if upserts
// lists an id twice; then nothing changes.
//
// The events mkEvents returns (it may be nil) are kept in the same
// transaction and then moved into the journal, raising the watermark and
// the clock floor to meta.IssuedAt; if the process dies in between, Open
// finishes the move, without duplicates. They get their ID and Seq in
// the journal (the caller's structs are not updated).
func (s *Store) ApplyDelta(base string, meta DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mkEvents func(ApplyStats) []*kiosk.Event) (ApplyStats, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	stats, err := s.applyDeltaCreds(base, meta, upserts, removed, revoked, mkEvents)
	if err != nil {
		return ApplyStats{}, fmt.Errorf("apply delta: %w", err)
	}
	if _, err := s.flushPending(); err != nil {
		// The delta is applied and durable, and its events wait in the
		// credential file; the next delta, full load or Open moves them.
		s.log.Error("apply delta: events kept pending", "err", err)
	}
	return stats, nil
}

// applyDeltaCreds is the transaction on the credential file. The caller
// holds applyMu.
func (s *Store) applyDeltaCreds(base string, meta DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mkEvents func(ApplyStats) []*kiosk.Event) (ApplyStats, error) {
	var stats ApplyStats
	for _, c := range upserts {
		if err := checkCred(c); err != nil {
			return stats, err
		}
	}
	for _, cid := range revoked {
		if cid == "" || len(cid) > maxIDLen {
			return stats, fmt.Errorf("revoked token id of length %d", len(cid))
		}
	}
	mark, err := s.pendingMark()
	if err != nil {
		return stats, err
	}
	var count int64
	err = s.creds.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if cur := string(m.Get(kCursor)); cur != base {
			return fmt.Errorf("%w: base %q, current cursor %q", ErrBaseMismatch, base, cur)
		}
		pb := tx.Bucket(bPending)
		if err := deleteUpTo(pb, mark); err != nil {
			return err
		}
		creds, ids, rev := tx.Bucket(bCreds), tx.Bucket(bIDs), tx.Bucket(bRevoked)
		count = int64(getU64(m.Get(kCount)))
		seen := make(map[string]struct{}, len(upserts))
		for _, c := range upserts {
			if _, dup := seen[c.ID]; dup {
				return fmt.Errorf("%w: %q", ErrDuplicateID, c.ID)
			}
			seen[c.ID] = struct{}{}
			old := ids.Get([]byte(c.ID))
			sameDigest := old != nil && bytes.Equal(old, c.Digest[:])
			switch {
			case old == nil:
				count++
			case !sameDigest:
				if err := creds.Delete(credKey(nil, (*[kiosk.DigestSize]byte)(old), c.ID)); err != nil {
					return err
				}
			}
			if err := creds.Put(credKey(nil, &c.Digest, c.ID), appendCred(nil, c)); err != nil {
				return err
			}
			if !sameDigest { // an unchanged index entry costs a page write
				if err := ids.Put([]byte(c.ID), bytes.Clone(c.Digest[:])); err != nil {
					return err
				}
			}
		}
		for _, id := range removed {
			old := ids.Get([]byte(id))
			if old == nil {
				continue
			}
			key := credKey(nil, (*[kiosk.DigestSize]byte)(old), id)
			if err := creds.Delete(key); err != nil {
				return err
			}
			if err := ids.Delete([]byte(id)); err != nil {
				return err
			}
			stats.Removed++
			count--
		}
		for _, cid := range revoked {
			if err := rev.Put([]byte(cid), []byte{1}); err != nil {
				return err
			}
		}
		c := creds.Cursor()
		for _, u := range upserts {
			if u.Status != kiosk.StatusActive {
				continue
			}
			if n := activeWithDigest(c, &u.Digest); n > 1 {
				return fmt.Errorf("%w: credential %q", ErrDuplicateDigest, u.ID)
			}
		}
		stats.Upserted = len(upserts)
		if err := m.Put(kCursor, []byte(meta.Cursor)); err != nil {
			return err
		}
		if err := m.Put(kIssuedAt, encTime(meta.IssuedAt)); err != nil {
			return err
		}
		if err := m.Put(kCount, u64(uint64(count))); err != nil {
			return err
		}
		rec := pendingRecord{IssuedAt: meta.IssuedAt}
		if mkEvents != nil {
			rec.Events = mkEvents(stats)
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		seq, err := pb.NextSequence()
		if err != nil {
			return err
		}
		return pb.Put(u64(seq), data)
	})
	if err != nil {
		return ApplyStats{}, err
	}
	s.count.Store(count)
	return stats, nil
}

// checkCred rejects what cannot be stored.
func checkCred(c *kiosk.Credential) error {
	if c == nil {
		return fmt.Errorf("nil credential")
	}
	if c.ID == "" || len(c.ID) > maxIDLen {
		return fmt.Errorf("credential id of length %d", len(c.ID))
	}
	return nil
}

// activeWithDigest counts the active credentials with this digest.
func activeWithDigest(c *bolt.Cursor, digest *[kiosk.DigestSize]byte) int {
	n := 0
	for k, v := c.Seek(digest[:]); k != nil && bytes.HasPrefix(k, digest[:]); k, v = c.Next() {
		if isActiveValue(v) {
			n++
		}
	}
	return n
}

// deleteUpTo deletes the keys <= mark of a bucket keyed by big-endian
// sequence numbers.
func deleteUpTo(b *bolt.Bucket, mark uint64) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && getU64(k) <= mark; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) pendingMark() (uint64, error) {
	var mark uint64
	err := s.main.View(func(tx *bolt.Tx) error {
		mark = getU64(tx.Bucket(bMeta).Get(kPendingMark))
		return nil
	})
	return mark, err
}

// flushPending moves the pending records of the live credential file into
// kioskd.db. The caller holds applyMu (or is Open).
func (s *Store) flushPending() (int, error) {
	var n int
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		n, err = s.flushPendingTx(tx, s.creds.db)
		return err
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.notify()
	}
	return n, nil
}

// flushPendingTx appends, in tx, the events of the pending records of the
// credential file cdb above the mark, raises the watermark and clock
// floor to their issued_at, and advances the mark. It returns the number
// of events appended.
func (s *Store) flushPendingTx(tx *bolt.Tx, cdb *bolt.DB) (int, error) {
	m := tx.Bucket(bMeta)
	mark := getU64(m.Get(kPendingMark))
	ctx, err := cdb.Begin(false)
	if err != nil {
		return 0, err
	}
	defer ctx.Rollback()
	n := 0
	c := ctx.Bucket(bPending).Cursor()
	for k, v := c.Seek(u64(mark + 1)); k != nil; k, v = c.Next() {
		var rec pendingRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return 0, fmt.Errorf("pending record %d: %w", getU64(k), err)
		}
		for _, ev := range rec.Events {
			if ev == nil {
				continue
			}
			if _, _, err := s.appendEvent(tx, ev); err != nil {
				return 0, err
			}
			n++
		}
		if err := raiseTime(m, kNewest, rec.IssuedAt); err != nil {
			return 0, err
		}
		if err := raiseTime(m, kFloor, rec.IssuedAt); err != nil {
			return 0, err
		}
		mark = getU64(k)
	}
	if err := m.Put(kPendingMark, u64(mark)); err != nil {
		return 0, err
	}
	return n, nil
}
