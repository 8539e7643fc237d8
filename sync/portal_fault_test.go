package sync

// Portal faults (issue 6): a fault-injecting proxy on loopback sits
// between the Syncer and the fake portal and breaks chosen requests the
// way networks and overloaded portals do: answers that never come,
// connections reset mid-body, bodies cut short, trickled or stalled, and
// storms of 5xx.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"kioskd/kiosk"
)

// fault is what the proxy does to one request.
type fault int

const (
	pass       fault = iota // forward and answer as the portal did
	hang                    // read the request, never answer
	resetBody               // headers and half the body, then a TCP reset
	truncBody               // headers promising the whole body, half of it, then a clean close
	eofBody                 // no length, half the body, then a clean close: looks complete
	stallBody               // headers and half the body, then nothing until the client gives up
	trickle                 // the whole body, 64 bytes at a time, slowly
	storm                   // 500, 502, 503 (no Retry-After) or 504 without asking the portal
	loseAnswer              // the portal acts on the request; the connection resets before the answer
)

func (f fault) String() string {
	return [...]string{"pass", "hang", "reset mid-body", "truncated body", "truncated body without length",
		"stalled body", "trickled body", "5xx", "answer lost"}[f]
}

// faultProxy forwards to the portal, breaking requests by plan.
type faultProxy struct {
	t        *testing.T
	upstream string
	srv      *httptest.Server
	quit     chan struct{} // closed when the test ends: hung handlers return

	mu   gosync.Mutex
	plan map[string][]fault // by last path element: faults of the 1st, 2nd, ... request
	n    map[string]int
	done map[string]chan fault // by last path element: each fault applied
}

// newFaultProxy starts a proxy to upstream on loopback.
func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	p := &faultProxy{t: t, upstream: upstream, quit: make(chan struct{}), plan: map[string][]fault{}, n: map[string]int{},
		done: map[string]chan fault{"sync": make(chan fault, 1000), "events": make(chan fault, 1000), "heartbeat": make(chan fault, 1000)}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		close(p.quit)
		p.srv.Close()
	})
	return p
}

// withFaultProxy puts a fault proxy between the syncer and the portal
// and gives the syncer the default client with short timeouts (the
// production ones are 30 s; what is tested is that they are honoured).
func withFaultProxy(t *testing.T, p **faultProxy) func(*Config) {
	return func(c *Config) {
		*p = newFaultProxy(t, c.URL)
		c.URL = (*p).srv.URL
		c.HTTPClient = defaultClient()
		c.HTTPClient.Timeout = 1500 * time.Millisecond // bounds a stalled body
		c.HTTPClient.Transport.(*http.Transport).ResponseHeaderTimeout = 300 * time.Millisecond
	}
}

func (p *faultProxy) setPlan(path string, fs ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan[path], p.n[path] = fs, 0
}

// next returns the next fault applied to a request of path.
func (p *faultProxy) next(path string) fault {
	p.t.Helper()
	select {
	case f := <-p.done[path]:
		return f
	case <-time.After(waitTimeout):
		p.t.Fatalf("no %s request reached the proxy", path)
		return pass
	}
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	p.mu.Lock()
	f, nth := pass, p.n[path]
	if nth < len(p.plan[path]) {
		f = p.plan[path][nth]
	}
	p.n[path]++
	p.mu.Unlock()
	defer func() { p.done[path] <- f }()

	switch f {
	case hang:
		// Read the whole request (the server notices a client that hangs
		// up only once it has), then answer nothing.
		io.Copy(io.Discard, r.Body)
		p.stall(r)
		return
	case storm:
		http.Error(w, "<html>bad gateway</html>", []int{500, 502, 503, 504}[nth%4])
		return
	}
	resp, body := p.forward(r)
	if resp == nil {
		http.Error(w, "proxy: upstream failed", http.StatusBadGateway)
		return
	}
	half := body[:len(body)/2]
	switch f {
	case pass, trickle, stallBody:
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(resp.StatusCode)
		switch f {
		case pass:
			w.Write(body)
		case stallBody:
			w.Write(half)
			w.(http.Flusher).Flush()
			p.stall(r)
		case trickle:
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; i < len(body); i += 64 {
				w.Write(body[i:min(i+64, len(body))])
				w.(http.Flusher).Flush()
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				case <-p.quit:
					return
				}
			}
		}
	case resetBody, truncBody, eofBody, loseAnswer:
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			p.t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if f != loseAnswer {
			fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
			for k, vs := range resp.Header {
				if k == "Content-Length" || k == "Transfer-Encoding" {
					continue
				}
				for _, v := range vs {
					fmt.Fprintf(bw, "%s: %s\r\n", k, v)
				}
			}
			if f == eofBody {
				bw.WriteString("Connection: close\r\n\r\n")
			} else {
				fmt.Fprintf(bw, "Content-Length: %d\r\n\r\n", len(body))
			}
			bw.Write(half)
			bw.Flush()
		}
		if f == resetBody || f == loseAnswer {
			conn.(*net.TCPConn).SetLinger(0) // close sends RST
		}
	}
}

