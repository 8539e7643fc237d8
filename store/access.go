package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// Access runs fn in one write transaction of kioskd.db and makes what it
// wrote durable before returning (SPEC §2: a use is never given twice,
// even across a power cut). Lookup and Revoked read the live credential
// file through a read transaction held until fn returns; a full load
// cannot flip the file under it. If fn returns an error, nothing it
// wrote is kept and the IDs and Seqs it assigned to appended events are
// cleared. fn must not call other methods of the Store.
//
// Durable means in the decision log (declog.go): one write and one
// flush. The transaction then commits to kioskd.db behind the caller,
// holding the store's write lock until it has, so the next writer sees
// it; the events it appended reach Pending then. If the decision log
// cannot take the write set, or a commit behind an earlier decision
// failed, the transaction commits the usual way before Access returns.
func (s *Store) Access(fn func(kiosk.AccessTx) error) error {
	s.prio.enter()
	defer s.prio.leave()
	s.wmu.Lock()
	handedOff := false
	defer func() {
		if !handedOff {
			s.wmu.Unlock()
		}
	}()
	a := accessTx{s: s}
	fail := func(err error) error {
		for _, ev := range a.appended {
			ev.ID, ev.Seq = "", 0
		}
		return fmt.Errorf("access: %w", err)
	}
	tx, err := s.main.Begin(true)
	if err != nil {
		return fail(err)
	}
	a.tx = tx
	err = s.replayUnapplied(tx)
	if err == nil {
		err = fn(&a)
	}
	a.release()
	if err != nil {
		tx.Rollback()
		return fail(err)
	}

	if s.dlog != nil && s.unapplied == nil {
		ws := &writeSet{seq: a.seq, puts: a.puts, events: len(a.appended)}
		err := s.dlog.append(ws)
		if err == nil {
			if err := tx.Bucket(bMeta).Put(kLogLSN, u64(ws.lsn)); err != nil {
				// Not written to kioskd.db yet: the logged record
				// stands, and the next writer replays it.
				tx.Rollback()
				s.unapplied = ws
				return nil
			}
			handedOff = true
			go s.commitBehind(tx, ws)
			return nil
		}
		if !errors.Is(err, errLogRecordTooLarge) {
			s.log.Error("decision log write failed; committing the decision to kioskd.db instead", "err", err)
		}
	}
	// The usual way: two flushes, before the caller moves a relay.
	if s.dlog != nil {
		if err := tx.Bucket(bMeta).Put(kLogLSN, u64(s.dlog.lsn)); err != nil {
			tx.Rollback()
			return fail(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	s.unapplied = nil
	if len(a.appended) > 0 {
		s.notify()
	}
	return nil
}

// commitBehind commits a decision's transaction after its write set is
// durable in the decision log, then releases the write lock that Access
// took. If the commit fails, the write set is kept to be replayed by the
// next writer, which commits it with its own transaction or fails (and
// denies) trying; the record in the decision log still stands for a
// restart.
func (s *Store) commitBehind(tx *bolt.Tx, ws *writeSet) {
	defer s.wmu.Unlock()
	if s.holdCommit != nil {
		<-s.holdCommit
	}
	if err := tx.Commit(); err != nil {
		s.log.Error("decision commit to kioskd.db failed; the next write replays it", "lsn", ws.lsn, "err", err)
		s.unapplied = ws
		return
	}
	if ws.events > 0 {
		s.notify()
	}
}

// settle waits until a decision's commit behind it, if one is under way,
// has finished, so that a reader of kioskd.db sees every decision that
// Access has returned (read your writes).
func (s *Store) settle() {
	s.wmu.Lock()
	s.wmu.Unlock() //nolint:staticcheck // an empty critical section: a barrier
}

// replayUnapplied writes into tx the write set of a decision whose
// commit behind failed; the caller holds wmu and clears s.unapplied once
// tx has committed.
func (s *Store) replayUnapplied(tx *bolt.Tx) error {
	if s.unapplied == nil {
		return nil
	}
	return s.unapplied.apply(tx)
}

// update is bolt.DB.Update of kioskd.db under the store's write lock,
// with the write set of a failed decision commit (if any) replayed first
// in the same transaction. Every write to kioskd.db but Access goes
// through it.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.main.Update(func(tx *bolt.Tx) error {
		if err := s.replayUnapplied(tx); err != nil {
			return err
		}
		return fn(tx)
	})
	if err == nil {
		s.unapplied = nil
	}
	return err
}

