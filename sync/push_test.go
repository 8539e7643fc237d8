package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// pushClock is the kiosk clock of the push tests, settable.
type pushClock struct {
	mu     stdsync.Mutex
	now    time.Time
	synced bool
}

func (c *pushClock) Now() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now, c.synced
}

func (c *pushClock) set(now time.Time, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now, c.synced = now, synced
}

// pushTarget is a PushTarget beside the real syncer: it applies documents
// through Apply into the real store, and records what it was asked.
type pushTarget struct {
	st   *store.Store
	opts Options

	mu       stdsync.Mutex
	pulls    int
	applies  int
	cmds     [][]Command
	applyErr error         // returned by ApplyVerified instead of applying
	hold     chan struct{} // when set, ApplyVerified reports on entered and waits for hold to close
	entered  chan struct{}
}

var _ PushTarget = (*pushTarget)(nil)

func (p *pushTarget) ApplyVerified(ctx context.Context, src io.ReaderAt, size int64) (Result, error) {
	p.mu.Lock()
	p.applies++
	err, hold, entered := p.applyErr, p.hold, p.entered
	p.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	if err != nil {
		return Result{}, err
	}
	p.mu.Lock() // one document at a time, as the syncer serialises them
	defer p.mu.Unlock()
	res, err := Apply(ctx, StoreApplier(p.st), p.opts, src, size)
	if err == nil && len(res.Commands) > 0 {
		p.cmds = append(p.cmds, res.Commands)
	}
	return res, err
}

func (p *pushTarget) PullNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pulls++
}

func (p *pushTarget) RunCommands(ctx context.Context, cmds []Command) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmds = append(p.cmds, cmds)
}

func (p *pushTarget) Cursor() (string, error) {
	ss, err := p.st.SyncState()
	return ss.Cursor, err
}

// calls returns what the target was asked so far.
func (p *pushTarget) calls() (pulls, applies int, cmds [][]Command) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pulls, p.applies, append([][]Command(nil), p.cmds...)
}

// pushEnv is a push server on loopback HTTP over a real store holding
// c-1, c-2, c-3 at cursor "c-1", issued at t0, with the kiosk clock at
// t0+1m, synchronised.
type pushEnv struct {
	tb     testing.TB
	st     *store.Store
	target *pushTarget
	clock  *pushClock
	srv    *httptest.Server
	client *http.Client
	priv   ed25519.PrivateKey

	mu       stdsync.Mutex
	observed []time.Time
	lastCL   int64 // Content-Length of the last request, -1 when chunked
	nonce    int
}

var pushNow = t0.Add(time.Minute)

func newPushEnv(tb testing.TB, mod func(*PushConfig)) *pushEnv {
	tb.Helper()
	e := &pushEnv{tb: tb, st: storetest.Open(tb), clock: &pushClock{now: pushNow, synced: true}, priv: testPriv()}
	e.target = &pushTarget{st: e.st, opts: Options{DeviceID: testDevice, Now: e.clock.Now}}
	b := body(tb, fullHeader("c-1", t0), testCred("c-1", "246810"), testCred("c-2", "583920"), testCred("c-3", "719304"))
	if _, err := Apply(context.Background(), StoreApplier(e.st), e.target.opts, bytes.NewReader(b), int64(len(b))); err != nil {
		tb.Fatal(err)
	}
	cfg := PushConfig{
		Log:              slog.New(slog.DiscardHandler),
		RejectEventEvery: -1, // one event per rejection; TestPushRejectEventBudget tests the budget
		Rate:             -1, // no cap; TestPushRate tests it
		DeviceID:         testDevice,
		PublicKey:        e.priv.Public().(ed25519.PublicKey),
		SpoolDir:         tb.TempDir(),
		Now:              e.clock.Now,
		Observe: func(t time.Time) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.observed = append(e.observed, t)
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	h := NewPushHandler(cfg, e.st, e.target)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.lastCL = r.ContentLength
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(e.srv.Close)
	e.client = e.srv.Client()
	e.client.Timeout = 30 * time.Second
	return e
}

// newNonce returns a nonce not used before in this env.
func (e *pushEnv) newNonce() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nonce++
	return fmt.Sprintf("n-%d", e.nonce)
}

// doc encodes a pushed document of the given kind; a zero IssuedAt is
// the kiosk clock's now.
func (e *pushEnv) doc(kind, nonce string, h Header, creds ...*kiosk.Credential) []byte {
	e.tb.Helper()
	h.Kind, h.Nonce = kind, nonce
	if h.IssuedAt.IsZero() {
		h.IssuedAt, _ = e.clock.Now()
	}
	return body(e.tb, h, creds...)
}

func (e *pushEnv) hint(nonce string) []byte { return e.doc(PushHint, nonce, Header{}) }

type pushResp struct {
	status int
	header http.Header
	body   map[string]string
}

// post pushes body with the given Kiosk-Signature ("" sends none).
func (e *pushEnv) post(body []byte, sig string) pushResp {
	e.tb.Helper()
	return e.send(bytes.NewReader(body), int64(len(body)), sig)
}

// send pushes a body of the given length; -1 sends it chunked.
func (e *pushEnv) send(body io.Reader, length int64, sig string) pushResp {
	e.tb.Helper()
	if length < 0 {
		body = struct{ io.Reader }{body} // hide the length: chunked
	}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+PushPath, body)
	if err != nil {
		e.tb.Fatal(err)
	}
	req.ContentLength = length
	if sig != "" {
		req.Header.Set(SignatureHeader, sig)
	}
	return e.do(req)
}

func (e *pushEnv) do(req *http.Request) pushResp {
	e.tb.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.tb.Fatal(err)
	}
	r := pushResp{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		e.tb.Fatalf("status %d: body %q is not a JSON object of strings: %v", resp.StatusCode, raw, err)
	}
	return r
}

func (e *pushEnv) sign(b []byte) string { return Sign(e.priv, b) }

// pushSnap is the state a rejected push must leave alone.
type pushSnap struct {
	ss    store.SyncState
	count int
	seq   uint64
}

func (e *pushEnv) snap() pushSnap {
	e.tb.Helper()
	ss, err := e.st.SyncState()
	if err != nil {
		e.tb.Fatal(err)
	}
	seq, err := e.st.LastSeq()
	if err != nil {
		e.tb.Fatal(err)
	}
	return pushSnap{ss: ss, count: e.st.Count(), seq: seq}
}

// eventsSince returns the events recorded after s.
func (e *pushEnv) eventsSince(s pushSnap) []kiosk.Event {
	e.tb.Helper()
	evs, err := e.st.Pending(s.seq, 1000)
	if err != nil {
		e.tb.Fatal(err)
	}
	return evs
}

