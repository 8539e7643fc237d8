package portal

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"kioskd/kiosk"
)

// maxAdminBody bounds the body of an admin request.
const maxAdminBody = 1 << 20

// adminRoutes adds the admin API, JSON in and out, every route behind the
// admin token:
//
//	GET    /admin/ping                     → 204 (the server runs, the token is right)
//	POST   /admin/holders                  HolderSpec → Holder
//	GET    /admin/holders                  → [Holder]
//	POST   /admin/credentials              CredentialSpec → Issued (the secret, once)
//	GET    /admin/credentials?holder=&deleted=1 → [CredentialInfo]
//	POST   /admin/credentials/{id}/status  {"status": "active"|"deactivated"} → CredentialInfo
//	DELETE /admin/credentials/{id}         → 204
//	POST   /admin/tokens                   TokenSpec → IssuedToken (the text, once)
//	GET    /admin/tokens                   → [TokenInfo]
//	POST   /admin/revoked                  {"cid": "..."} → 204
//	POST   /admin/devices                  DeviceSpec → AddedDevice
//	GET    /admin/devices                  → [Device]
//	POST   /admin/devices/{id}/unlock      {"door": "main"} → Command
//	GET    /admin/devices/{id}/events?limit=N → [Event], newest first
//	GET    /admin/devices/{id}/export      → signed full document (Kiosk-Signature header)
//	POST   /admin/import                   ImportSpec (secrets in the clear) → ImportInfo
func (p *Portal) adminRoutes(mux *http.ServeMux) {
	route := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, p.adminAuth(h)) }
	route("GET /admin/ping", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	route("POST /admin/holders", func(w http.ResponseWriter, r *http.Request) {
		var spec HolderSpec
		if p.readJSON(w, r, &spec) {
			p.answer(w, r)(p.AddHolder(r.Context(), spec))
		}
	})
	route("GET /admin/holders", func(w http.ResponseWriter, r *http.Request) {
		p.answer(w, r)(p.Holders(r.Context()))
	})
	route("POST /admin/credentials", func(w http.ResponseWriter, r *http.Request) {
		var spec CredentialSpec
		if p.readJSON(w, r, &spec) {
			p.answer(w, r)(p.Issue(r.Context(), spec))
		}
	})
	route("GET /admin/credentials", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := CredentialFilter{Holder: q.Get("holder"), Deleted: q.Get("deleted") == "1"}
		p.answer(w, r)(p.Credentials(r.Context(), f))
	})
	route("POST /admin/credentials/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Status kiosk.Status `json:"status"`
		}
		if p.readJSON(w, r, &body) {
			p.answer(w, r)(p.SetStatus(r.Context(), r.PathValue("id"), body.Status))
		}
	})
	route("DELETE /admin/credentials/{id}", func(w http.ResponseWriter, r *http.Request) {
		p.noContent(w, r, p.Delete(r.Context(), r.PathValue("id")))
	})
	route("POST /admin/tokens", func(w http.ResponseWriter, r *http.Request) {
		var spec TokenSpec
		if p.readJSON(w, r, &spec) {
			p.answer(w, r)(p.IssueToken(r.Context(), spec))
		}
	})
	route("GET /admin/tokens", func(w http.ResponseWriter, r *http.Request) {
		p.answer(w, r)(p.Tokens(r.Context()))
	})
	route("POST /admin/revoked", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			CID string `json:"cid"`
		}
		if p.readJSON(w, r, &body) {
			p.noContent(w, r, p.Revoke(r.Context(), body.CID))
		}
	})
	route("POST /admin/devices", func(w http.ResponseWriter, r *http.Request) {
		var spec DeviceSpec
		if p.readJSON(w, r, &spec) {
			p.answer(w, r)(p.AddDevice(r.Context(), spec))
		}
	})
	route("GET /admin/devices", func(w http.ResponseWriter, r *http.Request) {
		p.answer(w, r)(p.Devices(r.Context()))
	})
	route("POST /admin/devices/{id}/unlock", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Door string `json:"door"`
		}
		if p.readJSON(w, r, &body) {
			p.answer(w, r)(p.Unlock(r.Context(), r.PathValue("id"), body.Door))
		}
	})
	route("GET /admin/devices/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		limit := 0
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				httpError(w, http.StatusBadRequest, "limit is not a number")
				return
			}
			limit = n
		}
		p.answer(w, r)(p.Events(r.Context(), r.PathValue("id"), limit))
	})
	route("GET /admin/devices/{id}/export", p.handleExport)
	route("POST /admin/import", func(w http.ResponseWriter, r *http.Request) {
		var spec ImportSpec
		if p.readJSONMax(w, r, &spec, maxImportBody) {
			p.answer(w, r)(p.Import(r.Context(), spec))
		}
	})
}

// maxImportBody bounds the body of an import.
const maxImportBody = 64 << 20

// readJSON decodes the request body into v, strictly; on failure it
// answers 400 (or 413) and returns false.
func (p *Portal) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return p.readJSONMax(w, r, v, maxAdminBody)
}

func (p *Portal) readJSONMax(w http.ResponseWriter, r *http.Request, v any, max int64) bool {
	if tooLarge(w, r, max) {
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if statusOf(err) == http.StatusRequestEntityTooLarge {
			p.fail(w, r, err)
			return false
		}
		httpError(w, http.StatusBadRequest, fmt.Sprintf("request body: %v", err))
		return false
	}
	return true
}

// answer returns a function that writes (v, err) as the JSON answer.
func (p *Portal) answer(w http.ResponseWriter, r *http.Request) func(v any, err error) {
	return func(v any, err error) {
		if err != nil {
			p.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(v)
	}
}

func (p *Portal) noContent(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		p.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Headers of the export answer besides Kiosk-Signature.
const (
	hdrCursor      = "Devportal-Cursor"
	hdrCredentials = "Devportal-Credentials"
	hdrRevoked     = "Devportal-Revoked"
)

func (p *Portal) handleExport(w http.ResponseWriter, r *http.Request) {
	f, err := os.CreateTemp(p.opts.Dir, ".export-*.json")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	info, sig, err := p.writeFull(r.PathValue("id"), f)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if _, err := f.Seek(0, 0); err != nil {
		p.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.FormatInt(info.Bytes, 10))
	h.Set("Kiosk-Signature", sig)
	h.Set(hdrCursor, info.Cursor)
	h.Set(hdrCredentials, strconv.Itoa(info.Credentials))
	h.Set(hdrRevoked, strconv.Itoa(info.Revoked))
	if _, err := io.Copy(w, f); err != nil {
		p.log.Warn("export: send", "device", r.PathValue("id"), "err", err)
	}
}
