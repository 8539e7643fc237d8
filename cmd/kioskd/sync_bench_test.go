package main

// Benchmarks of the sync path (SPEC §8) against a real devportal: a full
// snapshot pulled and applied, a delta of 100 changes, and the event
// upload. The portal is the reference portal's Go package (portal.Open in
// a temporary directory holding keys as `devportal keygen` makes them),
// served over loopback HTTP; the kiosk side is the real Syncer applying
// into a real store.
//
// BenchmarkPullFull runs the kiosk side in a child process (this test
// binary re-executed, see TestSyncBenchChild), so that the child's peak
// resident memory is the kiosk's alone and not the portal's, which runs in
// the parent. It pulls the snapshot twice: from the devportal, which
// builds each page on request, and from the same signed pages served from
// files, which leaves the kiosk's own time.
//
// Figures go to docs/benchmarks.md; run with -benchtime=1x (make bench,
// make bench-large).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// sbDevice is the device id of the sync benchmarks.
const sbDevice = "spr-0001"

// sbChildEnv names the environment variable that makes TestSyncBenchChild
// run the kiosk side of BenchmarkPullFull; it holds an sbChildSpec as JSON.
const sbChildEnv = "KIOSKD_SYNCBENCH_CHILD"

// sbWait bounds every wait of the sync benchmarks.
const sbWait = 20 * time.Minute

// sbKeygen writes the key files of a portal directory as `devportal
// keygen` does: portal.key (Ed25519 seed), portal.pub, site.key (32
// bytes) in standard base64 and a device token in base64url, each with a
// trailing newline and keygen's file modes.
func sbKeygen(tb testing.TB, dir string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	site := make([]byte, portal.SiteKeySize)
	tok := make([]byte, 32)
	rand.Read(site)
	rand.Read(tok)
	for _, f := range []struct {
		name, text string
		mode       os.FileMode
	}{
		{portal.PortalKeyFile, base64.StdEncoding.EncodeToString(priv.Seed()), 0o600},
		{portal.PortalPubFile, base64.StdEncoding.EncodeToString(pub), 0o644},
		{portal.SiteKeyFile, base64.StdEncoding.EncodeToString(site), 0o600},
		{portal.TokenFile, base64.RawURLEncoding.EncodeToString(tok), 0o600},
	} {
		if err := portal.WriteSecret(filepath.Join(dir, f.name), []byte(f.text+"\n"), f.mode); err != nil {
			tb.Fatal(err)
		}
	}
}

// sbPortal is a devportal served on loopback for a benchmark.
type sbPortal struct {
	p       *portal.Portal
	handler http.Handler // the devportal's device API
	srv     *httptest.Server
	token   string
	site    []byte
	pub     ed25519.PublicKey

	// buildNs sums, over the sync requests served, the time from the
	// request to the first byte of the answer: what the portal spent
	// building and signing pages.
	buildNs atomic.Int64
	pages   atomic.Int64
}

// sbFirstWrite notes when a handler first writes its answer.
type sbFirstWrite struct {
	http.ResponseWriter
	start time.Time
	done  bool
	acc   *atomic.Int64
}

func (w *sbFirstWrite) note() {
	if !w.done {
		w.done = true
		w.acc.Add(int64(time.Since(w.start)))
	}
}

func (w *sbFirstWrite) WriteHeader(code int) { w.note(); w.ResponseWriter.WriteHeader(code) }

func (w *sbFirstWrite) Write(b []byte) (int, error) { w.note(); return w.ResponseWriter.Write(b) }

// newSBPortal makes a portal directory with fresh keys, opens it,
// registers sbDevice with the keygen token and serves the device API on
// loopback.
func newSBPortal(tb testing.TB) *sbPortal {
	tb.Helper()
	return newSBPortalIn(tb, tb.TempDir())
}

