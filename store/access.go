package store

import (
	"encoding/json"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
)

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
