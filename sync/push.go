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
	"os"
	"strconv"
	gosync "sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"kioskd/kiosk"
	"kioskd/store"
)

// PushPath is the path of the push endpoint (SPEC §6.2).
const PushPath = "/v1/push"

// PushWindow is the freshness window of pushes (SPEC §6.2): a push issued
// more than this before the newest accepted document, or this far from a
// synchronised kiosk clock, is stale, and nonces are remembered this long.
const PushWindow = 5 * time.Minute

// DefaultMaxConcurrentPushes is the number of pushes served at once when
// PushConfig.MaxConcurrent is zero. Pushes beyond it are answered 503 with
// Retry-After at once, so that a flood of pushes (each may spool and hash
// up to max_document_bytes) cannot starve the decision path of disk and
// CPU; the portal retries, and the periodic pull catches up anyway.
const DefaultMaxConcurrentPushes = 2

// DefaultPushRate is how many pushes a second the push server judges
// (reads, hashes, checks) when PushConfig.Rate is zero, with a burst of as
// many: far more than a portal sends (a push per change), and few enough
// that judging forged ones costs a few percent of a core; the periodic
// pull covers what a refused push would have said. Pushes beyond it are
// answered 503 with Retry-After: 1 before their body is read, like those
// beyond DefaultMaxConcurrentPushes, so a flood costs the kiosk the
// reading of headers and not a signature check per request.
const DefaultPushRate = 200

// DefaultPushBodyTimeout is how long a push's body may take to arrive when
// PushConfig.BodyTimeout is zero: 64 MiB at about 0.5 MiB/s. A client that
// trickles its body would otherwise hold one of the few push slots for
// good.
const DefaultPushBodyTimeout = 2 * time.Minute

// DefaultRejectEventEvery is how often, at most, a push.rejected event of
// one reason is recorded; the rejections in between are counted and
// carried by the next event of that reason (detail "count": how many
// rejected pushes the event stands for, when more than one). A
// client flooding the push port with junk thus costs the journal a few
// events a second, not one durable write per request, and grants keep
// their disk.
const DefaultRejectEventEvery = time.Second

// MaxNonceBytes is the longest nonce accepted; a longer one makes the push
// malformed (400). Nonces are kept in the store for the push window.
const MaxNonceBytes = 256

// ReasonReplay is the push.rejected reason of a push whose nonce was seen
// within the push window. The other reasons are RejectReason's.
const ReasonReplay = "replay"

// PushTarget is what the push server needs from the syncer.
type PushTarget interface {
	// ApplyVerified applies a verified single-page document (serialized
	// with pulls) and runs its commands.
	ApplyVerified(ctx context.Context, src io.ReaderAt, size int64) (Result, error)
	// PullNow starts a pull at once (a hint, or a delta answered 409).
	PullNow()
	// RunCommands runs commands, each command id at most once.
	RunCommands(ctx context.Context, cmds []Command)
	// Cursor returns the live set's cursor.
	Cursor() (string, error)
}

// PushStore is what the push server needs from the store directly;
// *store.Store has these methods.
type PushStore interface {
	// Record appends events durably.
	Record(evs ...*kiosk.Event) error
	// SyncState returns the sync position; its Newest is the newest
	// issued_at ever accepted.
	SyncState() (store.SyncState, error)
	// UseNonce records a push nonce and reports whether it was fresh.
	UseNonce(nonce string, issuedAt, now time.Time, window time.Duration) (fresh bool, err error)
	// RaiseWatermark records the issued_at of an accepted hint or
	// command push, which change no credential.
	RaiseWatermark(issuedAt time.Time) error
}

var _ PushStore = (*store.Store)(nil)

