package main

// Acceptance tests of the portal protocol (SPEC §6) end to end: a real
// kioskd in process (harness) against the real reference portal
// (cmd/devportal/portal) on a real loopback listener, with keys made as
// `devportal keygen` makes them.
//
// These tests do not wait on the kiosk's journal while the daemon runs:
// its uploader deletes what the portal accepts, so an event may be gone
// before a test reads it. They watch the decisions the engine logs
// (harness.nextDecision), the events the portal received
// (testPortal.waitEvent), and store or portal state through waitFor; the
// journal is read directly only while the portal refuses uploads.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// testDevice is the device id of the harness's kiosk.
const testDevice = "spr-test"

// testPortal is a devportal in process: its directory with keygen's
// files, the portal on it, and an HTTP server on a fixed loopback address
// that can be stopped and started again (the portal "down for a while").
// Its handler wraps the portal's to let tests watch uploads and
// heartbeats, refuse uploads, and make the portal answer a pull with a
// full snapshot.
type testPortal struct {
	t           *testing.T
	dir         string
	p           *portal.Portal
	pub         ed25519.PublicKey
	priv        ed25519.PrivateKey
	siteKey     []byte
	siteKeyFile string
	tokenFile   string
	addr        string // 127.0.0.1:port, fixed for the test's life
	logs        *syncBuffer
	handler     http.Handler

	uploads    chan struct{} // a receive after each events upload served
	heartbeats chan struct{} // a receive after each heartbeat served

	mu            gosync.Mutex
	srv           *http.Server
	refuseUploads bool         // answer uploads 503
	syncHandler   http.Handler // when set, answers pulls instead of the portal
	forceFull     bool         // drop the cursor of pulls: the portal answers a full snapshot
	fullServedAt  time.Time    // when the request of the last full snapshot forced so began
	seen          uint64
}

// keygen writes the files `devportal keygen` writes into dir (portal.key,
// portal.pub, site.key, token), the same way: standard base64, one line,
// mode 0600 for secrets, through portal.WriteSecret.
func keygen(t testing.TB, dir string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	site := make([]byte, portal.SiteKeySize)
	rand.Read(site)
	token, err := portal.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name, text string
		mode       os.FileMode
	}{
		{portal.PortalKeyFile, base64.StdEncoding.EncodeToString(priv.Seed()), 0o600},
		{portal.PortalPubFile, base64.StdEncoding.EncodeToString(pub), 0o644},
		{portal.SiteKeyFile, base64.StdEncoding.EncodeToString(site), 0o600},
		{portal.TokenFile, token, 0o600},
	} {
		if err := portal.WriteSecret(filepath.Join(dir, f.name), []byte(f.text+"\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// newTestPortal makes a portal directory, opens the portal, registers the
// kiosk testDevice with the keygen token (and pushURL, if not empty),
// and serves it on a fresh loopback port with its pusher running.
//
// opts, if any, adjust the portal's options (page size, ...) before it
// opens.
func newTestPortal(t *testing.T, pushURL string, opts ...func(*portal.Options)) *testPortal {
	t.Helper()
	tp := &testPortal{t: t, dir: t.TempDir(), logs: &syncBuffer{},
		uploads: make(chan struct{}, 1), heartbeats: make(chan struct{}, 1)}
	keygen(t, tp.dir)
	var err error
	if tp.priv, err = portal.ReadPortalKey(filepath.Join(tp.dir, portal.PortalKeyFile)); err != nil {
		t.Fatal(err)
	}
	tp.pub = tp.priv.Public().(ed25519.PublicKey)
	tp.siteKeyFile = filepath.Join(tp.dir, portal.SiteKeyFile)
	if tp.siteKey, err = portal.ReadSiteKey(tp.siteKeyFile); err != nil {
		t.Fatal(err)
	}
	tp.tokenFile = filepath.Join(tp.dir, portal.TokenFile)
	token, err := portal.ReadTokenFile(tp.tokenFile, "device token")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tp.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	po := portal.Options{Dir: tp.dir, Logger: log}
	for _, o := range opts {
		o(&po)
	}
	tp.p, err = portal.Open(po)
	if err != nil {
		t.Fatal(err)
	}
	if !tp.p.PublicKey().Equal(tp.pub) {
		t.Fatal("portal public key differs from portal.key's")
	}
	if _, err := tp.p.AddDevice(context.Background(), portal.DeviceSpec{ID: testDevice, Token: portal.SecretText(token), PushURL: pushURL}); err != nil {
		t.Fatal(err)
	}
	tp.handler = tp.p.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	tp.p.Start(ctx)
	tp.start()
	tp.addr = tp.srv.Addr
	t.Cleanup(func() {
		tp.stop()
		cancel()
		if err := tp.p.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("portal log:\n%s", tp.logs)
		}
	})
	return tp
}

// URL is the portal's base URL.
func (tp *testPortal) URL() string { return "http://" + tp.addr }

// start serves the portal on its address (a fresh one the first time).
func (tp *testPortal) start() {
	tp.t.Helper()
	addr := tp.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tp.t.Fatalf("portal listen %s: %v", addr, err)
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: tp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tp.mu.Lock()
	tp.srv = srv
	tp.mu.Unlock()
}

// stop closes the listener and every connection: the portal is down.
func (tp *testPortal) stop() {
	tp.mu.Lock()
	srv := tp.srv
	tp.srv = nil
	tp.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// statusWriter remembers the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (tp *testPortal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tp.mu.Lock()
	refuse, force, syncH := tp.refuseUploads, tp.forceFull, tp.syncHandler
	tp.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/sync") && syncH != nil:
		syncH.ServeHTTP(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events"):
		if refuse {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "uploads refused by the test", http.StatusServiceUnavailable)
			return
		}
		tp.handler.ServeHTTP(w, r)
		notify(tp.uploads)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/heartbeat"):
		tp.handler.ServeHTTP(w, r)
		notify(tp.heartbeats)
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/sync") && force:
		q := r.URL.Query()
		q.Del("cursor")
		r.URL.RawQuery = q.Encode()
		// The pull this request belongs to ends after it started, so its
		// LastPull is later than start.
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		tp.handler.ServeHTTP(sw, r)
		if sw.status == http.StatusOK && q.Get("page") == "" {
			tp.mu.Lock()
			tp.fullServedAt = start
			tp.mu.Unlock()
		}
	default:
		tp.handler.ServeHTTP(w, r)
	}
}

// setPushURL registers the kiosk's push URL with the portal.
func (tp *testPortal) setPushURL(u string) {
	tp.t.Helper()
	if _, err := tp.p.AddDevice(context.Background(), portal.DeviceSpec{ID: testDevice, PushURL: u, Update: true}); err != nil {
		tp.t.Fatal(err)
	}
}

// setSyncHandler makes h answer the kiosk's pulls instead of the portal.
func (tp *testPortal) setSyncHandler(h http.Handler) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.syncHandler = h
}

