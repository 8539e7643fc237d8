package main

// The local API: HTTP with JSON over a Unix socket (api.socket), for
// kioskctl and for scripts on the board. The socket is mode 0660 in a
// directory of mode 0750, so only kioskd's user and group may talk to it.
//
//	GET  /v1/status                  doors, inputs, sync, store, clock, version, board
//	GET  /v1/events?after=N&follow=1 the journal after seq N as JSON lines, then live
//	POST /v1/unlock      {"door"}    pulse a door (source technician)
//	POST /v1/test-relay  {"door"}    the same, detail {"test": true}
//	GET  /v1/watch-input             input events as JSON lines, digits masked
//	POST /v1/sync?wait=30s           pull from the portal now (and wait for it)
//	POST /v1/apply       {"path"}    apply a document file pair (SPEC §6.5)
//	GET  /metrics                    Prometheus text format
//
// Errors are JSON {"error": "...", "reason": "..."} with a 4xx or 5xx
// status. The journal holds only the events the portal has not accepted
// yet: accepted events are deleted, so /v1/events shows what is still on
// the board, not the whole history.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kioskd/hw/board"
	"kioskd/hw/serial/lockboard"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// errAPISocketInUse is returned by newAPI when something already answers
// on the configured socket: another kioskd (with another state_dir) or
// any other program. kioskd does not steal it.
var errAPISocketInUse = errors.New("another process answers on the API socket (a second kioskd?)")

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// maxRequestBody bounds the JSON body of a POST; requests are tiny.
const maxRequestBody = 64 << 10

// defaultSyncWait and maxSyncWait bound how long POST /v1/sync waits for
// the pull it asked for.
const (
	defaultSyncWait = 30 * time.Second
	maxSyncWait     = 5 * time.Minute
)

// apiServer is kioskd's local API on a Unix socket.
type apiServer struct {
	d       *Daemon
	log     *slog.Logger
	path    string
	ln      *net.UnixListener
	srv     *http.Server
	metrics *metrics
	started time.Time

	// metricsLn and metricsSrv serve only /metrics on api.metrics_listen
	// (TCP); nil when that is not configured.
	metricsLn  net.Listener
	metricsSrv *http.Server

	applyMu   sync.Mutex // serialises file applies when there is no syncer
	closeOnce sync.Once
}

// newAPI binds the local API socket cfg.API.Socket: it creates the socket's
// directory (mode 0750) if missing, removes a stale socket file that
// nobody answers on, refuses (errAPISocketInUse) when something answers,
// and leaves the socket at mode 0660. Nothing is served before run. d must
// hold Config and Store; Engine (and Syncer, when a portal is configured)
// must be set before run.
func newAPI(d *Daemon, log *slog.Logger) (*apiServer, error) {
	if log == nil {
		log = slog.Default()
	}
	path := d.Config.API.Socket
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("%s: api.socket %q is %d bytes long; a Unix socket path may have at most %d", d.Config.Path, path, len(path), maxSocketPath)
	}
	if err := socketDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := clearStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	from, err := d.Store.LastSeq()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: read the journal: %w", err)
	}
	a := &apiServer{d: d, log: log, path: path, ln: ln, started: time.Now()}
	a.metrics = newMetrics(d, a.started, from)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	mux.HandleFunc("POST /v1/unlock", a.handleUnlock(false))
	mux.HandleFunc("POST /v1/test-relay", a.handleUnlock(true))
	mux.HandleFunc("GET /v1/watch-input", a.handleWatchInput)
	mux.HandleFunc("POST /v1/sync", a.handleSync)
	mux.HandleFunc("POST /v1/apply", a.handleApply)
	mux.Handle("GET /metrics", a.metrics.handler(log))
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if addr := d.Config.API.MetricsListen; addr != "" {
		mln, err := net.Listen("tcp", addr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("%s: api.metrics_listen %s: %w", d.Config.Path, addr, err)
		}
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", a.metrics.handler(log))
		a.metricsLn = mln
		a.metricsSrv = &http.Server{
			Handler:           mmux,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return a, nil
}

// MetricsAddr returns the bound metrics address ("" when none).
func (a *apiServer) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// socketDir creates the socket's directory with mode 0750 when it is
// missing; an existing directory is left as it is (systemd's
// RuntimeDirectory makes it).
func socketDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("api socket directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("api socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil { // the umask may have taken bits
		return fmt.Errorf("api socket directory: %w", err)
	}
	return nil
}

// clearStaleSocket removes a socket file left by a kioskd that died, and
// refuses when something still answers on it or when the path holds
// anything but a socket.
func clearStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("api socket %s: the path holds a %s, not a socket; remove it or set api.socket", path, fileKind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", errAPISocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("api socket %s: cannot tell whether it is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("api socket %s: remove stale socket: %w", path, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "special file"
	}
}

// run serves the API until ctx is done, then closes the socket and
// removes its file. Streams (events, watch-input) end when ctx is done.
// It also runs the metrics' counters that follow the engine and the
// journal.
func (a *apiServer) run(ctx context.Context) {
	a.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "socket", a.path, "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		a.metrics.run(ctx, a.log)
	}()
	if a.metricsSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.metricsSrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener stopped", "addr", a.MetricsAddr(), "err", err)
			}
		}()
		a.log.Info("metrics serving", "addr", a.MetricsAddr())
	}
	a.log.Info("api serving", "socket", a.path)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		a.srv.Close()
	}
	if a.metricsSrv != nil {
		if err := a.metricsSrv.Shutdown(sctx); err != nil {
			a.metricsSrv.Close()
		}
	}
	wg.Wait()
	a.close()
}

