package kiosk

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"
)

// InputSpec describes one input to the engine.
type InputSpec struct {
	// Name is the input's configured name (events, lockout, status).
	Name string
	// Kind is the kind of the codes the input reports (qr or card); keys
	// always make PINs. Empty means qr.
	Kind Kind
	// Doors lists the door ids the input serves; empty means every door.
	Doors []string
}

// EngineConfig holds what the decision loop needs. Every field is required
// unless its comment says otherwise.
type EngineConfig struct {
	Device   string         // this kiosk's device id
	Location *time.Location // the configured zone, for schedules
	SiteKey  []byte         // the site key for digests
	// TokenKey verifies signed QR tokens; nil makes every token bad_token.
	TokenKey     ed25519.PublicKey
	Lockout      LockoutPolicy
	PINLength    int           // zero = 6
	EntryTimeout time.Duration // zero = 10 s
	Inputs       []InputSpec
	Doors        []*DoorController
	Store        Store
	Clock        *Clock
	Log          *slog.Logger // nil = slog.Default()
	// Decided, if set, is called on the loop goroutine after every
	// decision is durable and the doors are pulsed (metrics, tests).
	Decided func(Outcome)
}

// Outcome summarises one decision for observers; it holds no secret.
type Outcome struct {
	Input        string
	Kind         Kind
	Reason       Reason
	CredentialID string
	Opened       []string
	Latency      time.Duration // submission to relays on (or decision recorded)
	Err          error         // the store could not record it: denied, fail safe
}

// ErrUnknownDoor is returned by Unlock for a door id that is not
// configured.
var ErrUnknownDoor = errors.New("unknown door")

// Engine is the decision loop: the one goroutine that owns the decision
// path. Inputs send it InputEvents; it runs the keypad entry per input,
// takes each decision in one durable store transaction, and only then
// pulses the doors.
type Engine struct {
	cfg      EngineConfig
	log      *slog.Logger
	doors    map[string]*DoorController
	allDoors []Door
	inputs   map[string]*inputState
	reqs     chan func()

	connMu    gosync.Mutex
	connected map[string]bool
	taps      map[chan InputEvent]struct{}
}

type inputState struct {
	spec  InputSpec
	doors []Door
	inds  []*Indicator
	entry *Entry
}

// NewEngine checks the configuration and builds the engine.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Store == nil || cfg.Clock == nil || cfg.Location == nil {
		return nil, errors.New("engine: store, clock and location are required")
	}
	if len(cfg.SiteKey) == 0 {
		return nil, errors.New("engine: site key is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	e := &Engine{
		cfg:    cfg,
		log:    cfg.Log,
		doors:  make(map[string]*DoorController),
		inputs: make(map[string]*inputState),
		reqs:   make(chan func()),

		connected: make(map[string]bool),
		taps:      make(map[chan InputEvent]struct{}),
	}
	for _, d := range cfg.Doors {
		if _, dup := e.doors[d.ID()]; dup {
			return nil, fmt.Errorf("engine: door %q twice", d.ID())
		}
		e.doors[d.ID()] = d
		e.allDoors = append(e.allDoors, d.Door())
	}
	for _, in := range cfg.Inputs {
		if _, err := e.addInput(in); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Engine) addInput(in InputSpec) (*inputState, error) {
	if in.Kind == "" {
		in.Kind = KindQR
	}
	st := &inputState{spec: in, entry: NewEntry(e.cfg.PINLength, e.cfg.EntryTimeout)}
	ids := in.Doors
	if len(ids) == 0 {
		for _, d := range e.allDoors {
			ids = append(ids, d.ID)
		}
	}
	for _, id := range ids {
		d, ok := e.doors[id]
		if !ok {
			return nil, fmt.Errorf("engine: input %q serves unknown door %q: %w", in.Name, id, ErrUnknownDoor)
		}
		st.doors = append(st.doors, d.Door())
		if ind := d.Indicator(); ind != nil {
			st.inds = append(st.inds, ind)
		}
	}
	e.inputs[in.Name] = st
	return st, nil
}

// Run runs the loop until ctx is done, reading what the inputs send on in.
func (e *Engine) Run(ctx context.Context, in <-chan InputEvent) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		e.armEntryTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case ev := <-in:
			e.safely("input", func() { e.handleInput(ev) })
		case <-timer.C:
			now := time.Now()
			for _, st := range e.inputs {
				st.entry.Expire(now)
			}
		case fn := <-e.reqs:
			e.safely("request", fn)
		}
	}
}

// safely runs fn and turns a panic into a logged error, so one bad input
// cannot take the door down; relays are switched off by their own timers.
func (e *Engine) safely(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("decision loop recovered from panic", "in", what, "panic", r)
		}
	}()
	fn()
}

