package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

// pullLoop pulls at once, then every SyncInterval (jittered), at once on
// PullNow, and after failures with back-off (SPEC §6.1), until ctx is done.
func (s *Syncer) pullLoop(ctx context.Context) {
	full := false // ask for a full snapshot (after a 410, a delta too large)
	failures := 0
	for ctx.Err() == nil {
		res, err := s.pullDocument(ctx, full)
		if ctx.Err() != nil {
			return
		}
		var d time.Duration
		switch {
		case err == nil:
			full, failures = false, 0
			now, _ := s.now()
			s.update(func(st *SyncStatus) { st.LastPull, st.LastError, st.Failures = now, "", 0 })
			lvl := slog.LevelDebug
			if res.Changed {
				lvl = slog.LevelInfo
			}
			s.log.Log(ctx, lvl, "pulled", "cursor", res.Cursor, "full", res.Full, "pages", res.Pages,
				"credentials", res.Credentials, "changed", res.Changed)
			s.RunCommands(ctx, res.Commands)
			d = s.jitter(s.cfg.SyncInterval)
		case !full && (isGone(err) || errors.Is(err, ErrDeltaTooLarge)):
			// Not a failure: the portal cannot (410) or the kiosk will
			// not (a delta over the cap) go on from the cursor.
			s.log.Info("asking the portal for a full snapshot", "why", err)
			full = true
			continue
		default:
			failures++
			if errors.Is(err, store.ErrBaseMismatch) {
				full = true // the portal lost track of the kiosk's cursor
			}
			d = s.backoff(failures, 10*s.cfg.SyncInterval)
			var se *statusError
			if errors.As(err, &se) && se.retryAfter > 0 {
				d = se.retryAfter
			}
			s.update(func(st *SyncStatus) { st.LastError, st.Failures = err.Error(), failures })
			lvl := slog.LevelWarn
			if errors.Is(err, ErrUnauthorized) {
				lvl = slog.LevelError
			}
			s.log.Log(ctx, lvl, "pull failed", "err", err, "failures", failures, "retry_in", d)
		}
		if !s.wait(ctx, "pull", d, s.pullNow) {
			return
		}
	}
}

func isGone(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == http.StatusGone
}

// pullDocument fetches one document page by page and applies it, holding
// the apply lock from before it reads the cursor until the document is
// applied or dropped. A delta is asked for on the live cursor unless full
// is set or the store has none. A rejected document is recorded as one
// sync.rejected event (except a delta over the cap, which makes the loop
// ask for a full snapshot instead).
func (s *Syncer) pullDocument(ctx context.Context, full bool) (Result, error) {
	if err := s.lock(ctx); err != nil {
		return Result{}, err
	}
	defer s.unlock()
	cursor := ""
	if !full {
		st, err := s.st.SyncState()
		if err != nil {
			return Result{}, fmt.Errorf("pull: %w", err)
		}
		cursor = st.Cursor
	}
	sess := NewSession(s.st, s.options())
	defer sess.Abort()

	// Pages are fetched one ahead: when a page's header has been read,
	// the next page is requested while this one's credentials are applied
	// (the portal builds a page while the kiosk applies the previous one).
	var ahead *prefetch
	defer func() { ahead.discard() }()
	seen := map[string]bool{}
	sess.onHeader = func(h *Header) {
		if h.Next != "" && !seen[h.Next] && ahead == nil {
			ahead = s.startFetch(ctx, cursor, h.Next)
		}
	}

	observed := false
	page := ""
	for n := 1; ; n++ {
		var sp spooled
		if ahead != nil && ahead.page == page {
			sp = ahead.wait()
			ahead = nil
		} else {
			ahead.discard()
			ahead = nil
			sp = s.fetchPage(ctx, cursor, page)
		}
		var next string
		err := sp.err
		if err == nil {
			next, err = sess.Page(ctx, sp.f, sp.n)
		}
		sp.remove(s.log)
		if sess.first != nil && !observed {
			// A page that reached the session was verified: its
			// issued_at is trusted time, whether or not it applies.
			observed = true
			s.observe(sess.first.IssuedAt)
		}
		if err == nil && next != "" && seen[next] {
			err = fmt.Errorf("%w: page token %q repeats", ErrMalformed, next)
		}
		if err != nil {
			if reason := RejectReason(err); reason != "" && !errors.Is(err, ErrDeltaTooLarge) {
				s.recordRejected(sess, reason, err)
			}
			return Result{}, fmt.Errorf("pull page %d: %w", n, err)
		}
		if next == "" {
			return sess.Result(), nil
		}
		seen[next] = true
		page = next
	}
}

