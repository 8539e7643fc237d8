package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

// Pending returns up to max journal events with a seq above afterSeq, in
// seq order: the events not yet accepted by the portal (SPEC §6.4).
// Events are stored as JSON, so numbers in Detail come back as float64.
func (s *Store) Pending(afterSeq uint64, max int) ([]kiosk.Event, error) {
	if max <= 0 {
		return nil, nil
	}
	s.settle()
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	var out []kiosk.Event
	err := s.main.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bEvents).Cursor()
		for k, v := c.Seek(u64(afterSeq + 1)); k != nil && len(out) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if _, gone := s.acked[seq]; gone {
				continue
			}
			var ev kiosk.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event seq %d: %w", seq, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending events: %w", err)
	}
	return out, nil
}

// parseEventID splits "<storeid>-<seq>".
func parseEventID(id string) (storeID string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != id[i+1:] {
		return "", 0, false // "x-02" and "x-+2" name no event: ids are canonical
	}
	return id[:i], seq, true
}

// When accepted events are deleted from the journal: at once when
// ackFlushEvents of them wait (an upload batch, as when a backlog
// drains), else with the first Ack at least ackFlushAge after the oldest
// waiting one, and at Close.
const (
	ackFlushEvents = 500
	ackFlushAge    = time.Second
)

// Ack takes the events the portal accepted out of the journal. Ids of
// another store (an older, wiped one), malformed ids and ids of no
// pending event are ignored: they name nothing here. Seqs are never
// reused after deletion.
//
// The events leave Pending and Backlog at once; their deletion from the
// file is batched (see ackFlushEvents) and waits for decisions in
// progress, so that uploading what a grant recorded does not put two
// more disk flushes in the way of the next grant. A crash may lose
// deletions not yet committed: those events are then sent again, which
// the portal's de-duplication by id makes harmless (delivery is at least
// once, SPEC §6.4).
func (s *Store) Ack(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	seqs := make([]uint64, 0, len(ids))
	ignored := 0
	for _, id := range ids {
		sid, seq, ok := parseEventID(id)
		if !ok || sid != s.id {
			ignored++
			continue
		}
		seqs = append(seqs, seq)
	}
	if ignored > 0 {
		s.log.Warn("ack: ignored event ids not of this store", "count", ignored)
	}
	s.ackMu.Lock()
	err := s.main.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEvents)
		for _, seq := range seqs {
			if b.Get(u64(seq)) == nil {
				continue
			}
			if s.acked == nil {
				s.acked = map[uint64]struct{}{}
			}
			if len(s.acked) == 0 {
				s.ackSince = time.Now()
			}
			s.acked[seq] = struct{}{}
		}
		return nil
	})
	due := len(s.acked) >= ackFlushEvents || (len(s.acked) > 0 && time.Since(s.ackSince) >= ackFlushAge)
	s.ackMu.Unlock()
	if err != nil {
		return fmt.Errorf("ack events: %w", err)
	}
	if due {
		return s.flushAcks(true)
	}
	return nil
}

// flushAcks deletes the accepted events durably; with yield it first
// lets decisions in progress finish. The events stay out of Pending
// whatever happens; after an error their deletion is tried again with
// the next flush.
func (s *Store) flushAcks(yield bool) error {
	s.ackMu.Lock()
	seqs := make([]uint64, 0, len(s.acked))
	for seq := range s.acked {
		seqs = append(seqs, seq)
	}
	s.ackMu.Unlock()
	if len(seqs) == 0 {
		return nil
	}
	slices.Sort(seqs)
	if yield {
		s.prio.yield()
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEvents)
		for _, seq := range seqs {
			if err := b.Delete(u64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack events: %w", err)
	}
	s.ackMu.Lock()
	for _, seq := range seqs {
		delete(s.acked, seq)
	}
	if len(s.acked) > 0 {
		s.ackSince = time.Now()
	}
	s.ackMu.Unlock()
	return nil
}

// Backlog returns the number of events not yet accepted by the portal.
func (s *Store) Backlog() (int, error) {
	s.settle()
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	var n int
	err := s.main.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bEvents).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("backlog: %w", err)
	}
	return n - len(s.acked), nil
}

// Appended returns a channel that receives after each commit that
// appended events. It has a buffer of one and notifications coalesce:
// after a receive, read Pending until it is empty.
//
// It belongs to one reader, the uploader: two readers would steal each
// other's wake-ups. Everyone else uses Subscribe.
func (s *Store) Appended() <-chan struct{} { return s.appended }

// Subscribe returns a channel of its own that, like Appended, receives
// (coalescing, buffer of one) after each commit that appended events, for
// readers besides the uploader: a live event feed, tests. cancel ends the
// subscription.
func (s *Store) Subscribe() (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	s.subMu.Lock()
	if s.subs == nil {
		s.subs = make(map[chan struct{}]struct{})
	}
	s.subs[c] = struct{}{}
	s.subMu.Unlock()
	return c, func() {
		s.subMu.Lock()
		delete(s.subs, c)
		s.subMu.Unlock()
	}
}

// LastSeq returns the seq of the last event ever appended (0 if none),
// whether or not it has been acked since.
//
// Decisions not yet committed to kioskd.db (see Access) count: their
// events are durable in the decision log and have their seqs.
func (s *Store) LastSeq() (uint64, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	var n uint64
	err := s.main.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bEvents).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("last seq: %w", err)
	}
	return max(n, s.nextSeq), nil
}
