package sync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

// Defaults of Config.
const (
	// DefaultSyncInterval is the pull period when Config.SyncInterval is
	// zero (SPEC §7 sync_interval).
	DefaultSyncInterval = 60 * time.Second
	// DefaultHeartbeatInterval is the heartbeat period when
	// Config.HeartbeatInterval is zero (SPEC §7 heartbeat_interval).
	DefaultHeartbeatInterval = 5 * time.Minute
	// MaxUploadBatch is the largest number of events in one upload
	// (SPEC §6.4).
	MaxUploadBatch = 500
)

// ErrUnauthorized is returned (wrapped) when the portal answers 401 or 403:
// it does not accept the device's token (wrong token file, or a device the
// portal has revoked). The syncer logs it and keeps retrying with back-off.
var ErrUnauthorized = errors.New("portal refused the device token (check portal token_file)")

// SyncerStore is what the Syncer needs from the store: applying documents,
// the event journal as the upload queue, and the at-most-once record of
// commands. *store.Store provides it through StoreSyncer.
type SyncerStore interface {
	Applier
	// Pending returns up to max journal events with a seq above afterSeq,
	// in seq order.
	Pending(afterSeq uint64, max int) ([]kiosk.Event, error)
	// Ack deletes the events the portal accepted.
	Ack(ids []string) error
	// Backlog returns the number of events not yet accepted.
	Backlog() (int, error)
	// Appended receives after each commit that appended events; the
	// notifications coalesce (a buffer of one).
	Appended() <-chan struct{}
	// RunOnce records a command id and reports whether this is its first
	// run.
	RunOnce(id string) (bool, error)
	// Count returns the number of live credentials.
	Count() int
}

// StoreSyncer returns s as a SyncerStore.
func StoreSyncer(s *store.Store) SyncerStore { return storeApplier{s} }

var _ SyncerStore = storeApplier{}

// Command types the kiosk knows (SPEC §6.2).
const (
	// CommandUnlock pulses the relay of Command.Door (a remote unlock).
	CommandUnlock = "unlock"
)

// Config configures a Syncer. Zero values are documented per field; the
// fields marked required have none.
type Config struct {
	// URL is the portal's base URL, e.g. "https://portal.example.com" or
	// one with a path prefix; https, or http to a loopback host only
	// (required).
	URL string
	// DeviceID is this kiosk's device id (required).
	DeviceID string
	// Token is the device's bearer token, sent as "Authorization: Bearer
	// <token>" on every request and never logged (required).
	Token string
	// PublicKey is the portal's Ed25519 key that signs sync documents
	// (required).
	PublicKey ed25519.PublicKey
	// MaxDocumentBytes bounds the body of one page (SPEC
	// max_document_bytes); zero means DefaultMaxDocumentBytes.
	MaxDocumentBytes int64
	// MaxDeltaChanges caps the changes of one delta (Options); zero means
	// DefaultMaxDeltaChanges. A larger delta makes the syncer ask for a
	// full document.
	MaxDeltaChanges int
	// SyncInterval is the pull period, jittered ±10 %; zero means
	// DefaultSyncInterval. Failed pulls back off up to ten times it.
	SyncInterval time.Duration
	// HeartbeatInterval is the heartbeat period, jittered ±10 %; zero
	// means DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// SpoolDir is where pulled pages are written while they are verified
	// and applied (state_dir/spool). It is created with mode 0700, and
	// files named pull-* left in it by a crash are removed by NewSyncer
	// (required).
	SpoolDir string
	// HTTPClient makes the requests; nil means a client with timeouts on
	// connecting (10 s), the TLS handshake (10 s) and the response header
	// (30 s) that refuses redirects which change the scheme. Whatever the
	// client, a body that stalls for 30 s, or takes longer than 60 s plus
	// one second per 64 KiB of its Content-Length, is abandoned.
	HTTPClient *http.Client
	// Now returns the time stamped on events and status and whether the
	// system clock is synchronised (kiosk.Clock.Now); nil means the
	// system clock, reported as not synchronised.
	Now func() (time.Time, bool)
	// Observe raises the clock floor (kiosk.Clock.Observe); it is called
	// with the issued_at of every verified document. Nil means none.
	Observe func(time.Time)
	// RunCommand runs one portal command, e.g. an unlock. It is called at
	// most once per command id, even across a crash: the id is recorded
	// in the store before the call. Nil means commands are logged and
	// left unrun (and unrecorded, so a later syncer may run them).
	RunCommand func(ctx context.Context, c Command) error
	// Status returns the inputs and doors that heartbeats report; nil
	// means none.
	Status func() HeartbeatStatus
	// Version is the kioskd version that heartbeats report and the
	// User-Agent carries; empty means "dev".
	Version string
	// Started is when the daemon started, for the heartbeat's uptime_s;
	// zero means when NewSyncer was called.
	Started time.Time
	// Log receives the syncer's log lines; nil means slog.Default(). No
	// line holds the token or any credential secret.
	Log *slog.Logger
	// Rand returns a number in [0, 1) for jitter; nil means math/rand/v2.
	// It is called from several goroutines under the syncer's lock.
	Rand func() float64
}