// remotePortalDir is a state directory for a reference portal that
// stands for the remote one in the load benchmarks: on tmpfs (/dev/shm)
// when the machine has it, so the portal's own disk writes — which a real
// portal makes on its own server — do not queue with the kiosk's on the
// kiosk's disk. Its processor time is still shared.
func remotePortalDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("/dev/shm", "kioskd-portal")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// newSBPortalIn is newSBPortal with its state in dir.
func newSBPortalIn(tb testing.TB, dir string) *sbPortal {
	tb.Helper()
	sbKeygen(tb, dir)
	p, err := portal.Open(portal.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	token, err := portal.ReadTokenFile(filepath.Join(dir, portal.TokenFile), "device token")
	if err != nil {
		tb.Fatal(err)
	}
	site, err := portal.ReadSiteKey(filepath.Join(dir, portal.SiteKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.AddDevice(context.Background(), portal.DeviceSpec{ID: sbDevice, Token: portal.SecretText(token)}); err != nil {
		tb.Fatal(err)
	}
	sp := &sbPortal{p: p, token: token, site: site, pub: p.PublicKey()}
	h := p.Handler()
	sp.handler = h
	sp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sync") {
			sp.pages.Add(1)
			w = &sbFirstWrite{ResponseWriter: w, start: time.Now(), acc: &sp.buildNs}
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(sp.srv.Close)
	return sp
}

// sbSecret returns the kind and secret of the i-th benchmark credential:
// six in ten PINs (distinct six-digit numbers), two QR texts, two card
// numbers.
func sbSecret(i int) (kiosk.Kind, string) {
	switch i % 10 {
	case 6, 7:
		return kiosk.KindQR, fmt.Sprintf("QR-BENCH-%012x", uint64(i)*0x9e3779b1)
	case 8, 9:
		return kiosk.KindCard, fmt.Sprintf("%010d", 1_000_000_000+i)
	}
	// i*7919 mod 10^6 is a permutation of 0…999999 (7919 is prime to
	// 10^6): distinct PINs for any set size up to a million.
	return kiosk.KindPIN, fmt.Sprintf("%06d", i*7919%1_000_000)
}

// sbFill imports n credentials into the portal through its one bulk path,
// Import (one transaction per call). The credentials are imported in
// ascending digest order, with ids and holder ids that rise in the same
// order, so that every bucket of the portal's bbolt file is appended to
// in key order (bbolt is slow at random-order inserts). The set is mixed
// as a property's would be: residents (two credentials each) with a door,
// couriers with weekday hours and an end date, staff with two doors, and
// a few one-time PINs (one use, valid for a day).
func sbFill(tb testing.TB, sp *sbPortal, n int) {
	tb.Helper()
	type ent struct {
		d [kiosk.DigestSize]byte
		i int
	}
	all := make([]ent, n)
	for i := range all {
		kind, secret := sbSecret(i)
		all[i] = ent{kiosk.Digest(sp.site, kind, []byte(secret)), i}
	}
	slices.SortFunc(all, func(a, b ent) int { return bytes.Compare(a.d[:], b.d[:]) })
	until := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	dayEnd := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	weekdays := []portalsync.WireWindow{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "07:00", To: "20:00"}}
	const batch = 50_000
	for start := 0; start < n; start += batch {
		spec := portal.ImportSpec{Credentials: make([]portal.ImportCredential, 0, batch)}
		for pos := start; pos < min(start+batch, n); pos++ {
			kind, secret := sbSecret(all[pos].i)
			h := pos / 2
			ic := portal.ImportCredential{
				ID:     fmt.Sprintf("c-%07d", pos),
				Kind:   kind,
				Secret: portal.SecretText(secret),
				Holder: kiosk.Holder{ID: fmt.Sprintf("h-%07d", h), Role: kiosk.RoleResident, Name: fmt.Sprintf("Resident %d", h)},
				Doors:  []string{"main"},
			}
			switch h % 20 {
			case 0, 1:
				ic.Holder.Role, ic.Holder.Name = kiosk.RoleCourier, fmt.Sprintf("Courier %d", h)
				ic.Schedule, ic.ValidUntil = weekdays, &until
			case 2:
				ic.Holder.Role, ic.Holder.Name = kiosk.RoleStaff, fmt.Sprintf("Staff %d", h)
				ic.Doors = []string{"main", "lockers"}
			}
			if pos%20 == 5 && kind == kiosk.KindPIN {
				ic.Uses, ic.ValidUntil = 1, &dayEnd
			}
			spec.Credentials = append(spec.Credentials, ic)
		}
		if _, err := sp.p.Import(context.Background(), spec); err != nil {
			tb.Fatal(err)
		}
	}
}

// sbBenchSize is the credential count of BenchmarkPullFull and
// BenchmarkDelta100: 1 000 000 with KIOSKD_BENCH_LARGE=1, else 100 000.
func sbBenchSize() int {
	if os.Getenv("KIOSKD_BENCH_LARGE") != "" {
		return 1_000_000
	}
	return 100_000
}

// sbStore is the real store as the syncer sees it, with a signal after
// every commit of a document and after every ack of uploaded events, so
// that a benchmark waits on the store instead of polling it.
type sbStore struct {
	portalsync.SyncerStore
	committed chan time.Duration // after a full commit or a delta: the store's own time
	acked     atomic.Int64       // acks of the ids in want
	ackedCh   chan struct{}
	want      map[string]bool // event ids whose acks count; set before the syncer runs
	fullPut   atomic.Int64    // ns spent in FullLoad.Put and Commit
}

func newSBStore(st *store.Store) *sbStore {
	return &sbStore{SyncerStore: portalsync.StoreSyncer(st),
		committed: make(chan time.Duration, 16), ackedCh: make(chan struct{}, 1)}
}

func (s *sbStore) BeginFull() (portalsync.FullLoad, error) {
	l, err := s.SyncerStore.BeginFull()
	if err != nil {
		return nil, err
	}
	return &sbLoad{FullLoad: l, s: s}, nil
}

func (s *sbStore) ApplyDelta(base string, meta store.DocMeta, upserts []*kiosk.Credential, removed, revoked []string, mk func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error) {
	t0 := time.Now()
	st, err := s.SyncerStore.ApplyDelta(base, meta, upserts, removed, revoked, mk)
	if err == nil {
		s.committed <- time.Since(t0)
	}
	return st, err
}

func (s *sbStore) Ack(ids []string) error {
	err := s.SyncerStore.Ack(ids)
	if err == nil {
		n := 0
		for _, id := range ids {
			if s.want[id] {
				n++
			}
		}
		s.acked.Add(int64(n))
		select {
		case s.ackedCh <- struct{}{}:
		default:
		}
	}
	return err
}

// sbLoad times the store's part of a full load.
type sbLoad struct {
	portalsync.FullLoad
	s *sbStore
}

func (l *sbLoad) Put(c *kiosk.Credential) error {
	t0 := time.Now()
	err := l.FullLoad.Put(c)
	l.s.fullPut.Add(int64(time.Since(t0)))
	return err
}

func (l *sbLoad) Commit(meta store.DocMeta, mk func(store.ApplyStats) []*kiosk.Event) (store.ApplyStats, error) {
	t0 := time.Now()
	st, err := l.FullLoad.Commit(meta, mk)
	d := time.Since(t0)
	l.s.fullPut.Add(int64(d))
	if err == nil {
		l.s.committed <- d
	}
	return st, err
}

// sbFailures is a log handler that passes the syncer's warnings and
// errors (a failed pull or upload) to a channel, so that a benchmark
// fails at once instead of waiting for a document that will not come.
type sbFailures struct{ ch chan string }

func (h sbFailures) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h sbFailures) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h sbFailures) WithGroup(string) slog.Handler                { return h }
func (h sbFailures) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	select {
	case h.ch <- msg:
	default:
	}
	return nil
}