// pubBase64 is the portal's public key as kioskd.toml takes it.
func (tp *testPortal) pubBase64() string { return base64.StdEncoding.EncodeToString(tp.pub) }

func (tp *testPortal) setRefuseUploads(v bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.refuseUploads = v
}

// events returns every event the kiosk uploaded, in seq order.
func (tp *testPortal) events() []kiosk.Event {
	tp.t.Helper()
	raws, err := tp.p.Events(context.Background(), testDevice, 1<<20)
	if err != nil {
		tp.t.Fatal(err)
	}
	evs := make([]kiosk.Event, 0, len(raws))
	for _, raw := range raws {
		var e kiosk.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			tp.t.Fatalf("portal holds an event that is not one: %v: %s", err, raw)
		}
		evs = append(evs, e)
	}
	slices.SortFunc(evs, func(a, b kiosk.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return evs
}

// waitEvent returns the first uploaded event after those already
// returned (by seq) that matches pred. Uploads arrive in seq order (SPEC
// §6.4), so everything recorded before it is at the portal too.
func (tp *testPortal) waitEvent(pred func(kiosk.Event) bool) kiosk.Event {
	tp.t.Helper()
	var got kiosk.Event
	waitFor(tp.t, "an uploaded event", tp.uploads, func() bool {
		for _, e := range tp.events() {
			if e.Seq > tp.seen && pred(e) {
				got, tp.seen = e, e.Seq
				return true
			}
		}
		return false
	})
	return got
}

// credential returns the portal's record of a credential.
func (tp *testPortal) credential(id string) portal.CredentialInfo {
	tp.t.Helper()
	cs, err := tp.p.Credentials(context.Background(), portal.CredentialFilter{})
	if err != nil {
		tp.t.Fatal(err)
	}
	for _, c := range cs {
		if c.ID == id {
			return c
		}
	}
	tp.t.Fatalf("portal has no credential %s", id)
	return portal.CredentialInfo{}
}

// issue creates a holder and issues a credential of type typ for it; it
// returns the portal's record and the secret.
func (tp *testPortal) issue(typ string, uses int) (portal.CredentialInfo, string) {
	tp.t.Helper()
	ctx := context.Background()
	h, err := tp.p.AddHolder(ctx, portal.HolderSpec{Role: kiosk.RoleResident, Name: "Resident"})
	if err != nil {
		tp.t.Fatal(err)
	}
	is, err := tp.p.Issue(ctx, portal.CredentialSpec{Holder: h.ID, Type: typ, Uses: uses})
	if err != nil {
		tp.t.Fatal(err)
	}
	return is.Credential, is.Secret.Reveal()
}

// lookup returns the kiosk's live credential for a PIN (nil: unknown).
func (h *harness) lookup(pin string) *kiosk.Credential {
	h.t.Helper()
	c, err := h.d.Store.Lookup(kiosk.Digest(h.siteKey, kiosk.KindPIN, []byte(pin)))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// waitCred waits until the kiosk's store holds the PIN's credential in a
// state ok accepts (ok gets nil for an unknown PIN).
func (h *harness) waitCred(what, pin string, ok func(*kiosk.Credential) bool) {
	h.t.Helper()
	waitFor(h.t, what, nil, func() bool { return ok(h.lookup(pin)) })
}

func isActive(c *kiosk.Credential) bool { return c != nil && c.Status == kiosk.StatusActive }

// wantDecision types pin and checks the reason (and the credential id
// when the credential is known).
func (h *harness) wantDecision(pin string, reason kiosk.Reason, credID string) {
	h.t.Helper()
	d := h.enter(pin)
	if d.Reason != string(reason) || d.Credential != credID {
		h.t.Fatalf("decision %+v, want reason %s credential %q", d, reason, credID)
	}
}

// freePort returns a loopback address with a port nobody listens on now.
// The config takes no port 0 for push_listen, so the test picks one.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestPortalNewPINByPull: a PIN issued on the portal reaches the kiosk by
// the periodic pull (no push listener) and is granted at the keypad; the
// grant is uploaded to the portal.
func TestPortalNewPINByPull(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s"})
	waitFor(t, "first pull", nil, func() bool { return !h.d.Syncer.Status().LastPull.IsZero() })

	c, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("the new PIN pulled", pin, isActive)
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, h.relay("main"), true)
	ev := tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvAccessGranted })
	if ev.CredentialID != c.ID || ev.Input != "keypad" || ev.HolderID != c.Holder.ID || ev.Role != kiosk.RoleResident {
		t.Errorf("uploaded grant %+v, want credential %s of holder %s at keypad", ev, c.ID, c.Holder.ID)
	}
	u := tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
	if u.Door != "main" || u.Source != kiosk.SourceCredential {
		t.Errorf("uploaded unlock %+v", u)
	}
}