// HeartbeatStatus is what a heartbeat reports of the hardware (SPEC §6.6).
type HeartbeatStatus struct {
	Inputs []InputStatus
	Doors  []kiosk.DoorStatus
}

// InputStatus is one input as a heartbeat reports it.
type InputStatus struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Connected bool   `json:"connected"`
}

// SyncStatus is the state of the portal sync, for kioskctl status and
// heartbeats. Times are zero until the first success.
type SyncStatus struct {
	// Cursor is the cursor of the live credential set ("" before the
	// first sync); Credentials the number of live credentials.
	Cursor      string `json:"cursor"`
	Credentials int    `json:"credentials"`
	// LastPull is when the last pull succeeded; LastError the error of
	// the last pull if it failed ("" after a success), and Failures the
	// number of consecutive failed pulls.
	LastPull  time.Time `json:"last_pull,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Failures  int       `json:"failures"`
	// Backlog is the number of events not yet accepted by the portal.
	Backlog int `json:"backlog"`
	// LastUpload is when the portal last accepted a whole batch of
	// events; UploadError the error of the last upload if it failed.
	LastUpload  time.Time `json:"last_upload,omitzero"`
	UploadError string    `json:"upload_error,omitempty"`
	// LastHeartbeat is when the portal last answered a heartbeat;
	// HeartbeatError the error of the last heartbeat if it failed.
	LastHeartbeat  time.Time `json:"last_heartbeat,omitzero"`
	HeartbeatError string    `json:"heartbeat_error,omitempty"`
}

// Syncer is the kiosk side of the portal protocol's client loops: it pulls
// sync documents (SPEC §6.1), uploads the event journal (§6.4) and sends
// heartbeats (§6.6), and it is the one place where documents are applied,
// pulled, pushed or read from a file, one at a time. The decision path
// never waits on it: it talks to the store only.
type Syncer struct {
	cfg      Config
	st       SyncerStore
	log      *slog.Logger
	client   *http.Client
	base     string // URL without trailing slash + /v1/devices/{id}
	maxBytes int64
	started  time.Time

	// sem serialises applying documents (pull, push, file): one at a time.
	sem     chan struct{}
	pullNow chan struct{}
	running atomic.Bool

	mu   gosync.Mutex // guards stat and rnd
	stat SyncStatus
	rnd  func() float64

	// Test hooks. after returns a channel that fires after d, for the
	// named loop ("pull", "upload", "heartbeat"); idle is called when the
	// uploader has nothing pending.
	after func(loop string, d time.Duration) <-chan time.Time
	idle  func()
}

// NewSyncer checks cfg, creates the spool directory and removes the spool
// files a crash may have left, and returns a Syncer that applies into st.
// Nothing is sent before Run.
func NewSyncer(cfg Config, st SyncerStore) (*Syncer, error) {
	if st == nil {
		return nil, errors.New("syncer: no store")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("syncer: portal url %q is not an http(s) base URL", cfg.URL)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("syncer: portal url %q: plain http is allowed to a loopback host only", cfg.URL)
	}
	switch {
	case cfg.DeviceID == "":
		return nil, errors.New("syncer: device id is empty")
	case cfg.Token == "":
		return nil, errors.New("syncer: portal token is empty")
	case len(cfg.PublicKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("syncer: portal public key is %d bytes, want %d", len(cfg.PublicKey), ed25519.PublicKeySize)
	case cfg.SpoolDir == "":
		return nil, errors.New("syncer: spool directory is empty")
	case cfg.SyncInterval < 0 || cfg.HeartbeatInterval < 0 || cfg.MaxDocumentBytes < 0:
		return nil, errors.New("syncer: negative interval or document limit")
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	s := &Syncer{
		cfg:      cfg,
		st:       st,
		log:      cfg.Log,
		client:   cfg.HTTPClient,
		base:     strings.TrimRight(cfg.URL, "/") + "/v1/devices/" + url.PathEscape(cfg.DeviceID),
		maxBytes: cfg.MaxDocumentBytes,
		started:  cfg.Started,
		sem:      make(chan struct{}, 1),
		pullNow:  make(chan struct{}, 1),
		rnd:      cfg.Rand,
		after: func(_ string, d time.Duration) <-chan time.Time {
			return time.After(d)
		},
		idle: func() {},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.client == nil {
		s.client = defaultClient()
	}
	if s.maxBytes == 0 {
		s.maxBytes = DefaultMaxDocumentBytes
	}
	if s.started.IsZero() {
		s.started = time.Now()
	}
	if s.rnd == nil {
		s.rnd = rand.Float64
	}
	if err := cleanSpool(cfg.SpoolDir); err != nil {
		return nil, err
	}
	return s, nil
}

// spoolPrefix starts the names of the syncer's spool files.
const spoolPrefix = "pull-"

// cleanSpool creates the spool directory and removes the syncer's files
// left in it.
func cleanSpool(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("syncer: create spool directory: %w", err)
	}
	old, err := filepath.Glob(filepath.Join(dir, spoolPrefix+"*"))
	if err != nil {
		return fmt.Errorf("syncer: spool directory %s: %w", dir, err)
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("syncer: remove stale spool file: %w", err)
		}
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// defaultClient is the client of a Config without one.
func defaultClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if req.URL.Scheme != via[0].URL.Scheme {
				return fmt.Errorf("refusing a redirect from %s to %s", via[0].URL.Scheme, req.URL.Scheme)
			}
			return nil
		},
	}
}

// Run runs the pull loop, the event uploader and the heartbeat until ctx
// is done, then returns nil once all three have stopped. A Syncer runs
// once.
func (s *Syncer) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("syncer: already running")
	}
	var wg gosync.WaitGroup
	wg.Go(func() { s.pullLoop(ctx) })
	wg.Go(func() { s.uploadLoop(ctx) })
	wg.Go(func() { s.heartbeatLoop(ctx) })
	wg.Wait()
	return nil
}

// PullNow asks for a pull at once (a push hint, a 409 on a pushed delta,
// kioskctl sync), without waiting. Requests made while a pull runs make
// one more pull after it; they do not queue up.
func (s *Syncer) PullNow() {
	select {
	case s.pullNow <- struct{}{}:
	default:
	}
}

// lock takes the apply lock, giving up when ctx is done.
func (s *Syncer) lock(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the document being applied: %w", ctx.Err())
	}
}

func (s *Syncer) unlock() { <-s.sem }

func (s *Syncer) options() Options {
	return Options{DeviceID: s.cfg.DeviceID, Now: s.cfg.Now, MaxDeltaChanges: s.cfg.MaxDeltaChanges}
}

// ApplyVerified applies one single-page document whose signature the
// caller has verified (a push, SPEC §6.2), read from the size bytes of src,
// after any document being applied: documents apply one at a time. It
// raises the clock floor to the document's issued_at, then runs its
// commands (each at most once). It records no rejection event: the push
// server records push.rejected for a document RejectReason blames.
func (s *Syncer) ApplyVerified(ctx context.Context, src io.ReaderAt, size int64) (Result, error) {
	if err := s.lock(ctx); err != nil {
		return Result{}, err
	}
	res, err := Apply(ctx, s.st, s.options(), src, size)
	s.unlock()
	if err != nil {
		return Result{}, err
	}
	s.observe(res.IssuedAt)
	s.RunCommands(ctx, res.Commands)
	return res, nil
}

// ApplyFile applies a document file pair (SPEC §6.5) as the package's
// ApplyFile does, recording sync.rejected for a rejected document, after
// any document being applied. On success it raises the clock floor and
// runs the document's commands (each at most once).
func (s *Syncer) ApplyFile(ctx context.Context, path string) (Result, error) {
	if err := s.lock(ctx); err != nil {
		return Result{}, err
	}
	res, err := ApplyFile(ctx, s.st, FileOptions{
		DeviceID: s.cfg.DeviceID, PublicKey: s.cfg.PublicKey, MaxBytes: s.maxBytes,
		Now: s.cfg.Now, MaxDeltaChanges: s.cfg.MaxDeltaChanges,
	}, path)
	s.unlock()
	if err != nil {
		return Result{}, err
	}
	s.observe(res.IssuedAt)
	s.RunCommands(ctx, res.Commands)
	return res, nil
}

// RunCommands runs portal commands in order, each id at most once whatever
// way it came (pull, push, heartbeat answer), even across a crash: the id
// is recorded in the store before the command runs, so a crash in between
// loses the command rather than running it twice. Failures are logged.
func (s *Syncer) RunCommands(ctx context.Context, cmds []Command) {
	for _, c := range cmds {
		if ctx.Err() != nil {
			return
		}
		log := s.log.With("command", c.ID, "type", c.Type, "door", c.Door)
		if c.ID == "" || c.Type == "" {
			log.Warn("portal command without id or type ignored")
			continue
		}
		if s.cfg.RunCommand == nil {
			log.Warn("portal command ignored: this kiosk runs no commands")
			continue
		}
		first, err := s.st.RunOnce(c.ID)
		if err != nil {
			log.Error("portal command not run: cannot record it", "err", err)
			continue
		}
		if !first {
			log.Debug("portal command already run")
			continue
		}
		if err := s.cfg.RunCommand(ctx, c); err != nil {
			log.Warn("portal command failed", "err", err)
			continue
		}
		log.Info("portal command run")
	}
}

// Cursor returns the cursor of the live credential set ("" before the
// first sync).
func (s *Syncer) Cursor() (string, error) {
	st, err := s.st.SyncState()
	if err != nil {
		return "", err
	}
	return st.Cursor, nil
}

// Status returns the state of the sync. Store read errors leave the
// fields they feed at their zero values and are logged.
func (s *Syncer) Status() SyncStatus {
	s.mu.Lock()
	out := s.stat
	s.mu.Unlock()
	if st, err := s.st.SyncState(); err != nil {
		s.log.Warn("sync status", "err", err)
	} else {
		out.Cursor = st.Cursor
	}
	out.Credentials = s.st.Count()
	if n, err := s.st.Backlog(); err != nil {
		s.log.Warn("sync status", "err", err)
	} else {
		out.Backlog = n
	}
	return out
}

func (s *Syncer) update(fn func(*SyncStatus)) {
	s.mu.Lock()
	fn(&s.stat)
	s.mu.Unlock()
}

func (s *Syncer) now() (time.Time, bool) {
	if s.cfg.Now == nil {
		return time.Now().UTC(), false
	}
	t, synced := s.cfg.Now()
	return t.UTC(), synced
}

func (s *Syncer) observe(t time.Time) {
	if s.cfg.Observe != nil && !t.IsZero() {
		s.cfg.Observe(t)
	}
}

// jitter returns d scaled by a random factor in [0.9, 1.1).
func (s *Syncer) jitter(d time.Duration) time.Duration {
	s.mu.Lock()
	r := s.rnd()
	s.mu.Unlock()
	return time.Duration(float64(d) * (0.9 + 0.2*r))
}

// backoff returns the wait after the n-th consecutive failure (n >= 1):
// 1 s doubling up to max, jittered ±10 %, at most max. The jitter applies
// at the cap too (there it takes up to 10 % off), so that kiosks that
// failed together do not retry together for as long as the portal is down.
func (s *Syncer) backoff(n int, max time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(s.jitter(min(d, max)), max)
}

// wait waits d (through the after hook) or until ctx is done or wake
// receives (wake may be nil). It reports whether ctx is still live.
func (s *Syncer) wait(ctx context.Context, loop string, d time.Duration, wake <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.after(loop, d):
	case <-wake:
	}
	return ctx.Err() == nil
}

// Timeouts of reading a response body; see Config.HTTPClient.
const (
	bodyIdleTimeout = 30 * time.Second
	bodyBaseTimeout = 60 * time.Second
	bodyMinRate     = 64 << 10 // bytes per second
)

// errBodyTimeout is the read error of a body abandoned by its deadline.
var errBodyTimeout = errors.New("portal response body stalled or too slow")

// do sends req with the device's token and returns the response, whose
// body stops (errBodyTimeout) when it stalls or is too slow for its size.
// The caller closes the body.
func (s *Syncer) do(ctx context.Context, req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	req = req.WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("User-Agent", "kioskd/"+s.cfg.Version)
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		cancel()
		// The error names the URL, which holds no secret (the token
		// travels in a header).
		return nil, err
	}
	b := &deadlineBody{rc: resp.Body, cancel: cancel}
	b.idle = time.AfterFunc(bodyIdleTimeout, b.expire)
	total := bodyBaseTimeout
	if resp.ContentLength > 0 {
		total += time.Duration(resp.ContentLength/bodyMinRate) * time.Second
	} else {
		total += time.Duration(s.maxBytes/bodyMinRate) * time.Second
	}
	b.total = time.AfterFunc(total, b.expire)
	resp.Body = b
	return resp, nil
}

// deadlineBody is a response body with an idle and a total deadline.
type deadlineBody struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	idle    *time.Timer
	total   *time.Timer
	expired atomic.Bool
}

func (b *deadlineBody) expire() {
	b.expired.Store(true)
	b.cancel()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.idle.Reset(bodyIdleTimeout)
	}
	if err != nil && err != io.EOF && b.expired.Load() {
		err = errBodyTimeout
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.idle.Stop()
	b.total.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// statusError is a portal answer other than the one expected.
type statusError struct {
	op         string
	code       int
	retryAfter time.Duration // > 0 for 429 and 503 with a Retry-After
	text       string        // the start of the body, printable
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%s: portal answered %d %s", e.op, e.code, http.StatusText(e.code))
	if e.code == http.StatusUnauthorized || e.code == http.StatusForbidden {
		msg += ": " + ErrUnauthorized.Error()
	}
	if e.text != "" {
		msg += ": " + e.text
	}
	return msg
}

func (e *statusError) Is(target error) bool {
	return target == ErrUnauthorized && (e.code == http.StatusUnauthorized || e.code == http.StatusForbidden)
}

// maxRetryAfter bounds an honoured Retry-After: a portal cannot silence a
// kiosk for longer than this with one answer.
const maxRetryAfter = time.Hour

// newStatusError reads the start of resp's body for the message and the
// Retry-After of a 429 or 503.
func newStatusError(op string, resp *http.Response) *statusError {
	e := &statusError{op: op, code: resp.StatusCode}
	buf := make([]byte, 200)
	n, _ := io.ReadFull(resp.Body, buf)
	e.text = printable(buf[:n])
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), resp.Header.Get("Date"), time.Now()); ok {
			e.retryAfter = min(max(d, time.Second), maxRetryAfter)
		}
	}
	return e
}

// printable returns b as one line of printable ASCII, for error messages.
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == '\n' || c == '\r' || c == '\t':
			out = append(out, ' ')
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		default:
			out = append(out, '?')
		}
	}
	return strings.TrimSpace(string(out))
}

// parseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number
// of seconds, or an HTTP date. A date is measured from the response's
// Date header when it has one (so the kiosk's clock does not matter), else
// from now. ok is false for an absent or unreadable value; a date in the
// past is 0.
func parseRetryAfter(v, date string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		var secs int64
		for _, c := range v {
			if c < '0' || c > '9' {
				return 0, false
			}
			secs = secs*10 + int64(c-'0')
			if secs > int64(maxRetryAfter/time.Second) {
				return maxRetryAfter, true
			}
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if ref, err := http.ParseTime(date); err == nil {
		now = ref
	}
	return max(t.Sub(now), 0), true
}