func (e *Engine) armEntryTimer(t *time.Timer) {
	var next time.Time
	for _, st := range e.inputs {
		if d, ok := st.entry.Deadline(); ok && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	t.Stop()
	select { // drain a fire we did not read
	case <-t.C:
	default:
	}
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

// Do runs fn on the loop goroutine and waits for it: remote unlocks,
// commands and liveness checks go through here so that they are ordered
// with decisions.
func (e *Engine) Do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	wrapped := func() {
		defer close(done)
		fn()
	}
	select {
	case e.reqs <- wrapped:
	case <-ctx.Done():
		return fmt.Errorf("decision loop: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("decision loop: %w", ctx.Err())
	}
}

// Unlock pulses a door on request (source remote or technician),
// recording door.unlocked first.
func (e *Engine) Unlock(ctx context.Context, door, source string, detail map[string]any) error {
	d, ok := e.doors[door]
	if !ok {
		return fmt.Errorf("unlock %q: %w", door, ErrUnknownDoor)
	}
	var err error
	if derr := e.Do(ctx, func() { err = d.Unlock(source, detail) }); derr != nil {
		return derr
	}
	return err
}

// Doors returns the state of every door.
func (e *Engine) Doors() []DoorStatus {
	out := make([]DoorStatus, 0, len(e.cfg.Doors))
	for _, d := range e.cfg.Doors {
		out = append(out, d.Status())
	}
	return out
}

func (e *Engine) input(name string) *inputState {
	if st, ok := e.inputs[name]; ok {
		return st
	}
	// An input the engine was not told of serves every door.
	st, _ := e.addInput(InputSpec{Name: name})
	return st
}

// Tap returns a channel that receives every input event the loop handles,
// with codes masked (Code is nil; Detail says how many bytes it had), for
// kioskctl watch-input. Slow readers lose events rather than slow the
// loop. cancel ends the tap.
func (e *Engine) Tap(buffer int) (events <-chan InputEvent, cancel func()) {
	ch := make(chan InputEvent, max(buffer, 1))
	e.connMu.Lock()
	e.taps[ch] = struct{}{}
	e.connMu.Unlock()
	return ch, func() {
		e.connMu.Lock()
		delete(e.taps, ch)
		e.connMu.Unlock()
	}
}

func (e *Engine) tap(ev InputEvent) {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	if len(e.taps) == 0 {
		return
	}
	if ev.Type == InputCode {
		ev.Detail = fmt.Sprintf("%d bytes", len(ev.Code))
		ev.Code = nil
	}
	for ch := range e.taps {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (e *Engine) handleInput(ev InputEvent) {
	e.tap(ev)
	st := e.input(ev.Input)
	switch ev.Type {
	case InputKey:
		for _, ind := range st.inds {
			ind.Play(PatternKey)
		}
		if secret := st.entry.Key(ev.Key, time.Now()); secret != nil {
			e.decide(st, KindPIN, secret, ev.Time)
			clear(secret)
		}
	case InputCode:
		e.decide(st, st.spec.Kind, ev.Code, ev.Time)
	case InputConnected:
		e.setConnected(st.spec.Name, true)
		e.recordInput(st, EvInputConnected, "")
	case InputDisconnected:
		e.setConnected(st.spec.Name, false)
		st.entry.Expire(time.Now().Add(24 * time.Hour)) // drop a half-typed entry
		e.recordInput(st, EvInputDisconnected, ev.Detail)
	case InputRejected:
		e.recordInput(st, EvInputRejected, ev.Detail)
	}
}

func (e *Engine) setConnected(name string, c bool) {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	e.connected[name] = c
}

// Connected reports whether the named input has reported itself connected
// (and not disconnected since). Safe for concurrent use.
func (e *Engine) Connected(name string) bool {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	return e.connected[name]
}

func (e *Engine) recordInput(st *inputState, typ, why string) {
	t, synced := e.cfg.Clock.Now()
	ev := &Event{Time: t, ClockSynced: synced, Type: typ, Input: st.spec.Name}
	if why != "" {
		ev.Detail = map[string]any{"reason": why}
	}
	if err := e.cfg.Store.Record(ev); err != nil {
		e.log.Error("record input event", "input", st.spec.Name, "type", typ, "err", err)
	}
}

// decide takes one decision for a submitted secret: one durable store
// transaction, then the relays. start is when the input saw the
// submission (zero = now).
func (e *Engine) decide(st *inputState, kind Kind, secret Secret, start time.Time) {
	if start.IsZero() {
		start = time.Now()
	}
	now, synced := e.cfg.Clock.Now()
	name := st.spec.Name

	isToken := kind == KindQR && IsToken(secret)
	var token *Credential
	var tokenErr error
	var digest [DigestSize]byte
	if isToken {
		if e.cfg.TokenKey == nil {
			tokenErr = fmt.Errorf("%w: no portal key configured", ErrBadToken)
		} else {
			token, tokenErr = ParseToken(secret, e.cfg.TokenKey)
		}
	} else {
		digest = Digest(e.cfg.SiteKey, kind, secret)
	}

	var dec Decision
	var cred *Credential
	var lockLen time.Duration
	var opened []*DoorController
	err := e.cfg.Store.Access(func(tx AccessTx) error {
		dec, cred, lockLen, opened = Decision{}, nil, 0, nil
		ls, err := tx.Lockout(name)
		if err != nil {
			return err
		}
		base := func(typ string) *Event {
			return &Event{Time: now, ClockSynced: synced, Type: typ, Input: name}
		}
		if e.cfg.Lockout.Locked(ls, now) {
			dec = Decision{Reason: LockedOut}
			ev := base(EvAccessDenied)
			ev.Reason = LockedOut
			ev.Detail = map[string]any{"kind": string(kind)}
			return tx.Append(ev)
		}
		switch {
		case isToken && tokenErr != nil:
			dec = Decision{Reason: BadToken}
		default:
			revoked := false
			if isToken {
				cred = token
				if revoked, err = tx.Revoked(token.ID); err != nil {
					return err
				}
			} else if cred, err = tx.Lookup(digest); err != nil {
				return err
			}
			local := 0
			if cred != nil && cred.Uses > 0 {
				if local, err = tx.LocalSpent(cred.ID); err != nil {
					return err
				}
			}
			dec = Evaluate(cred, local, EvalInput{
				Now: now, Loc: e.cfg.Location, Device: e.cfg.Device,
				Doors: st.doors, Revoked: revoked,
			})
		}

		var evs []*Event
		withCred := func(ev *Event) *Event {
			if cred != nil {
				ev.CredentialID, ev.HolderID, ev.Role = cred.ID, cred.Holder.ID, cred.Holder.Role
			}
			return ev
		}
		if dec.Reason == Granted {
			if dec.Spend {
				if err := tx.AddSpend(cred.ID); err != nil {
					return err
				}
			}
			if len(ls.Failures) > 0 {
				if err := tx.PutLockout(name, e.cfg.Lockout.Grant(ls)); err != nil {
					return err
				}
			}
			ev := withCred(base(EvAccessGranted))
			ev.Reason = Granted
			ev.Detail = map[string]any{"kind": string(kind), "doors": dec.Open}
			if len(dec.Open) == 1 {
				ev.Door = dec.Open[0]
			}
			evs = append(evs, ev)
			if dec.LastUse {
				evs = append(evs, withCred(base(EvCredentialUsedUp)))
			}
			for _, id := range dec.Open {
				d := e.doors[id]
				u := d.UnlockEvent(SourceCredential)
				u.Time, u.ClockSynced, u.Input = now, synced, name
				u.CredentialID, u.HolderID, u.Role = cred.ID, cred.Holder.ID, cred.Holder.Role
				evs = append(evs, u)
				opened = append(opened, d)
			}
		} else {
			ev := withCred(base(EvAccessDenied))
			ev.Reason = dec.Reason
			ev.Detail = map[string]any{"kind": string(kind)}
			evs = append(evs, ev)
			next, started, length := e.cfg.Lockout.Fail(ls, now)
			if err := tx.PutLockout(name, next); err != nil {
				return err
			}
			if started {
				lockLen = length
				lo := base(EvInputLockedOut)
				lo.Detail = map[string]any{"duration_ms": length.Milliseconds(), "until": next.Until.UTC().Format(time.RFC3339Nano)}
				evs = append(evs, lo)
			}
		}
		for _, ev := range evs {
			if err := tx.Append(ev); err != nil {
				return err
			}
		}
		return nil
	})

	out := Outcome{Input: name, Kind: kind, Reason: dec.Reason}
	if cred != nil {
		out.CredentialID = cred.ID
	}
	if err != nil {
		// Fail safe: what cannot be recorded does not open.
		e.log.Error("decision not recorded; denied", "input", name, "err", err)
		out.Reason, out.Err = "", err
		e.feedback(st, PatternDeny)
		out.Latency = time.Since(start)
		e.observe(out)
		return
	}
	for _, d := range opened {
		if perr := d.Pulse(); perr != nil {
			e.log.Error("pulse failed", "door", d.ID(), "err", perr)
			continue
		}
		out.Opened = append(out.Opened, d.ID())
	}
	out.Latency = time.Since(start)
	switch {
	case lockLen > 0:
		e.feedback(st, PatternLockout)
		e.log.Warn("input locked out", "input", name, "duration", lockLen)
	case dec.Reason == Granted:
		e.feedback(st, PatternGrant)
	default:
		e.feedback(st, PatternDeny)
	}
	e.log.Info("decision", "input", name, "kind", kind, "reason", dec.Reason, "credential", out.CredentialID, "opened", out.Opened)
	e.observe(out)
}

func (e *Engine) feedback(st *inputState, p Pattern) {
	for _, ind := range st.inds {
		ind.Play(p)
	}
}

func (e *Engine) observe(o Outcome) {
	if e.cfg.Decided != nil {
		e.cfg.Decided(o)
	}
}