// wantUntouched fails unless the credential set and sync position are
// those of s.
func (e *pushEnv) wantUntouched(s pushSnap) {
	e.tb.Helper()
	if now := e.snap(); !reflect.DeepEqual(now.ss, s.ss) || now.count != s.count {
		e.tb.Errorf("store changed: %+v count %d, was %+v count %d", now.ss, now.count, s.ss, s.count)
	}
}

// wantRejected fails unless exactly one event, push.rejected with this
// reason and status and nothing else in its detail, was recorded since s
// and the store is otherwise untouched.
func (e *pushEnv) wantRejected(s pushSnap, reason string, status int) {
	e.tb.Helper()
	e.wantUntouched(s)
	evs := e.eventsSince(s)
	if len(evs) != 1 || evs[0].Type != kiosk.EvPushRejected {
		e.tb.Fatalf("events %+v, want one push.rejected", evs)
	}
	d := evs[0].Detail
	if len(d) != 2 || d["reason"] != reason || fmt.Sprint(d["status"]) != strconv.Itoa(status) {
		e.tb.Errorf("push.rejected detail %v, want reason %q status %d", d, reason, status)
	}
	if now, _ := e.clock.Now(); !evs[0].Time.Equal(now) {
		e.tb.Errorf("event time %v, want the kiosk clock's %v", evs[0].Time, now)
	}
}

func (e *pushEnv) observedTimes() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Time(nil), e.observed...)
}

// pushRawDoc is a hand-written push body for this device, issued at pushNow.
func pushRawDoc(fields string) []byte {
	return []byte(`{"device_id":"spr-0001","issued_at":"` + pushNow.Format(time.RFC3339Nano) + `"` + fields + `}`)
}

