package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
)

// newPullHarness is a harness whose portal refuses uploads, so that the
// journal keeps the events the pulls record for the test to read.
func newPullHarness(t *testing.T, edit ...func(*Config)) *harness {
	h := newHarness(t, edit...)
	h.portal.set(func() { h.portal.eventsStatus = http.StatusServiceUnavailable })
	return h
}

func (h *harness) wantRejected(reason, cursor string) {
	h.t.Helper()
	evs := h.journal(kiosk.EvSyncRejected)
	if len(evs) != 1 {
		h.t.Fatalf("sync.rejected events = %v, want one", evs)
	}
	want := map[string]any{"reason": reason}
	if cursor != "" {
		want["cursor"] = cursor
	}
	if !reflect.DeepEqual(evs[0].Detail, want) {
		h.t.Errorf("sync.rejected detail = %v, want %v", evs[0].Detail, want)
	}
}

func (h *harness) wantApplied(cursor string, full bool, upserted, removed int) {
	h.t.Helper()
	evs := h.journal(kiosk.EvSyncApplied)
	want := map[string]any{"cursor": cursor, "full": full, "upserted": float64(upserted), "removed": float64(removed)}
	if len(evs) != 1 || !reflect.DeepEqual(evs[0].Detail, want) {
		h.t.Errorf("sync.applied events = %v, want one with %v", evs, want)
	}
}