// stall waits until the client gives up or the test ends.
func (p *faultProxy) stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.quit:
	}
}

// forward sends r to the portal and returns its answer, read whole.
func (p *faultProxy) forward(r *http.Request) (*http.Response, []byte) {
	in, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(in))
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		return nil, nil
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil
	}
	return resp, body
}

// TestPullFaults: a pull that meets a network or portal fault neither
// hangs nor touches the store; it fails, backs off, and the next pull,
// once the portal is healthy, applies the document. A fault that cannot
// be told from a bad document (a body cut at a clean close without a
// length) is rejected as one. A slow but complete body is not a fault.
func TestPullFaults(t *testing.T) {
	for _, tc := range []struct {
		f        fault
		rejected string // the sync.rejected reason, "" for none
		fails    bool
	}{
		{hang, "", true},
		{resetBody, "", true},
		{truncBody, "", true},
		{stallBody, "", true},
		{eofBody, ReasonBadSignature, true},
		{storm, "", true},
		{trickle, "", false},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			var p *faultProxy
			h := newPullHarness(t, withFaultProxy(t, &p))
			h.preload("c-1", testCred("c-1", "246810"))
			var creds []*kiosk.Credential
			for i := range 30 {
				creds = append(creds, testCred(fmt.Sprintf("n-%d", i), fmt.Sprintf("%06d", 300000+i)))
			}
			h.portal.serveByQuery(map[string][]byte{"cursor=c-1": body(t, fullHeader("c-2", t0.Add(time.Minute)), creds...)})
			p.setPlan("sync", tc.f)
			h.start()
			if f := p.next("sync"); f != tc.f {
				t.Fatalf("first pull met %v", f)
			}
			if !tc.fails {
				h.wantWait("pull", time.Second)
				h.wantState("c-2", 30)
				return
			}
			w := h.wantWait("pull", time.Second) // back-off, not the period
			h.wantState("c-1", 1)
			st := h.s.Status()
			if st.Failures != 1 || st.LastError == "" {
				t.Errorf("status after the fault: %+v", st)
			}
			t.Logf("error: %s", st.LastError)
			if rej := h.journal(kiosk.EvSyncRejected); tc.rejected == "" && len(rej) != 0 {
				t.Errorf("a %v is not the document's fault, yet: %v", tc.f, rej)
			} else if tc.rejected != "" {
				h.wantRejected(tc.rejected, "")
			}
			if left, _ := os.ReadDir(h.cfg.SpoolDir); len(left) != 0 {
				t.Errorf("spool files left: %v", left)
			}
			w.Fire()
			p.next("sync")
			h.wantWait("pull", time.Second)
			h.wantState("c-2", 30)
			if st := h.s.Status(); st.Failures != 0 || st.LastError != "" {
				t.Errorf("status after recovery: %+v", st)
			}
		})
	}
}

