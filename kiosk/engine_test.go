package kiosk

import (
	"context"
	"errors"
	gosync "sync"
	"testing"
	"time"
)

// memStore is an in-memory Store for unit tests of the engine; the real
// bbolt store is exercised by the store package and the daemon tests.
type memStore struct {
	mu       gosync.Mutex
	creds    map[[DigestSize]byte]*Credential
	spent    map[string]int
	lockouts map[string]LockoutState
	events   []*Event
	fail     error // every write fails with it when set
}

func newMemStore() *memStore {
	return &memStore{creds: map[[DigestSize]byte]*Credential{}, spent: map[string]int{}, lockouts: map[string]LockoutState{}}
}

type memTx struct {
	s      *memStore
	spent  map[string]int
	locks  map[string]LockoutState
	events []*Event
}

func (t *memTx) Lockout(in string) (LockoutState, error) {
	if l, ok := t.locks[in]; ok {
		return l, nil
	}
	return t.s.lockouts[in], nil
}
func (t *memTx) PutLockout(in string, l LockoutState) error { t.locks[in] = l; return nil }
func (t *memTx) Lookup(d [DigestSize]byte) (*Credential, error) {
	return t.s.creds[d], nil
}
func (t *memTx) LocalSpent(id string) (int, error) { return t.s.spent[id] + t.spent[id], nil }
func (t *memTx) AddSpend(id string) error          { t.spent[id]++; return nil }
func (t *memTx) Revoked(string) (bool, error)      { return false, nil }
func (t *memTx) Append(e *Event) error             { t.events = append(t.events, e); return nil }

func (s *memStore) Access(fn func(AccessTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &memTx{s: s, spent: map[string]int{}, locks: map[string]LockoutState{}}
	if err := fn(tx); err != nil {
		return err
	}
	if s.fail != nil {
		return s.fail
	}
	for k, v := range tx.spent {
		s.spent[k] += v
	}
	for k, v := range tx.locks {
		s.lockouts[k] = v
	}
	for _, e := range tx.events {
		e.Seq = uint64(len(s.events) + 1)
		s.events = append(s.events, e)
	}
	return nil
}

func (s *memStore) Record(evs ...*Event) error {
	return s.Access(func(tx AccessTx) error {
		for _, e := range evs {
			if err := tx.Append(e); err != nil {
				return err
			}
		}
		return nil
	})
}

type engineFixture struct {
	st      *memStore
	relay   *fakeLine
	eng     *Engine
	in      chan InputEvent
	outcome chan Outcome
	key     []byte
}

func newEngineFixture(t *testing.T) *engineFixture {
	t.Helper()
	f := &engineFixture{st: newMemStore(), relay: newFakeLine(), in: make(chan InputEvent), outcome: make(chan Outcome, 16), key: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	clock := NewClock(func() time.Time { return now }, func() bool { return true }, time.Time{})
	door := NewDoor(DoorSpec{Door: Door{ID: "main", Kind: DoorRoom}, Relay: f.relay, Pulse: 50 * time.Millisecond}, f.st.Record, clock.Now, nil)
	var err error
	f.eng, err = NewEngine(EngineConfig{
		Device: "dev-1", Location: time.UTC, SiteKey: f.key,
		Inputs: []InputSpec{{Name: "kp"}}, Doors: []*DoorController{door},
		Store: f.st, Clock: clock, Decided: func(o Outcome) { f.outcome <- o },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.eng.Run(ctx, f.in); close(done) }()
	t.Cleanup(func() { cancel(); <-done; door.Close() })
	return f
}

func (f *engineFixture) typePIN(t *testing.T, pin string) Outcome {
	t.Helper()
	for _, k := range pin {
		f.in <- InputEvent{Input: "kp", Type: InputKey, Key: k}
	}
	select {
	case o := <-f.outcome:
		return o
	case <-time.After(testWait):
		t.Fatal("no decision")
	}
	return Outcome{}
}

func TestEngineFailsSafeWhenStoreCannotRecord(t *testing.T) {
	f := newEngineFixture(t)
	c := &Credential{ID: "c1", Kind: KindPIN, Status: StatusActive, Uses: 1, Holder: Holder{ID: "h1", Role: RoleResident}}
	c.Digest = Digest(f.key, KindPIN, []byte("246810"))
	f.st.creds[c.Digest] = c
	f.st.fail = errors.New("no space left on device")

	o := f.typePIN(t, "246810")
	if o.Err == nil || len(o.Opened) != 0 {
		t.Fatalf("outcome %+v: want an error and no door opened", o)
	}
	if f.relay.isActive() {
		t.Fatal("relay on although the grant could not be recorded")
	}
	if f.st.spent["c1"] != 0 {
		t.Fatal("a use was spent although nothing was recorded")
	}

	f.st.fail = nil // space is back: the one-time PIN still has its use
	if o := f.typePIN(t, "246810"); o.Reason != Granted {
		t.Fatalf("after recovery: %+v, want granted", o)
	}
	expectChange(t, f.relay, true)
}

func TestEngineSurvivesPanickingRequest(t *testing.T) {
	f := newEngineFixture(t)
	err := f.eng.Do(context.Background(), func() { panic("bug in a request") })
	if err != nil {
		t.Fatal(err)
	}
	if o := f.typePIN(t, "975318"); o.Reason != Unknown {
		t.Fatalf("after a panic the loop answers %+v, want unknown", o)
	}
}

func TestEngineTapMasksCodes(t *testing.T) {
	f := newEngineFixture(t)
	taps, cancel := f.eng.Tap(8)
	defer cancel()
	f.in <- InputEvent{Input: "kp", Type: InputCode, Code: Secret("KIOSK-STAFF-7F3K9Q")}
	<-f.outcome
	select {
	case ev := <-taps:
		if ev.Code != nil || ev.Detail != "18 bytes" || ev.Type != InputCode {
			t.Fatalf("tapped %+v, want the code masked", ev)
		}
	case <-time.After(testWait):
		t.Fatal("nothing tapped")
	}
}
