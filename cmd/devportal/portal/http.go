package portal

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Body limits of the device API.
const (
	maxUploadBytes    = 16 << 20 // 500 events of up to 32 KiB
	maxHeartbeatBytes = 1 << 20
)

// Handler returns the portal's HTTP handler: the device protocol of SPEC §6
// under /v1/devices/{id}/ (bearer token of the device) and the admin API
// under /admin/ (bearer token of admin.token).
//
//	GET  /v1/devices/{id}/sync?cursor=&page=   signed sync document page
//	POST /v1/devices/{id}/events               {"events": [...]} → {"accepted": [...]}
//	POST /v1/devices/{id}/heartbeat            → {"commands": [...]} or empty
//
// The admin API is listed at adminRoutes.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/devices/{id}/sync", p.device(p.handleSync))
	mux.HandleFunc("POST /v1/devices/{id}/events", p.device(p.handleEvents))
	mux.HandleFunc("POST /v1/devices/{id}/heartbeat", p.device(p.handleHeartbeat))
	p.adminRoutes(mux)
	return mux
}

// bearer returns the bearer token of a request, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// httpError writes a JSON error answer.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// statusOf maps an error of the portal to an HTTP status.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownCursor):
		return http.StatusGone
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func (p *Portal) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		p.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		httpError(w, status, "internal error")
		return
	}
	httpError(w, status, err.Error())
}

// device wraps a device endpoint with the bearer token check: 401 without
// a token or with one no device has, 403 with another device's token.
func (p *Portal) device(h func(w http.ResponseWriter, r *http.Request, id string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		res, err := p.authDevice(id, bearer(r))
		if err != nil {
			p.fail(w, r, err)
			return
		}
		switch res {
		case authMissing:
			w.Header().Set("WWW-Authenticate", `Bearer realm="devportal"`)
			httpError(w, http.StatusUnauthorized, "missing or unknown device token")
			return
		case authForbidden:
			httpError(w, http.StatusForbidden, "the token is not this device's")
			return
		}
		h(w, r, id)
	}
}

func (p *Portal) handleSync(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	cursor, page := q.Get("cursor"), q.Get("page")
	d, err := p.document(id, cursor, page)
	if err != nil {
		if errors.Is(err, ErrUnknownCursor) {
			p.log.Info("sync: unknown cursor", "device", id, "err", err)
		}
		p.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(d.Body)))
	w.Header().Set("Kiosk-Signature", d.Signature)
	if _, err := w.Write(d.Body); err != nil {
		p.log.Warn("sync: send", "device", id, "err", err)
		return
	}
	p.log.Debug("sync served", "device", id, "cursor_param", cursor, "full", d.Header.Full, "cursor", d.Header.Cursor,
		"credentials", d.Creds, "more", d.Header.Next != "")
	if err := p.markDelivered(d.Commands); err != nil {
		p.log.Error("sync: mark commands delivered", "device", id, "err", err)
	}
	err = p.noteDevice(id, func(rec *deviceRecord) {
		rec.LastSync = p.now()
		if page == "" && cursor != "" {
			if _, ok := ParseCursor(cursor); ok {
				rec.Cursor = cursor
			}
		}
		if d.Header.Next == "" {
			// The whole document has been served: the kiosk most likely
			// applies it. If not, a push on this base gets a 409 and the
			// kiosk pulls.
			rec.Cursor = d.Header.Cursor
		}
	})
	if err != nil {
		p.log.Error("sync: note device", "device", id, "err", err)
	}
}

// uploadBody is the body of an events upload.
type uploadBody struct {
	Events []json.RawMessage `json:"events"`
}

// tooLarge answers 413 when a request announces a body over max; the
// body is then not read. Bodies without a length are cut at max as read.
func tooLarge(w http.ResponseWriter, r *http.Request, max int64) bool {
	if r.ContentLength > max {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", max))
		return true
	}
	return false
}

func (p *Portal) handleEvents(w http.ResponseWriter, r *http.Request, id string) {
	if tooLarge(w, r, maxUploadBytes) {
		return
	}
	var body uploadBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUploadBytes))
	if err := dec.Decode(&body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p.fail(w, r, err)
			return
		}
		httpError(w, http.StatusBadRequest, fmt.Sprintf("events: not a JSON object {\"events\": [...]}: %v", err))
		return
	}
	accepted, err := p.IngestEvents(id, body.Events)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string][]string{"accepted": accepted})
}

func (p *Portal) handleHeartbeat(w http.ResponseWriter, r *http.Request, id string) {
	if tooLarge(w, r, maxHeartbeatBytes) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHeartbeatBytes))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	cmds, keys, err := p.Heartbeat(id, body)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if len(cmds) == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(map[string]any{"commands": cmds}); err != nil {
		p.log.Warn("heartbeat: send", "device", id, "err", err)
		return
	}
	if err := p.markDelivered(keys); err != nil {
		p.log.Error("heartbeat: mark commands delivered", "device", id, "err", err)
	}
}

// adminAuth wraps an admin endpoint with the admin token check.
func (p *Portal) adminAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(p.adminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="devportal admin"`)
			httpError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		h(w, r)
	}
}