func TestPullFullOnStart(t *testing.T) {
	leftover := ""
	h := newPullHarness(t, func(c *Config) {
		// A spool file a crash left behind is removed at start.
		if err := os.MkdirAll(c.SpoolDir, 0o700); err != nil {
			t.Fatal(err)
		}
		leftover = filepath.Join(c.SpoolDir, "pull-123.json")
		if err := os.WriteFile(leftover, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover spool file: %v", err)
	}
	doc := fullHeader("c-1", t0)
	doc.Commands = []Command{{ID: "cmd-1", Type: CommandUnlock, Door: "main"}}
	h.portal.serveByQuery(map[string][]byte{"": body(t, doc, testCred("c-1", "246810"), testCred("c-2", "583920"))})
	h.start()

	if q := h.portal.nextSync(t); len(q) != 0 {
		t.Errorf("first request query %v, want none (full)", q)
	}
	h.wantWait("pull", time.Second) // SyncInterval, no jitter with Rand 0.5
	h.wantState("c-1", 2)
	h.wantApplied("c-1", true, 2, 0)
	if got := h.drainCmds(); !reflect.DeepEqual(got, []string{"cmd-1"}) {
		t.Errorf("commands run = %v, want [cmd-1]", got)
	}
	h.obsMu.Lock()
	if len(h.observed) != 1 || !h.observed[0].Equal(t0) {
		t.Errorf("observed %v, want the issued_at %v", h.observed, t0)
	}
	h.obsMu.Unlock()
	st := h.s.Status()
	if now, _ := testNow(); !st.LastPull.Equal(now) || st.LastError != "" || st.Failures != 0 || st.Cursor != "c-1" || st.Credentials != 2 {
		t.Errorf("status %+v", st)
	}
	if left, _ := os.ReadDir(h.cfg.SpoolDir); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
}

// TestPullPages pulls a full document of three pages after a 410: the old
// set serves until the last page applied, a failure midway leaves it
// intact, and the page requests carry the page token and no cursor (the
// first request had none).
func TestPullPages(t *testing.T) {
	h := newPullHarness(t)
	h.preload("c-0", testCred("old-1", "111111"))
	p1 := fullHeader("c-1", t0.Add(time.Minute))
	p1.Next = "p2"
	p2 := fullHeader("c-1", t0.Add(time.Minute))
	p2.Next = "p3"
	p2.Revoked = []string{"tok-9"}
	p3 := fullHeader("c-1", t0.Add(time.Minute))
	pages := map[string][]byte{
		"":        body(t, p1, testCred("c-1", "246810"), testCred("c-2", "583920")),
		"page=p2": body(t, p2, testCred("c-3", "719304")),
		"page=p3": body(t, p3, testCred("c-4", "304719"), testCred("c-5", "930471")),
	}
	failPage3 := true
	h.portal.set(func() {
		h.portal.onSync = func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.RawQuery
			if q == "cursor=c-0" {
				http.Error(w, "cursor unknown", http.StatusGone)
				return
			}
			if q != "" {
				// Mid-document: the old set still serves.
				if c, n := h.state(); c != "c-0" || n != 1 {
					t.Errorf("during page %q the store is at %q with %d credentials, want the old set", q, c, n)
				}
			}
			if q == "page=p3" && failPage3 {
				failPage3 = false
				http.Error(w, "oops", http.StatusInternalServerError)
				return
			}
			b, ok := pages[q]
			if !ok {
				t.Errorf("unexpected query %q", q)
			}
			h.portal.serve(w, b)
		}
	})
	h.start()
	for _, want := range []string{"cursor=c-0", "", "page=p2", "page=p3"} {
		if q := h.portal.nextSync(t); q.Encode() != want {
			t.Errorf("request %q, want %q", q.Encode(), want)
		}
	}
	backoff := h.wantWait("pull", time.Second) // back-off after the 500
	// Pages are fetched one ahead; a failed document leaves no spool
	// file. Looked at before the back-off ends: the next pull spools its
	// own pages.
	if left, _ := os.ReadDir(h.cfg.SpoolDir); len(left) != 0 {
		t.Errorf("spool files left after a failed page: %v", left)
	}
	backoff.Fire()
	h.wantState("c-0", 1)
	if evs := h.journal(kiosk.EvSyncRejected); len(evs) != 0 {
		t.Errorf("a 500 is not a rejection: %v", evs)
	}
	if st := h.s.Status(); st.Failures != 1 || !strings.Contains(st.LastError, "500") {
		t.Errorf("status after a failure: %+v", st)
	}
	// Still a full: the 410 is not forgotten by a failure.
	for _, want := range []string{"", "page=p2", "page=p3"} {
		if q := h.portal.nextSync(t); q.Encode() != want {
			t.Errorf("retry request %q, want %q", q.Encode(), want)
		}
	}
	h.wantWait("pull", time.Second)
	h.wantState("c-1", 5)
	h.wantApplied("c-1", true, 5, 1)
	if left, _ := os.ReadDir(h.cfg.SpoolDir); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
	if r, err := h.st.Revoked("tok-9"); err != nil || !r {
		t.Errorf("revoked from page 2: %v %v", r, err)
	}
}

// TestPullDelta pulls a two-page delta on the stored cursor: every page
// request carries that cursor.
func TestPullDelta(t *testing.T) {
	h := newPullHarness(t)
	h.preload("c-1", testCred("c-1", "246810"), testCred("c-2", "583920"))
	d1 := deltaHeader("c-1", "c-2", t0.Add(time.Minute))
	d1.Next = "d2"
	d2 := deltaHeader("c-1", "c-2", t0.Add(time.Minute))
	d2.Removed = []string{"c-1"}
	changed := testCred("c-2", "583920")
	changed.Status = kiosk.StatusDeactivated
	empty := deltaHeader("c-2", "c-2", t0.Add(2*time.Minute))
	h.portal.serveByQuery(map[string][]byte{
		"cursor=c-1":         body(t, d1, testCred("c-3", "719304"), changed),
		"cursor=c-1&page=d2": body(t, d2),
		"cursor=c-2":         body(t, empty),
	})
	h.start()
	h.portal.nextSync(t)
	h.portal.nextSync(t)
	h.wantWait("pull", time.Second)
	h.wantState("c-2", 2)
	h.wantApplied("c-2", false, 2, 1)
	if c, _ := h.st.Lookup(testCred("c-2", "583920").Digest); c == nil || c.Status != kiosk.StatusDeactivated {
		t.Errorf("c-2 after the delta: %+v", c)
	}

	h.clearJournal()
	h.s.PullNow()
	if q := h.portal.nextSync(t); q.Encode() != "cursor=c-2" {
		t.Errorf("second pull %q, want cursor=c-2", q.Encode())
	}
	h.wantWait("pull", time.Second)
	if evs := pendingEvents(t, h.st); len(evs) != 0 {
		t.Errorf("an empty delta recorded %v", evs)
	}
}

// TestPullAsksForFull: a 410, or a delta over the cap, makes the syncer
// ask for a full snapshot at once; a 410 to that backs off.
func TestPullAsksForFull(t *testing.T) {
	big := deltaHeader("c-1", "c-2", t0.Add(time.Minute))
	full := fullHeader("c-9", t0.Add(time.Minute))
	for _, tc := range []struct {
		name  string
		first func(h *harness) func(http.ResponseWriter)
	}{
		{"410 Gone", func(h *harness) func(http.ResponseWriter) {
			return func(w http.ResponseWriter) { http.Error(w, "cursor unknown", http.StatusGone) }
		}},
		{"delta too large", func(h *harness) func(http.ResponseWriter) {
			b := body(t, big, testCred("c-3", "1"), testCred("c-4", "2"), testCred("c-5", "3"))
			return func(w http.ResponseWriter) { h.portal.serve(w, b) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPullHarness(t, func(c *Config) { c.MaxDeltaChanges = 2 })
			h.preload("c-1", testCred("c-1", "246810"))
			first := tc.first(h)
			fullBody := body(t, full, testCred("c-7", "777777"))
			gone := false
			h.portal.set(func() {
				h.portal.onSync = func(w http.ResponseWriter, r *http.Request) {
					switch {
					case r.URL.RawQuery == "cursor=c-1":
						first(w)
					case r.URL.RawQuery == "" && !gone:
						gone = true
						http.Error(w, "gone too", http.StatusGone)
					default:
						h.portal.serve(w, fullBody)
					}
				}
			})
			h.start()
			if q := h.portal.nextSync(t); q.Encode() != "cursor=c-1" {
				t.Errorf("first request %q", q.Encode())
			}
			// At once: no wait of the pull loop comes between.
			if q := h.portal.nextSync(t); len(q) != 0 {
				t.Errorf("second request %q, want a full (no cursor)", q.Encode())
			}
			// A 410 to a full request is a failure: back off, and ask
			// for a full again.
			h.wantWait("pull", time.Second).Fire()
			if q := h.portal.nextSync(t); len(q) != 0 {
				t.Errorf("third request %q, want a full", q.Encode())
			}
			h.wantWait("pull", time.Second)
			h.wantState("c-9", 1)
			if evs := h.journal(kiosk.EvSyncRejected); len(evs) != 0 {
				t.Errorf("asking for a full is not a rejection: %v", evs)
			}
		})
	}
}

func TestPullRetryAfter(t *testing.T) {
	date := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		code       int
		retryAfter string
		want       time.Duration
	}{
		{"503 seconds", http.StatusServiceUnavailable, "7", 7 * time.Second},
		{"429 seconds", http.StatusTooManyRequests, "120", 120 * time.Second},
		{"503 date", http.StatusServiceUnavailable, date.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"429 date in the past", http.StatusTooManyRequests, date.Add(-time.Minute).Format(http.TimeFormat), time.Second},
		{"503 beyond an hour is capped", http.StatusServiceUnavailable, "86400", time.Hour},
		{"503 without Retry-After backs off", http.StatusServiceUnavailable, "", time.Second},
		{"503 with a bad Retry-After backs off", http.StatusServiceUnavailable, "soon", time.Second},
		{"500 ignores Retry-After", http.StatusInternalServerError, "7", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPullHarness(t)
			ok := body(t, fullHeader("c-1", t0))
			n := 0
			h.portal.set(func() {
				h.portal.onSync = func(w http.ResponseWriter, r *http.Request) {
					if n++; n == 1 {
						w.Header().Set("Date", date.Format(http.TimeFormat))
						if tc.retryAfter != "" {
							w.Header().Set("Retry-After", tc.retryAfter)
						}
						http.Error(w, "busy", tc.code)
						return
					}
					h.portal.serve(w, ok)
				}
			})
			h.start()
			h.portal.nextSync(t)
			h.wantWait("pull", tc.want).Fire()
			h.portal.nextSync(t)
			h.wantWait("pull", time.Second)
			h.wantState("c-1", 0)
		})
	}
}

