package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// Access runs fn in one durable write transaction of kioskd.db (SPEC §2:
// a use is never given twice, even across a power cut). Lookup and
// Revoked read the live credential file through a read transaction held
// until Access returns; a full load cannot flip the file under it. If fn
// returns an error, nothing it wrote is kept and the IDs and Seqs it
// assigned to appended events are cleared. fn must not call other
// methods of the Store.
func (s *Store) Access(fn func(kiosk.AccessTx) error) error {
	a := accessTx{s: s}
	s.prio.enter()
	defer s.prio.leave()
	err := s.main.Update(func(tx *bolt.Tx) error {
		a.tx = tx
		return fn(&a)
	})
	a.release()
	if err != nil {
		for _, ev := range a.appended {
			ev.ID, ev.Seq = "", 0
		}
		return fmt.Errorf("access: %w", err)
	}
	if len(a.appended) > 0 {
		s.notify()
	}
	return nil
}

// Record appends events durably, in order, in one transaction, assigning
// their IDs and Seqs.
func (s *Store) Record(evs ...*kiosk.Event) error {
	if len(evs) == 0 {
		return nil
	}
	err := s.main.Update(func(tx *bolt.Tx) error {
		for _, ev := range evs {
			if err := s.appendEvent(tx, ev); err != nil {
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
func (s *Store) appendEvent(tx *bolt.Tx, ev *kiosk.Event) error {
	b := tx.Bucket(bEvents)
	b.FillPercent = 1 // keys only ever grow
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	ev.Seq = seq
	ev.ID = s.id + "-" + strconv.FormatUint(seq, 10)
	ev.Time = ev.Time.UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("append event %s: %w", ev.Type, err)
	}
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], seq)
	if err := b.Put(key[:], data); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
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
	n := getU64(b.Get([]byte(id)))
	if err := b.Put([]byte(id), u64(n+1)); err != nil {
		return fmt.Errorf("add spend of %q: %w", id, err)
	}
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
	if err := a.s.appendEvent(a.tx, ev); err != nil {
		return err
	}
	a.appended = append(a.appended, ev)
	return nil
}
