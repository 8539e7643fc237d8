package kiosk_test

import (
	"testing"
	"time"

	"kioskd/kiosk"
)

func TestEntry(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	type key struct {
		k     rune
		after time.Duration // since the previous key
		want  string        // submitted entry; "" for none
		len   int           // Len after the key
	}
	tests := []struct {
		name      string
		pinLength int
		timeout   time.Duration
		keys      []key
	}{
		{name: "six digits submit at once", keys: []key{
			{'1', 0, "", 1}, {'2', 0, "", 2}, {'3', 0, "", 3}, {'4', 0, "", 4}, {'5', 0, "", 5}, {'6', 0, "123456", 0},
			{'7', 0, "", 1}, // a new entry starts
		}},
		{name: "hash submits a short entry", keys: []key{
			{'4', 0, "", 1}, {'2', 0, "", 2}, {'#', 0, "42", 0},
		}},
		{name: "hash on empty entry does nothing", keys: []key{
			{'#', 0, "", 0}, {'#', 0, "", 0}, {'9', 0, "", 1}, {'#', 0, "9", 0}, {'#', 0, "", 0},
		}},
		{name: "star clears", keys: []key{
			{'1', 0, "", 1}, {'2', 0, "", 2}, {'*', 0, "", 0}, {'#', 0, "", 0},
			{'3', 0, "", 1}, {'*', 0, "", 0}, {'*', 0, "", 0},
			{'1', 0, "", 1}, {'2', 0, "", 2}, {'3', 0, "", 3}, {'4', 0, "", 4}, {'5', 0, "", 5}, {'6', 0, "123456", 0},
		}},
		{name: "letters and other keys ignored", keys: []key{
			{'1', 0, "", 1}, {'A', 0, "", 1}, {'B', 0, "", 1}, {'C', 0, "", 1}, {'D', 0, "", 1},
			{'x', 0, "", 1}, {'\n', 0, "", 1}, {'٣', 0, "", 1}, {0, 0, "", 1}, {'#', 0, "1", 0},
		}},
		{name: "timeout clears before the next key", keys: []key{
			{'1', 0, "", 1}, {'2', 9 * time.Second, "", 2},
			{'3', 10 * time.Second, "", 1}, // 10 s since the last key: the 1 2 are gone
			{'#', 0, "3", 0},
		}},
		{name: "hash after the timeout submits nothing", keys: []key{
			{'1', 0, "", 1}, {'#', 10 * time.Second, "", 0},
		}},
		{name: "ignored keys do not extend the timeout", keys: []key{
			{'1', 0, "", 1}, {'A', 6 * time.Second, "", 1}, {'2', 4 * time.Second, "", 1}, {'#', 0, "2", 0},
		}},
		{name: "pin length 4 and timeout 2 s", pinLength: 4, timeout: 2 * time.Second, keys: []key{
			{'1', 0, "", 1}, {'2', 1999 * time.Millisecond, "", 2}, {'3', 2 * time.Second, "", 1},
			{'4', 0, "", 2}, {'5', 0, "", 3}, {'6', 0, "3456", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := kiosk.NewEntry(tt.pinLength, tt.timeout)
			now := t0
			for i, k := range tt.keys {
				now = now.Add(k.after)
				got := e.Key(k.k, now)
				if k.want == "" && got != nil {
					t.Fatalf("key %d (%q): submitted %d digits, want nothing", i, k.k, len(got))
				}
				if k.want != "" && string(got) != k.want {
					t.Fatalf("key %d (%q): submitted %q, want %q", i, k.k, string(got), k.want)
				}
				if e.Len() != k.len {
					t.Fatalf("key %d (%q): Len = %d, want %d", i, k.k, e.Len(), k.len)
				}
			}
		})
	}
}

func TestEntryDeadlineAndExpire(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	e := kiosk.NewEntry(0, 0) // defaults: 6 digits, 10 s
	if _, ok := e.Deadline(); ok {
		t.Fatal("empty entry has a deadline")
	}
	if e.Expire(t0.Add(time.Hour)) {
		t.Fatal("Expire cleared an empty entry")
	}
	e.Key('1', t0)
	e.Key('2', t0.Add(3*time.Second))
	d, ok := e.Deadline()
	if !ok || !d.Equal(t0.Add(13*time.Second)) {
		t.Fatalf("Deadline = %v, %v; want %v (10 s after the last key)", d, ok, t0.Add(13*time.Second))
	}
	if e.Expire(d.Add(-time.Nanosecond)) || e.Len() != 2 {
		t.Fatal("Expire before the deadline cleared the entry")
	}
	if !e.Expire(d) || e.Len() != 0 {
		t.Fatal("Expire at the deadline did not clear the entry")
	}
	if _, ok := e.Deadline(); ok {
		t.Fatal("cleared entry still has a deadline")
	}
	// Five digits and then the sixth: the default length is 6.
	for i, k := range "98765" {
		if s := e.Key(k, d.Add(time.Duration(i)*time.Second)); s != nil {
			t.Fatalf("submitted after %d digits", i+1)
		}
	}
	if s := e.Key('4', d.Add(5*time.Second)); string(s) != "987654" {
		t.Fatalf("sixth digit submitted %q", string(s))
	}
}

func TestEntrySubmitIsACopy(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	e := kiosk.NewEntry(4, time.Second)
	var first kiosk.Secret
	for _, k := range "1234" {
		if s := e.Key(k, t0); s != nil {
			first = s
		}
	}
	if string(first) != "1234" {
		t.Fatalf("first = %q", string(first))
	}
	var second kiosk.Secret
	for _, k := range "5678" {
		if s := e.Key(k, t0); s != nil {
			second = s
		}
	}
	if string(first) != "1234" || string(second) != "5678" {
		t.Fatalf("later entry changed an earlier result: %q %q", string(first), string(second))
	}
	// The caller may zero its copy without touching the entry.
	clear(first)
	e.Key('9', t0)
	if s := e.Key('#', t0); string(s) != "9" {
		t.Fatalf("after zeroing a result: %q", string(s))
	}
}

func TestEntryMasksSubmission(t *testing.T) {
	e := kiosk.NewEntry(6, 0)
	var s kiosk.Secret
	for _, k := range "123456" {
		s = e.Key(k, time.Unix(0, 0))
	}
	if got := s.String(); got != "[secret, 6 bytes]" {
		t.Fatalf("String() = %q", got)
	}
}
