package main

// The crash test of issue 6: kioskd runs as a process of its own (sim
// hardware, a real bbolt state directory kept across restarts, a serial
// keypad on a pseudo-terminal, the reference portal on loopback with its
// pusher) and is killed with SIGKILL at random moments of grants, one-time
// spends, full snapshots, deltas (pulled and pushed) and uploads, hundreds
// of times, and started again each time. After every kill the test checks
// what SPEC §2, §4, §5 and §6.4 promise across a power cut:
//
//   - the store opens (a copy of the state directory opens with
//     store.Open, and the restarted kioskd reaches ready);
//   - seq never goes back, has no gap and is never reused: every seq up to
//     the journal's last is either pending in the journal or at the
//     portal, and the same seq seen twice is the same event;
//   - no use is given twice: a limited credential is granted at most uses
//     times in all, and every relay pulse and every logged decision is an
//     event that was durable before it;
//   - every event recorded before a kill reaches the portal (checked at
//     the end, once the backlog is 0), where seqs have no gaps;
//   - no relay is energised at start: the relay line is requested
//     inactive, and nothing turns it on but a recorded grant.
//
// The random choices come from a seeded generator, one per round: what a
// round does and when its kill comes depend on the seed and the round's
// number only, so -crash.seed (or KIOSKD_CRASH_SEED) replays them (the
// PINs typed also depend on the grants before, and the scheduler's timing
// is never replayed). -crash.kills (or KIOSKD_CRASH_KILLS) sets the number
// of kills (default 200, about a minute); -short skips the test. The
// last line, "CRASH SUMMARY: ...", holds the figures measured.
//
// SIGKILL leaves the kernel's page cache intact, so this test cannot see
// a missing fsync; what it checks is the order of commits, relay moves,
// log lines and uploads, and every recovery path a dead process leaves.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	"kioskd/store"
)

var (
	crashKillsFlag = flag.Int("crash.kills", 0, "SIGKILLs of TestCrashKills (0: $KIOSKD_CRASH_KILLS, else 200)")
	crashSeedFlag  = flag.Uint64("crash.seed", 0, "seed of TestCrashKills' random choices (0: $KIOSKD_CRASH_SEED, else from the clock)")
)

const (
	crashDefaultKills = 200
	crashCards        = 600 // background card credentials: a full snapshot has many pages
	crashPageSize     = 100 // credentials a page of a full snapshot
	crashRelay        = "consumer=kioskd-main-relay"
)

// crashSetting returns the flag's value, else the environment's, else def.
func crashSetting(flagVal uint64, env string, def uint64) uint64 {
	if flagVal != 0 {
		return flagVal
	}
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err == nil && v > 0 {
			return v
		}
	}
	return def
}

// crashPIN is a PIN credential the test issued (id "" for a PIN that was
// never issued: unknown).
type crashPIN struct {
	pin  string
	id   string
	uses int // 0 = unlimited
}

// crashSync answers the kiosk's pulls through the portal, forcing full
// snapshots while asked to, and counts what it serves.
type crashSync struct {
	next      http.Handler
	forceFull atomic.Bool
	inflight  atomic.Int32
	fulls     atomic.Int64 // first pages of full snapshots served
}

func (s *crashSync) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	q := r.URL.Query()
	if s.forceFull.Load() {
		q.Del("cursor")
		r.URL.RawQuery = q.Encode()
	}
	if q.Get("cursor") == "" && q.Get("page") == "" {
		s.fulls.Add(1)
	}
	s.next.ServeHTTP(w, r)
}

// crashUploads wraps the portal's handler: while stalling, an events
// upload is ingested but its answer held back until released or the kiosk
// is gone (the portal has the events, the kiosk never hears so).
type crashUploads struct {
	next     http.Handler
	stall    atomic.Bool
	inflight atomic.Int32
	unacked  atomic.Int64 // uploads ingested whose answer the kiosk never got

	mu      gosync.Mutex
	release chan struct{}
}