// TestPushRejected runs every rejection of SPEC §6.2: the status, one
// push.rejected event with the reason, and nothing else touched.
func TestPushRejected(t *testing.T) {
	longNonce := strings.Repeat("n", MaxNonceBytes+1)
	dup := testCred("c-9", "246810") // the digest of c-1
	badCred := testCred("c-9", "111111")
	cases := []struct {
		name   string
		setup  func(e *pushEnv)
		body   func(e *pushEnv) []byte
		sig    func(e *pushEnv, b []byte) string // nil: signed
		status int
		reason string
		// applies is how often the target was asked to apply.
		applies int
		// nonceKept: the push got past the nonce check, so its nonce
		// is spent; otherwise a hint with the same nonce is accepted
		// afterwards.
		nonceKept bool
	}{
		// 2. Well-formed: 400.
		{name: "not JSON", body: func(*pushEnv) []byte { return []byte("hello") }, status: 400, reason: ReasonMalformed},
		{name: "not JSON, unsigned: 400 before 401", body: func(*pushEnv) []byte { return []byte("hello") },
			sig: func(*pushEnv, []byte) string { return "" }, status: 400, reason: ReasonMalformed},
		{name: "empty body", body: func(*pushEnv) []byte { return nil }, status: 400, reason: ReasonMalformed},
		{name: "array", body: func(*pushEnv) []byte { return []byte(`[{"nonce":"n-reuse","kind":"hint"}]`) }, status: 400, reason: ReasonMalformed},
		{name: "string", body: func(*pushEnv) []byte { return []byte(`"nonce"`) }, status: 400, reason: ReasonMalformed},
		{name: "truncated", body: func(e *pushEnv) []byte { b := e.hint("n-reuse"); return b[:len(b)-3] }, status: 400, reason: ReasonMalformed},
		{name: "data after the object", body: func(e *pushEnv) []byte { return append(e.hint("n-reuse"), "{}"...) }, status: 400, reason: ReasonMalformed},
		{name: "nonce missing", body: func(e *pushEnv) []byte { return e.doc(PushHint, "", Header{}) }, status: 400, reason: ReasonMalformed},
		{name: "nonce missing, unsigned", body: func(e *pushEnv) []byte { return e.doc(PushHint, "", Header{}) },
			sig: func(*pushEnv, []byte) string { return "" }, status: 400, reason: ReasonMalformed},
		{name: "nonce empty", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":"","kind":"hint"`) }, status: 400, reason: ReasonMalformed},
		{name: "nonce null", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":null,"kind":"hint"`) }, status: 400, reason: ReasonMalformed},
		{name: "nonce not a string", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":7,"kind":"hint"`) }, status: 400, reason: ReasonMalformed},
		{name: "nonce twice", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":"a","nonce":"b","kind":"hint"`) }, status: 400, reason: ReasonMalformed},
		{name: "nonce too long", body: func(e *pushEnv) []byte { return e.hint(longNonce) }, status: 400, reason: ReasonMalformed},
		{name: "kind missing", body: func(e *pushEnv) []byte { return e.doc("", "n-reuse", Header{}) }, status: 400, reason: ReasonMalformed},
		{name: "kind unknown", body: func(e *pushEnv) []byte { return e.doc("reboot", "n-reuse", Header{}) }, status: 400, reason: ReasonMalformed},
		{name: "kind unknown, unsigned", body: func(e *pushEnv) []byte { return e.doc("reboot", "n-reuse", Header{}) },
			sig: func(*pushEnv, []byte) string { return "" }, status: 400, reason: ReasonMalformed},
		{name: "kind not a string", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":"n-reuse","kind":["hint"]`) }, status: 400, reason: ReasonMalformed},
		{name: "kind twice", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":"n-reuse","kind":"hint","kind":"full"`) }, status: 400, reason: ReasonMalformed},
		{name: "header field of the wrong type", body: func(*pushEnv) []byte { return pushRawDoc(`,"nonce":"n-reuse","kind":"hint","removed":5`) }, status: 400, reason: ReasonMalformed},
		{name: "issued_at missing", body: func(*pushEnv) []byte { return []byte(`{"device_id":"spr-0001","nonce":"n-reuse","kind":"hint"}`) }, status: 400, reason: ReasonMalformed},
		{name: "kind full, full false", body: func(e *pushEnv) []byte { return e.doc(PushFull, "n-reuse", Header{Cursor: "c-2"}) }, status: 400, reason: ReasonMalformed},
		{name: "kind delta, full true", body: func(e *pushEnv) []byte { return e.doc(PushDelta, "n-reuse", Header{Full: true, Cursor: "c-2"}) }, status: 400, reason: ReasonMalformed},
		{name: "malformed credential", body: func(e *pushEnv) []byte {
			b := e.doc(PushDelta, "n-reuse", Header{Base: "c-1", Cursor: "c-2"}, badCred)
			return bytes.Replace(b, []byte(`"kind":"pin"`), []byte(`"kind":"iris"`), 1)
		}, status: 400, reason: ReasonMalformed, applies: 1, nonceKept: true},
		// 3. Signature: 401.
		{name: "no signature", body: func(e *pushEnv) []byte { return e.hint("n-reuse") },
			sig: func(*pushEnv, []byte) string { return "" }, status: 401, reason: ReasonBadSignature},
		{name: "signature not base64url", body: func(e *pushEnv) []byte { return e.hint("n-reuse") },
			sig: func(*pushEnv, []byte) string { return "!!not base64!!" }, status: 401, reason: ReasonBadSignature},
		{name: "signature by another key", body: func(e *pushEnv) []byte { return e.hint("n-reuse") },
			sig: func(_ *pushEnv, b []byte) string {
				return Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)), b)
			}, status: 401, reason: ReasonBadSignature},
		{name: "signature of another body", body: func(e *pushEnv) []byte { return e.hint("n-reuse") },
			sig: func(e *pushEnv, b []byte) string { return e.sign(append(b, ' ')) }, status: 401, reason: ReasonBadSignature},
		// 4. Device: 403.
		{name: "other device", body: func(e *pushEnv) []byte { return e.doc(PushHint, "n-reuse", Header{DeviceID: "spr-0002"}) },
			status: 403, reason: ReasonWrongDevice},
		{name: "other device, full", body: func(e *pushEnv) []byte {
			return e.doc(PushFull, "n-reuse", Header{DeviceID: "spr-0002", Full: true, Cursor: "c-2"}, testCred("c-9", "111111"))
		}, status: 403, reason: ReasonWrongDevice},
		// 5. Freshness and replay: 422.
		{name: "older than the newest accepted by more than 5m, clock unsynced",
			setup: func(e *pushEnv) { e.clock.set(pushNow, false) },
			body: func(e *pushEnv) []byte {
				return e.doc(PushHint, "n-reuse", Header{IssuedAt: t0.Add(-PushWindow - time.Second)})
			},
			status: 422, reason: ReasonStale},
		{name: "more than 5m behind the synchronised clock",
			body: func(e *pushEnv) []byte {
				return e.doc(PushHint, "n-reuse", Header{IssuedAt: pushNow.Add(-PushWindow - time.Second)})
			},
			status: 422, reason: ReasonStale},
		{name: "more than 5m ahead of the synchronised clock",
			body: func(e *pushEnv) []byte {
				return e.doc(PushHint, "n-reuse", Header{IssuedAt: pushNow.Add(PushWindow + time.Second)})
			},
			status: 422, reason: ReasonStale},
		{name: "stale command", body: func(e *pushEnv) []byte {
			return e.doc(PushCommand, "n-reuse", Header{IssuedAt: pushNow.Add(-time.Hour), Commands: []Command{{ID: "cmd-1", Type: "unlock", Door: "main"}}})
		}, status: 422, reason: ReasonStale},
		// 6. Rejected when applied: 422.
		{name: "full older than the newest accepted", body: func(e *pushEnv) []byte {
			return e.doc(PushFull, "n-reuse", Header{IssuedAt: t0.Add(-time.Minute), Full: true, Cursor: "c-0"}, testCred("c-9", "111111"))
		}, status: 422, reason: ReasonStale, applies: 1, nonceKept: true},
		{name: "full with a duplicate active digest", body: func(e *pushEnv) []byte {
			return e.doc(PushFull, "n-reuse", Header{Full: true, Cursor: "c-2"}, testCred("c-1", "246810"), dup)
		}, status: 422, reason: ReasonDuplicateDigest, applies: 1, nonceKept: true},
		{name: "delta making a duplicate active digest", body: func(e *pushEnv) []byte {
			return e.doc(PushDelta, "n-reuse", Header{Base: "c-1", Cursor: "c-2"}, dup)
		}, status: 422, reason: ReasonDuplicateDigest, applies: 1, nonceKept: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newPushEnv(t, nil)
			if tc.setup != nil {
				tc.setup(e)
			}
			b := tc.body(e)
			sig := e.sign(b)
			if tc.sig != nil {
				sig = tc.sig(e, b)
			}
			before := e.snap()
			r := e.post(b, sig)
			if r.status != tc.status || r.body["error"] != tc.reason {
				t.Fatalf("status %d %v, want %d %q", r.status, r.body, tc.status, tc.reason)
			}
			e.wantRejected(before, tc.reason, tc.status)
			pulls, applies, cmds := e.target.calls()
			if pulls != 0 || applies != tc.applies || len(cmds) != 0 {
				t.Errorf("target: %d pulls, %d applies, commands %v; want %d applies and nothing else", pulls, applies, cmds, tc.applies)
			}
			if obs := e.observedTimes(); len(obs) != 0 {
				t.Errorf("observed %v for a rejected push", obs)
			}

			// The nonce of a push rejected before the nonce check is not
			// spent; one that got past it is.
			e.clock.set(pushNow, true)
			before = e.snap()
			h := e.hint("n-reuse")
			r = e.post(h, e.sign(h))
			if tc.nonceKept {
				if r.status != 422 {
					t.Fatalf("hint reusing the nonce: %d %v, want 422 replay", r.status, r.body)
				}
				e.wantRejected(before, ReasonReplay, 422)
			} else if r.status != 200 {
				t.Fatalf("hint with the rejected push's nonce: %d %v, want 200 (nonce not spent)", r.status, r.body)
			}
		})
	}
}

// TestPushAccepted pushes each kind and checks the 200 {"cursor"} and
// what it did.
func TestPushAccepted(t *testing.T) {
	cmd := Command{ID: "cmd-1", Type: "unlock", Door: "main"}
	c4, c5 := testCred("c-4", "404040"), testCred("c-5", "505050")
	issued := pushNow.Add(-30 * time.Second)
	cases := []struct {
		name       string
		body       func(e *pushEnv) []byte
		cursor     string
		count      int
		pulls      int
		applies    int
		cmds       [][]Command
		syncEvents int // sync.applied events recorded
	}{
		{name: "full", body: func(e *pushEnv) []byte {
			return e.doc(PushFull, e.newNonce(), Header{IssuedAt: issued, Full: true, Cursor: "c-2"}, c4, c5)
		}, cursor: "c-2", count: 2, applies: 1, syncEvents: 1},
		{name: "full with commands", body: func(e *pushEnv) []byte {
			return e.doc(PushFull, e.newNonce(), Header{IssuedAt: issued, Full: true, Cursor: "c-2", Commands: []Command{cmd}}, c4)
		}, cursor: "c-2", count: 1, applies: 1, cmds: [][]Command{{cmd}}, syncEvents: 1},
		{name: "delta", body: func(e *pushEnv) []byte {
			return e.doc(PushDelta, e.newNonce(), Header{IssuedAt: issued, Base: "c-1", Cursor: "c-2", Removed: []string{"c-1"}}, c4, c5)
		}, cursor: "c-2", count: 4, applies: 1, syncEvents: 1},
		{name: "empty delta", body: func(e *pushEnv) []byte {
			return e.doc(PushDelta, e.newNonce(), Header{IssuedAt: issued, Base: "c-1", Cursor: "c-1"})
		}, cursor: "c-1", count: 3, applies: 1},
		{name: "hint", body: func(e *pushEnv) []byte {
			return e.doc(PushHint, e.newNonce(), Header{IssuedAt: issued})
		}, cursor: "c-1", count: 3, pulls: 1},
		{name: "command", body: func(e *pushEnv) []byte {
			return e.doc(PushCommand, e.newNonce(), Header{IssuedAt: issued, Commands: []Command{cmd, {ID: "cmd-2", Type: "unlock", Door: "locker-3"}}})
		}, cursor: "c-1", count: 3, cmds: [][]Command{{cmd, {ID: "cmd-2", Type: "unlock", Door: "locker-3"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newPushEnv(t, nil)
			before := e.snap()
			b := tc.body(e)
			r := e.post(b, e.sign(b))
			if r.status != 200 || !reflect.DeepEqual(r.body, map[string]string{"cursor": tc.cursor}) {
				t.Fatalf("status %d %v, want 200 {cursor: %q}", r.status, r.body, tc.cursor)
			}
			after := e.snap()
			if after.ss.Cursor != tc.cursor || after.count != tc.count {
				t.Errorf("store at %q with %d credentials, want %q with %d", after.ss.Cursor, after.count, tc.cursor, tc.count)
			}
			// Every accepted push raises the no-rollback watermark.
			if !after.ss.Newest.Equal(issued) {
				t.Errorf("watermark %v, want the push's issued_at %v", after.ss.Newest, issued)
			}
			pulls, applies, cmds := e.target.calls()
			if pulls != tc.pulls || applies != tc.applies || !reflect.DeepEqual(cmds, tc.cmds) {
				t.Errorf("target: %d pulls, %d applies, commands %v; want %d, %d, %v", pulls, applies, cmds, tc.pulls, tc.applies, tc.cmds)
			}
			if obs := e.observedTimes(); len(obs) != 1 || !obs[0].Equal(issued) {
				t.Errorf("observed %v, want [%v]", obs, issued)
			}
			evs := e.eventsSince(before)
			n := 0
			for _, ev := range evs {
				switch ev.Type {
				case kiosk.EvSyncApplied:
					n++
				default:
					t.Errorf("unexpected event %s %v", ev.Type, ev.Detail)
				}
			}
			if n != tc.syncEvents {
				t.Errorf("%d sync.applied events, want %d", n, tc.syncEvents)
			}
		})
	}
}

// TestPushFreshnessBounds checks what is not stale: the edges of the
// window, and any time at all while the clock is not synchronised.
func TestPushFreshnessBounds(t *testing.T) {
	cases := []struct {
		name   string
		synced bool
		issued time.Time
	}{
		{"exactly 5m before the newest accepted, clock unsynced", false, t0.Add(-PushWindow)},
		{"exactly 5m behind the synchronised clock", true, pushNow.Add(-PushWindow)},
		{"exactly 5m ahead of the synchronised clock", true, pushNow.Add(PushWindow)},
		{"an hour ahead, clock unsynced", false, pushNow.Add(time.Hour)},
		{"a day ahead, clock unsynced", false, pushNow.Add(24 * time.Hour)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newPushEnv(t, nil)
			e.clock.set(pushNow, tc.synced)
			b := e.doc(PushHint, e.newNonce(), Header{IssuedAt: tc.issued})
			if r := e.post(b, e.sign(b)); r.status != 200 {
				t.Fatalf("status %d %v, want 200", r.status, r.body)
			}
			if pulls, _, _ := e.target.calls(); pulls != 1 {
				t.Errorf("%d pulls, want 1", pulls)
			}
		})
	}
}

// TestPushReplay pushes one document twice.
func TestPushReplay(t *testing.T) {
	for _, kind := range []string{PushHint, PushCommand, PushDelta} {
		t.Run(kind, func(t *testing.T) {
			e := newPushEnv(t, nil)
			h := Header{Commands: []Command{{ID: "cmd-1", Type: "unlock", Door: "main"}}}
			if kind == PushDelta {
				h = Header{Base: "c-1", Cursor: "c-2"}
			}
			b := e.doc(kind, "n-once", h, testCred("c-4", "404040"))
			if r := e.post(b, e.sign(b)); r.status != 200 {
				t.Fatalf("first push: %d %v", r.status, r.body)
			}
			if kind == PushDelta {
				// Same nonce, on the right base this time: still a replay.
				b = e.doc(kind, "n-once", Header{Base: "c-2", Cursor: "c-3"}, testCred("c-5", "505050"))
			}
			pulls0, applies0, cmds0 := e.target.calls()
			before := e.snap()
			r := e.post(b, e.sign(b))
			if r.status != 422 || r.body["error"] != ReasonReplay {
				t.Fatalf("replayed push: %d %v, want 422 replay", r.status, r.body)
			}
			e.wantRejected(before, ReasonReplay, 422)
			if pulls, applies, cmds := e.target.calls(); pulls != pulls0 || applies != applies0 || len(cmds) != len(cmds0) {
				t.Errorf("the replay reached the target: %d pulls, %d applies, %d command batches", pulls, applies, len(cmds))
			}
		})
	}
}

// TestPushDeltaConflict pushes a delta on another base: 409 with the
// cursor, a pull, and no rejection event.
func TestPushDeltaConflict(t *testing.T) {
	e := newPushEnv(t, nil)
	before := e.snap()
	b := e.doc(PushDelta, e.newNonce(), Header{Base: "c-0", Cursor: "c-2"}, testCred("c-4", "404040"))
	r := e.post(b, e.sign(b))
	if r.status != 409 || !reflect.DeepEqual(r.body, map[string]string{"cursor": "c-1"}) {
		t.Fatalf("status %d %v, want 409 {cursor: c-1}", r.status, r.body)
	}
	e.wantUntouched(before)
	if evs := e.eventsSince(before); len(evs) != 0 {
		t.Errorf("events %+v, want none (a 409 is not a rejection)", evs)
	}
	if pulls, applies, _ := e.target.calls(); pulls != 1 || applies != 0 {
		t.Errorf("%d pulls, %d applies; want a pull and no apply", pulls, applies)
	}
}

// TestPushDeltaConflictWhileApplying: the cursor moved between the push
// server's check and the apply (a pull won the race): still a 409.
func TestPushDeltaConflictWhileApplying(t *testing.T) {
	e := newPushEnv(t, nil)
	e.target.applyErr = fmt.Errorf("apply delta: %w", store.ErrBaseMismatch)
	before := e.snap()
	b := e.doc(PushDelta, e.newNonce(), Header{Base: "c-1", Cursor: "c-2"}, testCred("c-4", "404040"))
	r := e.post(b, e.sign(b))
	if r.status != 409 || r.body["cursor"] != "c-1" {
		t.Fatalf("status %d %v, want 409", r.status, r.body)
	}
	if evs := e.eventsSince(before); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}
	if pulls, _, _ := e.target.calls(); pulls != 1 {
		t.Errorf("%d pulls, want 1", pulls)
	}
}

// TestPushSize checks the size limit: by Content-Length before any of the
// body is read, and by the bytes read for a chunked body.
func TestPushSize(t *testing.T) {
	const limit = 4096
	small := func(c *PushConfig) { c.MaxDocumentBytes = limit }
	// pad makes a signed-able hint of exactly n bytes (trailing white
	// space is allowed after the document).
	pad := func(e *pushEnv, nonce string, n int) []byte {
		b := e.hint(nonce)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}

	t.Run("Content-Length over the limit, body never sent", func(t *testing.T) {
		e := newPushEnv(t, small)
		before := e.snap()
		pr, pw := io.Pipe()
		defer pw.Close()
		// The body is never written: a 413 proves the server judged the
		// Content-Length without waiting for it.
		r := e.send(pr, limit+1, e.sign(pad(e, e.newNonce(), limit+1)))
		if r.status != 413 {
			t.Fatalf("status %d %v, want 413", r.status, r.body)
		}
		e.wantRejected(before, ReasonTooLarge, 413)
	})
	t.Run("Content-Length over the limit", func(t *testing.T) {
		e := newPushEnv(t, small)
		before := e.snap()
		b := pad(e, e.newNonce(), 2*limit)
		if r := e.post(b, e.sign(b)); r.status != 413 {
			t.Fatalf("status %d %v, want 413", r.status, r.body)
		}
		e.wantRejected(before, ReasonTooLarge, 413)
	})
	for _, chunked := range []bool{false, true} {
		length := func(b []byte) int64 {
			if chunked {
				return -1
			}
			return int64(len(b))
		}
		t.Run(fmt.Sprintf("chunked=%v: exactly the limit is accepted", chunked), func(t *testing.T) {
			e := newPushEnv(t, small)
			b := pad(e, e.newNonce(), limit)
			if r := e.send(bytes.NewReader(b), length(b), e.sign(b)); r.status != 200 {
				t.Fatalf("status %d %v, want 200", r.status, r.body)
			}
		})
	}
	t.Run("chunked over the limit", func(t *testing.T) {
		e := newPushEnv(t, small)
		before := e.snap()
		b := pad(e, "n-big", limit+1)
		r := e.send(bytes.NewReader(b), -1, e.sign(b))
		if r.status != 413 {
			t.Fatalf("status %d %v, want 413", r.status, r.body)
		}
		e.mu.Lock()
		cl := e.lastCL
		e.mu.Unlock()
		if cl != -1 {
			t.Fatalf("server saw Content-Length %d; the body was not chunked", cl)
		}
		e.wantRejected(before, ReasonTooLarge, 413)
		// The oversized body's nonce was not spent.
		h := e.hint("n-big")
		if r := e.post(h, e.sign(h)); r.status != 200 {
			t.Errorf("hint with the oversized push's nonce: %d %v, want 200", r.status, r.body)
		}
	})
	t.Run("chunked, much larger, unsigned", func(t *testing.T) {
		e := newPushEnv(t, small)
		before := e.snap()
		r := e.send(io.LimitReader(pushZeroReader{}, 3*limit), -1, "")
		if r.status != 413 {
			t.Fatalf("status %d %v, want 413 (size before form and signature)", r.status, r.body)
		}
		e.wantRejected(before, ReasonTooLarge, 413)
	})
}

type pushZeroReader struct{}

func (pushZeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestPushBodyTimeout: a body that stops arriving frees its slot after
// BodyTimeout; it is not a judged push, so there is no event.
func TestPushBodyTimeout(t *testing.T) {
	e := newPushEnv(t, func(c *PushConfig) { c.BodyTimeout = 100 * time.Millisecond })
	before := e.snap()
	b := e.hint(e.newNonce())
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(b[:10]) // then nothing more
	r := e.send(pr, int64(len(b)), e.sign(b))
	if r.status != 400 {
		t.Fatalf("status %d %v, want 400", r.status, r.body)
	}
	e.wantUntouched(before)
	if evs := e.eventsSince(before); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}
}

// TestPushFailures: the kiosk's own failures are 500 without a rejection
// event, and nothing applied.
func TestPushFailures(t *testing.T) {
	t.Run("apply fails", func(t *testing.T) {
		e := newPushEnv(t, nil)
		e.target.applyErr = errors.New("disk on fire")
		before := e.snap()
		b := e.doc(PushFull, e.newNonce(), Header{Full: true, Cursor: "c-2"}, testCred("c-4", "404040"))
		if r := e.post(b, e.sign(b)); r.status != 500 {
			t.Fatalf("status %d %v, want 500", r.status, r.body)
		}
		e.wantUntouched(before)
		if evs := e.eventsSince(before); len(evs) != 0 {
			t.Errorf("events %+v, want none", evs)
		}
		if obs := e.observedTimes(); len(obs) != 0 {
			t.Errorf("observed %v", obs)
		}
	})
	t.Run("nonce store fails", func(t *testing.T) {
		st := storetest.Open(t)
		fs := &pushFailingNonces{Store: st, err: errors.New("bolt: disk full")}
		target := &pushTarget{st: st, opts: Options{DeviceID: testDevice, Now: testNow}}
		priv := testPriv()
		srv := httptest.NewServer(NewPushHandler(PushConfig{DeviceID: testDevice, PublicKey: priv.Public().(ed25519.PublicKey),
			SpoolDir: t.TempDir(), Now: testNow, Rate: -1}, fs, target))
		defer srv.Close()
		now, _ := testNow()
		b := body(t, Header{IssuedAt: now, Nonce: "n-1", Kind: PushHint})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+PushPath, bytes.NewReader(b))
		req.Header.Set(SignatureHeader, Sign(priv, b))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("status %d, want 500", resp.StatusCode)
		}
		if evs := storetest.Events(t, st); len(evs) != 0 {
			t.Errorf("events %+v, want none", evs)
		}
		if pulls, _, _ := target.calls(); pulls != 0 {
			t.Errorf("%d pulls, want none", pulls)
		}
	})
	t.Run("misconfigured", func(t *testing.T) {
		e := newPushEnv(t, func(c *PushConfig) { c.PublicKey = c.PublicKey[:16] })
		before := e.snap()
		b := e.hint(e.newNonce())
		if r := e.post(b, e.sign(b)); r.status != 500 {
			t.Fatalf("status %d %v, want 500", r.status, r.body)
		}
		if evs := e.eventsSince(before); len(evs) != 0 {
			t.Errorf("events %+v, want none", evs)
		}
	})
}

