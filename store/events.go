package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

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
	var out []kiosk.Event
	err := s.main.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bEvents).Cursor()
		for k, v := c.Seek(u64(afterSeq + 1)); k != nil && len(out) < max; k, v = c.Next() {
			var ev kiosk.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event seq %d: %w", binary.BigEndian.Uint64(k), err)
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

// Ack deletes the events the portal accepted. Ids of another store (an
// older, wiped one) and malformed ids are ignored: they name nothing
// here. Seqs are never reused after deletion.
func (s *Store) Ack(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ignored := 0
	err := s.main.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEvents)
		for _, id := range ids {
			sid, seq, ok := parseEventID(id)
			if !ok || sid != s.id {
				ignored++
				continue
			}
			if err := b.Delete(u64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack events: %w", err)
	}
	if ignored > 0 {
		s.log.Warn("ack: ignored event ids not of this store", "count", ignored)
	}
	return nil
}

// Backlog returns the number of events not yet accepted by the portal.
func (s *Store) Backlog() (int, error) {
	var n int
	err := s.main.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bEvents).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("backlog: %w", err)
	}
	return n, nil
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
func (s *Store) LastSeq() (uint64, error) {
	var n uint64
	err := s.main.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bEvents).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("last seq: %w", err)
	}
	return n, nil
}