func (u *crashUploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/events") {
		u.next.ServeHTTP(w, r)
		return
	}
	u.inflight.Add(1)
	defer u.inflight.Add(-1)
	if !u.stall.Load() {
		u.next.ServeHTTP(w, r)
		return
	}
	u.mu.Lock()
	release := u.release
	u.mu.Unlock()
	rec := httptest.NewRecorder()
	u.next.ServeHTTP(rec, r)
	select {
	case <-release:
	case <-r.Context().Done():
		u.unacked.Add(1)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// setStall starts or ends stalling; ending releases every held answer.
func (u *crashUploads) setStall(on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if on {
		u.release = make(chan struct{})
	} else if u.release != nil {
		close(u.release)
		u.release = nil
	}
	u.stall.Store(on)
}

// crashPushes is the push URL the portal knows: a proxy to the kiosk's
// push listener that counts the pushes in flight.
type crashPushes struct {
	proxy    *httputil.ReverseProxy
	inflight atomic.Int32
}

func (p *crashPushes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	p.proxy.ServeHTTP(w, r)
}

// crashHistory is every event the test has seen, from journal copies
// after each kill and from the portal.
type crashHistory struct {
	storeID  string
	bySeq    map[uint64]kiosk.Event
	recorded map[string]bool // ids seen in the journal after a kill
	atPortal map[string]bool // ids the portal holds
	grants   map[string]int  // access.granted events by credential id
}

// add records e, seen in where; the same seq seen before must be the same
// event.
func (h *crashHistory) add(t *testing.T, e kiosk.Event, where string) {
	t.Helper()
	sid, seqText, ok := strings.Cut(e.ID, "-")
	if !ok || seqText != strconv.FormatUint(e.Seq, 10) {
		t.Errorf("%s: event id %q does not match its seq %d", where, e.ID, e.Seq)
		return
	}
	if h.storeID == "" {
		h.storeID = sid
	} else if sid != h.storeID {
		t.Errorf("%s: event %s of store %s; the kiosk's store is %s (the store was recreated)", where, e.ID, sid, h.storeID)
	}
	if old, ok := h.bySeq[e.Seq]; ok {
		if !sameEvent(old, e) {
			t.Errorf("%s: seq %d reused: %+v, earlier %+v", where, e.Seq, e, old)
		}
		return
	}
	h.bySeq[e.Seq] = e
	if e.Type == kiosk.EvAccessGranted {
		h.grants[e.CredentialID]++
	}
}

func sameEvent(a, b kiosk.Event) bool {
	return a.ID == b.ID && a.Seq == b.Seq && a.Time.Equal(b.Time) && a.ClockSynced == b.ClockSynced &&
		a.Type == b.Type && a.Door == b.Door && a.Input == b.Input && a.CredentialID == b.CredentialID &&
		a.HolderID == b.HolderID && a.Role == b.Role && a.Reason == b.Reason && a.Source == b.Source &&
		reflect.DeepEqual(a.Detail, b.Detail)
}

// crashStats are the figures of the summary line.
type crashStats struct {
	kills, startupKills, fullKills, pushKills, pullKills, uploadKills int
	unacked, relayOnAtKill, unloggedDecisions, leftovers              int
	decisions, relayPulses                                            int
}

// crashRig is the world of the crash test.
type crashRig struct {
	seed   uint64
	rng    *rand.Rand
	bin    string
	cfg    string
	state  string
	socket string
	tp     *testPortal
	master *os.File // the keypad's pty: what is "typed"
	slave  *os.File // kept open to clear its exclusive flag and flush it

	syncs   *crashSync
	uploads *crashUploads
	pushes  *crashPushes

	pins    []*crashPIN // issued, in order
	byIDs   map[string]*crashPIN
	unknown []*crashPIN
	taken   map[string]bool
	nextID  int

	hist     crashHistory
	runs     int    // processes started
	prevLast uint64 // the journal's last seq after the previous kill
	stats    crashStats
}

// crashRound is one run of kioskd, from start to kill.
type crashRound struct {
	mode   string
	p      *process
	typed  []*crashPIN
	killed chan crashKill // the kill, once sent
	fulls0 int64          // crashSync.fulls when the round began
	// fullApplied says a full snapshot committed in this run.
	fullApplied bool
}

// crashKill is what was in flight when the kill was sent.
type crashKill struct {
	push, pull, upload int32
}

func TestCrashKills(t *testing.T) {
	bin := buildKioskd(t) // skips with -short
	kills := int(crashSetting(uint64(max(*crashKillsFlag, 0)), "KIOSKD_CRASH_KILLS", crashDefaultKills))
	seed := crashSetting(*crashSeedFlag, "KIOSKD_CRASH_SEED", uint64(time.Now().UnixNano()))
	t.Logf("crash test: %d kills, seed %d (replay the choices with -crash.seed=%d)", kills, seed, seed)
	began := time.Now()
	r := newCrashRig(t, bin, seed)
	t.Run("first-sync", r.firstSync)

	for i := 1; i <= kills; i++ {
		if !t.Run(fmt.Sprintf("kill-%03d", i), func(t *testing.T) { r.round(t, i) }) {
			t.Fatalf("kill %d failed (seed %d)", i, seed)
		}
	}
	t.Run("drain", r.drain)
	if t.Failed() {
		return
	}
	r.finalChecks(t)

	s := r.stats
	s.unacked = int(r.uploads.unacked.Load())
	limited, grants := 0, 0
	for _, e := range r.hist.bySeq {
		if e.Type == kiosk.EvAccessGranted {
			grants++
			if c := r.byID(e.CredentialID); c != nil && c.uses > 0 {
				limited++
			}
		}
	}
	t.Logf("CRASH SUMMARY: %d SIGKILLs survived in %d runs of kioskd, %v (seed %d); kills at start %d, mid full snapshot %d, push in flight %d, pull in flight %d, upload in flight %d (answer held back %d), relay energised %d, decision durable but not logged %d; restarts removing a staged full load %d; checked %d events (seq 1..%d, no gap, none reused, all at the portal), %d decisions and %d relay pulses against the journal, %d grants (%d of limited-use credentials, none over its uses)",
		s.kills, r.runs, time.Since(began).Round(time.Second), seed,
		s.startupKills, s.fullKills, s.pushKills, s.pullKills, s.uploadKills, s.unacked, s.relayOnAtKill, s.unloggedDecisions,
		s.leftovers, len(r.hist.bySeq), r.prevLast, s.decisions, s.relayPulses, grants, limited)
}

func newCrashRig(t *testing.T, bin string, seed uint64) *crashRig {
	t.Helper()
	r := &crashRig{seed: seed, bin: bin, rng: rand.New(rand.NewPCG(seed, 0)), taken: map[string]bool{}, byIDs: map[string]*crashPIN{},
		hist: crashHistory{bySeq: map[uint64]kiosk.Event{}, recorded: map[string]bool{}, atPortal: map[string]bool{}, grants: map[string]int{}}}
	r.tp = newTestPortal(t, "", func(o *portal.Options) { o.PageSize = crashPageSize })

	// The portal's handler, wrapped: pulls through crashSync, uploads
	// through crashUploads. Set under tp.mu, which ServeHTTP takes
	// before it reads them.
	r.syncs = &crashSync{next: r.tp.handler}
	r.uploads = &crashUploads{next: r.tp.handler}
	r.tp.mu.Lock()
	r.tp.handler = r.uploads
	r.tp.syncHandler = r.syncs
	r.tp.mu.Unlock()

	var err error
	r.master, r.slave, err = pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.master.Close(); r.slave.Close() })

	pushAddr := freePort(t)
	target, _ := url.Parse("http://" + pushAddr)
	r.pushes = &crashPushes{proxy: httputil.NewSingleHostReverseProxy(target)}
	r.pushes.proxy.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	r.pushes.proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	r.pushes.proxy.Transport = &http.Transport{DisableKeepAlives: true}
	pushSrv := httptest.NewServer(r.pushes)
	t.Cleanup(pushSrv.Close)

	dir := t.TempDir()
	r.state = filepath.Join(dir, "state")
	r.cfg = filepath.Join(dir, "kioskd.toml")
	r.socket = filepath.Join(apiSocketDir(t), "kioskd.sock")
	writeProcessConfig(t, r.cfg, r.state, r.slave.Name(), r.socket, r.tp,
		fmt.Sprintf("push_listen        = %q\n", pushAddr), "\n[lockout]\nmax_failures = 1000\n")

	// The starting set: many cards (pages), PINs of one use, of a few
	// uses and unlimited; and PINs never issued.
	var spec portal.ImportSpec
	for i := range crashCards {
		spec.Credentials = append(spec.Credentials, portal.ImportCredential{
			ID: "card-" + strconv.Itoa(i), Kind: kiosk.KindCard, Secret: portal.SecretText(fmt.Sprintf("%010d", r.rng.Uint64N(1e10))),
			Holder: kiosk.Holder{ID: "h-cards", Role: kiosk.RoleResident}})
	}
	spec.Credentials = append(spec.Credentials, r.newPINs(40, 1)...)
	spec.Credentials = append(spec.Credentials, r.newPINs(15, 2)...)
	spec.Credentials = append(spec.Credentials, r.newPINs(5, 0)...)
	if _, err := r.tp.p.Import(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r.unknown = append(r.unknown, &crashPIN{pin: r.freshPIN()})
	}
	r.tp.setPushURL(pushSrv.URL)
	return r
}