type pushFailingNonces struct {
	*store.Store
	err error
}

func (f *pushFailingNonces) UseNonce(string, time.Time, time.Time, time.Duration) (bool, error) {
	return false, f.err
}

// TestPushMethodAndPath: only POST /v1/push is served, and nothing else is
// a push.
func TestPushMethodAndPath(t *testing.T) {
	e := newPushEnv(t, nil)
	before := e.snap()
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, e.srv.URL+PushPath, nil)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != http.MethodPost {
			t.Errorf("%s: %d Allow %q, want 405 Allow POST", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	for _, path := range []string{"/", "/v1/push/", "/v1/pushx", "/v2/push"} {
		b := e.hint(e.newNonce())
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(b))
		req.Header.Set(SignatureHeader, e.sign(b))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("POST %s: %d, want 404", path, resp.StatusCode)
		}
	}
	if evs := e.eventsSince(before); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}
	if pulls, applies, _ := e.target.calls(); pulls+applies != 0 {
		t.Errorf("target called: %d pulls, %d applies", pulls, applies)
	}
}

// TestPushRate: beyond Rate pushes a second (a burst of Rate), a push is
// answered 503 with Retry-After: 1 before its body is read, with no
// event; the bucket refills with time. The default cap is
// DefaultPushRate.
func TestPushRate(t *testing.T) {
	e := newPushEnv(t, func(c *PushConfig) { c.Rate = 3 })
	before := e.snap()
	for i := range 3 {
		b := e.hint(e.newNonce())
		if r := e.post(b, e.sign(b)); r.status != 200 {
			t.Fatalf("push %d of the burst: %d %v, want 200", i+1, r.status, r.body)
		}
	}
	// A forged push beyond the burst is not judged: 503, not 401.
	b := e.hint(e.newNonce())
	r := e.post(b, "AAAA")
	if r.status != 503 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("push beyond the rate: %d Retry-After %q, want 503 Retry-After 1", r.status, r.header.Get("Retry-After"))
	}
	for _, ev := range e.eventsSince(before) {
		if ev.Type == kiosk.EvPushRejected {
			t.Errorf("event %+v for a push turned away by the rate", ev)
		}
	}

	var tb tokenBucket
	tb = tokenBucket{rate: 2, tokens: 2}
	t0 := time.Unix(1_800_000_000, 0)
	got := []bool{tb.take(t0), tb.take(t0), tb.take(t0), tb.take(t0.Add(499 * time.Millisecond)), tb.take(t0.Add(500 * time.Millisecond)), tb.take(t0.Add(10 * time.Second)), tb.take(t0.Add(10 * time.Second)), tb.take(t0.Add(10 * time.Second))}
	want := []bool{true, true, false, false, true, true, true, false}
	if !slices.Equal(got, want) {
		t.Errorf("token bucket of 2/s: %v, want %v", got, want)
	}
	if h := NewPushHandler(PushConfig{DeviceID: testDevice, PublicKey: e.priv.Public().(ed25519.PublicKey)}, e.st, e.target).(*pushHandler); h.cfg.Rate != DefaultPushRate {
		t.Errorf("default rate %d, want %d", h.cfg.Rate, DefaultPushRate)
	}
}