// PushConfig configures the push server.
type PushConfig struct {
	// DeviceID is this kiosk's device id; a push for any other is
	// rejected 403. Required.
	DeviceID string
	// PublicKey is the portal's Ed25519 public key that signs documents.
	// Required.
	PublicKey ed25519.PublicKey
	// MaxDocumentBytes bounds a push body (SPEC max_document_bytes); zero
	// means DefaultMaxDocumentBytes.
	MaxDocumentBytes int64
	// SpoolDir is where push bodies over 64 KiB are spooled while they
	// are checked and applied (up to MaxDocumentBytes each,
	// MaxConcurrent at once); smaller ones stay in memory.
	// It should be on disk, not tmpfs: kioskd's state directory is a good
	// place. Empty means os.TempDir().
	SpoolDir string
	// Now returns the kiosk's clock: the time and whether the system
	// clock is synchronised. Nil means the system clock, reported as not
	// synchronised (so only the watermark judges freshness).
	Now func() (time.Time, bool)
	// Observe is told the issued_at of every verified, accepted push, for
	// the kiosk's clock floor. Nil means nobody is told.
	Observe func(time.Time)
	// Log receives a line per rejected or failed push. Nil means
	// slog.Default().
	Log *slog.Logger
	// MaxConcurrent caps the pushes served at once; more are answered
	// 503 with Retry-After: 1. Zero means DefaultMaxConcurrentPushes.
	MaxConcurrent int
	// Rate caps the pushes judged per second (a token bucket with a
	// burst of Rate); more are answered 503 with Retry-After: 1. Zero
	// means DefaultPushRate, negative means no cap.
	Rate int
	// BodyTimeout bounds the time a push's body may take to arrive; zero
	// means DefaultPushBodyTimeout.
	BodyTimeout time.Duration
	// Yield, if not nil, is called before each part of a push's body is
	// read and returns when no decision is in progress (store.Store's
	// Yield), so that pushes — a flood of forged ones above all — give
	// the processor to the people at the door first.
	Yield func()
	// RejectEventEvery bounds the push.rejected events of one reason to
	// one per period (see DefaultRejectEventEvery); zero means the
	// default, negative means an event for every rejected push.
	RejectEventEvery time.Duration
}