// freshPIN draws a PIN the test has not used yet.
func (r *crashRig) freshPIN() string {
	for {
		pin := fmt.Sprintf("%06d", r.rng.IntN(1e6))
		if !r.taken[pin] {
			r.taken[pin] = true
			return pin
		}
	}
}

// newPINs makes n PIN credentials with the given uses (2 means 2 or 3) for
// an import, and adds them to the pool.
func (r *crashRig) newPINs(n, uses int) []portal.ImportCredential {
	var out []portal.ImportCredential
	for range n {
		u := uses
		if u == 2 {
			u += r.rng.IntN(2)
		}
		r.nextID++
		c := &crashPIN{pin: r.freshPIN(), id: "pin-" + strconv.Itoa(r.nextID), uses: u}
		r.pins = append(r.pins, c)
		r.byIDs[c.id] = c
		out = append(out, portal.ImportCredential{ID: c.id, Kind: kiosk.KindPIN, Secret: portal.SecretText(c.pin), Uses: u,
			Holder: kiosk.Holder{ID: "h-pins", Role: kiosk.RoleCourier}})
	}
	return out
}

func (r *crashRig) byID(id string) *crashPIN { return r.byIDs[id] }

// pickPIN chooses what to type: mostly limited PINs with uses left (the
// spends under test), some unlimited, used up and unknown ones.
func (r *crashRig) pickPIN() *crashPIN {
	var left, spent, unlimited []*crashPIN
	for _, c := range r.pins {
		switch {
		case c.uses == 0:
			unlimited = append(unlimited, c)
		case r.hist.grants[c.id] < c.uses:
			left = append(left, c)
		default:
			spent = append(spent, c)
		}
	}
	x := r.rng.IntN(100)
	switch {
	case x < 55 && len(left) > 0:
		return left[r.rng.IntN(len(left))]
	case x < 75 && len(unlimited) > 0:
		return unlimited[r.rng.IntN(len(unlimited))]
	case x < 90 && len(spent) > 0:
		return spent[r.rng.IntN(len(spent))]
	}
	return r.unknown[r.rng.IntN(len(r.unknown))]
}