// TestPortalNewPINByPush: with sync_interval 1h, a PIN issued on the
// portal reaches the kiosk by the portal's pushed delta within seconds:
// no pull ran after the one at start, so only the push explains it.
func TestPortalNewPINByPush(t *testing.T) {
	addr := freePort(t)
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1h", pushListen: addr})
	if h.d.PushAddr != addr {
		t.Fatalf("Daemon.PushAddr = %q, want %q", h.d.PushAddr, addr)
	}
	waitFor(t, "first pull", nil, func() bool { return !h.d.Syncer.Status().LastPull.IsZero() })
	firstPull := h.d.Syncer.Status().LastPull
	// Register the push URL once the kiosk has the portal's set, so that
	// the portal has nothing to push but what is issued next.
	tp.setPushURL("http://" + h.d.PushAddr)

	c, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("the new PIN pushed", pin, isActive)
	h.wantDecision(pin, kiosk.Granted, c.ID)
	if lp := h.d.Syncer.Status().LastPull; !lp.Equal(firstPull) {
		t.Errorf("a pull ran at %v after the first at %v; the push alone must bring the PIN", lp, firstPull)
	}
	// The portal notes the answer after the kiosk has applied the push.
	waitFor(t, "the portal to note its delta push answered 200", nil, func() bool {
		devs, err := tp.p.Devices(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(devs) == 1 && strings.HasPrefix(devs[0].PushStatus, "delta 200")
	})
	cur, err := h.d.Syncer.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	if want := portal.Cursor(c.Rev); cur != want {
		t.Errorf("kiosk cursor %q after the push, want %q", cur, want)
	}
}

// TestPortalStatusChanges: deactivating on the portal denies the PIN
// (deactivated), reactivating grants it again, deleting makes it unknown.
func TestPortalStatusChanges(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s"})
	ctx := context.Background()
	c, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("PIN pulled", pin, isActive)
	h.wantDecision(pin, kiosk.Granted, c.ID)

	if _, err := tp.p.SetStatus(ctx, c.ID, kiosk.StatusDeactivated); err != nil {
		t.Fatal(err)
	}
	h.waitCred("PIN deactivated", pin, func(k *kiosk.Credential) bool { return k != nil && k.Status == kiosk.StatusDeactivated })
	h.wantDecision(pin, kiosk.Deactivated, c.ID)

	if _, err := tp.p.SetStatus(ctx, c.ID, kiosk.StatusActive); err != nil {
		t.Fatal(err)
	}
	h.waitCred("PIN reactivated", pin, isActive)
	h.wantDecision(pin, kiosk.Granted, c.ID)

	if err := tp.p.Delete(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	h.waitCred("PIN deleted", pin, func(k *kiosk.Credential) bool { return k == nil })
	h.wantDecision(pin, kiosk.Unknown, "")

	// The portal saw the four decisions, in order.
	var reasons []kiosk.Reason
	for _, want := range []kiosk.Reason{kiosk.Granted, kiosk.Deactivated, kiosk.Granted, kiosk.Unknown} {
		e := tp.waitEvent(func(e kiosk.Event) bool {
			return e.Type == kiosk.EvAccessGranted || e.Type == kiosk.EvAccessDenied
		})
		reasons = append(reasons, e.Reason)
		if e.Reason != want {
			t.Errorf("uploaded decisions %v, want granted deactivated granted unknown", reasons)
		}
	}
}

// TestPortalSpentUsesSurviveFullSnapshots: a one-time PIN and a two-use
// PIN spend at the kiosk; a later full snapshot from the portal never
// gives a spent use back, whether the portal has ingested the spends
// (used[device] raised) or not yet, and spends of another device count.
func TestPortalSpentUsesSurviveFullSnapshots(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s"})
	ctx := context.Background()

	// exportFull applies a full document of the portal's live set,
	// exported as devportal export does, through the kiosk's file path.
	exportFull := func(name string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), name+".json")
		if _, err := tp.p.Export(ctx, testDevice, path); err != nil {
			t.Fatal(err)
		}
		res, err := h.d.Syncer.ApplyFile(ctx, path)
		if err != nil {
			t.Fatalf("apply exported full: %v", err)
		}
		if !res.Full {
			t.Fatalf("exported document is not full: %+v", res)
		}
	}
	// pullFull makes the portal answer the kiosk's next pull with a full
	// snapshot and waits until the kiosk has applied it.
	pullFull := func() {
		t.Helper()
		tp.mu.Lock()
		tp.forceFull, tp.fullServedAt = true, time.Time{}
		tp.mu.Unlock()
		defer func() {
			tp.mu.Lock()
			tp.forceFull = false
			tp.mu.Unlock()
		}()
		h.d.Syncer.PullNow()
		var served time.Time
		waitFor(t, "a full snapshot served", nil, func() bool {
			tp.mu.Lock()
			defer tp.mu.Unlock()
			served = tp.fullServedAt
			return !served.IsZero()
		})
		// LastPull is stamped once the pulled document is applied.
		waitFor(t, "the full snapshot applied", nil, func() bool { return h.d.Syncer.Status().LastPull.After(served) })
	}

	// A credential that another kiosk has spent once already.
	if _, err := tp.p.AddDevice(ctx, portal.DeviceSpec{ID: "spr-other"}); err != nil {
		t.Fatal(err)
	}
	shared, sharedPIN := tp.issue(portal.TypePIN, 2)
	if _, err := tp.p.IngestEvents("spr-other", []json.RawMessage{
		json.RawMessage(fmt.Sprintf(`{"id":"other-1","seq":1,"type":"access.granted","credential_id":%q}`, shared.ID)),
	}); err != nil {
		t.Fatal(err)
	}
	afterOnce, afterPIN := tp.issue(portal.TypeOneTime, 0)
	afterTwo, afterTwoPIN := tp.issue(portal.TypePIN, 2)
	beforeOnce, beforePIN := tp.issue(portal.TypeOneTime, 0)
	beforeTwo, beforeTwoPIN := tp.issue(portal.TypePIN, 2)
	if afterOnce.Uses != 1 || beforeOnce.Uses != 1 {
		t.Fatalf("one-time PINs have uses %d and %d, want 1", afterOnce.Uses, beforeOnce.Uses)
	}
	h.waitCred("every PIN pulled", beforeTwoPIN, isActive)
	h.waitCred("the other device's spend pulled", sharedPIN, func(c *kiosk.Credential) bool {
		return c != nil && c.Used["spr-other"] == 1
	})

	t.Run("another device's spend counts", func(t *testing.T) {
		h.wantDecision(sharedPIN, kiosk.Granted, shared.ID)
		h.wantDecision(sharedPIN, kiosk.UsedUp, shared.ID)
	})

	t.Run("after the upload", func(t *testing.T) {
		h.wantDecision(afterPIN, kiosk.Granted, afterOnce.ID)
		h.wantDecision(afterTwoPIN, kiosk.Granted, afterTwo.ID)
		// The portal ingests the grants and raises used[device]; the
		// delta brings the counts back to the kiosk.
		waitFor(t, "portal counts the spends", tp.uploads, func() bool {
			return tp.credential(afterOnce.ID).Used[testDevice] == 1 && tp.credential(afterTwo.ID).Used[testDevice] == 1
		})
		h.waitCred("spend count pulled", afterTwoPIN, func(c *kiosk.Credential) bool { return c != nil && c.Used[testDevice] == 1 })
		pullFull()
		h.wantDecision(afterPIN, kiosk.UsedUp, afterOnce.ID)
		// max(portal 1, local 1) = 1 spent: one use is left, not none.
		h.wantDecision(afterTwoPIN, kiosk.Granted, afterTwo.ID)
		h.wantDecision(afterTwoPIN, kiosk.UsedUp, afterTwo.ID)
	})

	t.Run("before the upload", func(t *testing.T) {
		tp.setRefuseUploads(true)
		h.wantDecision(beforePIN, kiosk.Granted, beforeOnce.ID)
		h.wantDecision(beforeTwoPIN, kiosk.Granted, beforeTwo.ID)
		if u := tp.credential(beforeOnce.ID).Used[testDevice]; u != 0 {
			t.Fatalf("portal counts %d spends while uploads are refused", u)
		}
		exportFull("before")
		if c := h.lookup(beforePIN); c == nil || c.Used[testDevice] != 0 {
			t.Fatalf("after the full snapshot the kiosk holds %+v, want the portal's used 0", c)
		}
		h.wantDecision(beforePIN, kiosk.UsedUp, beforeOnce.ID)
		h.wantDecision(beforeTwoPIN, kiosk.Granted, beforeTwo.ID)
		h.wantDecision(beforeTwoPIN, kiosk.UsedUp, beforeTwo.ID)
		pullFull()
		h.wantDecision(beforePIN, kiosk.UsedUp, beforeOnce.ID)
		tp.setRefuseUploads(false)
	})
}