// TestPullRejected: a document that is unsigned, badly signed, malformed,
// for another device, stale or on another base touches nothing, is one
// sync.rejected event, runs none of its commands, and backs off.
func TestPullRejected(t *testing.T) {
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	withCmd := func(h Header) Header {
		h.Commands = []Command{{ID: "cmd-x", Type: CommandUnlock, Door: "main"}}
		return h
	}
	good := body(t, withCmd(fullHeader("c-2", t0.Add(time.Hour))), testCred("c-9", "999999"))
	for _, tc := range []struct {
		name           string
		serve          func(p *fakePortal, w http.ResponseWriter)
		reason, cursor string
		thenFull       bool
	}{
		{"unsigned", func(p *fakePortal, w http.ResponseWriter) { w.Write(good) }, ReasonBadSignature, "", false},
		{"signed by another key", func(p *fakePortal, w http.ResponseWriter) {
			w.Header().Set(SignatureHeader, Sign(otherKey, good))
			w.Write(good)
		}, ReasonBadSignature, "", false},
		{"body changed", func(p *fakePortal, w http.ResponseWriter) {
			w.Header().Set(SignatureHeader, Sign(p.priv, good))
			w.Write(bytes.Replace(good, []byte("c-9"), []byte("c-8"), 1))
		}, ReasonBadSignature, "", false},
		{"signature not base64url", func(p *fakePortal, w http.ResponseWriter) {
			w.Header().Set(SignatureHeader, "not a signature!")
			w.Write(good)
		}, ReasonBadSignature, "", false},
		{"malformed", func(p *fakePortal, w http.ResponseWriter) {
			p.serve(w, []byte(`{"device_id": "spr-0001", "full": tru}`))
		}, ReasonMalformed, "", false},
		{"another device", func(p *fakePortal, w http.ResponseWriter) {
			hd := withCmd(fullHeader("c-2", t0.Add(time.Hour)))
			hd.DeviceID = "spr-0002"
			p.serve(w, body(t, hd))
		}, ReasonWrongDevice, "", false},
		{"stale full", func(p *fakePortal, w http.ResponseWriter) {
			p.serve(w, body(t, withCmd(fullHeader("c-2", t0.Add(-time.Hour))), testCred("c-9", "999999")))
		}, ReasonStale, "c-2", false},
		{"delta on another base", func(p *fakePortal, w http.ResponseWriter) {
			p.serve(w, body(t, withCmd(deltaHeader("c-0", "c-2", t0.Add(time.Hour))), testCred("c-9", "999999")))
		}, ReasonBaseMismatch, "c-2", true},
		{"two active credentials with one digest", func(p *fakePortal, w http.ResponseWriter) {
			p.serve(w, body(t, withCmd(fullHeader("c-2", t0.Add(time.Hour))), testCred("c-8", "999999"), testCred("c-9", "999999")))
		}, ReasonDuplicateDigest, "c-2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPullHarness(t)
			h.preload("c-1", testCred("c-1", "246810"))
			h.portal.set(func() {
				h.portal.onSync = func(w http.ResponseWriter, r *http.Request) { tc.serve(h.portal, w) }
			})
			h.start()
			if q := h.portal.nextSync(t); q.Encode() != "cursor=c-1" {
				t.Errorf("request %q", q.Encode())
			}
			h.wantWait("pull", time.Second).Fire()
			h.wantState("c-1", 1)
			h.wantRejected(tc.reason, tc.cursor)
			if cmds := h.drainCmds(); len(cmds) != 0 {
				t.Errorf("commands of a rejected document ran: %v", cmds)
			}
			// The retry backs off further; after a base mismatch it
			// asks for a full.
			q := h.portal.nextSync(t)
			if tc.thenFull != (len(q) == 0) {
				t.Errorf("retry request %q, want a full: %v", q.Encode(), tc.thenFull)
			}
			h.wantWait("pull", 2*time.Second)
			if st := h.s.Status(); st.Failures != 2 {
				t.Errorf("failures = %d, want 2", st.Failures)
			}
			if left, _ := os.ReadDir(h.cfg.SpoolDir); len(left) != 0 {
				t.Errorf("spool files left: %v", left)
			}
		})
	}
}

