package kiosk_test

import (
	"testing"
	"time"

	"kioskd/kiosk"
)

// entryModel is SPEC §3's keypad entry written as plainly as possible, to
// check Entry against: digits accumulate, '#' submits a non-empty entry,
// '*' clears, pin_length digits submit at once, a key after the entry
// timeout (since the last digit) starts afresh, anything else is ignored.
type entryModel struct {
	pinLength int
	timeout   time.Duration
	buf       string
	last      time.Time
}

func (m *entryModel) key(k rune, now time.Time) string {
	if m.buf != "" && !now.Before(m.last.Add(m.timeout)) {
		m.buf = ""
	}
	switch {
	case k >= '0' && k <= '9':
		m.buf += string(k)
		m.last = now
		if len(m.buf) == m.pinLength {
			s := m.buf
			m.buf = ""
			return s
		}
	case k == '#' && m.buf != "":
		s := m.buf
		m.buf = ""
		return s
	case k == '*':
		m.buf = ""
	}
	return ""
}

// FuzzEntry types arbitrary keys with arbitrary pauses into the keypad
// entry state machine and checks every submission against the model of
// SPEC §3: only digits, 1 to pin_length of them, exactly when the model
// submits; the digits held never reach pin_length; the deadline is the
// last digit plus the timeout.
func FuzzEntry(f *testing.F) {
	// keys: the keys typed; gaps: the pause before each key, in units of
	// 250 ms (so 40 = the default 10 s timeout).
	f.Add("123456", []byte{0, 1, 1, 1, 1, 1}, uint8(6), uint8(40))
	f.Add("12#", []byte{0, 4, 4}, uint8(6), uint8(40))
	f.Add("#*#", []byte{}, uint8(6), uint8(40))
	f.Add("1234*567890", []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, uint8(6), uint8(40))
	f.Add("12345", []byte{0, 0, 0, 0, 40}, uint8(6), uint8(40))
	f.Add("12A34B\r\n56", []byte{0, 39, 1, 39, 40}, uint8(4), uint8(40))
	f.Add("99999999999999", []byte{0}, uint8(8), uint8(0))
	f.Add("1\u00e92\x003#", []byte{200, 255, 1}, uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, keys string, gaps []byte, pinLength, timeoutQ uint8) {
		pl := int(pinLength % 13) // 0 means the default, 6
		timeout := time.Duration(timeoutQ) * 250 * time.Millisecond
		e := kiosk.NewEntry(pl, timeout)
		m := &entryModel{pinLength: pl, timeout: timeout}
		if m.pinLength == 0 {
			m.pinLength = 6
		}
		if m.timeout == 0 {
			m.timeout = 10 * time.Second
		}
		now := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
		for i, k := range []rune(keys) {
			if i < len(gaps) {
				now = now.Add(time.Duration(gaps[i]) * 250 * time.Millisecond)
			}
			got := e.Key(k, now)
			want := m.key(k, now)
			if string(got) != want || (got == nil) != (want == "") {
				t.Fatalf("key %d %q at +%v: submitted %d digits, model %d digits", i, k, now.Sub(time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)), len(got), len(want))
			}
			for _, c := range got {
				if c < '0' || c > '9' {
					t.Fatalf("submitted a non-digit %q", c)
				}
			}
			if len(got) > m.pinLength {
				t.Fatalf("submitted %d digits, PIN length %d", len(got), m.pinLength)
			}
			if e.Len() != len(m.buf) || e.Len() >= m.pinLength {
				t.Fatalf("holds %d digits, model %d (PIN length %d)", e.Len(), len(m.buf), m.pinLength)
			}
			d, ok := e.Deadline()
			if ok != (m.buf != "") || (ok && !d.Equal(m.last.Add(m.timeout))) {
				t.Fatalf("deadline %v %v, model last digit %v + %v", d, ok, m.last, m.timeout)
			}
		}
	})
}