// pushClient posts pushes to the daemon's push listener.
type pushClient struct {
	t    *testing.T
	url  string
	priv ed25519.PrivateKey
}

// nonce returns a fresh push nonce.
func nonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// body marshals a push document.
func (pc *pushClient) body(d *portalsync.Document) []byte {
	pc.t.Helper()
	b, err := d.Marshal()
	if err != nil {
		pc.t.Fatal(err)
	}
	return b
}

// post sends body with the signature sig. chunked hides the length, so
// the server must judge the size as it reads.
func (pc *pushClient) post(body []byte, sig string, chunked bool) (int, []byte) {
	pc.t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // not a type NewRequest can measure
	}
	req, err := http.NewRequest(http.MethodPost, pc.url+portalsync.PushPath, r)
	if err != nil {
		pc.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(portalsync.SignatureHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pc.t.Fatalf("push: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		pc.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestPushRejections sends pushes that break each check of SPEC §6.2 to
// the daemon's real push listener: each is answered with its status,
// leaves exactly one push.rejected event with its reason, and touches
// nothing else (sync state, credential set, nonces). A delta on another
// base is 409 with the current cursor, starts a pull, and is no
// rejection.
func TestPushRejections(t *testing.T) {
	const limit = 64 << 10
	addr := freePort(t)
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1h", pushListen: addr, maxDocumentBytes: limit})
	waitFor(t, "first pull", nil, func() bool { return !h.d.Syncer.Status().LastPull.IsZero() })
	pc := &pushClient{t: t, url: "http://" + h.d.PushAddr, priv: tp.priv}
	_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
	// The portal takes no uploads until the end, so the kiosk's journal
	// keeps every event for the test to read.
	tp.setRefuseUploads(true)
	lastSeq := func() uint64 {
		t.Helper()
		n, err := h.d.Store.LastSeq()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	journal := func(after uint64) []kiosk.Event {
		t.Helper()
		evs, err := h.d.Store.Pending(after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}

	state := func() store.SyncState {
		t.Helper()
		ss, err := h.d.Store.SyncState()
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	cur := state().Cursor
	if cur == "" {
		t.Fatal("no cursor after the first pull")
	}
	// evil is a delta that, applied, would add a PIN and move the cursor.
	const evilPIN = "730481"
	evilCred := kiosk.Credential{ID: "evil", Kind: kiosk.KindPIN, Rev: 1, Status: kiosk.StatusActive,
		Holder: kiosk.Holder{ID: "h-evil", Role: kiosk.RoleManager},
		Digest: kiosk.Digest(h.siteKey, kiosk.KindPIN, []byte(evilPIN))}
	evil := func(mod func(*portalsync.Header)) *portalsync.Document {
		d := &portalsync.Document{
			Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(), Base: cur, Cursor: "c-999999",
				Nonce: nonce(), Kind: portalsync.PushDelta},
			Credentials: []portalsync.WireCredential{*portalsync.NewWireCredential(&evilCred)},
		}
		if mod != nil {
			mod(&d.Header)
		}
		return d
	}

	// An accepted push (an empty delta) whose nonce is replayed below.
	first := pc.body(&portalsync.Document{Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(),
		Base: cur, Cursor: cur, Nonce: nonce(), Kind: portalsync.PushDelta}})
	firstHdr, err := portalsync.ParseDocument(first)
	if err != nil {
		t.Fatal(err)
	}
	if st, b := pc.post(first, portalsync.Sign(tp.priv, first), false); st != http.StatusOK || !bytes.Contains(b, []byte(cur)) {
		t.Fatalf("valid push: %d %s, want 200 with cursor %s", st, b, cur)
	}

	badSig := pc.body(evil(nil))
	oversize := append(pc.body(evil(nil)), bytes.Repeat([]byte(" "), limit)...)[:limit+1]
	cases := []struct {
		name    string
		body    []byte
		sig     string
		chunked bool
		status  int
		reason  string
	}{
		{"bad signature", badSig, portalsync.Sign(wrongKey, badSig), false, http.StatusUnauthorized, portalsync.ReasonBadSignature},
		{"no signature", badSig, "", false, http.StatusUnauthorized, portalsync.ReasonBadSignature},
		{"replayed nonce", nil, "", false, http.StatusUnprocessableEntity, portalsync.ReasonReplay},
		{"stale issued_at", pc.body(evil(func(h *portalsync.Header) { h.IssuedAt = time.Now().Add(-10 * time.Minute).UTC() })), "", false,
			http.StatusUnprocessableEntity, portalsync.ReasonStale},
		{"other device_id", pc.body(evil(func(h *portalsync.Header) { h.DeviceID = "spr-other" })), "", false,
			http.StatusForbidden, portalsync.ReasonWrongDevice},
		{"oversized by Content-Length", oversize, "", false, http.StatusRequestEntityTooLarge, portalsync.ReasonTooLarge},
		{"oversized as read", oversize, "", true, http.StatusRequestEntityTooLarge, portalsync.ReasonTooLarge},
	}
	firstOfReason := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == nil { // the replay: new content under a spent nonce
				body = pc.body(evil(func(h *portalsync.Header) { h.Nonce = firstHdr.Nonce }))
			}
			sig := tc.sig
			if sig == "" && tc.name != "no signature" {
				sig = portalsync.Sign(tp.priv, body)
			}
			before, seq := state(), lastSeq()
			status, answer := pc.post(body, sig, tc.chunked)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, answer, tc.status)
			}
			if after := state(); after != before {
				t.Errorf("sync state changed: %+v → %+v", before, after)
			}
			if c := h.lookup(evilPIN); c != nil {
				t.Errorf("rejected push added credential %s", c.ID)
			}
			// The event is durable before the answer. A second rejection
			// of one reason within a second is counted into the next
			// event of that reason instead (decisions.md: rejected
			// pushes are counted, not journalled one by one).
			evs := journal(seq)
			if firstOfReason[tc.reason] {
				if len(evs) > 1 || len(evs) == 1 && (evs[0].Type != kiosk.EvPushRejected || evs[0].Detail["reason"] != tc.reason) {
					t.Errorf("journal after a repeated rejection: %+v; want nothing or one push.rejected, reason %s", evs, tc.reason)
				}
				return
			}
			firstOfReason[tc.reason] = true
			if len(evs) != 1 || evs[0].Type != kiosk.EvPushRejected ||
				evs[0].Detail["reason"] != tc.reason || evs[0].Detail["status"] != float64(tc.status) {
				t.Errorf("journal after the push: %+v; want one push.rejected, reason %s, status %d", evs, tc.reason, tc.status)
			}
		})
	}

	t.Run("a rejected push spends no nonce", func(t *testing.T) {
		// The badly signed push's nonce is still fresh: signed by the
		// portal, the same document is accepted.
		if st, b := pc.post(badSig, portalsync.Sign(tp.priv, badSig), false); st != http.StatusOK {
			t.Fatalf("status %d (%s), want 200", st, b)
		}
		if c := h.lookup(evilPIN); c == nil || c.ID != "evil" {
			t.Fatal("the accepted delta's credential is not in the store")
		}
		cur = state().Cursor
	})

	t.Run("delta on another base", func(t *testing.T) {
		pulled, seq := h.d.Syncer.Status().LastPull, lastSeq()
		before := state()
		body := pc.body(evil(func(h *portalsync.Header) { h.Base, h.Cursor = "c-12345", "c-12346" }))
		status, answer := pc.post(body, portalsync.Sign(tp.priv, body), false)
		var a struct{ Cursor string }
		if err := json.Unmarshal(answer, &a); status != http.StatusConflict || err != nil || a.Cursor != before.Cursor {
			t.Fatalf("answer %d %s, want 409 {\"cursor\": %q}", status, answer, before.Cursor)
		}
		// SPEC: a pull is started (here it brings the portal's set back:
		// the kiosk's cursor is one the portal never made).
		waitFor(t, "a pull after the 409", nil, func() bool { return h.d.Syncer.Status().LastPull.After(pulled) })
		for _, e := range journal(seq) {
			if e.Type == kiosk.EvPushRejected {
				t.Errorf("a 409 recorded a push.rejected: %+v", e)
			}
		}
	})

	// Every event reaches the portal once uploads are taken again: the
	// push.rejected events count every rejection, reason by reason (the
	// held-back ones arrive in a summary within a second), none for the
	// 409.
	tp.setRefuseUploads(false)
	want := map[string]int{}
	for _, tc := range cases {
		want[tc.reason]++
	}
	counted := func() map[string]int {
		got := map[string]int{}
		for _, e := range tp.events() {
			if e.Type != kiosk.EvPushRejected {
				continue
			}
			n := 1
			if c, ok := e.Detail["count"].(float64); ok {
				n = int(c)
			}
			got[fmt.Sprint(e.Detail["reason"])] += n
		}
		return got
	}
	waitFor(t, fmt.Sprintf("push.rejected events at the portal counting %v", want), tp.uploads, func() bool {
		return maps.Equal(counted(), want)
	})
}