// TestPullStormBackoff: through a storm of 5xx answers without
// Retry-After, the pull backs off exponentially from 1 s with ±10 %
// jitter, never longer than sync_interval × 10, and jittered at that cap
// too (kiosks that failed together must not retry together); when the
// portal recovers, the pull applies and the period is back.
func TestPullStormBackoff(t *testing.T) {
	rs := []float64{0, 0.999, 0.5, 0.25, 0.75, 0, 0.999, 0.1, 0.9, 0.5}
	var mu gosync.Mutex
	i := 0
	var p *faultProxy
	h := newPullHarness(t, withFaultProxy(t, &p), func(c *Config) {
		c.SyncInterval = 2 * time.Second // cap 20 s
		c.Rand = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			r := rs[i%len(rs)]
			i++
			return r
		}
	})
	h.preload("c-1", testCred("c-1", "246810"))
	h.portal.serveByQuery(map[string][]byte{"cursor=c-1": body(t, fullHeader("c-2", t0.Add(time.Minute)), testCred("c-2", "135790"))})
	const n = 9
	plan := make([]fault, n)
	for k := range plan {
		plan[k] = storm
	}
	p.setPlan("sync", plan...)
	h.start()
	const cap = 20 * time.Second
	var atCap []time.Duration
	for k := 1; k <= n; k++ {
		p.next("sync")
		w := h.nextWait("pull")
		base := min(time.Second<<(k-1), cap)
		lo, hi := time.Duration(float64(base)*0.9), min(time.Duration(float64(base)*1.1), cap)
		if w.d < lo || w.d > hi {
			t.Errorf("wait after failure %d = %v, want in [%v, %v]", k, w.d, lo, hi)
		}
		if base == cap {
			atCap = append(atCap, w.d)
		}
		if st := h.s.Status(); st.Failures != k {
			t.Errorf("failures = %d, want %d", st.Failures, k)
		}
		w.Fire()
	}
	distinct := map[time.Duration]bool{}
	for _, d := range atCap {
		distinct[d] = true
	}
	if len(atCap) < 3 || len(distinct) < 2 {
		t.Errorf("waits at the cap %v: not jittered", atCap)
	}
	p.next("sync")
	w := h.nextWait("pull")
	if w.d < 1800*time.Millisecond || w.d > 2200*time.Millisecond {
		t.Errorf("wait after recovery = %v, want the period 2 s ± 10 %%", w.d)
	}
	h.wantState("c-2", 1)
	if st := h.s.Status(); st.Failures != 0 {
		t.Errorf("failures after recovery = %d", st.Failures)
	}
}

// TestUploadFaults: the event upload through lost answers, resets,
// truncated and trickled answers, hangs and a 5xx storm: every event
// reaches the portal, in seq order within each upload, and the only
// repeats are the events of an upload whose answer was lost after the
// portal took them (at least once, SPEC §6.4). The back-off doubles
// from 1 s across consecutive failures.
func TestUploadFaults(t *testing.T) {
	var p *faultProxy
	h := newHarness(t, withFaultProxy(t, &p))
	const n = 1200 // batches of 500, 500, 200
	recordN(t, h.st, n)
	plan := []fault{loseAnswer, resetBody, truncBody, hang, storm, storm, storm, storm, trickle, loseAnswer, eofBody, pass}
	p.setPlan("events", plan...)
	h.start()
	var waits []time.Duration
	var applied []fault
	for {
		select {
		case w := <-h.waits["upload"]:
			waits = append(waits, w.d)
			w.Fire()
			continue
		case f := <-p.done["events"]:
			applied = append(applied, f)
			continue
		case <-h.idle:
		case <-time.After(waitTimeout):
			t.Fatalf("uploader neither waited nor drained; faults applied %v", applied)
		}
		if b, _ := h.st.Backlog(); b == 0 {
			break
		}
	}
	// Drain what the proxy reported after the last idle.
	for len(p.done["events"]) > 0 {
		applied = append(applied, <-p.done["events"])
	}
	if len(applied) < len(plan) {
		t.Fatalf("only %d uploads for a plan of %d: %v", len(applied), len(plan), applied)
	}
	// Failures: lose, reset, trunc, hang, 4 × 5xx (eight in a row), then
	// trickle succeeds; lose fails, eofBody fails (answer cut: not JSON),
	// then pass.
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 1, 2}
	if len(waits) != len(want) {
		t.Fatalf("upload waits %v, want %v seconds (faults %v)", waits, want, applied)
	}
	for k := range want {
		if waits[k] != want[k]*time.Second {
			t.Errorf("upload wait %d = %v, want %v", k, waits[k], want[k]*time.Second)
		}
	}
	h.portal.mu.Lock()
	defer h.portal.mu.Unlock()
	if len(h.portal.events) != n {
		t.Errorf("portal holds %d events, want %d", len(h.portal.events), n)
	}
	// Every attempt the proxy forwarded reached the portal, whatever
	// became of its answer: the first batch of 500 went through a lost
	// answer, a reset, a truncated answer and the trickled success (a hang
	// and the 5xx are not forwarded); the second through a lost answer, a
	// cut answer and the success; the last once.
	for seq := 1; seq <= n; seq++ {
		id := fmt.Sprintf("%s-%d", h.st.ID(), seq)
		want := 1
		switch {
		case seq <= 500:
			want = 4
		case seq <= 1000:
			want = 3
		}
		if k := h.portal.received[id]; k != want {
			t.Errorf("event %s received %d times, want %d", id, k, want)
		}
	}
	for k, b := range h.portal.batches {
		for j := 1; j < len(b); j++ {
			if b[j] != b[j-1]+1 {
				t.Errorf("upload %d not in seq order: %v...", k, b[:min(len(b), 10)])
				break
			}
		}
	}
}