// TestPushBusy: beyond MaxConcurrent pushes at once, a push is answered
// 503 with Retry-After: 1 at once; the pushes in progress complete.
func TestPushBusy(t *testing.T) {
	e := newPushEnv(t, nil)
	hold, entered := make(chan struct{}), make(chan struct{}, DefaultMaxConcurrentPushes)
	e.target.hold, e.target.entered = hold, entered
	results := make(chan pushResp, DefaultMaxConcurrentPushes)
	for i := range DefaultMaxConcurrentPushes {
		b := e.doc(PushFull, e.newNonce(), Header{IssuedAt: pushNow, Full: true,
			Cursor: fmt.Sprintf("c-%d", 10+i)}, testCred(fmt.Sprintf("c-%d", 10+i), "404040"))
		sig := e.sign(b)
		go func() { results <- e.post(b, sig) }()
	}
	deadline := time.After(20 * time.Second)
	for range DefaultMaxConcurrentPushes {
		select {
		case <-entered:
		case <-deadline:
			t.Fatal("pushes did not reach the target")
		}
	}
	before := e.snap()
	b := e.hint(e.newNonce())
	r := e.post(b, e.sign(b))
	if r.status != 503 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("third push: %d Retry-After %q, want 503 Retry-After 1", r.status, r.header.Get("Retry-After"))
	}
	if evs := e.eventsSince(before); len(evs) != 0 {
		t.Errorf("events %+v, want none for a 503", evs)
	}
	close(hold)
	for range DefaultMaxConcurrentPushes {
		select {
		case r := <-results:
			if r.status != 200 {
				t.Errorf("held push: %d %v, want 200", r.status, r.body)
			}
		case <-deadline:
			t.Fatal("held pushes did not complete")
		}
	}
	// The slots are free again.
	b = e.hint(e.newNonce())
	if r := e.post(b, e.sign(b)); r.status != 200 {
		t.Errorf("push after the others: %d %v, want 200", r.status, r.body)
	}
}

