package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// How decisions are written. Access reads kioskd.db through a read
// transaction plus the overlay — what earlier decisions wrote that is not
// in kioskd.db yet — and makes what it writes durable in the decision log
// (declog.go) with one write and one flush, never taking kioskd.db's
// write lock. Its write set then joins the queue and the overlay, and
// the applier commits the queue to kioskd.db behind the decisions, in
// LSN order, letting decisions in progress go first. Every other writer
// (update) commits the queue in its own transaction first, so kioskd.db
// always holds a prefix of the decisions and their events keep seq
// order. Open replays the log records above kLogLSN.
//
// Locks, in order: wmu (Access and update: one writer of decisions at a
// time), amu (update, drain: one writer of the queue into kioskd.db),
// qmu (the queue, the overlay, nextSeq: held briefly, and by Access
// while fn reads).

// Access runs fn as one decision and makes what it wrote durable before
// returning (SPEC §2: a use is never given twice, even across a power
// cut). Lookup and Revoked read the live credential file through a read
// transaction held until fn returns; a full load cannot flip the file
// under it. If fn returns an error, nothing it wrote is kept and the IDs
// and Seqs it assigned to appended events are cleared. fn must not call
// other methods of the Store.
//
// Its events reach Pending (and the uploader) when the applier has
// committed them, at once unless a decision is in progress.
func (s *Store) Access(fn func(kiosk.AccessTx) error) error {
	s.prio.enter()
	defer s.prio.leave()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	a := accessTx{s: s, local: map[string][]byte{}}
	fail := func(err error) error {
		for _, ev := range a.appended {
			ev.ID, ev.Seq = "", 0
		}
		return fmt.Errorf("access: %w", err)
	}
	if s.dlog == nil {
		return fail(bolt.ErrDatabaseNotOpen)
	}

	s.qmu.Lock()
	rtx, err := s.main.Begin(false)
	if err != nil {
		s.qmu.Unlock()
		return fail(err)
	}
	a.rtx = rtx
	a.seq = max(s.nextSeq, rtx.Bucket(bEvents).Sequence())
	err = fn(&a)
	s.qmu.Unlock()
	a.release()
	rtx.Rollback()
	if err != nil {
		return fail(err)
	}
	if len(a.puts) == 0 {
		return nil // it only read
	}
	ws := &writeSet{seq: a.seq, puts: a.puts, events: len(a.appended)}

	// The log must keep every record not yet in kioskd.db: when the
	// queue fills half of it, commit the queue first.
	s.qmu.Lock()
	full := s.queueBytes+logRecordSize(ws) > logSize/2
	s.qmu.Unlock()
	if full {
		if err := s.drain(); err != nil {
			return fail(err)
		}
	}
	if err := s.dlog.append(ws); err != nil {
		// The usual way, then: the queue and this decision in one
		// durable transaction of kioskd.db before the relay moves.
		if !errors.Is(err, errLogRecordTooLarge) {
			s.log.Error("decision log write failed; committing the decision to kioskd.db instead", "err", err)
		}
		ws.lsn = s.dlog.lsn // no record above it may be replayed over this
		if err := s.commitQueue(ws); err != nil {
			return fail(err)
		}
		return nil
	}
	s.qmu.Lock()
	s.queue = append(s.queue, ws)
	s.queueBytes += logRecordSize(ws)
	for _, p := range ws.puts {
		s.overlay[ovKey(p.bucket, p.key)] = ovEntry{val: p.val, lsn: ws.lsn}
	}
	s.nextSeq = max(s.nextSeq, ws.seq)
	s.qmu.Unlock()
	s.lastDecision.Store(time.Now().UnixNano())
	select {
	case s.applyKick <- struct{}{}:
	default:
	}
	return nil
}

// ovEntry is a value in the overlay and the LSN of the decision that
// wrote it.
type ovEntry struct {
	val []byte
	lsn uint64
}

func ovKey(bucket byte, key []byte) string { return string(rune(bucket)) + string(key) }

func logRecordSize(ws *writeSet) int64 {
	n := int64(logHeaderSize + 8)
	for _, p := range ws.puts {
		n += int64(7 + len(p.key) + len(p.val))
	}
	return alignUp(n)
}

// applyLoop is the applier: it commits the queue to kioskd.db when
// kicked, after the decisions in progress, until stop is closed. A
// failed commit (a full disk) is tried again a second later, and the
// queue waits in the log meanwhile.
func (s *Store) applyLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var retry <-chan time.Time
	for {
		select {
		case <-stop:
			return
		case <-s.applyKick:
		case <-retry:
		}
		retry = nil
		if s.holdApply != nil {
			<-s.holdApply
		}
		if !s.waitQuiet(stop) {
			return
		}
		if err := s.drain(); err != nil {
			s.log.Error("committing decisions to kioskd.db failed; they stay in the decision log and are tried again", "err", err)
			retry = time.After(time.Second)
		}
	}
}

// While decisions come close together the applier lets them pass: it
// commits once no decision has been made for applyQuiet, or applyMaxDelay
// after it was kicked, or when the queue holds a quarter of the log,
// whichever comes first. Events reach the uploader that much later
// (SPEC §6.4 allows 2 s).
const (
	applyQuiet    = 2 * time.Millisecond
	applyMaxDelay = 100 * time.Millisecond
)