// start starts kioskd on the state as the last kill left it.
func (r *crashRig) start(t *testing.T) *process {
	t.Helper()
	// The dead process left the pty exclusive and may have left keys
	// unread: clear both, as a replugged keypad would be.
	if err := unix.IoctlSetInt(int(r.slave.Fd()), unix.TIOCNXCL, 0); err != nil {
		t.Fatalf("TIOCNXCL: %v", err)
	}
	if err := unix.IoctlSetInt(int(r.slave.Fd()), unix.TCFLSH, unix.TCIFLUSH); err != nil {
		t.Fatalf("TCFLSH: %v", err)
	}
	r.runs++
	return startProcess(t, r.bin, r.cfg, "-log-level", "debug")
}

// waitLogOrExit waits until n log lines hold s; false if the process
// exited first.
func (p *process) waitLogOrExit(s string, n int) bool {
	p.t.Helper()
	deadline := time.After(wait)
	for p.count(s) < n {
		select {
		case <-p.lines:
		case <-p.done:
			return p.count(s) >= n
		case <-deadline:
			p.t.Fatalf("no %d log lines with %q within %v", n, s, wait)
		}
	}
	return true
}

// ready waits until kioskd serves and its keypad is open, then checks its
// relay is off.
func (r *crashRig) ready(t *testing.T, p *process) {
	t.Helper()
	if !p.waitLogOrExit(`msg="kioskd serving"`, 1) || !p.waitLogOrExit(`msg="serial keypad connected"`, 1) {
		t.Fatalf("kioskd exited before it was ready: %v", p.err)
	}
	st := r.status(t)
	for _, d := range st.Doors {
		if d.RelayOn {
			t.Errorf("at start, door %s has its relay on", d.ID)
		}
	}
}