// TestPullTooLarge rejects a page over MaxDocumentBytes by its
// Content-Length before reading it, and by its streamed size without one.
func TestPullTooLarge(t *testing.T) {
	var creds []*kiosk.Credential
	for i := range 20 {
		creds = append(creds, testCred("c-"+strconv.Itoa(i), strconv.Itoa(100000+i)))
	}
	big := body(t, fullHeader("c-2", t0.Add(time.Hour)), creds...)
	const limit = 2000
	if len(big) <= limit {
		t.Fatalf("test document is only %d bytes", len(big))
	}
	for _, tc := range []struct {
		name  string
		serve func(p *fakePortal, w http.ResponseWriter, r *http.Request)
	}{
		{"by Content-Length", func(p *fakePortal, w http.ResponseWriter, r *http.Request) {
			// Claims 10 MB, sends a little, then waits for the kiosk to
			// hang up: a kiosk that read on would stall here.
			w.Header().Set(SignatureHeader, Sign(p.priv, big))
			w.Header().Set("Content-Length", "10000000")
			w.Write(big[:100])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
		{"streamed", func(p *fakePortal, w http.ResponseWriter, r *http.Request) {
			w.Header().Set(SignatureHeader, Sign(p.priv, big))
			for i := 0; i < len(big); i += 500 {
				w.Write(big[i:min(i+500, len(big))])
				w.(http.Flusher).Flush() // chunked: no Content-Length
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPullHarness(t, func(c *Config) { c.MaxDocumentBytes = limit })
			h.preload("c-1", testCred("c-1", "246810"))
			h.portal.set(func() {
				h.portal.onSync = func(w http.ResponseWriter, r *http.Request) { tc.serve(h.portal, w, r) }
			})
			h.start()
			h.portal.nextSync(t)
			h.wantWait("pull", time.Second)
			h.wantState("c-1", 1)
			h.wantRejected(ReasonTooLarge, "")
		})
	}
}

// TestPullNow pulls at once on PullNow, between the periodic pulls.
func TestPullNow(t *testing.T) {
	h := newPullHarness(t)
	h.portal.serveByQuery(map[string][]byte{
		"":           body(t, fullHeader("c-1", t0)),
		"cursor=c-1": body(t, deltaHeader("c-1", "c-1", t0)),
	})
	h.start()
	h.portal.nextSync(t)
	h.wantWait("pull", time.Second) // never fired
	h.s.PullNow()
	if q := h.portal.nextSync(t); q.Encode() != "cursor=c-1" {
		t.Errorf("request %q", q.Encode())
	}
	// The periodic timer starts again after the pull.
	h.wantWait("pull", time.Second).Fire()
	h.portal.nextSync(t)
}

// TestApplyVerifiedWaitsForPull: a push applies after the document being
// pulled, never in the middle of it. The pushed delta is on the cursor the
// pull leaves, so it applies only if it waited.
func TestApplyVerifiedWaitsForPull(t *testing.T) {
	h := newPullHarness(t)
	h.preload("c-1", testCred("c-1", "246810"))
	p1 := fullHeader("c-2", t0.Add(time.Minute))
	p1.Next = "p2"
	page1 := body(t, p1, testCred("c-2", "583920"))
	page2 := body(t, fullHeader("c-2", t0.Add(time.Minute)), testCred("c-3", "719304"))
	pushHdr := deltaHeader("c-2", "c-3", t0.Add(2*time.Minute))
	pushHdr.Kind, pushHdr.Nonce = PushDelta, "n-1"
	pushHdr.Commands = []Command{{ID: "cmd-push", Type: CommandUnlock, Door: "main"}}
	push := body(t, pushHdr, testCred("c-4", "304719"))
	type result struct {
		res Result
		err error
	}
	pushed := make(chan result, 1)
	h.portal.set(func() {
		h.portal.onSync = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "" {
				go func() {
					res, err := h.s.ApplyVerified(context.Background(), bytes.NewReader(push), int64(len(push)))
					pushed <- result{res, err}
				}()
				h.portal.serve(w, page1)
				return
			}
			h.portal.serve(w, page2)
		}
	})
	h.start()
	var r result
	select {
	case r = <-pushed:
	case <-time.After(waitTimeout):
		t.Fatal("push not applied")
	}
	if r.err != nil || r.res.Cursor != "c-3" {
		t.Fatalf("push: %+v %v", r.res, r.err)
	}
	h.wantState("c-3", 3)
	if got := h.drainCmds(); !reflect.DeepEqual(got, []string{"cmd-push"}) {
		t.Errorf("commands = %v", got)
	}
	// A push whose context ends while it waits gives up.
	if err := h.s.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.s.ApplyVerified(ctx, bytes.NewReader(push), int64(len(push))); err == nil {
		t.Error("ApplyVerified with a cancelled context while another document applies: no error")
	}
	h.s.unlock()
}

// TestSyncerApplyFile applies a file pair through the syncer and records
// a rejected one.
func TestSyncerApplyFile(t *testing.T) {
	h := newPullHarness(t)
	dir := t.TempDir()
	hd := fullHeader("c-1", t0)
	hd.Commands = []Command{{ID: "cmd-f", Type: CommandUnlock, Door: "main"}}
	good := writeDoc(t, dir, "good.json", body(t, hd, testCred("c-1", "246810")), testPriv())
	bad := writeDoc(t, dir, "bad.json", body(t, fullHeader("c-2", t0)), ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)))
	res, err := h.s.ApplyFile(context.Background(), good)
	if err != nil || res.Cursor != "c-1" {
		t.Fatalf("ApplyFile: %+v %v", res, err)
	}
	if got := h.drainCmds(); !reflect.DeepEqual(got, []string{"cmd-f"}) {
		t.Errorf("commands = %v", got)
	}
	h.clearJournal()
	if _, err := h.s.ApplyFile(context.Background(), bad); RejectReason(err) != ReasonBadSignature {
		t.Fatalf("ApplyFile of a badly signed file: %v", err)
	}
	h.wantState("c-1", 1)
	evs := h.journal(kiosk.EvSyncRejected)
	if len(evs) != 1 || evs[0].Detail["reason"] != ReasonBadSignature {
		t.Errorf("events %v", evs)
	}
}