// NewPushHandler returns the handler of POST /v1/push (SPEC §6.2). It runs
// the checks of the spec in order — size (413), well-formed (400),
// signature (401), device_id (403), freshness and replay (422) — and then
// acts on the push's kind: a hint starts a pull, a command push runs its
// commands, a full or delta document is applied through target (a delta
// on another base than the current cursor is answered 409 with the
// cursor, and a pull is started). Success is 200 {"cursor": current},
// after the push is applied and durable.
//
// Every rejected push except a 409 is recorded as a push.rejected event
// with detail {"reason", "status"} and touches nothing else: no nonce is
// used, no credential changes, target is not called. Events of one reason
// are recorded at most once per RejectEventEvery: the first at once, the
// rest counted into the next event of their reason, whose detail "count"
// says how many rejected pushes it stands for (a summary event follows a
// burst), so a flood costs a few events a second and no count is lost. A store failure is
// 500, without an event. Other methods are 405 and other paths 404; a
// push beyond MaxConcurrent is 503 with Retry-After: 1; none of these is a
// rejected push.
//
// The body is never held in memory beyond its first 64 KiB: it streams,
// at most MaxDocumentBytes plus one byte, into memory and then a file in
// SpoolDir while its signature is computed
// and a bounded JSON scanner checks that it is well-formed, so that
// hostile input costs no more than a read of the body. Only a body signed
// by the portal is parsed further.
//
// A PushConfig without DeviceID or with a public key of the wrong size
// makes a handler that answers 500 to every push and logs why.
func NewPushHandler(cfg PushConfig, st PushStore, target PushTarget) http.Handler {
	h := &pushHandler{cfg: cfg, st: st, target: target}
	if h.cfg.MaxDocumentBytes <= 0 {
		h.cfg.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if h.cfg.MaxConcurrent <= 0 {
		h.cfg.MaxConcurrent = DefaultMaxConcurrentPushes
	}
	if h.cfg.Rate == 0 {
		h.cfg.Rate = DefaultPushRate
	}
	h.bucket = tokenBucket{rate: float64(h.cfg.Rate), tokens: float64(h.cfg.Rate)}
	if h.cfg.BodyTimeout <= 0 {
		h.cfg.BodyTimeout = DefaultPushBodyTimeout
	}
	if h.cfg.RejectEventEvery == 0 {
		h.cfg.RejectEventEvery = DefaultRejectEventEvery
	}
	h.limits = map[string]*rejectLimit{}
	if h.cfg.Log == nil {
		h.cfg.Log = slog.Default()
	}
	switch {
	case cfg.DeviceID == "":
		h.cfgErr = errors.New("push: no device id configured")
	case len(cfg.PublicKey) != ed25519.PublicKeySize:
		h.cfgErr = fmt.Errorf("push: portal public key is %d bytes, want %d", len(cfg.PublicKey), ed25519.PublicKeySize)
	}
	if h.cfgErr != nil {
		h.cfg.Log.Error("push server misconfigured; every push will fail", "err", h.cfgErr)
	}
	h.sem = make(chan struct{}, h.cfg.MaxConcurrent)
	return h
}

type pushHandler struct {
	cfg    PushConfig
	st     PushStore
	target PushTarget
	sem    chan struct{}
	bucket tokenBucket
	cfgErr error

	limitMu gosync.Mutex
	limits  map[string]*rejectLimit // by reason; a handful of reasons exist
}

// rejectLimit is the event budget of one rejection reason.
type rejectLimit struct {
	last       time.Time   // when its last event was recorded (monotonic)
	suppressed int         // rejections since then without an event
	status     int         // of the latest suppressed rejection
	flush      *time.Timer // records the summary of a burst; nil when none is due
}

func (h *pushHandler) yield() {
	if h.cfg.Yield != nil {
		h.cfg.Yield()
	}
}

// pushMemBytes is how much of a push's body is held in memory before the
// rest spills to a file in SpoolDir: every push a portal sends for a
// hint or a command, and every forged one of a flood, fits, so they cost
// no file.
const pushMemBytes = 64 << 10

// spillBuffer holds a body in memory up to max bytes and in a temporary
// file in dir beyond that.
type spillBuffer struct {
	dir string
	max int
	buf []byte
	f   *os.File
}

// Write appends p, moving what is held to a file once max is passed.
func (b *spillBuffer) Write(p []byte) (int, error) {
	if b.f == nil && len(b.buf)+len(p) <= b.max {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if b.f == nil {
		f, err := os.CreateTemp(b.dir, "push-*.json")
		if err != nil {
			return 0, err
		}
		b.f = f
		if _, err := f.Write(b.buf); err != nil {
			return 0, err
		}
		b.buf = nil
	}
	return b.f.Write(p)
}

// ReaderAt reads back what was written.
func (b *spillBuffer) ReaderAt() io.ReaderAt {
	if b.f != nil {
		return b.f
	}
	return bytes.NewReader(b.buf)
}

// Close removes the file, if there is one.
func (b *spillBuffer) Close() {
	if b.f != nil {
		b.f.Close()
		os.Remove(b.f.Name())
	}
}

func (h *pushHandler) now() (time.Time, bool) {
	if h.cfg.Now == nil {
		return time.Now().UTC(), false
	}
	t, synced := h.cfg.Now()
	return t.UTC(), synced
}

func (h *pushHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != PushPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	if h.cfgErr != nil {
		h.fail(w, r, h.cfgErr)
		return
	}
	if h.cfg.Rate > 0 && !h.bucket.take(time.Now()) {
		h.cfg.Log.Debug("push refused: more pushes a second than the push rate", "remote", r.RemoteAddr)
		h.busy(w)
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		h.cfg.Log.Debug("push refused: too many pushes at once", "remote", r.RemoteAddr)
		h.busy(w)
		return
	}
	h.serve(w, r)
}

// busy answers 503 with Retry-After: 1 to a push turned away unread.
func (h *pushHandler) busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	// Hang up: a client that will not wait must connect again, which
	// slows a flood down more than it costs the kiosk.
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy"})
}

// tokenBucket allows rate events a second with a burst of rate.
type tokenBucket struct {
	mu     gosync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

// take spends a token if one is left at now.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// rejection is a push rejected by one of the checks of SPEC §6.2.
type rejection struct {
	status int
	reason string
	err    error
}

func reject(status int, reason string, format string, args ...any) *rejection {
	return &rejection{status: status, reason: reason, err: fmt.Errorf(format, args...)}
}

// rejectStatus is the HTTP status of a document rejected when applying it.
func rejectStatus(reason string) int {
	switch reason {
	case ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonMalformed:
		return http.StatusBadRequest
	case ReasonBadSignature:
		return http.StatusUnauthorized
	case ReasonWrongDevice:
		return http.StatusForbidden
	}
	return http.StatusUnprocessableEntity // stale, duplicate_digest, replay
}

func (h *pushHandler) serve(w http.ResponseWriter, r *http.Request) {
	limit := h.cfg.MaxDocumentBytes
	// 1. Size, from the Content-Length before anything is read.
	if r.ContentLength > limit {
		// Close rather than drain a body we will not read.
		w.Header().Set("Connection", "close")
		h.rejected(w, r, reject(http.StatusRequestEntityTooLarge, ReasonTooLarge,
			"%w: Content-Length %d, the limit is %d", ErrTooLarge, r.ContentLength, limit))
		return
	}
	// A missing or undecodable signature is judged in its turn, after
	// size and form; the verifier then fails whatever it is fed.
	sig, sigErr := ParseSignature(r.Header.Get(SignatureHeader))
	if r.Header.Get(SignatureHeader) == "" {
		sigErr = fmt.Errorf("%w: no %s header", ErrBadSignature, SignatureHeader)
	}
	v, err := NewVerifier(h.cfg.PublicKey, sig)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))

	// Decisions in progress go first: a flood of pushes waits here
	// rather than taking the processor from a person at the door.
	h.yield()
	sb := &spillBuffer{dir: h.cfg.SpoolDir, max: pushMemBytes}
	defer sb.Close()
	var probe pushProbe
	n, rerr, werr := spool(sb, io.MultiWriter(v, &probe), io.LimitReader(r.Body, limit+1), h.yield)
	f := sb.ReaderAt()
	switch {
	case werr != nil:
		h.fail(w, r, fmt.Errorf("push: spool body: %w", werr))
		return
	case rerr != nil:
		// The push did not arrive whole (client gone, body timeout):
		// there is nothing to judge, so no rejection event.
		h.cfg.Log.Info("push body not received", "remote", r.RemoteAddr, "bytes", n, "err", rerr)
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "incomplete body"})
		return
	}
	// 1. Size, as read.
	if n > limit {
		h.rejected(w, r, reject(http.StatusRequestEntityTooLarge, ReasonTooLarge,
			"%w: more than %d bytes", ErrTooLarge, limit))
		return
	}
	// 2. Well-formed: one JSON object with a nonce and a known kind.
	if err := probe.finish(); err != nil {
		h.rejected(w, r, reject(http.StatusBadRequest, ReasonMalformed, "%w", err))
		return
	}
	if !probe.nonce {
		h.rejected(w, r, reject(http.StatusBadRequest, ReasonMalformed, "%w: nonce is missing", ErrMalformed))
		return
	}
	if !validPushKind(probe.kind) {
		h.rejected(w, r, reject(http.StatusBadRequest, ReasonMalformed, "%w: kind is missing or not one of full, delta, hint, command", ErrMalformed))
		return
	}
	// 3. Signature.
	if sigErr == nil {
		sigErr = v.Verify()
	}
	if sigErr != nil {
		h.rejected(w, r, reject(http.StatusUnauthorized, ReasonBadSignature, "%w", sigErr))
		return
	}
	// From here on the body is the portal's: parse it whole.
	dr, err := NewDocReader(f, n)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			h.rejected(w, r, reject(http.StatusBadRequest, ReasonMalformed, "%w", err))
		} else {
			h.fail(w, r, fmt.Errorf("push: %w", err))
		}
		return
	}
	hd := dr.Header()
	if rej := checkPushHeader(hd); rej != nil {
		h.rejected(w, r, rej)
		return
	}
	// 4. Device.
	if hd.DeviceID != h.cfg.DeviceID {
		h.rejected(w, r, reject(http.StatusForbidden, ReasonWrongDevice,
			"%w: push is for %q, this kiosk is %q", ErrWrongDevice, hd.DeviceID, h.cfg.DeviceID))
		return
	}
	// 5. Freshness and replay.
	ss, err := h.st.SyncState()
	if err != nil {
		h.fail(w, r, fmt.Errorf("push: read sync state: %w", err))
		return
	}
	now, synced := h.now()
	issued := hd.IssuedAt
	if !ss.Newest.IsZero() && issued.Before(ss.Newest.Add(-PushWindow)) {
		h.rejected(w, r, reject(http.StatusUnprocessableEntity, ReasonStale,
			"%w: push issued at %s, more than %v before the newest accepted document (%s)",
			store.ErrStale, issued.UTC().Format(time.RFC3339), PushWindow, ss.Newest.UTC().Format(time.RFC3339)))
		return
	}
	if d := issued.Sub(now); synced && (d > PushWindow || d < -PushWindow) {
		h.rejected(w, r, reject(http.StatusUnprocessableEntity, ReasonStale,
			"%w: push issued at %s, more than %v from the kiosk's synchronised clock (%s)",
			store.ErrStale, issued.UTC().Format(time.RFC3339), PushWindow, now.Format(time.RFC3339)))
		return
	}
	fresh, err := h.st.UseNonce(hd.Nonce, issued, now, PushWindow)
	if err != nil {
		h.fail(w, r, fmt.Errorf("push: %w", err))
		return
	}
	if !fresh {
		h.rejected(w, r, reject(http.StatusUnprocessableEntity, ReasonReplay,
			"push nonce already seen within %v", PushWindow))
		return
	}
	// 6. Act on the kind.
	switch hd.Kind {
	case PushHint:
		if err := h.st.RaiseWatermark(issued); err != nil {
			h.fail(w, r, fmt.Errorf("push: %w", err))
			return
		}
		h.target.PullNow()
		h.accepted(w, r, issued, "")
	case PushCommand:
		if err := h.st.RaiseWatermark(issued); err != nil {
			h.fail(w, r, fmt.Errorf("push: %w", err))
			return
		}
		// The push is verified and its nonce spent: run the commands
		// even if the portal hangs up meanwhile.
		h.target.RunCommands(context.WithoutCancel(r.Context()), hd.Commands)
		h.accepted(w, r, issued, "")
	case PushFull, PushDelta:
		if hd.Kind == PushDelta {
			cur, err := h.target.Cursor()
			if err != nil {
				h.fail(w, r, fmt.Errorf("push: read cursor: %w", err))
				return
			}
			if hd.Base != cur {
				h.conflict(w, r, hd.Base, cur)
				return
			}
		}
		// As for commands: a verified push whose nonce is spent is carried
		// through even if the portal hangs up; it is applied once.
		res, err := h.target.ApplyVerified(context.WithoutCancel(r.Context()), f, n)
		if err != nil {
			switch reason := RejectReason(err); reason {
			case "":
				h.fail(w, r, fmt.Errorf("push: %w", err))
			case ReasonBaseMismatch: // a pull moved the cursor meanwhile
				cur, cerr := h.target.Cursor()
				if cerr != nil {
					h.fail(w, r, fmt.Errorf("push: read cursor: %w", cerr))
					return
				}
				h.conflict(w, r, hd.Base, cur)
			default:
				h.rejected(w, r, &rejection{status: rejectStatus(reason), reason: reason, err: err})
			}
			return
		}
		h.accepted(w, r, issued, res.Cursor)
	}
}