// TestPortalHeartbeatAndRemoteUnlock: heartbeats reach the portal with
// the inputs and doors; a remote unlock from the portal pulses the relay
// once, and the same command delivered again does not run again.
func TestPortalHeartbeatAndRemoteUnlock(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1h", heartbeatInterval: "1s", pushListen: freePort(t)})
	tp.setPushURL("http://" + h.d.PushAddr)
	ctx := context.Background()

	t.Run("heartbeat", func(t *testing.T) {
		var hb struct {
			DeviceID    string                   `json:"device_id"`
			Cursor      string                   `json:"cursor"`
			ClockSynced bool                     `json:"clock_synced"`
			Inputs      []portalsync.InputStatus `json:"inputs"`
			Doors       []kiosk.DoorStatus       `json:"doors"`
		}
		waitFor(t, "a heartbeat with every input connected", tp.heartbeats, func() bool {
			devs, err := tp.p.Devices(ctx)
			if err != nil || len(devs) != 1 || len(devs[0].Heartbeat) == 0 {
				return false
			}
			if err := json.Unmarshal(devs[0].Heartbeat, &hb); err != nil {
				t.Fatalf("heartbeat %s: %v", devs[0].Heartbeat, err)
			}
			for _, in := range hb.Inputs {
				if !in.Connected {
					return false
				}
			}
			return len(hb.Inputs) == 3 && hb.Cursor != ""
		})
		wantInputs := []portalsync.InputStatus{
			{Name: "keypad", Type: "serial-keypad", Connected: true},
			{Name: "keypad2", Type: "serial-keypad", Connected: true},
			{Name: "scanner", Type: "serial-scanner", Connected: true},
		}
		wantDoors := []kiosk.DoorStatus{{ID: "main", Kind: kiosk.DoorRoom}, {ID: "locker-1", Kind: kiosk.DoorLocker}}
		if hb.DeviceID != testDevice || !hb.ClockSynced || !slices.Equal(hb.Inputs, wantInputs) || !slices.Equal(hb.Doors, wantDoors) {
			t.Errorf("heartbeat %+v, want device %s, clock_synced, inputs %v, doors %v", hb, testDevice, wantInputs, wantDoors)
		}
	})

	t.Run("remote unlock runs once", func(t *testing.T) {
		relay := h.relay("main")
		cmd, err := tp.p.Unlock(ctx, testDevice, "main")
		if err != nil {
			t.Fatal(err)
		}
		waitLine(t, relay, true)
		waitLine(t, relay, false)
		u := tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
		if u.Door != "main" || u.Source != kiosk.SourceRemote || u.Detail["command"] != cmd.ID {
			t.Errorf("door.unlocked %+v, want main, source remote, command %s", u, cmd.ID)
		}

		// The same command again, pushed as the portal would: accepted,
		// not run (the push answers after running its commands).
		pc := &pushClient{t: t, url: "http://" + h.d.PushAddr, priv: tp.priv}
		cur, err := h.d.Syncer.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		again := pc.body(&portalsync.Document{Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(),
			Base: cur, Cursor: cur, Commands: []portalsync.Command{cmd}, Nonce: nonce(), Kind: portalsync.PushCommand}})
		if st, b := pc.post(again, portalsync.Sign(tp.priv, again), false); st != http.StatusOK {
			t.Fatalf("command push: %d %s", st, b)
		}
		select {
		case v := <-relay.Changes():
			t.Fatalf("relay changed to %v: the command ran twice", v)
		default:
		}
		h.wantDecision("000000", kiosk.Unknown, "") // barrier for the uploads
		tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvAccessDenied })
		n := 0
		for _, e := range tp.events() {
			if e.Type == kiosk.EvDoorUnlocked && e.Source == kiosk.SourceRemote {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d remote door.unlocked events, want 1", n)
		}
	})
}