// sbKiosk is a kiosk's sync side: a real store in a temporary directory
// and a running Syncer against the portal.
type sbKiosk struct {
	st     *store.Store
	ss     *sbStore
	syncer *portalsync.Syncer
	fail   chan string
	cancel context.CancelFunc
	done   chan struct{}
}

// sbKioskConfig is what a kiosk needs to reach the portal.
type sbKioskConfig struct {
	URL, Token string
	Pub        ed25519.PublicKey
	Dir        string
	// Events are the ids of journal events whose acks sbStore counts.
	Events map[string]bool
}

// startSBKiosk opens a store in c.Dir and starts a Syncer on it; the
// first pull starts at once. Intervals are an hour: only PullNow pulls
// again.
func startSBKiosk(c sbKioskConfig) (*sbKiosk, error) {
	st, err := store.Open(store.Options{Dir: c.Dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	k := &sbKiosk{st: st, ss: newSBStore(st), fail: make(chan string, 1), done: make(chan struct{})}
	k.ss.want = c.Events
	k.syncer, err = portalsync.NewSyncer(portalsync.Config{
		URL: c.URL, DeviceID: sbDevice, Token: c.Token, PublicKey: c.Pub,
		SpoolDir: filepath.Join(c.Dir, "spool"), SyncInterval: time.Hour, HeartbeatInterval: time.Hour,
		Log: slog.New(sbFailures{k.fail}),
	}, k.ss)
	if err != nil {
		st.Close()
		return nil, err
	}
	var ctx context.Context
	ctx, k.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(k.done)
		k.syncer.Run(ctx)
	}()
	return k, nil
}

// waitCommit waits for the next document to commit and returns the
// store's share of its time.
func (k *sbKiosk) waitCommit() (time.Duration, error) {
	select {
	case d := <-k.ss.committed:
		return d, nil
	case msg := <-k.fail:
		return 0, errors.New(msg)
	case <-time.After(sbWait):
		return 0, errors.New("no document applied in time")
	}
}

func (k *sbKiosk) stop() {
	k.cancel()
	<-k.done
	k.st.Close()
}

// sbChildSpec tells the child process what to pull and where to write
// its result.
type sbChildSpec struct {
	URL, Token, Pub string
	Want            int    // credentials the snapshot holds
	Result          string // path of the result file (JSON sbChildResult)
}

// sbChildResult is what the child measured.
type sbChildResult struct {
	Seconds     float64 // from the start of the syncer to the commit of the snapshot
	StoreSec    float64 // spent in the store's Put and Commit
	CPUSeconds  float64 // user and system CPU of the whole child
	VmHWMKiB    int64   // peak resident memory, /proc/self/status
	Cursor      string
	Credentials int
}

// TestSyncBenchChild is the kiosk side of BenchmarkPullFull, run in a
// child process; without the environment variable sbChildEnv it does
// nothing. It starts a Syncer on a fresh store, waits for the first full
// snapshot to commit, checks the store, and writes what it measured.
func TestSyncBenchChild(t *testing.T) {
	raw := os.Getenv(sbChildEnv)
	if raw == "" {
		t.Skip("run by BenchmarkPullFull only")
	}
	var spec sbChildSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	pub, err := base64.StdEncoding.DecodeString(spec.Pub)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	k, err := startSBKiosk(sbKioskConfig{URL: spec.URL, Token: spec.Token, Pub: pub, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer k.stop()
	if _, err := k.waitCommit(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0)
	ss, err := k.st.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if ss.Cursor == "" || k.st.Count() != spec.Want {
		t.Fatalf("store after the pull: cursor %q, %d credentials, want %d", ss.Cursor, k.st.Count(), spec.Want)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	res := sbChildResult{
		Seconds:     elapsed.Seconds(),
		StoreSec:    time.Duration(k.ss.fullPut.Load()).Seconds(),
		CPUSeconds:  time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(),
		VmHWMKiB:    sbVmHWM(t),
		Cursor:      ss.Cursor,
		Credentials: k.st.Count(),
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(spec.Result, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sbVmHWM reads the process's peak resident set size in KiB.
func sbVmHWM(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// BenchmarkPullFull measures SPEC §8's full snapshot: a kiosk with an
// empty store pulls every page of a full snapshot of 100 000 credentials
// (1 000 000 with KIOSKD_BENCH_LARGE=1) over loopback HTTP and applies it.
// The kiosk runs in a child process (this binary, TestSyncBenchChild),
// timed from the start of its Syncer to the commit of the set; its peak
// resident memory is the child's VmHWM. (The child's rusage maximum is no
// use here: os/exec starts children with vfork, and Linux carries the
// parent's high-water mark across the exec.)
//
// Two portals serve the same snapshot:
//   - devportal: the reference portal itself, which builds and signs each
//     page of 10 000 credentials when it is asked for it; the kiosk waits
//     for that (portal-s).
//   - pages: the same signed pages, fetched from the devportal once
//     beforehand and served from files, so that the time is the kiosk's
//     alone, as with a portal that keeps its pages ready.
//
// Metrics: s (the kiosk's wall time, pull and apply), portal-s (the
// portal's time to first byte, summed over pages, inside s), store-s (the
// store's Put and Commit, inside s), kiosk-cpu-s (the child's CPU time),
// peak-MiB. Set KIOSKD_SYNCBENCH_PROFILE=FILE to write the child's CPU
// profile (of the last sub-benchmark run).
func BenchmarkPullFull(b *testing.B) {
	n := sbBenchSize()
	sp := newSBPortal(b)
	t0 := time.Now()
	sbFill(b, sp, n)
	b.Logf("portal filled with %d credentials in %v", n, time.Since(t0).Round(time.Millisecond))
	b.Run("devportal", func(b *testing.B) { sbPullFull(b, sp.srv.URL, sp, n) })
	pages := sbCapture(b, sp)
	b.Run("pages", func(b *testing.B) { sbPullFull(b, pages.URL, sp, n) })
}

// sbPullFull runs the kiosk child against url b.N times and reports what
// the last run measured.
func sbPullFull(b *testing.B, url string, sp *sbPortal, n int) {
	var last sbChildResult
	var portalNs int64
	for range b.N {
		resPath := filepath.Join(b.TempDir(), "result.json")
		spec, _ := json.Marshal(sbChildSpec{URL: url, Token: sp.token,
			Pub: base64.StdEncoding.EncodeToString(sp.pub), Want: n, Result: resPath})
		args := []string{"-test.run=^TestSyncBenchChild$", "-test.count=1", "-test.timeout=30m"}
		if prof := os.Getenv("KIOSKD_SYNCBENCH_PROFILE"); prof != "" {
			args = append(args, "-test.cpuprofile="+prof)
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), sbChildEnv+"="+string(spec))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		build0 := sp.buildNs.Load()
		err := cmd.Run()
		if err != nil {
			b.Fatalf("kiosk child: %v\n%s", err, out.String())
		}
		rb, err := os.ReadFile(resPath)
		if err != nil {
			b.Fatalf("kiosk child wrote no result: %v\n%s", err, out.String())
		}
		if err := json.Unmarshal(rb, &last); err != nil {
			b.Fatal(err)
		}
		portalNs = sp.buildNs.Load() - build0
	}
	b.ReportMetric(last.Seconds, "s")
	b.ReportMetric(time.Duration(portalNs).Seconds(), "portal-s")
	b.ReportMetric(last.StoreSec, "store-s")
	b.ReportMetric(last.CPUSeconds, "kiosk-cpu-s")
	b.ReportMetric(float64(last.VmHWMKiB)/1024, "peak-MiB")
	b.ReportMetric(float64(n), "credentials")
}

// sbPage is one captured page of a snapshot.
type sbPage struct {
	path string
	sig  string
	size int64
}

// sbCapture pulls every page of a full snapshot from the devportal as
// sbDevice, writes each body to a file, and serves the pages from those
// files: the first page for a request without a page parameter, the
// others by the page tokens the bodies name. Each page is sent with its
// Kiosk-Signature and Content-Length, the body copied from its file.
// The time to first byte of these pages counts in portal-s as well.
func sbCapture(tb testing.TB, sp *sbPortal) *httptest.Server {
	tb.Helper()
	return sbCaptureIn(tb, sp, tb.TempDir())
}

// sbCaptureIn is sbCapture with the page files in dir.
func sbCaptureIn(tb testing.TB, sp *sbPortal, dir string) *httptest.Server {
	tb.Helper()
	pages := map[string]sbPage{}
	token := ""
	for i := 0; ; i++ {
		u := sp.srv.URL + "/v1/devices/" + sbDevice + "/sync"
		if token != "" {
			u += "?page=" + token
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+sp.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("page-%04d.json", i))
		f, err := os.Create(path)
		if err != nil {
			tb.Fatal(err)
		}
		size, err := f.ReadFrom(resp.Body)
		resp.Body.Close()
		f.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			tb.Fatalf("capture page %d: %d %v", i, resp.StatusCode, err)
		}
		pages[token] = sbPage{path: path, sig: resp.Header.Get(portalsync.SignatureHeader), size: size}
		src, err := os.Open(path)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := portalsync.NewDocReader(src, size)
		src.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if token = r.Header().Next; token == "" {
			break
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+sp.token {
			http.Error(w, "unknown device token", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/v1/devices/"+sbDevice+"/sync" {
			sp.handler.ServeHTTP(w, r) // heartbeat and events: the devportal's
			return
		}
		w = &sbFirstWrite{ResponseWriter: w, start: time.Now(), acc: &sp.buildNs}
		pg, ok := pages[r.URL.Query().Get("page")]
		if !ok || r.URL.Query().Get("cursor") != "" {
			http.Error(w, "unknown cursor", http.StatusGone)
			return
		}
		f, err := os.Open(pg.path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(portalsync.SignatureHeader, pg.sig)
		w.Header().Set("Content-Length", strconv.FormatInt(pg.size, 10))
		io.Copy(w, f)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// BenchmarkDelta100 measures SPEC §8's delta of 100 changes: a kiosk
// holding the portal's set (100 000 credentials; 1 000 000 with
// KIOSKD_BENCH_LARGE=1) pulls a delta of 100 changes — 40 new
// credentials, 40 deactivated and 20 deleted — and applies it. Each
// iteration makes the changes on the portal (not timed), then times
// PullNow until the delta has committed: request, the portal's build and
// signature, verify, parse and the store transaction. apply-ms is the
// store transaction alone.
func BenchmarkDelta100(b *testing.B) {
	n := sbBenchSize()
	sp := newSBPortal(b)
	sbFill(b, sp, n)
	k, err := startSBKiosk(sbKioskConfig{URL: sp.srv.URL, Token: sp.token, Pub: sp.pub, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer k.stop()
	if _, err := k.waitCommit(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	next := 0 // the next existing credential to change, by position
	var applied time.Duration
	var pulls []time.Duration
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer()
		fresh := portal.ImportSpec{}
		for j := range 40 {
			// New QR texts and card numbers: every six-digit PIN may be
			// taken already (a million credentials), and devportal never
			// issues a PIN twice.
			i := it*40 + j
			kind, secret := kiosk.KindQR, fmt.Sprintf("QR-NEW-%d", i)
			if j%2 == 1 {
				kind, secret = kiosk.KindCard, fmt.Sprintf("9%011d", i)
			}
			fresh.Credentials = append(fresh.Credentials, portal.ImportCredential{
				ID: fmt.Sprintf("new-%d", i), Kind: kind, Secret: portal.SecretText(secret),
				Holder: kiosk.Holder{ID: fmt.Sprintf("nh-%d", i), Role: kiosk.RoleResident, Name: "New"},
				Doors:  []string{"main"}})
		}
		if _, err := sp.p.Import(ctx, fresh); err != nil {
			b.Fatal(err)
		}
		for range 40 {
			if _, err := sp.p.SetStatus(ctx, fmt.Sprintf("c-%07d", next), kiosk.StatusDeactivated); err != nil {
				b.Fatal(err)
			}
			next++
		}
		for range 20 {
			if err := sp.p.Delete(ctx, fmt.Sprintf("c-%07d", next)); err != nil {
				b.Fatal(err)
			}
			next++
		}
		if next+60 > n {
			b.Fatalf("benchmark ran out of credentials to change after %d iterations", it+1)
		}
		b.StartTimer()
		t0 := time.Now()
		k.syncer.PullNow()
		d, err := k.waitCommit()
		pulls = append(pulls, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		applied += d
	}
	b.StopTimer()
	st, err := k.st.SyncState()
	if err != nil {
		b.Fatal(err)
	}
	if want := n + 20*b.N; k.st.Count() != want || st.Cursor == "" {
		b.Fatalf("after the deltas: %d credentials (want %d), cursor %q", k.st.Count(), want, st.Cursor)
	}
	slices.Sort(pulls)
	b.ReportMetric(float64(pulls[len(pulls)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pulls[len(pulls)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(applied.Microseconds())/1000/float64(b.N), "apply-ms")
}

// BenchmarkUpload measures the event upload (SPEC §6.4) to a real
// devportal: a journal of 20 000 events (grants and door events, as a
// busy door makes them) is uploaded in batches of 500 and acked, timed
// from the start of the Syncer until the portal has accepted every one.
func BenchmarkUpload(b *testing.B) {
	const events = 20_000
	sp := newSBPortal(b)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		st, err := store.Open(store.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now().UTC()
		ids := make(map[string]bool, events)
		for start := 0; start < events; start += 1000 {
			evs := make([]*kiosk.Event, 0, 1000)
			for i := start; i < start+1000; i += 2 {
				id, h := fmt.Sprintf("c-%07d", i), fmt.Sprintf("h-%07d", i/2)
				t := now.Add(time.Duration(i) * time.Millisecond)
				evs = append(evs,
					&kiosk.Event{Time: t, ClockSynced: true, Type: kiosk.EvAccessGranted, Door: "main", Input: "keypad",
						CredentialID: id, HolderID: h, Role: kiosk.RoleResident, Reason: kiosk.Granted,
						Detail: map[string]any{"kind": "pin", "doors": []string{"main"}}},
					&kiosk.Event{Time: t, ClockSynced: true, Type: kiosk.EvDoorUnlocked, Door: "main", Input: "keypad",
						CredentialID: id, HolderID: h, Role: kiosk.RoleResident, Source: kiosk.SourceCredential,
						Detail: map[string]any{"pulse_ms": 3000}})
			}
			if err := st.Record(evs...); err != nil {
				b.Fatal(err)
			}
			for _, ev := range evs {
				ids[ev.ID] = true
			}
		}
		st.Close()
		b.StartTimer()
		t0 := time.Now()
		k, err := startSBKiosk(sbKioskConfig{URL: sp.srv.URL, Token: sp.token, Pub: sp.pub, Dir: dir, Events: ids})
		if err != nil {
			b.Fatal(err)
		}
		var werr error
		for werr == nil && k.ss.acked.Load() < events {
			select {
			case <-k.ss.ackedCh:
			case msg := <-k.fail:
				werr = errors.New(msg)
			case <-time.After(sbWait):
				werr = errors.New("events not accepted in time")
			}
		}
		total += time.Since(t0)
		b.StopTimer()
		k.stop()
		if werr != nil {
			b.Fatal(werr)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(events*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s")
}
