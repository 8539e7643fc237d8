package store

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"kioskd/kiosk"
)

func seedCred() *kiosk.Credential {
	return &kiosk.Credential{
		ID: "c-17", Kind: kiosk.KindPIN, Rev: 12,
		Holder:     kiosk.Holder{ID: "h-4", Role: kiosk.RoleCourier, Name: "UPS"},
		Status:     kiosk.StatusActive,
		Uses:       2,
		Used:       map[string]int{"spr-0001": 1, "spr-0002": 0},
		ValidUntil: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Doors:      []string{"main"},
		Schedule:   []kiosk.Window{{Days: []time.Weekday{1, 2, 3, 4, 5}, From: 420, To: 1200}},
	}
}

// FuzzDecodeCred feeds arbitrary records to the decoder: it must never
// panic, and whatever it accepts must encode back to the same bytes.
func FuzzDecodeCred(f *testing.F) {
	c := seedCred()
	f.Add(credKey(nil, &c.Digest, c.ID), appendCred(nil, c))
	f.Add(credKey(nil, &c.Digest, "x"), appendCred(nil, &kiosk.Credential{ID: "x"}))
	f.Add([]byte("short"), []byte{1})
	f.Add(make([]byte, 33), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		c, err := decodeCred(key, val)
		if err != nil {
			return
		}
		if got := appendCred(nil, c); !bytes.Equal(got, val) {
			// Accepted input has one encoding, except for the order of
			// Used entries, which encode sorted.
			c2, err := decodeCred(key, got)
			if err != nil || !reflect.DeepEqual(c, c2) {
				t.Fatalf("re-encoding differs: %x → %+v → %x (%v)", val, c, got, err)
			}
		}
	})
}

// FuzzCredRoundTrip builds credentials from fuzzed fields and checks they
// come back equal.
func FuzzCredRoundTrip(f *testing.F) {
	f.Add("c-1", "pin", int64(3), "h", "resident", "Ann", "active", 1, "dev", 2, int64(1700000000), int64(5), "main", uint8(0x3f), 420, 1200)
	f.Add("", "", int64(-1), "", "", "", "", 0, "", 0, int64(0), int64(0), "", uint8(0), 0, 0)
	f.Fuzz(func(t *testing.T, id, kind string, rev int64, hid, role, name, status string, uses int, dev string, used int, sec, nsec int64, door string, days uint8, from, to int) {
		if id == "" {
			id = "x"
		}
		c := &kiosk.Credential{
			ID: id, Kind: kiosk.Kind(kind), Rev: rev,
			Holder: kiosk.Holder{ID: hid, Role: kiosk.Role(role), Name: name},
			Status: kiosk.Status(status), Uses: uses,
		}
		c.Digest[0] = days
		if used != 0 {
			c.Used = map[string]int{dev: used}
		}
		if sec != 0 {
			nsec = (nsec%1e9 + 1e9) % 1e9
			c.ValidFrom = time.Unix(sec%(1<<40), nsec).UTC()
		}
		if door != "" {
			c.Doors = []string{door, door}
		}
		if days != 0 {
			var ds []time.Weekday
			for d := range 7 {
				if days&(1<<d) != 0 {
					ds = append(ds, time.Weekday(d))
				}
			}
			c.Schedule = []kiosk.Window{{Days: ds, From: from, To: to}}
		}
		got, err := decodeCred(credKey(nil, &c.Digest, c.ID), appendCred(nil, c))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, c)
		}
	})
}

func TestDecodeCredRejects(t *testing.T) {
	c := seedCred()
	key := credKey(nil, &c.Digest, c.ID)
	good := appendCred(nil, c)
	tests := []struct {
		name     string
		key, val []byte
	}{
		{"short key", key[:10], good},
		{"empty value", key, nil},
		{"wrong format", key, append([]byte{9}, good[1:]...)},
		{"truncated", key, good[:len(good)-1]},
		{"trailing bytes", key, append(bytes.Clone(good), 0)},
		{"flag disagrees", key, append([]byte{credFormat, 0}, good[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeCred(tt.key, tt.val); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func FuzzParseEventID(f *testing.F) {
	f.Add("0123456789abcdef-1")
	f.Add("a-b-18446744073709551615")
	f.Add("-5")
	f.Add("x-0")
	f.Fuzz(func(t *testing.T, id string) {
		sid, seq, ok := parseEventID(id)
		if !ok {
			return
		}
		if seq == 0 || sid == "" {
			t.Fatalf("accepted %q as %q %d", id, sid, seq)
		}
	})
}

func TestParseEventID(t *testing.T) {
	tests := []struct {
		id  string
		sid string
		seq uint64
		ok  bool
	}{
		{"0123456789abcdef-42", "0123456789abcdef", 42, true},
		{"0123456789abcdef-0", "", 0, false},
		{"0123456789abcdef-", "", 0, false},
		{"-1", "", 0, false},
		{"nodash", "", 0, false},
		{"abc-1x", "", 0, false},
	}
	for _, tt := range tests {
		sid, seq, ok := parseEventID(tt.id)
		if sid != tt.sid || seq != tt.seq || ok != tt.ok {
			t.Errorf("parseEventID(%q) = %q %d %v, want %q %d %v", tt.id, sid, seq, ok, tt.sid, tt.seq, tt.ok)
		}
	}
}

func TestSorter(t *testing.T) {
	dir := t.TempDir()
	for _, limit := range []int{1 << 20, 64} { // in memory; many runs
		s := newSorter(dir, "t", limit)
		var want []string
		for i := range 1000 {
			k := []byte{byte(i * 7919 % 256), byte(i % 13)}
			want = append(want, string(k))
			if err := s.add(k, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		it, err := s.iter()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for it.Next() {
			got = append(got, string(it.Key()))
		}
		it.Close()
		if it.Err() != nil || len(got) != len(want) {
			t.Fatalf("limit %d: %d records, err %v", limit, len(got), it.Err())
		}
		for i := 1; i < len(got); i++ {
			if got[i-1] > got[i] {
				t.Fatalf("limit %d: out of order at %d", limit, i)
			}
		}
		s.remove()
	}
}