// probeRef is the probe's reference: jsontext, reading the top level token
// by token (duplicate names allowed but for nonce and kind, as the probe).
func probeRef(data []byte) (nonce bool, kind string, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	tok, err := dec.ReadToken()
	if err != nil || tok.Kind() != '{' {
		return false, "", false
	}
	seen := map[string]bool{}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return false, "", false
		}
		key := name.String()
		if key != "nonce" && key != "kind" {
			if err := dec.SkipValue(); err != nil {
				return false, "", false
			}
			continue
		}
		if seen[key] {
			return false, "", false
		}
		seen[key] = true
		v, err := dec.ReadToken()
		if err != nil {
			return false, "", false
		}
		switch v.Kind() {
		case '"':
			if key == "nonce" {
				nonce = v.String() != ""
			} else {
				kind = v.String()
			}
		case 'n':
		default:
			return false, "", false
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return false, "", false
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return false, "", false
	}
	return nonce, kind, true
}

// probe runs the probe over data written in the given pieces.
func probeRun(data []byte, split ...int) (nonce bool, kind string, err error) {
	var p pushProbe
	prev := 0
	for _, s := range split {
		if s >= prev && s <= len(data) {
			p.Write(data[prev:s])
			prev = s
		}
	}
	p.Write(data[prev:])
	err = p.finish()
	return p.nonce, p.kind, err
}