// spooled is a fetched page: its verified body in a spool file, or why it
// could not be had.
type spooled struct {
	f   *os.File
	n   int64
	err error
}

// remove closes and deletes the spool file.
func (sp spooled) remove(log interface{ Warn(string, ...any) }) {
	if sp.f == nil {
		return
	}
	sp.f.Close()
	if err := os.Remove(sp.f.Name()); err != nil {
		log.Warn("remove spool file", "err", err)
	}
}

// prefetch is a page being fetched ahead.
type prefetch struct {
	page   string
	cancel context.CancelFunc
	done   chan spooled
	log    interface{ Warn(string, ...any) }
}

func (s *Syncer) startFetch(ctx context.Context, cursor, page string) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{page: page, cancel: cancel, done: make(chan spooled, 1), log: s.log}
	go func() { p.done <- s.fetchPage(ctx, cursor, page) }()
	return p
}

// wait returns the fetched page.
func (p *prefetch) wait() spooled {
	sp := <-p.done
	p.cancel()
	return sp
}

// discard stops a fetch that is no longer wanted and deletes what it
// spooled. Safe on nil.
func (p *prefetch) discard() {
	if p == nil {
		return
	}
	p.cancel()
	sp := <-p.done
	sp.remove(p.log)
}

// recordRejected records the sync.rejected event of a pulled document,
// with the document's cursor when its first page was read.
func (s *Syncer) recordRejected(sess *Session, reason string, err error) {
	detail := map[string]any{"reason": reason}
	if sess.first != nil {
		detail["cursor"] = sess.first.Cursor
	}
	o := s.options()
	if rerr := s.st.Record(o.event(kiosk.EvSyncRejected, detail)); rerr != nil {
		s.log.Error("record sync.rejected", "err", rerr)
	}
	s.log.Warn("pulled document rejected", "reason", reason, "err", err)
}

// fetchPage fetches one page and spools it to a file in SpoolDir while
// its signature is verified. The caller removes the file.
func (s *Syncer) fetchPage(ctx context.Context, cursor, page string) spooled {
	f, n, err := s.fetchPageErr(ctx, cursor, page)
	return spooled{f: f, n: n, err: err}
}

func (s *Syncer) fetchPageErr(ctx context.Context, cursor, page string) (*os.File, int64, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if page != "" {
		q.Set("page", page)
	}
	u := s.base + "/sync"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("pull: %w", err)
	}
	resp, err := s.do(ctx, req)
	if err != nil {
		return nil, 0, fmt.Errorf("pull: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, newStatusError("pull", resp)
	}
	if resp.ContentLength > s.maxBytes {
		return nil, 0, fmt.Errorf("%w: Content-Length %d, the limit is %d", ErrTooLarge, resp.ContentLength, s.maxBytes)
	}
	sig, err := ParseSignature(resp.Header.Get(SignatureHeader))
	if err != nil {
		return nil, 0, fmt.Errorf("%s header: %w", SignatureHeader, err)
	}
	f, err := os.CreateTemp(s.cfg.SpoolDir, spoolPrefix+"*.json")
	if err != nil {
		return nil, 0, fmt.Errorf("pull: spool: %w", err)
	}
	// A write error of the spool file surfaces as a read error: not the
	// document's fault, so no rejection.
	n, err := VerifyReader(s.cfg.PublicKey, sig, io.TeeReader(resp.Body, f), s.maxBytes)
	if err != nil {
		spooled{f: f}.remove(s.log)
		return nil, 0, err
	}
	return f, n, nil
}