// Record appends events durably, in order, in one transaction, assigning
// their IDs and Seqs.
func (s *Store) Record(evs ...*kiosk.Event) error {
	if len(evs) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		for _, ev := range evs {
			if _, _, err := s.appendEvent(tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, ev := range evs {
			ev.ID, ev.Seq = "", 0
		}
		return fmt.Errorf("record events: %w", err)
	}
	s.notify()
	return nil
}

// notify wakes the uploader and every subscriber without ever blocking.
func (s *Store) notify() {
	select {
	case s.appended <- struct{}{}:
	default:
	}
	s.subMu.Lock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.subMu.Unlock()
}

// appendEvent gives ev the next seq and its id and stores it. The seq
// comes from the bucket's sequence in the same transaction, so a rolled
// back transaction gives it back and no gap is left.
func (s *Store) appendEvent(tx *bolt.Tx, ev *kiosk.Event) (key, data []byte, err error) {
	b := tx.Bucket(bEvents)
	b.FillPercent = 1 // keys only ever grow
	seq, err := b.NextSequence()
	if err != nil {
		return nil, nil, fmt.Errorf("append event: %w", err)
	}
	ev.Seq = seq
	ev.ID = s.id + "-" + strconv.FormatUint(seq, 10)
	ev.Time = ev.Time.UTC()
	data, err = json.Marshal(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("append event %s: %w", ev.Type, err)
	}
	key = u64(seq)
	if err := b.Put(key, data); err != nil {
		return nil, nil, fmt.Errorf("append event: %w", err)
	}
	return key, data, nil
}

// accessTx is kiosk.AccessTx on one write transaction of kioskd.db and a
// read transaction of the live credential file, begun at the first
// lookup.
type accessTx struct {
	s        *Store
	tx       *bolt.Tx
	ctx      *bolt.Tx
	held     bool
	appended []*kiosk.Event
	puts     []logPut // what it wrote, for the decision log
	seq      uint64   // the events sequence after its appends
}

var _ kiosk.AccessTx = (*accessTx)(nil)

func (a *accessTx) credsTx() (*bolt.Tx, error) {
	if a.ctx != nil {
		return a.ctx, nil
	}
	if !a.held {
		a.s.credsMu.RLock()
		a.held = true
	}
	tx, err := a.s.creds.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	a.ctx = tx
	return tx, nil
}

func (a *accessTx) release() {
	if a.ctx != nil {
		a.ctx.Rollback()
		a.ctx = nil
	}
	if a.held {
		a.s.credsMu.RUnlock()
		a.held = false
	}
}

func (a *accessTx) Lockout(input string) (kiosk.LockoutState, error) {
	var st kiosk.LockoutState
	v := a.tx.Bucket(bLockouts).Get([]byte(input))
	if v == nil {
		return st, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("lockout of input %q: %w", input, err)
	}
	return st, nil
}

func (a *accessTx) PutLockout(input string, st kiosk.LockoutState) error {
	if input == "" || len(input) > maxIDLen {
		return fmt.Errorf("put lockout: bad input name length %d", len(input))
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("put lockout of input %q: %w", input, err)
	}
	if err := a.tx.Bucket(bLockouts).Put([]byte(input), data); err != nil {
		return fmt.Errorf("put lockout of input %q: %w", input, err)
	}
	a.puts = append(a.puts, logPut{bucket: logBucketLockouts, key: []byte(input), val: data})
	return nil
}

func (a *accessTx) Lookup(digest [kiosk.DigestSize]byte) (*kiosk.Credential, error) {
	tx, err := a.credsTx()
	if err != nil {
		return nil, err
	}
	return lookup(tx, &digest)
}

// lookup finds the credential with this digest: the active one if there
// is one, else the first deactivated one, else nil.
func lookup(tx *bolt.Tx, digest *[kiosk.DigestSize]byte) (*kiosk.Credential, error) {
	c := tx.Bucket(bCreds).Cursor()
	var fk, fv []byte
	for k, v := c.Seek(digest[:]); k != nil && bytes.HasPrefix(k, digest[:]); k, v = c.Next() {
		if isActiveValue(v) {
			fk, fv = k, v
			break
		}
		if fk == nil {
			fk, fv = k, v
		}
	}
	if fk == nil {
		return nil, nil
	}
	cr, err := decodeCred(fk, fv)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	return cr, nil
}

func (a *accessTx) LocalSpent(id string) (int, error) {
	return int(getU64(a.tx.Bucket(bSpends).Get([]byte(id)))), nil
}

func (a *accessTx) AddSpend(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("add spend: bad credential id length %d", len(id))
	}
	b := a.tx.Bucket(bSpends)
	n := u64(getU64(b.Get([]byte(id))) + 1)
	if err := b.Put([]byte(id), n); err != nil {
		return fmt.Errorf("add spend of %q: %w", id, err)
	}
	a.puts = append(a.puts, logPut{bucket: logBucketSpends, key: []byte(id), val: n})
	return nil
}

func (a *accessTx) Revoked(cid string) (bool, error) {
	tx, err := a.credsTx()
	if err != nil {
		return false, err
	}
	return tx.Bucket(bRevoked).Get([]byte(cid)) != nil, nil
}

func (a *accessTx) Append(ev *kiosk.Event) error {
	key, data, err := a.s.appendEvent(a.tx, ev)
	if err != nil {
		return err
	}
	a.appended = append(a.appended, ev)
	a.puts = append(a.puts, logPut{bucket: logBucketEvents, key: key, val: data})
	a.seq = ev.Seq
	return nil
}
