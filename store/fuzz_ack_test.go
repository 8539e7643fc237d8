package store_test

import (
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store/storetest"
)

// FuzzAck feeds the portal's "accepted" list (SPEC §6.4), which the kiosk
// does not control, to Ack on a real store: an event leaves the journal
// exactly when the list names its id, whatever else the list holds
// (garbage, ids of another store, other spellings of a seq number), and
// seq numbers are never reused.
func FuzzAck(f *testing.F) {
	st := storetest.Open(f)
	f.Add("", uint8(0b101))
	f.Add("x-1\n-1\n0\n\n", uint8(0))
	f.Add("1\n18446744073709551615\n2", uint8(0b10))
	f.Add("0123456789abcdef-1", uint8(0xff))
	f.Add("02", uint8(0)) // a non-canonical seq ("<id>-02") must not ack event 2
	f.Fuzz(func(t *testing.T, raw string, pick uint8) {
		at := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
		var evs []*kiosk.Event
		for _, typ := range []string{kiosk.EvDoorOpened, kiosk.EvDoorClosed, kiosk.EvInputConnected} {
			evs = append(evs, &kiosk.Event{Time: at, Type: typ})
		}
		if err := st.Record(evs...); err != nil {
			t.Fatal(err)
		}
		before, err := st.Pending(0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		lastSeq, err := st.LastSeq()
		if err != nil {
			t.Fatal(err)
		}
		// The list: the fuzzed lines as they are, the same lines as seq
		// numbers of this store, and the ids of some pending events.
		var ids []string
		for _, line := range strings.Split(raw, "\n") {
			ids = append(ids, line, st.ID()+"-"+line)
		}
		for i, ev := range before {
			if pick&(1<<(i%8)) != 0 {
				ids = append(ids, ev.ID)
			}
		}
		named := map[string]bool{}
		for _, id := range ids {
			named[id] = true
		}
		if err := st.Ack(ids); err != nil {
			t.Fatal(err)
		}
		after, err := st.Pending(0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		kept := map[uint64]bool{}
		for _, ev := range after {
			kept[ev.Seq] = true
			if named[ev.ID] {
				t.Fatalf("event %s was accepted but is still pending", ev.ID)
			}
		}
		for _, ev := range before {
			if !named[ev.ID] && !kept[ev.Seq] {
				t.Fatalf("event %s (seq %d) left the journal; the list did not name it: %q", ev.ID, ev.Seq, ids)
			}
		}
		if err := st.Record(&kiosk.Event{Time: at, Type: kiosk.EvDoorClosed}); err != nil {
			t.Fatal(err)
		}
		if seq, err := st.LastSeq(); err != nil || seq != lastSeq+1 {
			t.Fatalf("seq after an ack: %d (%v), want %d", seq, err, lastSeq+1)
		}
	})
}