// probeCheck compares the probe, whole, in two pieces and byte by byte,
// with the reference and with the document reader.
func probeCheck(t *testing.T, data []byte, split int) {
	t.Helper()
	nonce, kind, err := probeRun(data)
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("probe error %v does not wrap ErrMalformed", err)
	}
	n2, k2, err2 := probeRun(data, split)
	bytewise := make([]int, len(data))
	for i := range bytewise {
		bytewise[i] = i
	}
	n3, k3, err3 := probeRun(data, bytewise...)
	if n2 != nonce || k2 != kind || (err2 == nil) != (err == nil) || n3 != nonce || k3 != kind || (err3 == nil) != (err == nil) {
		t.Fatalf("probe depends on the pieces: whole (%v %q %v), split at %d (%v %q %v), bytewise (%v %q %v)",
			nonce, kind, err, split, n2, k2, err2, n3, k3, err3)
	}
	rn, rk, rok := probeRef(data)
	if rok != (err == nil) {
		t.Fatalf("probe says %v, jsontext says ok=%v, for %q", err, rok, data)
	}
	if rok {
		if len(rk) > probeCapture {
			rk = ""
		}
		if rn != nonce || rk != kind {
			t.Fatalf("probe nonce %v kind %q, jsontext %v %q, for %q", nonce, kind, rn, rk, data)
		}
	}
	// The document reader accepts nothing the probe rejects, and reads
	// the same nonce and kind.
	if r, derr := NewDocReader(bytes.NewReader(data), int64(len(data))); derr == nil {
		h := r.Header()
		if err != nil {
			t.Fatalf("document reader accepts what the probe rejects (%v): %q", err, data)
		}
		want := h.Kind
		if len(want) > probeCapture {
			want = ""
		}
		if (h.Nonce != "") != nonce || want != kind {
			t.Fatalf("document reader nonce %q kind %q, probe %v %q", h.Nonce, h.Kind, nonce, kind)
		}
	}
}