// close closes the socket (and removes its file) if run has not; for a
// start that fails between newAPI and run. It is safe to call twice.
func (a *apiServer) close() {
	a.closeOnce.Do(func() {
		if err := a.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Warn("close api socket", "socket", a.path, "err", err)
		}
		if a.metricsLn != nil {
			_ = a.metricsLn.Close()
		}
	})
}

// decided is the engine's Decided hook: it counts the decision in the
// metrics. It runs on the decision loop and only touches counters.
func (a *apiServer) decided(o kiosk.Outcome) { a.metrics.decided(o) }

// ---- replies ----

// apiError is the body of every error reply.
type apiError struct {
	Error string `json:"error"`
	// Reason is the reason code of a rejected document (sync.rejected).
	Reason string `json:"reason,omitempty"`
}

func writeError(w http.ResponseWriter, code int, err error, reason string) {
	writeJSON(w, code, apiError{Error: err.Error(), Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusReply is GET /v1/status.
type statusReply struct {
	DeviceID    string       `json:"device_id"`
	Version     string       `json:"version"`
	Started     time.Time    `json:"started"`
	UptimeS     int64        `json:"uptime_s"`
	Board       string       `json:"board"` // one line, board.Info.String
	BoardInfo   board.Info   `json:"board_info"`
	Hardware    string       `json:"hardware"`
	Config      string       `json:"config"`
	Doors       []doorReply  `json:"doors"`
	Inputs      []inputReply `json:"inputs"`
	Sync        syncReply    `json:"sync"`
	Credentials int          `json:"credentials"`
	Backlog     int          `json:"backlog"`
	Clock       clockReply   `json:"clock"`
	// LockBuses are the RS-485 lock-board buses' counters; absent
	// without lock boards.
	LockBuses []lockboard.Stats `json:"lock_buses,omitempty"`
	Errors    []string          `json:"errors,omitempty"` // parts that could not be read
}

// doorReply is one door in the status.
type doorReply struct {
	kiosk.DoorStatus
	PulseMS int64 `json:"pulse_ms"`
	// Contact says whether the door has a contact; without one, Open is
	// always false.
	Contact bool `json:"contact"`
}

// inputReply is one input in the status.
type inputReply struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Device    string `json:"device,omitempty"`
	Connected bool   `json:"connected"`
	// LockedUntil is the end of a lockout in progress.
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// syncReply is the portal link in the status.
type syncReply struct {
	// Portal is the portal URL; "" for a kiosk that runs offline.
	Portal   string    `json:"portal"`
	PushAddr string    `json:"push_addr,omitempty"`
	Cursor   string    `json:"cursor"`
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// AgeS is the age in seconds of the credential set: since the last
	// successful pull or the issued_at of the live set, whichever is
	// later; null when the kiosk never had a document.
	AgeS           *float64  `json:"age_s"`
	LastPull       time.Time `json:"last_pull,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	Failures       int       `json:"failures"`
	LastUpload     time.Time `json:"last_upload,omitzero"`
	UploadError    string    `json:"upload_error,omitempty"`
	LastHeartbeat  time.Time `json:"last_heartbeat,omitzero"`
	HeartbeatError string    `json:"heartbeat_error,omitempty"`
}

// clockReply is the clock in the status.
type clockReply struct {
	Now    time.Time `json:"now"`
	Synced bool      `json:"synced"`
	Floor  time.Time `json:"floor"`
}

func (a *apiServer) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.status())
}

func (a *apiServer) status() statusReply {
	d, cfg := a.d, a.d.Config
	now, synced := d.Clock.Now()
	st := statusReply{
		DeviceID:  cfg.DeviceID,
		Version:   version,
		Started:   a.started.UTC(),
		UptimeS:   int64(time.Since(a.started).Seconds()),
		Board:     boardInfo().String(),
		BoardInfo: boardInfo(),
		Hardware:  cfg.Hardware,
		Config:    cfg.Path,
		Clock:     clockReply{Now: now, Synced: synced, Floor: d.Clock.Floor()},
		LockBuses: d.lockBoards.stats(),
	}
	doors := d.Engine.Doors()
	for i, ds := range doors {
		dr := doorReply{DoorStatus: ds}
		if i < len(cfg.Doors) && cfg.Doors[i].ID == ds.ID {
			dr.PulseMS = cfg.Doors[i].Pulse.Milliseconds()
			dr.Contact = cfg.Doors[i].Contact != nil || cfg.Doors[i].Lock != nil
		}
		st.Doors = append(st.Doors, dr)
	}
	lockouts, err := d.Store.Lockouts()
	if err != nil {
		st.Errors = append(st.Errors, fmt.Sprintf("lockouts: %v", err))
	}
	for _, in := range cfg.Inputs {
		ir := inputReply{Name: in.Name, Type: in.Type, Device: in.Device, Connected: d.Engine.Connected(in.Name)}
		if lo, ok := lockouts[in.Name]; ok && lo.Until.After(now) {
			ir.LockedUntil = lo.Until
		}
		st.Inputs = append(st.Inputs, ir)
	}
	st.Sync, st.Credentials, st.Backlog = a.syncStatus(now, &st.Errors)
	return st
}

// syncStatus reads the portal link's state, from the syncer when there is
// one, else from the store.
func (a *apiServer) syncStatus(now time.Time, errs *[]string) (sr syncReply, creds, backlog int) {
	d := a.d
	sr.Portal = d.Config.Portal.URL
	sr.PushAddr = d.PushAddr
	ss, err := d.Store.SyncState()
	if err != nil {
		*errs = append(*errs, fmt.Sprintf("sync state: %v", err))
	}
	sr.Cursor, sr.IssuedAt, creds = ss.Cursor, ss.IssuedAt, ss.Credentials
	if err != nil {
		creds = d.Store.Count()
	}
	if backlog, err = d.Store.Backlog(); err != nil {
		*errs = append(*errs, fmt.Sprintf("backlog: %v", err))
	}
	if d.Syncer != nil {
		s := d.Syncer.Status()
		sr.LastPull, sr.LastError, sr.Failures = s.LastPull, s.LastError, s.Failures
		sr.LastUpload, sr.UploadError = s.LastUpload, s.UploadError
		sr.LastHeartbeat, sr.HeartbeatError = s.LastHeartbeat, s.HeartbeatError
	}
	if age, ok := syncAge(now, sr.LastPull, sr.IssuedAt); ok {
		sr.AgeS = &age
	}
	return sr, creds, backlog
}

// syncAge returns the age of the credential set at now: since the later
// of the last successful pull and the live set's issued_at. ok is false
// when there is neither.
func syncAge(now, lastPull, issuedAt time.Time) (seconds float64, ok bool) {
	ref := kiosk.Later(lastPull, issuedAt)
	if ref.IsZero() {
		return 0, false
	}
	return max(now.Sub(ref).Seconds(), 0), true
}

// boardInfo identifies the board once per process through periph.io's
// detection, without host.Init: naming the board needs no driver, and
// Init would probe every GPIO driver (opening every gpiochip, mapping
// /dev/gpiomem) beside the one kioskd drives its lines with.
var boardInfo = sync.OnceValue(board.Detect)

// ---- events ----

// eventBatch is how many journal events one read takes.
const eventBatch = 256

// handleEvents streams the journal after seq `after` (default 0) as JSON
// lines, one kiosk.Event each, in seq order; with follow=1 it then waits
// for new events until the client goes away or kioskd stops. Only events
// the portal has not accepted are in the journal: a gap in seq means
// events already uploaded and deleted.
func (a *apiServer) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after=%q: want a seq number (0 or more)", s), "")
			return
		}
		after = n
	}
	follow := false
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("follow=%q: want 1 or 0", s), "")
			return
		}
		follow = b
	}
	var wake <-chan struct{}
	if follow {
		// Subscribe before the first read, so that nothing appended
		// between the read and the wait is missed.
		ch, cancel := a.d.Store.Subscribe()
		defer cancel()
		wake = ch
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	for {
		evs, err := a.d.Store.Pending(after, eventBatch)
		if err != nil {
			if !started {
				writeError(w, http.StatusInternalServerError, fmt.Errorf("read the journal: %w", err), "")
			} else {
				a.log.Error("api events: read the journal", "err", err)
			}
			return
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for i := range evs {
			if err := enc.Encode(&evs[i]); err != nil {
				return // the client went away
			}
			after = evs[i].Seq
		}
		if len(evs) == eventBatch {
			continue
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if !follow {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// ---- unlock, test-relay ----

// doorRequest is the body of /v1/unlock and /v1/test-relay.
type doorRequest struct {
	Door string `json:"door"`
}

// unlockReply answers /v1/unlock and /v1/test-relay.
type unlockReply struct {
	Door    string `json:"door"`
	PulseMS int64  `json:"pulse_ms"`
	Test    bool   `json:"test,omitempty"`
}

// decodeDoor reads a doorRequest: one JSON object with a non-empty door,
// no other fields, nothing after it.
func decodeDoor(r io.Reader) (string, error) {
	var req doorRequest
	if err := decodeStrict(r, &req); err != nil {
		return "", err
	}
	if req.Door == "" {
		return "", errors.New(`request body: "door" is missing or empty`)
	}
	return req.Door, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}

func (a *apiServer) handleUnlock(test bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		door, err := decodeDoor(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, err, "")
			return
		}
		var detail map[string]any
		if test {
			detail = map[string]any{"test": true}
		}
		err = a.d.Engine.Unlock(r.Context(), door, kiosk.SourceTechnician, detail)
		switch {
		case errors.Is(err, kiosk.ErrUnknownDoor):
			writeError(w, http.StatusNotFound, fmt.Errorf("unknown door %q; this kiosk has %s", door, strings.Join(a.doorIDs(), ", ")), "")
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err, "")
			return
		}
		a.log.Info("technician unlock", "door", door, "test", test)
		reply := unlockReply{Door: door, Test: test}
		for _, dc := range a.d.Config.Doors {
			if dc.ID == door {
				reply.PulseMS = dc.Pulse.Milliseconds()
			}
		}
		writeJSON(w, http.StatusOK, reply)
	}
}

func (a *apiServer) doorIDs() []string {
	ids := make([]string, 0, len(a.d.Config.Doors))
	for _, dc := range a.d.Config.Doors {
		ids = append(ids, dc.ID)
	}
	return ids
}

// ---- watch-input ----

// watchLine is one line of /v1/watch-input. The first line has type
// "watching" and lists the inputs; then one line per input event.
type watchLine struct {
	Time  time.Time `json:"time"`
	Input string    `json:"input,omitempty"`
	// Type is watching, key, code, connected, disconnected or rejected.
	Type string `json:"type"`
	// Key is the key, with every digit shown as "•": the digits of a PIN
	// being typed are the PIN. *, # and A–D are shown as they are.
	Key string `json:"key,omitempty"`
	// Entry is the number of digits in the keypad entry after this key;
	// Submitted says this key submitted the entry (# or the PIN length
	// reached) and Cleared that it cleared it (*). As kioskd's keypad
	// rules count them (entry timeout included), read from the keys seen.
	Entry     int  `json:"entry"`
	Submitted bool `json:"submitted,omitempty"`
	Cleared   bool `json:"cleared,omitempty"`
	// Detail: for a code its length ("12 bytes"), never its content; for
	// a rejection or disconnection, why.
	Detail string   `json:"detail,omitempty"`
	Inputs []string `json:"inputs,omitempty"`
}

// maskKey shows a key as watch-input may: digits masked.
func maskKey(k rune) string {
	switch {
	case k >= '0' && k <= '9':
		return "•"
	case k == '*' || k == '#' || (k >= 'A' && k <= 'D'):
		return string(k)
	default:
		return "?"
	}
}

// entryWatch mirrors the keypad entry of one input for watch-input: it
// counts digits, never keeps them.
type entryWatch struct {
	digits int
	last   time.Time
}

// key updates the count for one key and fills the line's entry fields.
func (e *entryWatch) key(k rune, at time.Time, pinLength int, timeout time.Duration, l *watchLine) {
	isKey := (k >= '0' && k <= '9') || k == '*' || k == '#'
	if isKey && e.digits > 0 && !at.Before(e.last.Add(timeout)) {
		e.digits = 0 // the entry timed out before this key
	}
	switch {
	case k >= '0' && k <= '9':
		e.digits++
		e.last = at
		l.Entry = e.digits
		if e.digits >= pinLength {
			l.Submitted = true
			e.digits = 0
		}
	case k == '#':
		l.Entry = e.digits
		l.Submitted = e.digits > 0
		e.digits = 0
	case k == '*':
		l.Cleared = true
		e.digits = 0
	default: // A–D: ignored by the entry
		l.Entry = e.digits
	}
}

func (a *apiServer) handleWatchInput(w http.ResponseWriter, r *http.Request) {
	taps, cancel := a.d.Engine.Tap(256)
	defer cancel()
	cfg := a.d.Config
	names := make([]string, 0, len(cfg.Inputs))
	for _, in := range cfg.Inputs {
		names = append(names, in.Name)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	if enc.Encode(watchLine{Time: time.Now().UTC(), Type: "watching", Inputs: names}) != nil || rc.Flush() != nil {
		return
	}
	entries := map[string]*entryWatch{}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-taps:
			l := watchLine{Time: ev.Time.UTC(), Input: ev.Input}
			if ev.Time.IsZero() {
				l.Time = time.Now().UTC()
			}
			switch ev.Type {
			case kiosk.InputKey:
				l.Type, l.Key = "key", maskKey(ev.Key)
				e := entries[ev.Input]
				if e == nil {
					e = &entryWatch{}
					entries[ev.Input] = e
				}
				e.key(ev.Key, l.Time, cfg.Keypad.PINLength, cfg.Keypad.EntryTimeout, &l)
			case kiosk.InputCode:
				l.Type, l.Detail = "code", ev.Detail // the tap masks codes: "N bytes"
			case kiosk.InputConnected:
				l.Type = "connected"
			case kiosk.InputDisconnected:
				l.Type, l.Detail = "disconnected", ev.Detail
			case kiosk.InputRejected:
				l.Type, l.Detail = "rejected", ev.Detail
			default:
				continue
			}
			if enc.Encode(l) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// ---- sync ----

// syncReplyBody answers /v1/sync.
type syncReplyBody struct {
	// Done says a pull finished after the request (false when not
	// waited for); OK that it succeeded.
	Done   bool                  `json:"done"`
	OK     bool                  `json:"ok"`
	Status portalsync.SyncStatus `json:"status"`
}

// handleSync asks the syncer for a pull at once and, unless wait=0, waits
// (default 30 s) until a pull finishes: 200 when it succeeded, 502 with
// its error when it failed, 504 when none finished in time. Without a
// portal it is 409. The syncer says only when a pull ended, so a pull
// already running when the request came is the one waited for; the pull
// asked for then follows it.
func (a *apiServer) handleSync(w http.ResponseWriter, r *http.Request) {
	if a.d.Syncer == nil {
		writeError(w, http.StatusConflict, fmt.Errorf("no portal configured (portal.url is not set in %s): this kiosk runs offline and takes documents from files (kioskctl apply NAME.json)", a.d.Config.Path), "")
		return
	}
	wait := defaultSyncWait
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxSyncWait {
			writeError(w, http.StatusBadRequest, fmt.Errorf("wait=%q: want a duration from 0 to %v", s, maxSyncWait), "")
			return
		}
		wait = d
	}
	s := a.d.Syncer
	before := s.Status()
	s.PullNow()
	if wait == 0 {
		writeJSON(w, http.StatusAccepted, syncReplyBody{Status: before})
		return
	}
	// The syncer tells nobody when a pull ends; its status does.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-deadline.C:
			writeJSON(w, http.StatusGatewayTimeout, apiError{Error: fmt.Sprintf("no pull finished within %v; it may still be running (kioskctl status)", wait)})
			return
		case <-tick.C:
		}
		now := s.Status()
		switch {
		case now.LastPull.After(before.LastPull):
			writeJSON(w, http.StatusOK, syncReplyBody{Done: true, OK: true, Status: now})
			return
		case now.Failures > before.Failures || (now.LastError != "" && now.LastError != before.LastError):
			writeJSON(w, http.StatusBadGateway, struct {
				apiError
				syncReplyBody
			}{apiError{Error: "pull failed: " + now.LastError}, syncReplyBody{Done: true, Status: now}})
			return
		}
	}
}

// ---- apply ----

// applyRequest is the body of /v1/apply.
type applyRequest struct {
	// Path is the absolute path of NAME.json; NAME.json.sig lies beside
	// it. kioskd reads it, so kioskd's user must be able to.
	Path string `json:"path"`
}

// applyReply answers /v1/apply: what the document did.
type applyReply struct {
	Full        bool      `json:"full"`
	Base        string    `json:"base,omitempty"`
	Cursor      string    `json:"cursor"`
	IssuedAt    time.Time `json:"issued_at"`
	Changed     bool      `json:"changed"`
	Credentials int       `json:"credentials"`
	Upserted    int       `json:"upserted"`
	Removed     int       `json:"removed"`
	Commands    int       `json:"commands"`
}

func (a *apiServer) handleApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, maxRequestBody), &req); err != nil {
		writeError(w, http.StatusBadRequest, err, "")
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("path %q: want an absolute path (kioskd has another working directory)", req.Path), "")
		return
	}
	cfg := a.d.Config
	if len(cfg.Portal.PublicKey) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%s: portal.public_key is not set: it is needed to check the signature of documents", cfg.Path), "")
		return
	}
	res, err := a.apply(r.Context(), req.Path)
	if err != nil {
		if reason := portalsync.RejectReason(err); reason != "" {
			writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("rejected %s (%s): %w", filepath.Base(req.Path), reason, err), reason)
			return
		}
		code := http.StatusInternalServerError
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			code = http.StatusBadRequest
		}
		writeError(w, code, fmt.Errorf("apply %s: %w", req.Path, err), "")
		return
	}
	a.log.Info("document applied from file", "file", req.Path, "cursor", res.Cursor, "full", res.Full, "changed", res.Changed)
	writeJSON(w, http.StatusOK, applyReply{
		Full: res.Full, Base: res.Base, Cursor: res.Cursor, IssuedAt: res.IssuedAt, Changed: res.Changed,
		Credentials: res.Credentials, Upserted: res.Stats.Upserted, Removed: res.Stats.Removed, Commands: len(res.Commands),
	})
}

// apply applies a document file pair: through the syncer when there is
// one (it serialises every document), else directly on the store under
// applyMu, raising the clock floor and running the document's commands
// at most once each, as the syncer would.
func (a *apiServer) apply(ctx context.Context, path string) (portalsync.Result, error) {
	d := a.d
	if d.Syncer != nil {
		return d.Syncer.ApplyFile(ctx, path)
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	cfg := d.Config
	res, err := portalsync.ApplyFile(ctx, portalsync.StoreApplier(d.Store), portalsync.FileOptions{
		DeviceID:  cfg.DeviceID,
		PublicKey: cfg.Portal.PublicKey,
		MaxBytes:  cfg.Portal.MaxDocumentBytes,
		Now:       d.Clock.Now,
	}, path)
	if err != nil {
		return res, err
	}
	d.Clock.Observe(res.IssuedAt)
	runCmd := commandRunner(d.Engine)
	for _, c := range res.Commands {
		first, err := d.Store.RunOnce(c.ID)
		if err != nil {
			a.log.Error("record command", "command", c.ID, "err", err)
			continue
		}
		if !first {
			continue
		}
		if err := runCmd(ctx, c); err != nil {
			a.log.Error("run command from file", "command", c.ID, "err", err)
		}
	}
	return res, nil
}