// checkPushHeader checks what a push needs of a verified document's header
// beyond the document reader's rules.
func checkPushHeader(hd *Header) *rejection {
	bad := func(format string, args ...any) *rejection {
		return reject(http.StatusBadRequest, ReasonMalformed, "%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	switch {
	case hd.Nonce == "":
		return bad("nonce is missing")
	case len(hd.Nonce) > MaxNonceBytes:
		return bad("nonce is %d bytes, the limit is %d", len(hd.Nonce), MaxNonceBytes)
	case !validPushKind(hd.Kind):
		return bad("kind %q is not one of full, delta, hint, command", hd.Kind)
	case hd.IssuedAt.IsZero():
		return bad("issued_at is missing")
	case hd.Kind == PushFull && !hd.Full:
		return bad("kind full with full false")
	case hd.Kind == PushDelta && hd.Full:
		return bad("kind delta with full true")
	}
	return nil
}

func validPushKind(k string) bool {
	switch k {
	case PushFull, PushDelta, PushHint, PushCommand:
		return true
	}
	return false
}

// spool copies r to f and to tee, reporting read and write errors apart.
func spool(f io.Writer, tee io.Writer, r io.Reader, yield func()) (n int64, rerr, werr error) {
	buf := make([]byte, 64<<10)
	for {
		yield()
		nr, err := r.Read(buf)
		if nr > 0 {
			if _, werr = f.Write(buf[:nr]); werr != nil {
				return n, nil, werr
			}
			tee.Write(buf[:nr]) // never fails
			n += int64(nr)
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// rejected answers a rejected push and records its push.rejected event.
// The event carries the reason and status only: nothing of the body.
func (h *pushHandler) rejected(w http.ResponseWriter, r *http.Request, rej *rejection) {
	if suppressed, record := h.budget(rej); record {
		h.recordRejected(rej.reason, rej.status, 1+suppressed)
		h.cfg.Log.Warn("push rejected", "reason", rej.reason, "status", rej.status, "remote", r.RemoteAddr, "err", rej.err, "held_back_before", suppressed)
	} else {
		h.cfg.Log.Debug("push rejected", "reason", rej.reason, "status", rej.status, "remote", r.RemoteAddr, "err", rej.err)
	}
	writeJSON(w, rej.status, map[string]string{"error": rej.reason})
}

// budget says whether the rejection gets an event now, and how many
// earlier ones of its reason it reports as suppressed. One it holds back
// is counted, and a timer makes sure the count is recorded even when no
// further rejection comes.
func (h *pushHandler) budget(rej *rejection) (suppressed int, record bool) {
	every := h.cfg.RejectEventEvery
	if every < 0 {
		return 0, true
	}
	h.limitMu.Lock()
	defer h.limitMu.Unlock()
	l := h.limits[rej.reason]
	if l == nil {
		l = &rejectLimit{}
		h.limits[rej.reason] = l
	}
	now := time.Now()
	if l.last.IsZero() || now.Sub(l.last) >= every {
		suppressed, l.suppressed, l.last = l.suppressed, 0, now
		if l.flush != nil {
			l.flush.Stop()
			l.flush = nil
		}
		return suppressed, true
	}
	l.suppressed++
	l.status = rej.status
	if l.flush == nil {
		reason := rej.reason
		l.flush = time.AfterFunc(every-now.Sub(l.last), func() { h.flushRejected(reason) })
	}
	return 0, false
}

// flushRejected records the summary of a burst of held-back rejections.
func (h *pushHandler) flushRejected(reason string) {
	h.limitMu.Lock()
	l := h.limits[reason]
	n, status := l.suppressed, l.status
	l.flush = nil
	if n == 0 {
		h.limitMu.Unlock()
		return
	}
	l.suppressed, l.last = 0, time.Now()
	h.limitMu.Unlock()
	h.recordRejected(reason, status, n)
}

// recordRejected records one push.rejected event standing for count
// rejected pushes of that reason.
func (h *pushHandler) recordRejected(reason string, status, count int) {
	t, synced := h.now()
	detail := map[string]any{"reason": reason, "status": status}
	if count > 1 {
		detail["count"] = count
	}
	ev := &kiosk.Event{Time: t, ClockSynced: synced, Type: kiosk.EvPushRejected, Detail: detail}
	if err := h.st.Record(ev); err != nil {
		h.cfg.Log.Error("record push.rejected", "err", err)
	}
}

// conflict answers a delta on another base than the current cursor: 409
// with the cursor, and a pull. It is not a rejection event.
func (h *pushHandler) conflict(w http.ResponseWriter, r *http.Request, base, cur string) {
	h.cfg.Log.Info("push delta on another base; pulling", "base", base, "cursor", cur, "remote", r.RemoteAddr)
	h.target.PullNow()
	writeJSON(w, http.StatusConflict, map[string]string{"cursor": cur})
}

// accepted answers a push that was applied: 200 with the current cursor
// (fallback, when the cursor cannot be read, is what the push applied).
func (h *pushHandler) accepted(w http.ResponseWriter, r *http.Request, issued time.Time, fallback string) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(issued)
	}
	cur, err := h.target.Cursor()
	if err != nil {
		if fallback == "" {
			h.fail(w, r, fmt.Errorf("push applied, but read cursor: %w", err))
			return
		}
		cur = fallback
	}
	writeJSON(w, http.StatusOK, map[string]string{"cursor": cur})
}

// fail answers a push that could not be judged or applied for the kiosk's
// own fault (a store failure): 500, no rejection event.
func (h *pushHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.cfg.Log.Error("push failed", "remote", r.RemoteAddr, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // maps of strings: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// maxProbeDepth is the deepest nesting of arrays and objects the probe
// accepts: the document reader's (jsontext's) limit.
const maxProbeDepth = 10000

// probeCapture bounds what the probe keeps of a top-level key or of the
// kind: enough to tell "nonce" and the kinds from anything else.
const probeCapture = 16

type probeState uint8

const (
	psValue      probeState = iota // a value is due
	psValueOrEnd                   // after '[': a value or ']'
	psKeyOrEnd                     // after '{': a key or '}'
	psKey                          // after ',' in an object: a key
	psColon                        // after a key: ':'
	psNext                         // after a value: ',' or the end of its container
	psDone                         // after the document: white space only
	psString                       // inside a string
	psEscape                       // after '\' in a string
	psHex                          // in the four hex digits of \u
	psUTF8                         // in a multi-byte UTF-8 sequence
	psLiteral                      // in true, false or null
	psNeg                          // after '-'
	psZero                         // after a leading 0
	psInt                          // in integer digits
	psDot                          // after '.'
	psFrac                         // in fraction digits
	psExpE                         // after 'e' or 'E'
	psExpSign                      // after the exponent's sign
	psExp                          // in exponent digits
)

type probeField uint8

const (
	fieldNone probeField = iota
	fieldNonce
	fieldKind
)

// pushProbe checks, as a push body streams through it, that the body is
// well-formed in the sense of SPEC §6.2 — one JSON object (RFC 8259, valid
// UTF-8, nothing after it but white space) — and picks up whether it has a
// non-empty top-level "nonce" string and the value of its top-level "kind"
// string. It holds a few dozen bytes plus one byte per open array or
// object (at most maxProbeDepth) whatever the body, unlike a JSON decoder,
// which buffers whole tokens and decodes whole header lists: it is the
// only parser that sees a body before its signature is checked.
//
// It accepts at least every document the document reader accepts, and
// agrees with it on nonce and kind; a top-level nonce or kind given twice
// is malformed, as for the reader. Errors wrap ErrMalformed and name an
// offset, never content.
type pushProbe struct {
	off   int64
	err   error
	st    probeState
	stack []byte // open containers, '{' or '['

	isKey   bool // the current string is an object key
	capture bool // the current string is kept in buf
	buf     [probeCapture]byte
	capN    int  // bytes of the current string kept
	capOver bool // the current string is longer than buf
	hex     int  // hex digits read of a \u escape
	hexVal  rune
	hi      rune // a high surrogate waiting for its low half, or 0
	u8      [4]byte
	u8n     int // bytes of a UTF-8 sequence read
	u8need  int // its length
	lit     string
	litN    int

	field               probeField // the top-level member whose value comes next
	seenNonce, seenKind bool

	nonce bool   // a non-empty top-level nonce string
	kind  string // the top-level kind string, "" if absent
}

// Write feeds the probe. It never fails: the verdict waits for finish, so
// that the body is read (and its size judged) whatever its content.
func (p *pushProbe) Write(b []byte) (int, error) {
	for i := 0; i < len(b) && p.err == nil; i++ {
		// Fast path: the plain bytes of a string nobody keeps.
		if p.st == psString && !p.capture && p.hi == 0 {
			j := i
			for j < len(b) {
				c := b[j]
				if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
					break
				}
				j++
			}
			p.off += int64(j - i)
			if i = j; i == len(b) {
				break
			}
		}
		p.step(b[i])
		p.off++
	}
	return len(b), nil
}

// finish ends the body: nil if it was well-formed.
func (p *pushProbe) finish() error {
	switch {
	case p.err != nil:
		return p.err
	case p.off == 0:
		return fmt.Errorf("%w: empty body", ErrMalformed)
	case p.st != psDone:
		return fmt.Errorf("%w: unexpected end at offset %d", ErrMalformed, p.off)
	}
	return nil
}

func (p *pushProbe) fail(what string) {
	p.err = fmt.Errorf("%w: %s at offset %d", ErrMalformed, what, p.off)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *pushProbe) step(c byte) {
	switch p.st {
	case psValue:
		if !isSpace(c) {
			p.beginValue(c)
		}
	case psValueOrEnd:
		switch {
		case isSpace(c):
		case c == ']':
			p.pop()
		default:
			p.beginValue(c)
		}
	case psKeyOrEnd, psKey:
		switch {
		case isSpace(c):
		case c == '"':
			p.beginString(true)
		case c == '}' && p.st == psKeyOrEnd:
			p.pop()
		default:
			p.fail("invalid character, want an object key")
		}
	case psColon:
		switch {
		case isSpace(c):
		case c == ':':
			p.st = psValue
		default:
			p.fail("invalid character, want ':'")
		}
	case psNext:
		top := p.stack[len(p.stack)-1]
		switch {
		case isSpace(c):
		case c == ',' && top == '{':
			p.st = psKey
		case c == ',':
			p.st = psValue
		case c == '}' && top == '{', c == ']' && top == '[':
			p.pop()
		default:
			p.fail("invalid character after a value")
		}
	case psDone:
		if !isSpace(c) {
			p.fail("data after the document")
		}
	case psString:
		switch {
		case p.hi != 0 && c != '\\':
			p.fail("unpaired surrogate escape")
		case c == '"':
			p.endString()
		case c == '\\':
			p.st = psEscape
		case c < 0x20:
			p.fail("control character in string")
		case c < utf8.RuneSelf:
			p.keep(c)
		default:
			switch {
			case c >= 0xc2 && c <= 0xdf:
				p.u8need = 2
			case c >= 0xe0 && c <= 0xef:
				p.u8need = 3
			case c >= 0xf0 && c <= 0xf4:
				p.u8need = 4
			default:
				p.fail("invalid UTF-8 in string")
				return
			}
			p.u8[0], p.u8n, p.st = c, 1, psUTF8
		}
	case psUTF8:
		if c&0xc0 != 0x80 {
			p.fail("invalid UTF-8 in string")
			return
		}
		p.u8[p.u8n] = c
		if p.u8n++; p.u8n == p.u8need {
			if !utf8.Valid(p.u8[:p.u8n]) {
				p.fail("invalid UTF-8 in string")
				return
			}
			for _, b := range p.u8[:p.u8n] {
				p.keep(b)
			}
			p.st = psString
		}
	case psEscape:
		if p.hi != 0 && c != 'u' {
			p.fail("unpaired surrogate escape")
			return
		}
		p.st = psString
		switch c {
		case '"', '\\', '/':
			p.keep(c)
		case 'b':
			p.keep('\b')
		case 'f':
			p.keep('\f')
		case 'n':
			p.keep('\n')
		case 'r':
			p.keep('\r')
		case 't':
			p.keep('\t')
		case 'u':
			p.st, p.hex, p.hexVal = psHex, 0, 0
		default:
			p.fail("invalid escape in string")
		}
	case psHex:
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			p.fail("invalid \\u escape in string")
			return
		}
		p.hexVal = p.hexVal<<4 | rune(d)
		if p.hex++; p.hex < 4 {
			return
		}
		p.st = psString
		r := p.hexVal
		switch {
		case p.hi != 0:
			if r < 0xdc00 || r > 0xdfff {
				p.fail("unpaired surrogate escape")
				return
			}
			r, p.hi = utf16.DecodeRune(p.hi, r), 0
		case r >= 0xd800 && r <= 0xdbff:
			p.hi = r
			return
		case r >= 0xdc00 && r <= 0xdfff:
			p.fail("unpaired surrogate escape")
			return
		}
		var enc [utf8.UTFMax]byte
		for _, b := range utf8.AppendRune(enc[:0], r) {
			p.keep(b)
		}
	case psLiteral:
		if c != p.lit[p.litN] {
			p.fail("invalid literal")
			return
		}
		if p.litN++; p.litN == len(p.lit) {
			p.st = psNext
		}
	case psNeg:
		switch {
		case c == '0':
			p.st = psZero
		case c >= '1' && c <= '9':
			p.st = psInt
		default:
			p.fail("invalid number")
		}
	case psZero, psInt, psFrac, psExp:
		switch {
		case c >= '0' && c <= '9' && p.st != psZero:
		case c == '.' && (p.st == psZero || p.st == psInt):
			p.st = psDot
		case (c == 'e' || c == 'E') && p.st != psExp:
			p.st = psExpE
		default: // the number ended before c
			p.st = psNext
			p.step(c)
		}
	case psDot:
		if c < '0' || c > '9' {
			p.fail("invalid number")
			return
		}
		p.st = psFrac
	case psExpE:
		switch {
		case c == '+' || c == '-':
			p.st = psExpSign
		case c >= '0' && c <= '9':
			p.st = psExp
		default:
			p.fail("invalid number")
		}
	case psExpSign:
		if c < '0' || c > '9' {
			p.fail("invalid number")
			return
		}
		p.st = psExp
	}
}

// beginValue starts the value whose first byte is c.
func (p *pushProbe) beginValue(c byte) {
	field := p.field
	p.field = fieldNone
	if len(p.stack) == 0 && c != '{' {
		p.fail("not a JSON object")
		return
	}
	if field != fieldNone && c != '"' && c != 'n' { // null: absent
		p.fail("nonce and kind must be strings")
		return
	}
	switch {
	case c == '{' || c == '[':
		if len(p.stack) == maxProbeDepth {
			p.fail("nested too deep")
			return
		}
		p.stack = append(p.stack, c)
		if c == '{' {
			p.st = psKeyOrEnd
		} else {
			p.st = psValueOrEnd
		}
	case c == '"':
		p.field = field
		p.beginString(false)
	case c == '-':
		p.st = psNeg
	case c == '0':
		p.st = psZero
	case c >= '1' && c <= '9':
		p.st = psInt
	case c == 't':
		p.st, p.lit, p.litN = psLiteral, "rue", 0
	case c == 'f':
		p.st, p.lit, p.litN = psLiteral, "alse", 0
	case c == 'n':
		p.st, p.lit, p.litN = psLiteral, "ull", 0
	default:
		p.fail("invalid character, want a value")
	}
}

func (p *pushProbe) pop() {
	p.stack = p.stack[:len(p.stack)-1]
	if len(p.stack) == 0 {
		p.st = psDone
	} else {
		p.st = psNext
	}
}

// beginString starts a string: a key, or a value. Top-level keys are kept,
// and the values of nonce and kind.
func (p *pushProbe) beginString(key bool) {
	p.st = psString
	p.isKey = key
	p.capture = len(p.stack) == 1 && (key || p.field != fieldNone)
	p.capN, p.capOver = 0, false
}

func (p *pushProbe) keep(c byte) {
	if !p.capture {
		return
	}
	if p.capN == len(p.buf) {
		p.capOver = true
		return
	}
	p.buf[p.capN] = c
	p.capN++
}

func (p *pushProbe) endString() {
	kept := string(p.buf[:p.capN])
	capture, over := p.capture, p.capOver
	p.capture = false
	if p.isKey {
		p.st = psColon
		if !capture || over {
			return
		}
		switch kept {
		case "nonce":
			if p.seenNonce {
				p.fail("nonce given twice")
			}
			p.seenNonce, p.field = true, fieldNonce
		case "kind":
			if p.seenKind {
				p.fail("kind given twice")
			}
			p.seenKind, p.field = true, fieldKind
		}
		return
	}
	p.st = psNext
	if !capture {
		return
	}
	switch p.field {
	case fieldNonce:
		p.nonce = p.capN > 0
	case fieldKind:
		p.kind = kept
		if over {
			p.kind = "" // longer than any kind
		}
	}
	p.field = fieldNone
}