func TestPushProbe(t *testing.T) {
	deep := func(n int) []byte {
		return []byte(`{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `,"nonce":"x","kind":"hint"}`)
	}
	cases := []struct {
		in    string
		ok    bool
		nonce bool
		kind  string
	}{
		{`{"nonce":"n-1","kind":"hint"}`, true, true, "hint"},
		{" \t\r\n{\"nonce\":\"n-1\",\"kind\":\"full\"} \n", true, true, "full"},
		{`{"non\u0063e":"n","\u006bind":"\u0064elta"}`, true, true, "delta"},
		{`{"nonce":"\u0000","kind":"command"}`, true, true, "command"},
		{`{"nonce":"","kind":null}`, true, false, ""},
		{`{"nonce":"n","kind":"hintttttttttttttttttttttttt"}`, true, true, ""},
		{`{"a":{"nonce":"nested","kind":"hint"},"b":[1,-0.5e+3,0,true,false,null,"\ud83d\ude00é"]}`, true, false, ""},
		{`{"a":1,"a":2}`, true, false, ""},
		{`{"nonce":"a","nonce":"b"}`, false, false, ""},
		{`{"kind":"hint","kind":"hint"}`, false, false, ""},
		{`{"nonce":1}`, false, false, ""},
		{`{"kind":{}}`, false, false, ""},
		{`{"a":01}`, false, false, ""},
		{`{"a":1.}`, false, false, ""},
		{`{"a":-}`, false, false, ""},
		{`{"a":1e}`, false, false, ""},
		{`{"a":+1}`, false, false, ""},
		{`{"a":tru}`, false, false, ""},
		{`{"a":"\ud800"}`, false, false, ""},
		{`{"a":"\udc00\ud800"}`, false, false, ""},
		{`{"a":"\ud800\u0041"}`, false, false, ""},
		{`{"a":"\x"}`, false, false, ""},
		{"{\"a\":\"\x01\"}", false, false, ""},
		{"{\"a\":\"\xff\"}", false, false, ""},
		{"{\"a\":\"\xed\xa0\x80\"}", false, false, ""}, // an encoded surrogate
		{"\xef\xbb\xbf{}", false, false, ""},           // byte order mark
		{`{"a":[1,]}`, false, false, ""},
		{`{"a":1,}`, false, false, ""},
		{`{"a" 1}`, false, false, ""},
		{`{"a":[}`, false, false, ""},
		{`{} {}`, false, false, ""},
		{`{}}`, false, false, ""},
		{`[]`, false, false, ""},
		{`null`, false, false, ""},
		{``, false, false, ""},
		{`{`, false, false, ""},
		{string(deep(maxProbeDepth)), true, true, "hint"},
		{string(deep(maxProbeDepth + 1)), false, false, ""},
	}
	for i, tc := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			nonce, kind, err := probeRun([]byte(tc.in))
			if (err == nil) != tc.ok || tc.ok && (nonce != tc.nonce || kind != tc.kind) {
				t.Errorf("probe(%.60q) = %v %q %v, want ok=%v nonce=%v kind %q", tc.in, nonce, kind, err, tc.ok, tc.nonce, tc.kind)
			}
			if len(tc.in) < 1000 {
				probeCheck(t, []byte(tc.in), len(tc.in)/2)
			} else if _, _, rok := probeRef([]byte(tc.in)); rok != tc.ok {
				t.Errorf("jsontext says ok=%v", rok)
			}
		})
	}
}

// FuzzPushProbe checks the probe against jsontext and the document
// reader, whatever the pieces it is fed in.
func FuzzPushProbe(f *testing.F) {
	for _, s := range []string{
		`{"nonce":"n-1","kind":"hint"}`,
		`{"device_id":"spr-0001","issued_at":"2026-11-20T10:06:00Z","nonce":"n-8c1f","kind":"hint"}`,
		`{"non\u0063e":"\ud83d\ude00","kind":"full","credentials":[{"id":"c-1","doors":["main"]}],"x":-1.5e-7}`,
		`{"a":[true,false,null,0,{"b":"\"\\\/\b\f\n\r\t"}]}`,
		`{"nonce":"a","nonce":"b"}`,
		"{\"a\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}",
	} {
		f.Add([]byte(s), uint16(len(s)/3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		if len(data) > 4096 {
			return
		}
		probeCheck(t, data, int(split)%(len(data)+1))
	})
}

// FuzzPushBody pushes arbitrary bodies, signed and not, over HTTP into a
// real store: no panic, no 200 unless signed, no 500, and every rejection
// one push.rejected event with the store untouched.
func FuzzPushBody(f *testing.F) {
	e := newPushEnv(f, func(c *PushConfig) { c.MaxDocumentBytes = 64 << 10 })
	cmd := Command{ID: "cmd-1", Type: "unlock", Door: "main"}
	seeds := [][]byte{
		e.hint("n-seed-1"),
		e.doc(PushCommand, "n-seed-2", Header{Commands: []Command{cmd}}),
		e.doc(PushDelta, "n-seed-3", Header{Base: "c-1", Cursor: "c-2"}, testCred("c-4", "404040")),
		e.doc(PushFull, "n-seed-4", Header{Full: true, Cursor: "c-9"}, testCred("c-1", "246810"), testCred("c-4", "404040")),
		e.doc(PushDelta, "n-seed-5", Header{Base: "c-0", Cursor: "c-2"}),
		e.doc("reboot", "n-seed-6", Header{}),
		pushRawDoc(`,"nonce":"n-seed-7","kind":"hint","removed":[""]`),
		[]byte(`{"nonce":"x","kind":"hint"}`),
		[]byte("not json"),
		nil,
	}
	for _, s := range seeds {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, signed bool) {
		e.tb = t
		sig := ""
		if signed {
			sig = e.sign(b)
		}
		before := e.snap()
		r := e.post(b, sig)
		switch r.status {
		case 200:
			if !signed {
				t.Fatalf("unsigned push accepted: %q", b)
			}
		case 409:
			if evs := e.eventsSince(before); len(evs) != 0 {
				t.Fatalf("409 recorded events %+v", evs)
			}
		case 400, 401, 403, 413, 422:
			e.wantRejected(before, r.body["error"], r.status)
			if !signed && r.status != 400 && r.status != 401 {
				t.Fatalf("unsigned push got %d", r.status)
			}
		default:
			t.Fatalf("status %d %v for %q", r.status, r.body, b)
		}
	})
}

// BenchmarkPushProbe measures the probe's throughput on a document with
// a thousand credentials.
func BenchmarkPushProbe(b *testing.B) {
	creds := make([]*kiosk.Credential, 1000)
	for i := range creds {
		creds[i] = testCred(fmt.Sprintf("c-%d", i), strconv.Itoa(100000+i))
		creds[i].Schedule = []kiosk.Window{{Days: []time.Weekday{time.Monday, time.Friday}, From: 420, To: 1200}}
		creds[i].Doors = []string{"main", "side"}
	}
	doc := body(b, Header{IssuedAt: t0, Full: true, Cursor: "c-1", Nonce: "n", Kind: PushFull}, creds...)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		var p pushProbe
		p.Write(doc)
		if err := p.finish(); err != nil {
			b.Fatal(err)
		}
	}
}

// pushLogBuffer collects log output from the handler's goroutines.
type pushLogBuffer struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (l *pushLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *pushLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPushLogsNoBody: what an unverified body holds reaches neither the
// log nor the events.
func TestPushLogsNoBody(t *testing.T) {
	const marker = "MARKER-4711"
	var logs pushLogBuffer
	e := newPushEnv(t, func(c *PushConfig) { c.Log = slog.New(slog.NewTextHandler(&logs, nil)); c.MaxDocumentBytes = 200 })
	bodies := []string{
		marker,
		`{"nonce":"` + marker,
		`{"nonce":"x","kind":"` + marker + `"}`,
		`{"nonce":"x","kind":"hint","a":` + marker + `}`,
		`{"nonce":"x","kind":"hint","device_id":"` + marker + `"}`, // unsigned: 401
		`{"nonce":"x","kind":"hint","a":"` + marker + strings.Repeat(" ", 200) + `"}`,
	}
	before := e.snap()
	for _, b := range bodies {
		if r := e.post([]byte(b), ""); r.status/100 != 4 {
			t.Errorf("%q: status %d", b, r.status)
		}
	}
	if strings.Contains(logs.String(), marker) {
		t.Errorf("the log shows body content:\n%s", logs.String())
	}
	evs := e.eventsSince(before)
	if len(evs) != len(bodies) {
		t.Errorf("%d events, want %d", len(evs), len(bodies))
	}
	if j, _ := json.Marshal(evs); bytes.Contains(j, []byte(marker)) {
		t.Errorf("events show body content: %s", j)
	}
}

// TestPushBodyNotHeldInMemory pushes a large hostile body, one huge
// string and a huge list, and checks the server did not allocate its
// size: it streams to the spool file, and only a signed body is parsed.
func TestPushBodyNotHeldInMemory(t *testing.T) {
	const size = 8 << 20
	e := newPushEnv(t, nil)
	var b bytes.Buffer
	b.WriteString(`{"nonce":"n-1","kind":"delta","removed":[`)
	for b.Len() < size/2 {
		b.WriteString(`"c-123456",`)
	}
	b.WriteString(`"c-0"],"x":"`)
	for b.Len() < size-2 {
		b.WriteByte('a')
	}
	b.WriteString(`"}`)
	body := b.Bytes()
	sig := e.sign(append([]byte(nil), body[:100]...)) // a signature, of something else
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	r := e.post(body, sig)
	runtime.ReadMemStats(&m1)
	if r.status != 401 {
		t.Fatalf("status %d %v, want 401", r.status, r.body)
	}
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("pushing %d bytes allocated %d KiB in the process", len(body), alloc>>10)
	if alloc > size/4 {
		t.Errorf("allocated %d bytes for a %d-byte body: it is held in memory", alloc, len(body))
	}
}

// A flood of rejected pushes costs the journal one event per reason per
// RejectEventEvery, and loses no count: the held-back rejections are
// carried by the next event of their reason, or by a summary event when
// the burst ends, whose "count" says how many pushes each stands for.
func TestPushRejectEventBudget(t *testing.T) {
	const every = 300 * time.Millisecond
	e := newPushEnv(t, func(c *PushConfig) { c.RejectEventEvery = every })
	appended, unsub := e.st.Subscribe()
	defer unsub()
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := func() *http.Response {
		t.Helper()
		b := e.doc(PushHint, e.newNonce(), Header{})
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PushPath, bytes.NewReader(b))
		req.Header.Set(SignatureHeader, Sign(other, b))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	const n = 50
	start := time.Now()
	for range n {
		if resp := forged(); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged push: %d, want 401", resp.StatusCode)
		}
	}
	// Every rejection is answered 401; the events add up to n.
	total, count := 0, 0
	deadline := time.After(10 * time.Second)
	for total < n {
		evs, err := e.st.Pending(0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		total, count = 0, 0
		for _, ev := range evs {
			if ev.Type != kiosk.EvPushRejected {
				continue
			}
			count++
			if ev.Detail["reason"] != ReasonBadSignature {
				t.Fatalf("event detail %v", ev.Detail)
			}
			switch c := ev.Detail["count"].(type) {
			case float64:
				total += int(c)
			case int:
				total += c
			case nil:
				total++
			default:
				t.Fatalf("count %v (%T)", c, c)
			}
		}
		if total >= n {
			break
		}
		select {
		case <-appended:
		case <-deadline:
			t.Fatalf("events account for %d of %d rejected pushes", total, n)
		}
	}
	// At most one event per period while they came, plus the summary.
	if limit := 2 + int(time.Since(start)/every); count > limit {
		t.Errorf("%d push.rejected events for %d pushes in %v; want at most %d", count, n, time.Since(start), limit)
	}
	if total != n {
		evs, _ := e.st.Pending(0, 1000)
		for _, ev := range evs {
			t.Logf("%d %s %v", ev.Seq, ev.Type, ev.Detail)
		}
		t.Fatalf("events account for %d rejected pushes, want %d", total, n)
	}
}
