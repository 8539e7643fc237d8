package kiosk

import (
	"context"
	"time"
)

// LockoutState is the persisted lockout state of one input, keyed by the
// input's name.
type LockoutState struct {
	// Failures holds the times of denied entries that count towards the
	// next lockout (those inside the window; cleared when a lockout
	// starts and on a grant).
	Failures []time.Time `json:"failures,omitempty"`
	// Until is the end of the current lockout; zero when never locked.
	Until time.Time `json:"until,omitzero"`
	// Level is the number of lockouts in the current doubling chain
	// (1 after the first lockout); it resets after 24 h without one.
	Level int `json:"level,omitempty"`
	// LastStart is when the last lockout started.
	LastStart time.Time `json:"last_start,omitzero"`
}

// AccessTx is the store as the decision path sees it inside one durable
// write transaction: everything a decision reads and writes commits
// together or not at all, so a use is never given twice, even across a
// power cut.
type AccessTx interface {
	// Lockout returns the lockout state of the named input (zero value
	// when none is stored).
	Lockout(input string) (LockoutState, error)
	// PutLockout stores the lockout state of the named input.
	PutLockout(input string, s LockoutState) error
	// Lookup returns the credential with this digest: the active one when
	// there is one, else a deactivated one, else nil (unknown).
	Lookup(digest [DigestSize]byte) (*Credential, error)
	// LocalSpent returns how many uses of the credential (or signed token)
	// id this device has spent.
	LocalSpent(id string) (int, error)
	// AddSpend records one more local spend of the credential id.
	AddSpend(id string) error
	// Revoked reports whether a signed token id is on the revoked list of
	// the current credential set.
	Revoked(cid string) (bool, error)
	// Append appends an event to the journal, assigning its ID and Seq.
	Append(ev *Event) error
}

// Store is what the decision path needs from the store.
type Store interface {
	// Access runs fn in one durable write transaction; if fn returns an
	// error nothing of it is kept.
	Access(fn func(AccessTx) error) error
	// Record appends events durably, in order, in one transaction,
	// assigning their IDs and Seqs.
	Record(evs ...*Event) error
}

// OutputLine is one output line: a relay, an LED or a buzzer. Active is
// the logical state; the driver applies the line's active level.
type OutputLine interface {
	// Set drives the line active or inactive.
	Set(active bool) error
	// Close drives the line inactive and releases it.
	Close() error
}

// LineEvent is a change of a digital input line.
type LineEvent struct {
	Active bool      // logical state after the change
	Time   time.Time // when the change was seen
}

// InputLine is a digital input line: a door contact (active = door open)
// or a request-to-exit button (active = pressed).
type InputLine interface {
	// Active returns the current logical state.
	Active() (bool, error)
	// Events returns the channel on which changes arrive; it is closed
	// when the line is closed.
	Events() <-chan LineEvent
	// Close releases the line.
	Close() error
}

// InputEventType says what an InputEvent carries.
type InputEventType int

// The input event types.
const (
	// InputKey carries one key of a keypad: '0'-'9', '*', '#', 'A'-'D'.
	InputKey InputEventType = iota + 1
	// InputCode carries one whole scanned code (QR text or card number).
	InputCode
	// InputConnected says the device is (again) open and reading.
	InputConnected
	// InputDisconnected says the device went away; the input reopens it
	// with back-off.
	InputDisconnected
	// InputRejected says input was discarded: garbage bytes or an
	// overlong code. Detail says which, without the content.
	InputRejected
)

// InputEvent is what an input reports to the decision loop.
type InputEvent struct {
	Input  string // the input's configured name
	Type   InputEventType
	Key    rune   // for InputKey
	Code   Secret // for InputCode; never logged
	Detail string // for InputRejected and InputDisconnected: why
	Time   time.Time
}

// Input is a keypad, scanner or card reader. Run reads the device until
// ctx is done, sending what it reads on out; it reopens the device with
// back-off when it goes away and returns only when ctx is done.
type Input interface {
	// Name returns the input's configured name.
	Name() string
	// Run reads until ctx is done.
	Run(ctx context.Context, out chan<- InputEvent) error
}

// SendInput delivers ev on out unless ctx ends first; it reports whether
// ev was delivered. Inputs use it so that a stopped decision loop never
// blocks a device reader past its context.
func SendInput(ctx context.Context, out chan<- InputEvent, ev InputEvent) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
