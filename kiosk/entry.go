package kiosk

import "time"

// Keypad entry defaults of SPEC §7 [keypad], used for zero arguments of
// NewEntry.
const (
	entryDefaultPINLength = 6
	entryDefaultTimeout   = 10 * time.Second
)

// Entry is the keypad entry state machine of SPEC §3, one per keypad
// input: digits accumulate; '#' submits any non-empty entry (a short one is
// simply looked up and fails), '#' on an empty entry does nothing; '*'
// clears; reaching the PIN length submits at once; the entry is cleared
// when the entry timeout has passed since the last key. Every other key
// (A–D unless the input maps them) is ignored and does not count as a key
// for the timeout. Callers map Enter, CR and LF to '#'.
//
// The digits typed are kept only as long as needed: the buffer is zeroed
// whenever the entry is cleared or submitted, and a submitted entry is
// returned as a fresh copy for the caller to zero after use.
//
// Entry is not safe for concurrent use; the decision loop owns it. Time
// is always passed in.
type Entry struct {
	pinLength int
	timeout   time.Duration
	buf       []byte    // the digits of the current entry; cap pinLength
	last      time.Time // when the last digit was typed
}

// NewEntry returns an empty entry for PINs of pinLength digits (zero or
// less means 6) that times out after timeout without a key (zero or less
// means 10 s).
func NewEntry(pinLength int, timeout time.Duration) *Entry {
	if pinLength <= 0 {
		pinLength = entryDefaultPINLength
	}
	if timeout <= 0 {
		timeout = entryDefaultTimeout
	}
	return &Entry{pinLength: pinLength, timeout: timeout, buf: make([]byte, 0, pinLength)}
}

// Key feeds one key typed at now. It returns the submitted entry
// (non-nil, non-empty) when this key submits it, and nil otherwise. An
// entry whose timeout passed before now is cleared before the key is
// handled, so a digit typed after a pause starts a new entry.
func (e *Entry) Key(k rune, now time.Time) Secret {
	e.Expire(now)
	switch {
	case '0' <= k && k <= '9':
		e.buf = append(e.buf, byte(k))
		e.last = now
		if len(e.buf) >= e.pinLength {
			return e.entrySubmit()
		}
	case k == '#':
		if len(e.buf) > 0 {
			return e.entrySubmit()
		}
	case k == '*':
		e.entryClear()
	}
	return nil
}

// Deadline returns when the current entry times out; ok is false when
// the entry is empty (nothing to time out).
func (e *Entry) Deadline() (t time.Time, ok bool) {
	if len(e.buf) == 0 {
		return time.Time{}, false
	}
	return e.last.Add(e.timeout), true
}

// Expire clears the entry if its timeout has passed at now (at the
// deadline exactly, too) and reports whether it cleared one.
func (e *Entry) Expire(now time.Time) bool {
	d, ok := e.Deadline()
	if !ok || now.Before(d) {
		return false
	}
	e.entryClear()
	return true
}

// Len returns the number of digits in the current entry, for feedback;
// never the digits themselves.
func (e *Entry) Len() int { return len(e.buf) }

// entrySubmit returns a copy of the entry and clears it.
func (e *Entry) entrySubmit() Secret {
	s := make(Secret, len(e.buf))
	copy(s, e.buf)
	e.entryClear()
	return s
}

// entryClear zeroes the digits and empties the entry.
func (e *Entry) entryClear() {
	clear(e.buf[:cap(e.buf)])
	e.buf = e.buf[:0]
	e.last = time.Time{}
}
