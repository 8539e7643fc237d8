package sync

// The test harness of the client loops: a fake portal on a real loopback
// HTTP server that signs documents and records what it receives, a real
// store on disk, and a Syncer whose waits are handed to the test, so that
// every test steps the loops itself instead of sleeping.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	gosync "sync"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// waitTimeout bounds every wait of these tests for something the syncer
// does; a healthy run takes milliseconds.
const waitTimeout = 10 * time.Second

const testToken = "tok-s3cr3t-never-logged"

// fakePortal is a portal of SPEC §6 for the tests, on a real HTTP server.
type fakePortal struct {
	t    *testing.T
	srv  *httptest.Server
	priv ed25519.PrivateKey

	mu gosync.Mutex
	// onSync answers GET .../sync; nil answers 503 without Retry-After.
	onSync func(w http.ResponseWriter, r *http.Request)
	// accept says whether to accept an event (nil: all); seen is how
	// many times it was received before this request.
	accept func(ev map[string]any, seen int) bool
	// extraAccepted is added to every accepted list.
	extraAccepted []string
	// eventsDown aborts every upload (connection closed); eventsStatus,
	// when not 0, answers uploads with that status.
	eventsDown   bool
	eventsStatus int
	// onEvents, when set, may answer an upload itself (returning true).
	onEvents func(w http.ResponseWriter) bool
	// hbAnswer answers the n-th heartbeat (from 1): status and body.
	hbAnswer func(n int) (int, string)

	events   map[string]map[string]any // accepted events by id
	received map[string]int            // times each id was received
	accepted map[string]int            // times each id was accepted
	batches  [][]uint64                // seqs of each upload, in order
	hbs      []map[string]any
	badAuth  int
	requests map[string]int // by path suffix: sync, events, heartbeat

	syncReqs chan url.Values     // each sync request's query
	evReqs   chan struct{}       // a signal after each upload
	hbReqs   chan map[string]any // each heartbeat body
	hbDone   chan struct{}       // a signal after each heartbeat answer
}

var subSecondRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$`)

func newFakePortal(t *testing.T) *fakePortal {
	p := &fakePortal{
		t: t, priv: testPriv(),
		events: map[string]map[string]any{}, received: map[string]int{}, accepted: map[string]int{},
		requests: map[string]int{},
		syncReqs: make(chan url.Values, 1000), evReqs: make(chan struct{}, 1),
		hbReqs: make(chan map[string]any, 1000), hbDone: make(chan struct{}, 1000),
	}
	mux := http.NewServeMux()
	base := "/v1/devices/" + testDevice
	mux.HandleFunc("GET "+base+"/sync", p.auth("sync", p.sync))
	mux.HandleFunc("POST "+base+"/events", p.auth("events", p.uploads))
	mux.HandleFunc("POST "+base+"/heartbeat", p.auth("heartbeat", p.heartbeat))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake portal: unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakePortal) auth(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests[name]++
		ok := r.Header.Get("Authorization") == "Bearer "+testToken
		if !ok {
			p.badAuth++
		}
		p.mu.Unlock()
		if !ok {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (p *fakePortal) set(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn()
}

func (p *fakePortal) sync(w http.ResponseWriter, r *http.Request) {
	p.syncReqs <- r.URL.Query()
	p.mu.Lock()
	h := p.onSync
	p.mu.Unlock()
	if h == nil {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	h(w, r)
}

// serve answers with a signed document.
func (p *fakePortal) serve(w http.ResponseWriter, b []byte) {
	w.Header().Set(SignatureHeader, Sign(p.priv, b))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// serveByQuery answers sync requests with the document whose key is the
// request's raw query; any other query fails the test.
func (p *fakePortal) serveByQuery(docs map[string][]byte) {
	p.set(func() {
		p.onSync = func(w http.ResponseWriter, r *http.Request) {
			b, ok := docs[r.URL.RawQuery]
			if !ok {
				p.t.Errorf("fake portal: unexpected sync query %q", r.URL.RawQuery)
				http.Error(w, "no such document", http.StatusNotFound)
				return
			}
			p.serve(w, b)
		}
	})
}

func (p *fakePortal) uploads(w http.ResponseWriter, r *http.Request) {
	defer func() {
		select {
		case p.evReqs <- struct{}{}:
		default:
		}
	}()
	var req struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		p.t.Errorf("fake portal: upload body: %v", err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eventsDown {
		panic(http.ErrAbortHandler) // the connection drops
	}
	if p.eventsStatus != 0 {
		http.Error(w, "refused", p.eventsStatus)
		return
	}
	if p.onEvents != nil && p.onEvents(w) {
		return
	}
	if len(req.Events) == 0 || len(req.Events) > MaxUploadBatch {
		p.t.Errorf("fake portal: upload of %d events", len(req.Events))
	}
	var seqs []uint64
	ids := []string{}
	for _, ev := range req.Events {
		id, _ := ev["id"].(string)
		seq, _ := ev["seq"].(float64)
		seqs = append(seqs, uint64(seq))
		if ts, _ := ev["time"].(string); !subSecondRE.MatchString(ts) {
			p.t.Errorf("fake portal: event %s time %q is not RFC 3339 UTC with sub-second precision", id, ts)
		}
		seen := p.received[id]
		p.received[id]++
		if p.accept == nil || p.accept(ev, seen) {
			p.events[id] = ev
			p.accepted[id]++
			ids = append(ids, id)
		}
	}
	p.batches = append(p.batches, seqs)
	ids = append(ids, p.extraAccepted...)
	json.NewEncoder(w).Encode(map[string]any{"accepted": ids})
}

func (p *fakePortal) heartbeat(w http.ResponseWriter, r *http.Request) {
	defer func() { p.hbDone <- struct{}{} }()
	var hb map[string]any
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		p.t.Errorf("fake portal: heartbeat body: %v", err)
	}
	p.mu.Lock()
	p.hbs = append(p.hbs, hb)
	n := len(p.hbs)
	answer := p.hbAnswer
	p.mu.Unlock()
	p.hbReqs <- hb
	if answer == nil {
		return // 200, empty body
	}
	code, body := answer(n)
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// nextSync returns the query of the next sync request.
func (p *fakePortal) nextSync(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-p.syncReqs:
		return q
	case <-time.After(waitTimeout):
		t.Fatal("no sync request")
		return nil
	}
}

// waitAccepted waits until the portal has accepted n distinct events.
func (p *fakePortal) waitAccepted(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		got := len(p.events)
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-p.evReqs:
		case <-deadline:
			t.Fatalf("portal has %d events, want %d", got, n)
		}
	}
}

// waitReq is one wait of a loop, handed to the test: d is what the loop
// asked for; a send on fire ends the wait.
type waitReq struct {
	d    time.Duration
	fire chan time.Time
}

func (w waitReq) Fire() { w.fire <- time.Time{} }

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a Syncer on a real store talking to a fake portal.
type harness struct {
	t      *testing.T
	dir    string
	st     *store.Store
	portal *fakePortal
	cfg    Config
	s      *Syncer
	waits  map[string]chan waitReq // by loop
	idle   chan struct{}
	cmds   chan Command
	logs   *lockedBuffer

	obsMu    gosync.Mutex
	observed []time.Time

	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, edit ...func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t: t, dir: dir, portal: newFakePortal(t),
		st:    storetest.OpenDir(t, filepath.Join(dir, "state")),
		cmds:  make(chan Command, 100),
		logs:  &lockedBuffer{},
		idle:  make(chan struct{}, 1),
		waits: map[string]chan waitReq{"pull": make(chan waitReq, 1000), "upload": make(chan waitReq, 1000), "heartbeat": make(chan waitReq, 1000)},
	}
	h.cfg = Config{
		URL:          h.portal.srv.URL,
		DeviceID:     testDevice,
		Token:        testToken,
		PublicKey:    testPriv().Public().(ed25519.PublicKey),
		SyncInterval: time.Second, HeartbeatInterval: time.Second,
		SpoolDir: filepath.Join(dir, "state", "spool"),
		Now:      testNow,
		Observe: func(t time.Time) {
			h.obsMu.Lock()
			h.observed = append(h.observed, t)
			h.obsMu.Unlock()
		},
		RunCommand: func(ctx context.Context, c Command) error {
			h.cmds <- c
			return nil
		},
		Version: "1.2.3",
		Log:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rand:    func() float64 { return 0.5 }, // no jitter: waits are exact
	}
	for _, e := range edit {
		e(&h.cfg)
	}
	h.s = h.newSyncer(h.st)
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("syncer log:\n%s", h.logs.String())
		}
		if log := h.logs.String(); bytes.Contains([]byte(log), []byte(testToken)) {
			t.Errorf("the token is in the log:\n%s", log)
		}
	})
	return h
}

// newSyncer makes a Syncer on st with the harness's config and hooks.
func (h *harness) newSyncer(st *store.Store) *Syncer {
	h.t.Helper()
	s, err := NewSyncer(h.cfg, StoreSyncer(st))
	if err != nil {
		h.t.Fatalf("NewSyncer: %v", err)
	}
	s.after = func(loop string, d time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		h.waits[loop] <- waitReq{d: d, fire: c}
		return c
	}
	s.idle = func() {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
	return s
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.s.Run(ctx) }()
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Fatal("Run did not return after cancel")
	}
}

// nextWait returns the next wait of a loop.
func (h *harness) nextWait(loop string) waitReq {
	h.t.Helper()
	select {
	case w := <-h.waits[loop]:
		return w
	case <-time.After(waitTimeout):
		h.t.Fatalf("the %s loop did not wait", loop)
		return waitReq{}
	}
}

// wantWait takes the next wait of a loop and checks its length.
func (h *harness) wantWait(loop string, d time.Duration) waitReq {
	h.t.Helper()
	w := h.nextWait(loop)
	if w.d != d {
		h.t.Errorf("%s wait = %v, want %v", loop, w.d, d)
	}
	return w
}

// waitDrained waits until the uploader has nothing pending.
func (h *harness) waitDrained() {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		n, err := h.st.Backlog()
		if err != nil {
			h.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		select {
		case <-h.idle:
		case <-h.portal.evReqs:
		case <-deadline:
			h.t.Fatalf("backlog still %d", n)
		}
	}
}

// preload applies a full document with creds at cursor straight into the
// store, before the syncer runs, and clears the journal.
func (h *harness) preload(cursor string, creds ...*kiosk.Credential) {
	h.t.Helper()
	b := body(h.t, fullHeader(cursor, t0), creds...)
	if _, err := Apply(context.Background(), StoreApplier(h.st), testOpts(), bytes.NewReader(b), int64(len(b))); err != nil {
		h.t.Fatal(err)
	}
	h.clearJournal()
}

func (h *harness) clearJournal() {
	h.t.Helper()
	evs := pendingEvents(h.t, h.st)
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	if err := h.st.Ack(ids); err != nil {
		h.t.Fatal(err)
	}
}

// state returns the store's cursor and credential count.
func (h *harness) state() (string, int) {
	h.t.Helper()
	st, err := h.st.SyncState()
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Cursor, h.st.Count()
}

func (h *harness) wantState(cursor string, n int) {
	h.t.Helper()
	if c, got := h.state(); c != cursor || got != n {
		h.t.Errorf("store at cursor %q with %d credentials, want %q with %d", c, got, cursor, n)
	}
}

// journal returns the events in the store's journal of the given type.
func (h *harness) journal(typ string) []kiosk.Event {
	h.t.Helper()
	var out []kiosk.Event
	for _, ev := range pendingEvents(h.t, h.st) {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// recordN records n events into the store.
func recordN(t *testing.T, st *store.Store, n int) {
	t.Helper()
	now, synced := testNow()
	for n > 0 {
		k := min(n, 250)
		evs := make([]*kiosk.Event, k)
		for i := range evs {
			evs[i] = &kiosk.Event{Time: now, ClockSynced: synced, Type: kiosk.EvDoorClosed, Door: "main"}
		}
		if err := st.Record(evs...); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

// drainCmds returns the commands run so far.
func (h *harness) drainCmds() []string {
	var out []string
	for {
		select {
		case c := <-h.cmds:
			out = append(out, c.ID)
		default:
			return out
		}
	}
}
