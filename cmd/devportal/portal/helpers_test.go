package portal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a portal on a real bbolt file behind a real loopback HTTP server.
type env struct {
	t       testing.TB
	dir     string
	p       *Portal
	srv     *httptest.Server
	clock   *testClock
	pub     ed25519.PublicKey
	siteKey []byte
	logs    *syncBuffer
	tokens  map[string]string // device id → bearer token
}

// writeKeys writes portal.key and site.key into dir, as keygen does.
func writeKeys(t testing.TB, dir string) (ed25519.PublicKey, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	site := make([]byte, SiteKeySize)
	rand.Read(site)
	for name, b := range map[string][]byte{PortalKeyFile: priv.Seed(), SiteKeyFile: site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pub, site
}

// newEnv opens a portal in a fresh directory with a test clock; mod may
// adjust the options.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	pub, site := writeKeys(t, dir)
	e := &env{t: t, dir: dir, pub: pub, siteKey: site, logs: &syncBuffer{}, tokens: map[string]string{},
		clock: &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}}
	opts := Options{Dir: dir, Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&opts)
	}
	p, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	e.srv = httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		e.srv.Close()
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

var ctx = context.Background()

// addDevice registers a device with a fresh token.
func (e *env) addDevice(id, pushURL string) string {
	e.t.Helper()
	d, err := e.p.AddDevice(ctx, DeviceSpec{ID: id, PushURL: pushURL})
	if err != nil {
		e.t.Fatal(err)
	}
	e.tokens[id] = d.Token.Reveal()
	return e.tokens[id]
}

func (e *env) holder(role kiosk.Role, name string) string {
	e.t.Helper()
	h, err := e.p.AddHolder(ctx, HolderSpec{Role: role, Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return h.ID
}

func (e *env) issue(spec CredentialSpec) Issued {
	e.t.Helper()
	is, err := e.p.Issue(ctx, spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return is
}

// request sends a device request with token and returns status, headers
// and body.
func (e *env) request(method, path, token string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// page is one verified, parsed document page.
type page struct {
	hdr   *portalsync.Header
	creds []*kiosk.Credential
	wire  []portalsync.WireCredential
	body  []byte
}

// verify checks a document body as a kiosk does: signature under the
// portal key (VerifyReader), then the streaming reader; it returns the
// parsed page.
func verify(t testing.TB, pub ed25519.PublicKey, sigText string, body []byte) *page {
	t.Helper()
	sig, err := portalsync.ParseSignature(sigText)
	if err != nil {
		t.Fatalf("signature header: %v", err)
	}
	if _, err := portalsync.VerifyReader(pub, sig, bytes.NewReader(body), portalsync.DefaultMaxDocumentBytes); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	r, err := portalsync.NewDocReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("document does not parse: %v\n%s", err, body)
	}
	pg := &page{hdr: r.Header(), body: body}
	if err := r.Credentials(func(c *kiosk.Credential) error { pg.creds = append(pg.creds, c); return nil }); err != nil {
		t.Fatalf("credentials: %v", err)
	}
	d, err := portalsync.ParseDocument(body)
	if err != nil {
		t.Fatal(err)
	}
	pg.wire = d.Credentials
	return pg
}

// pull fetches one page of device's sync document and verifies it; it
// fails the test on any status but 200.
func (e *env) pull(device, cursor, pageTok string) *page {
	e.t.Helper()
	status, h, body := e.pullRaw(device, cursor, pageTok)
	if status != http.StatusOK {
		e.t.Fatalf("sync %s cursor=%q page=%q: status %d: %s", device, cursor, pageTok, status, body)
	}
	pg := verify(e.t, e.pub, h.Get(portalsync.SignatureHeader), body)
	if pg.hdr.DeviceID != device {
		e.t.Fatalf("document for %q, want %q", pg.hdr.DeviceID, device)
	}
	return pg
}

func (e *env) pullRaw(device, cursor, pageTok string) (int, http.Header, []byte) {
	e.t.Helper()
	path := "/v1/devices/" + device + "/sync"
	sep := "?"
	if cursor != "" {
		path += sep + "cursor=" + cursor
		sep = "&"
	}
	if pageTok != "" {
		path += sep + "page=" + pageTok
	}
	return e.request(http.MethodGet, path, e.tokens[device], nil)
}

// pullAll fetches every page of a document, checking that the pages agree
// on full, base, cursor and issued_at.
func (e *env) pullAll(device, cursor string) []*page {
	e.t.Helper()
	first := e.pull(device, cursor, "")
	pages := []*page{first}
	for next := first.hdr.Next; next != ""; {
		pg := e.pull(device, cursor, next)
		h := pg.hdr
		if h.Full != first.hdr.Full || h.Base != first.hdr.Base || h.Cursor != first.hdr.Cursor || !h.IssuedAt.Equal(first.hdr.IssuedAt) {
			e.t.Fatalf("page %d header %+v differs from the first %+v", len(pages), h, first.hdr)
		}
		pages = append(pages, pg)
		next = h.Next
	}
	return pages
}

func credIDs(pages []*page) map[string]*kiosk.Credential {
	out := map[string]*kiosk.Credential{}
	for _, pg := range pages {
		for _, c := range pg.creds {
			out[c.ID] = c
		}
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fmtAll formats v with every common verb.
func fmtAll(v any) string {
	return fmt.Sprintf("%v %s %q %x %#v %+v", v, v, v, v, v, v)
}