// status reads GET /v1/status from the local API.
func (r *crashRig) status(t *testing.T) statusReply {
	t.Helper()
	hc := apiHTTPClient(r.socket)
	hc.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := hc.Get("http://kioskd/v1/status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	defer resp.Body.Close()
	var st statusReply
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// pullNow asks kioskd for a pull at once (kioskctl sync).
func (r *crashRig) pullNow(t *testing.T) {
	t.Helper()
	hc := apiHTTPClient(r.socket)
	hc.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := hc.Post("http://kioskd/v1/sync?wait=0", "application/json", nil)
	if err != nil {
		return // killed meanwhile: the pull was not asked for
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// enter types a PIN and waits for its decision; false if the process is
// gone.
func (r *crashRig) enter(t *testing.T, rd *crashRound, c *crashPIN) bool {
	t.Helper()
	select {
	case <-rd.p.done:
		return false
	default:
	}
	rd.typed = append(rd.typed, c)
	typeKeys(t, r.master, c.pin)
	return rd.p.waitLogOrExit("msg=decision", len(rd.typed))
}

// kill sends SIGKILL after d, noting what was in flight.
func (r *crashRig) kill(rd *crashRound, d time.Duration) *time.Timer {
	return time.AfterFunc(d, func() {
		rd.killed <- crashKill{push: r.pushes.inflight.Load(), pull: r.syncs.inflight.Load(), upload: r.uploads.inflight.Load()}
		rd.p.cmd.Process.Signal(syscall.SIGKILL)
	})
}

// round starts kioskd, checks it came up clean, makes it busy with one
// kind of work, kills it at a random moment and checks the state.
func (r *crashRig) round(t *testing.T, n int) {
	// Each round draws from a generator of its own, so that its mode and
	// kill delay depend on the seed and its number only, not on how far
	// the rounds before it got.
	r.rng = rand.New(rand.NewPCG(r.seed, uint64(n)))
	rd := &crashRound{killed: make(chan crashKill, 1), fulls0: r.syncs.fulls.Load()}
	modes := []string{"start", "grant", "grant", "upload", "full", "full", "delta", "mixed"}
	rd.mode = modes[r.rng.IntN(len(modes))]
	ms := func(max int) time.Duration { return time.Duration(r.rng.IntN(max*1000)) * time.Microsecond }
	rd.p = r.start(t)
	var timer *time.Timer
	switch rd.mode {
	case "start": // killed while it opens the store, flushes, connects
		timer = r.kill(rd, ms(60))
	case "grant": // killed around the commit of a decision and the relay
		r.ready(t, rd.p)
		timer = r.kill(rd, ms(60))
		for range 6 {
			if !r.enter(t, rd, r.pickPIN()) {
				break
			}
		}
	case "upload": // killed while an upload is answered
		r.uploads.setStall(r.rng.IntN(2) == 0)
		r.ready(t, rd.p)
		timer = r.kill(rd, ms(80))
		for range 2 {
			if !r.enter(t, rd, r.pickPIN()) {
				break
			}
		}
	case "full": // killed while a paged full snapshot is pulled and staged
		r.syncs.forceFull.Store(true)
		r.ready(t, rd.p)
		timer = r.kill(rd, ms(300))
		r.pullNow(t)
		r.enter(t, rd, r.pickPIN())
	case "delta": // killed while a delta is pushed or pulled and applied
		r.ready(t, rd.p)
		timer = r.kill(rd, ms(60))
		r.issue(t)
		if r.rng.IntN(2) == 0 {
			r.pullNow(t)
		}
		r.enter(t, rd, r.pickPIN())
	case "mixed":
		r.syncs.forceFull.Store(r.rng.IntN(2) == 0)
		r.uploads.setStall(r.rng.IntN(2) == 0)
		r.ready(t, rd.p)
		timer = r.kill(rd, ms(200))
		r.issue(t)
		r.pullNow(t)
		for range 3 {
			if !r.enter(t, rd, r.pickPIN()) {
				break
			}
		}
	}
	var k crashKill
	select {
	case k = <-rd.killed:
	case <-rd.p.done:
		select {
		case k = <-rd.killed: // the kill, just sent
		default:
			timer.Stop()
			t.Fatalf("kioskd exited before it was killed: %v", rd.p.err)
		}
	case <-time.After(wait):
		t.Fatalf("no kill within %v", wait)
	}
	select {
	case <-rd.p.done:
	case <-time.After(wait):
		t.Fatalf("kioskd still runs %v after SIGKILL", wait)
	}
	if rd.p.err == nil || !strings.Contains(rd.p.err.Error(), "killed") {
		t.Fatalf("kioskd exit %v, want killed", rd.p.err)
	}
	r.syncs.forceFull.Store(false)
	r.uploads.setStall(false)

	r.stats.kills++
	if !strings.Contains(rd.p.log.String(), `msg="kioskd serving"`) {
		r.stats.startupKills++
	}
	if k.push > 0 {
		r.stats.pushKills++
	}
	if k.pull > 0 {
		r.stats.pullKills++
	}
	if k.upload > 0 {
		r.stats.uploadKills++
	}
	r.check(t, rd)
}

// issue adds one or two PINs on the portal: a delta, pushed at once.
func (r *crashRig) issue(t *testing.T) {
	t.Helper()
	var spec portal.ImportSpec
	switch r.rng.IntN(10) {
	case 0:
		spec.Credentials = r.newPINs(1, 0)
	case 1, 2, 3:
		spec.Credentials = r.newPINs(1+r.rng.IntN(2), 2)
	default:
		spec.Credentials = r.newPINs(1+r.rng.IntN(2), 1)
	}
	if _, err := r.tp.p.Import(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
}

// crashSnap is what a copy of the state directory holds.
type crashSnap struct {
	last    uint64
	pending []kiosk.Event
}

// snapshot opens a copy of the state directory, as the next start will
// find it, with store.Open, and reads the journal. The store has no
// read-only mode and Open cleans up what a crash left (staging, pending
// delta events), so it works on a copy: the next kioskd must find and
// clean up the state itself. Open moves pending delta events into the
// journal exactly as kioskd's next Open will (same seqs, same events),
// and later sightings of those seqs are checked against them.
func (r *crashRig) snapshot(t *testing.T) crashSnap {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(dst, os.DirFS(r.state)); err != nil {
		t.Fatalf("copy the state directory: %v", err)
	}
	st, err := store.Open(store.Options{Dir: dst, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the store does not open after the kill: %v", err)
	}
	defer st.Close()
	var s crashSnap
	if s.last, err = st.LastSeq(); err != nil {
		t.Fatal(err)
	}
	if s.pending, err = st.Pending(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	return s
}

// portalNew reads the events the portal received since the last call:
// its log is append-only, newest first.
func (r *crashRig) portalNew(t *testing.T) []kiosk.Event {
	t.Helper()
	for limit := 64; ; limit *= 2 {
		raws, err := r.tp.p.Events(context.Background(), testDevice, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []kiosk.Event
		known := false
		for _, raw := range raws {
			var e kiosk.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("portal holds an event that is not one: %v: %s", err, raw)
			}
			if r.hist.atPortal[e.ID] {
				known = true
				break
			}
			out = append(out, e)
		}
		if known || len(raws) < limit {
			return out
		}
	}
}

var logAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logFields parses one slog text line into its attributes.
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
		}
		f[m[1]] = v
	}
	return f
}

// check reads the state the kill left and the portal, and checks the
// invariants over the events of this run and of all runs.
func (r *crashRig) check(t *testing.T, rd *crashRound) {
	t.Helper()
	snap := r.snapshot(t)
	if snap.last < r.prevLast {
		t.Errorf("the journal's last seq went back from %d to %d", r.prevLast, snap.last)
	}
	for _, e := range snap.pending {
		r.hist.add(t, e, "journal")
		r.hist.recorded[e.ID] = true
		if e.Seq > snap.last {
			t.Errorf("pending event seq %d above the last seq %d", e.Seq, snap.last)
		}
	}
	for _, e := range r.portalNew(t) {
		r.hist.add(t, e, "portal")
		r.hist.atPortal[e.ID] = true
		if e.Seq > snap.last {
			t.Errorf("the portal holds seq %d, above the journal's last seq %d", e.Seq, snap.last)
		}
	}
	// Every seq is pending here or at the portal: none lost, no gap.
	var evs []kiosk.Event
	for seq := r.prevLast + 1; seq <= snap.last; seq++ {
		e, ok := r.hist.bySeq[seq]
		if !ok {
			t.Errorf("seq %d (of %d) is neither pending in the journal nor at the portal", seq, snap.last)
			continue
		}
		evs = append(evs, e)
	}
	r.checkRun(t, rd, evs)
	r.prevLast = snap.last

	for id, n := range r.hist.grants {
		if c := r.byID(id); c != nil && c.uses > 0 && n > c.uses {
			t.Errorf("credential %s of %d uses granted %d times", id, c.uses, n)
		}
	}
}

// checkRun checks one run's log against its events: the relay requested
// inactive; every logged decision recorded before it was logged, in
// order, for the PIN typed; every relay pulse a recorded grant.
func (r *crashRig) checkRun(t *testing.T, rd *crashRound, evs []kiosk.Event) {
	t.Helper()
	var decided []kiosk.Event
	for _, e := range evs {
		if (e.Type == kiosk.EvAccessGranted || e.Type == kiosk.EvAccessDenied) && e.Input == "keypad" {
			decided = append(decided, e)
		}
		if e.Type == kiosk.EvSyncApplied && e.Detail["full"] == true {
			rd.fullApplied = true
		}
	}
	logText := rd.p.log.String()
	if strings.Contains(logText, "removed leftover of an interrupted full load") {
		r.stats.leftovers++
	}
	if !rd.fullApplied && r.syncs.fulls.Load() > rd.fulls0 {
		r.stats.fullKills++ // served, never committed
	}
	var logged []map[string]string
	requested, relayOn := false, false
	for _, line := range strings.Split(logText, "\n") {
		switch {
		case strings.Contains(line, `msg="sim line requested"`) && strings.Contains(line, crashRelay):
			requested = true
			if f := logFields(line); f["active"] != "false" {
				t.Errorf("relay requested %s=%s, want inactive: %s", "active", f["active"], line)
			}
		case strings.Contains(line, `msg="kioskd serving"`):
			if !requested {
				t.Errorf("kioskd serving before its relay line was requested (inactive)")
			}
		case strings.Contains(line, `msg="sim line set"`) && strings.Contains(line, crashRelay):
			relayOn = logFields(line)["active"] == "true"
			if !relayOn {
				continue
			}
			r.stats.relayPulses++
			j := len(logged) // the pulse belongs to the decision of the next PIN typed
			if j >= len(decided) || decided[j].Type != kiosk.EvAccessGranted {
				t.Errorf("relay on (after %d logged decisions) without a recorded grant; decisions recorded: %v", j, decided)
			}
		case strings.Contains(line, "msg=decision"):
			logged = append(logged, logFields(line))
		}
	}
	if relayOn {
		r.stats.relayOnAtKill++
	}
	if len(decided) > len(rd.typed) {
		t.Errorf("%d decisions recorded for %d PINs typed", len(decided), len(rd.typed))
	}
	if len(logged) > len(decided) {
		t.Errorf("%d decisions logged, only %d recorded: a decision was told before it was durable", len(logged), len(decided))
	}
	if len(decided) > len(logged)+1 {
		t.Errorf("%d decisions recorded, %d logged: more than the one in progress at the kill", len(decided), len(logged))
	}
	if len(decided) == len(logged)+1 {
		r.stats.unloggedDecisions++
	}
	for j, e := range decided {
		if j >= len(rd.typed) {
			break
		}
		c := rd.typed[j]
		switch {
		case c.id == "" && e.Reason != kiosk.Unknown:
			t.Errorf("decision %d: a PIN never issued got %s (%s)", j, e.Reason, e.CredentialID)
		case c.id != "" && e.CredentialID != c.id && !(e.Reason == kiosk.Unknown && e.CredentialID == ""):
			t.Errorf("decision %d: typed the PIN of %s, recorded %s for %q", j, c.id, e.Reason, e.CredentialID)
		}
		if j < len(logged) {
			if l := logged[j]; l["reason"] != string(e.Reason) || l["credential"] != e.CredentialID {
				t.Errorf("decision %d logged %s for %q, recorded %s for %q", j, l["reason"], l["credential"], e.Reason, e.CredentialID)
			}
		}
	}
	r.stats.decisions += len(decided)
}

// firstSync runs kioskd until it holds the portal's set, then kills it:
// the rounds start from a kiosk that has credentials.
func (r *crashRig) firstSync(t *testing.T) {
	rd := &crashRound{mode: "first", killed: make(chan crashKill, 1), fulls0: r.syncs.fulls.Load()}
	rd.p = r.start(t)
	r.ready(t, rd.p)
	want := crashCards + len(r.pins)
	waitFor(t, "the portal's set applied", rd.p.lines, func() bool { return r.status(t).Credentials == want })
	if err := rd.p.stop(syscall.SIGKILL); err == nil {
		t.Fatal("kioskd survived SIGKILL")
	}
	r.check(t, rd)
}

// drain restarts kioskd, lets it upload everything, and kills it once the
// backlog is 0, until a kill finds nothing pending.
func (r *crashRig) drain(t *testing.T) {
	r.uploads.setStall(false)
	for try := 1; ; try++ {
		rd := &crashRound{mode: "drain", killed: make(chan crashKill, 1), fulls0: r.syncs.fulls.Load()}
		rd.p = r.start(t)
		r.ready(t, rd.p)
		waitFor(t, "backlog 0", r.tp.uploads, func() bool { return r.status(t).Backlog == 0 })
		if err := rd.p.stop(syscall.SIGKILL); err == nil {
			t.Fatal("kioskd survived SIGKILL")
		}
		r.check(t, rd)
		if t.Failed() {
			return
		}
		// Every event recorded so far is at the portal (the journal may
		// still hold accepted events whose deletion a kill cut short:
		// they are sent again, and the portal already has them): done.
		if r.allAtPortal() {
			return
		}
		if try == 3 {
			t.Fatalf("after %d restarts with the portal up, events are still pending", try)
		}
	}
}

func (r *crashRig) allAtPortal() bool {
	for id := range r.hist.recorded {
		if !r.hist.atPortal[id] {
			return false
		}
	}
	return true
}

// finalChecks: every event ever recorded is at the portal, with seqs
// 1..last and no gap; each limited credential was granted at most its
// uses, and denied used_up only once they were all spent; the portal
// counts each grant once.
func (r *crashRig) finalChecks(t *testing.T) {
	t.Helper()
	for id := range r.hist.recorded {
		if !r.hist.atPortal[id] {
			t.Errorf("event %s was recorded before a kill and never reached the portal", id)
		}
	}
	raws, err := r.tp.p.Events(context.Background(), testDevice, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	seqs := map[uint64]bool{}
	for _, raw := range raws {
		var e kiosk.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if ids[e.ID] {
			t.Errorf("the portal holds event %s twice", e.ID)
		}
		ids[e.ID] = true
		seqs[e.Seq] = true
	}
	for seq := uint64(1); seq <= r.prevLast; seq++ {
		if !seqs[seq] {
			t.Errorf("the portal lacks seq %d of 1..%d", seq, r.prevLast)
		}
	}
	if len(seqs) != int(r.prevLast) {
		t.Errorf("the portal holds %d seqs, the journal's last is %d", len(seqs), r.prevLast)
	}

	// Replay every decision in seq order against the uses.
	granted := map[string]int{}
	for _, seq := range slices.Sorted(func(yield func(uint64) bool) {
		for s := range r.hist.bySeq {
			if !yield(s) {
				return
			}
		}
	}) {
		e := r.hist.bySeq[seq]
		c := r.byID(e.CredentialID)
		if c == nil || c.uses == 0 {
			continue
		}
		switch {
		case e.Type == kiosk.EvAccessGranted:
			granted[c.id]++
			if granted[c.id] > c.uses {
				t.Errorf("seq %d: %s granted a %d-th time, it has %d uses", seq, c.id, granted[c.id], c.uses)
			}
		case e.Type == kiosk.EvAccessDenied && e.Reason == kiosk.UsedUp && granted[c.id] < c.uses:
			t.Errorf("seq %d: %s denied used_up after %d of its %d uses: a use was lost", seq, c.id, granted[c.id], c.uses)
		}
	}
	infos, err := r.tp.p.Credentials(context.Background(), portal.CredentialFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range infos {
		if c := r.byID(ci.ID); c != nil && c.uses > 0 && ci.Used[testDevice] != granted[c.id] {
			t.Errorf("the portal counts %d spends of %s, the kiosk recorded %d grants", ci.Used[testDevice], c.id, granted[c.id])
		}
	}
}