// waitQuiet waits as the applier's comment above says, then for the
// decisions in progress; false if stop closed meanwhile.
func (s *Store) waitQuiet(stop <-chan struct{}) bool {
	deadline := time.Now().Add(applyMaxDelay)
	for {
		s.qmu.Lock()
		big := s.queueBytes > logSize/4
		s.qmu.Unlock()
		quietFor := time.Since(time.Unix(0, s.lastDecision.Load()))
		if big || quietFor >= applyQuiet || !time.Now().Before(deadline) {
			break
		}
		t := time.NewTimer(min(applyQuiet-quietFor, time.Until(deadline)))
		select {
		case <-stop:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	s.prio.yield()
	return true
}

// drain commits the queue to kioskd.db.
func (s *Store) drain() error {
	s.amu.Lock()
	defer s.amu.Unlock()
	return s.commitQueue(nil)
}

// commitQueue commits the queue, and extra if not nil, in one durable
// transaction of kioskd.db, then takes them out of the queue and the
// overlay. With extra (Access, which holds wmu) it takes amu itself;
// without, the caller (drain) holds amu.
func (s *Store) commitQueue(extra *writeSet) error {
	var fn func(*bolt.Tx) error
	if extra != nil {
		s.amu.Lock()
		defer s.amu.Unlock()
		fn = extra.apply
	}
	events, err := s.commitWith(fn)
	if err != nil {
		return fmt.Errorf("commit decisions: %w", err)
	}
	if events || extra != nil && extra.events > 0 {
		s.notify()
	}
	return nil
}

// commitWith commits the queue and then fn (if not nil) in one durable
// transaction of kioskd.db, takes the committed decisions out of the
// queue and the overlay, and says whether they had events. The caller
// holds amu. Nothing is written when both are empty.
func (s *Store) commitWith(fn func(*bolt.Tx) error) (events bool, err error) {
	s.qmu.Lock()
	batch := slices.Clone(s.queue)
	s.qmu.Unlock()
	if len(batch) == 0 && fn == nil {
		return false, nil
	}
	err = s.main.Update(func(tx *bolt.Tx) error {
		for _, ws := range batch {
			if err := ws.apply(tx); err != nil {
				return err
			}
		}
		if fn != nil {
			return fn(tx)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	s.dequeue(batch)
	return slices.ContainsFunc(batch, func(ws *writeSet) bool { return ws.events > 0 }), nil
}

// dequeue takes the committed batch (the head of the queue) out of the
// queue, and out of the overlay what no later decision has written over.
func (s *Store) dequeue(batch []*writeSet) {
	if len(batch) == 0 {
		return
	}
	last := batch[len(batch)-1].lsn
	s.qmu.Lock()
	defer s.qmu.Unlock()
	for _, ws := range batch {
		s.queueBytes -= logRecordSize(ws)
	}
	s.queue = slices.Delete(s.queue, 0, len(batch))
	for _, ws := range batch {
		for _, p := range ws.puts {
			k := ovKey(p.bucket, p.key)
			if e, ok := s.overlay[k]; ok && e.lsn <= last {
				delete(s.overlay, k)
			}
		}
	}
}

// settle commits the queue, so that a reader of kioskd.db sees every
// decision that Access has returned (read your writes). An error is left
// to the applier: the reader then sees kioskd.db as it is.
func (s *Store) settle() {
	s.qmu.Lock()
	n := len(s.queue)
	s.qmu.Unlock()
	if n > 0 {
		if err := s.drain(); err != nil {
			s.log.Warn("reading before decisions are committed", "err", err)
		}
	}
}

// update is bolt.DB.Update of kioskd.db for every writer but Access:
// the queued decisions commit first in the same transaction.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.amu.Lock()
	defer s.amu.Unlock()
	events, err := s.commitWith(fn)
	if err != nil {
		return err
	}
	s.qmu.Lock()
	s.nextSeq = 0 // kioskd.db's sequence is the truth again
	s.qmu.Unlock()
	if events {
		s.notify()
	}
	return nil
}

// accessTx is kiosk.AccessTx of one decision: reads go to what it wrote
// itself, then the overlay, then a read transaction of kioskd.db; writes
// are collected as the decision's write set.
type accessTx struct {
	s        *Store
	rtx      *bolt.Tx          // kioskd.db
	ctx      *bolt.Tx          // the live credential file, begun at the first lookup
	held     bool              // credsMu held
	local    map[string][]byte // what it wrote, by ovKey
	puts     []logPut
	seq      uint64 // the events sequence after its appends
	appended []*kiosk.Event
}

var _ kiosk.AccessTx = (*accessTx)(nil)

// get reads key of a decision bucket; the caller (Access) holds qmu.
func (a *accessTx) get(bucket byte, key []byte) []byte {
	k := ovKey(bucket, key)
	if v, ok := a.local[k]; ok {
		return v
	}
	if e, ok := a.s.overlay[k]; ok {
		return e.val
	}
	return a.rtx.Bucket(logBuckets[bucket]).Get(key)
}

func (a *accessTx) put(bucket byte, key, val []byte) {
	a.local[ovKey(bucket, key)] = val
	a.puts = append(a.puts, logPut{bucket: bucket, key: key, val: val})
}

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
	v := a.get(logBucketLockouts, []byte(input))
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
	a.put(logBucketLockouts, []byte(input), data)
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
	return int(getU64(a.get(logBucketSpends, []byte(id)))), nil
}

func (a *accessTx) AddSpend(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("add spend: bad credential id length %d", len(id))
	}
	n := getU64(a.get(logBucketSpends, []byte(id)))
	a.put(logBucketSpends, []byte(id), u64(n+1))
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
	seq := a.seq + 1
	ev.Seq = seq
	ev.ID = a.s.id + "-" + strconv.FormatUint(seq, 10)
	ev.Time = ev.Time.UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		ev.ID, ev.Seq = "", 0
		return fmt.Errorf("append event %s: %w", ev.Type, err)
	}
	a.seq = seq
	a.put(logBucketEvents, u64(seq), data)
	a.appended = append(a.appended, ev)
	return nil
}