// TestPortalDown: with the portal down the doors keep working; when it is
// back on the same address every event the kiosk recorded arrives, none
// missing and none twice.
func TestPortalDown(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s", heartbeatInterval: "1s"})
	c, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("PIN pulled", pin, isActive)
	relay := h.relay("main")
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, relay, true)
	waitLine(t, relay, false)
	tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvAccessGranted })

	tp.stop()
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, relay, true)
	waitLine(t, relay, false)
	waitFor(t, "the kiosk to see the portal down", nil, func() bool { return h.d.Syncer.Status().UploadError != "" })
	h.wantDecision("000000", kiosk.Unknown, "")
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, relay, true)
	waitLine(t, relay, false)
	down, err := h.d.Store.Pending(0, 10000) // recorded, not yet accepted
	if err != nil {
		t.Fatal(err)
	}
	grants := 0
	for _, e := range down {
		if e.Type == kiosk.EvAccessGranted {
			grants++
		}
	}
	if grants != 2 {
		t.Fatalf("%d grants pending while the portal is down, want 2", grants)
	}

	tp.start()
	waitFor(t, "every event recorded while down at the portal", tp.uploads, func() bool {
		have := map[string]bool{}
		for _, e := range tp.events() {
			have[e.ID] = true
		}
		for _, e := range down {
			if !have[e.ID] {
				return false
			}
		}
		return true
	})
	h.stop()

	// Read the whole journal position after the stop: every seq the kiosk
	// ever used is either accepted by the portal or still pending here.
	st, err := store.Open(store.Options{Dir: filepath.Join(h.dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	last, err := st.LastSeq()
	if err != nil {
		t.Fatal(err)
	}
	pending, err := st.Pending(0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	at := map[uint64]string{}
	ids := map[string]int{}
	for _, e := range tp.events() {
		ids[e.ID]++
		if id, ok := at[e.Seq]; ok && id != e.ID {
			t.Errorf("portal holds seq %d twice: %s and %s", e.Seq, id, e.ID)
		}
		at[e.Seq] = e.ID
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("portal holds event %s %d times", id, n)
		}
	}
	for _, e := range pending {
		if id, ok := at[e.Seq]; ok && id != e.ID {
			t.Errorf("seq %d is %s at the portal and %s at the kiosk", e.Seq, id, e.ID)
		}
		at[e.Seq] = e.ID
	}
	for seq := uint64(1); seq <= last; seq++ {
		if _, ok := at[seq]; !ok {
			t.Errorf("event seq %d of %d is neither at the portal nor pending at the kiosk", seq, last)
		}
	}
	if uint64(len(at)) != last {
		t.Errorf("%d seqs known, the kiosk's last seq is %d", len(at), last)
	}
}
