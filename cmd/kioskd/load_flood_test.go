package main

// A push flood from a client without the portal's key (issue 6): every
// push is rejected (401) and counted in push.rejected events (SPEC §6.2),
// at most one per reason a second (sync.DefaultRejectEventEvery), so the
// flood costs the journal the grants write to a few writes, not one per
// request. The flood must not slow grants down.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosync "sync"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// floodClients is the number of goroutines that push at once: more than
// the push server serves at once (portalsync.DefaultMaxConcurrentPushes),
// so that some pushes are turned away busy (503) as well.
const floodClients = 8

// pushFlood posts well-formed pushes with a signature that is not the
// portal's, back to back from floodClients goroutines, and counts the
// answers.
type pushFlood struct {
	url    string
	client *http.Client

	rejected atomic.Int64 // 401: judged, a push.rejected event each
	busy     atomic.Int64 // 503: turned away before being read
	other    atomic.Int64 // anything else: a failure of the flood
	lastErr  atomic.Value // string: the last unexpected answer

	stopping    atomic.Bool
	wg          gosync.WaitGroup
	firstAnswer gosync.WaitGroup // done at the first answer
	answered    gosync.Once
}

func newPushFlood(url string) *pushFlood {
	return &pushFlood{url: url + portalsync.PushPath, client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: floodClients, MaxConnsPerHost: floodClients},
		Timeout:   time.Minute,
	}}
}

// body is a hint push as the portal would send it, bar the signature.
func floodBody() []byte {
	n := make([]byte, 16)
	rand.Read(n)
	return fmt.Appendf(nil, `{"device_id":%q,"issued_at":%q,"full":false,"base":"","cursor":"c-1","nonce":%q,"kind":"hint"}`,
		sbDevice, time.Now().UTC().Format(time.RFC3339Nano), base64.RawURLEncoding.EncodeToString(n))
}

// start starts the flood.
func (f *pushFlood) start() {
	f.firstAnswer.Add(1)
	for range floodClients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			sig := make([]byte, 64)
			for !f.stopping.Load() {
				rand.Read(sig)
				req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(floodBody()))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(portalsync.SignatureHeader, base64.RawURLEncoding.EncodeToString(sig))
				resp, err := f.client.Do(req)
				if err != nil {
					f.other.Add(1)
					f.lastErr.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				f.answered.Do(f.firstAnswer.Done)
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					f.rejected.Add(1)
				case http.StatusServiceUnavailable:
					f.busy.Add(1)
				default:
					f.other.Add(1)
					f.lastErr.Store(resp.Status)
				}
			}
		}()
	}
}

// stop stops the flood: each client finishes the push it is sending, so
// that every push the server judged is counted.
func (f *pushFlood) stop() {
	f.stopping.Store(true)
	f.wg.Wait()
	f.client.CloseIdleConnections()
}

// floodChildEnv names the push URL for TestPushFloodChild.
const floodChildEnv = "KIOSKD_FLOOD_URL"

// floodCounts is what a flood process reports when it stops.
type floodCounts struct {
	Rejected, Busy, Other int64
	LastErr               string
}

// floodProcess is a push flood run by a process of its own (this test
// binary, TestPushFloodChild) at the lowest processor priority: the
// flood's clients stand for another machine, so the figures count what
// the kiosk spends on being flooded, not what it takes to make the
// flood, and the Go scheduler of the kiosk's process serves the kiosk
// alone.
type floodProcess struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      gosync.Mutex
	out     bytes.Buffer  // what it printed
	started chan struct{} // closed when it says FLOODING
	exited  chan struct{} // closed when its output ends
}

// floodSinkEnv makes the flood process flood a sink of its own instead
// of the URL: the control, what the flood costs the machine without the
// kiosk's part.
const floodSinkEnv = "KIOSKD_FLOOD_SINK"

// startFloodProcess starts flooding url (a sink of its own with sink) and
// returns once the flood has had its first answer.
func startFloodProcess(tb testing.TB, url string, sink bool) *floodProcess {
	tb.Helper()
	fp := &floodProcess{cmd: exec.Command(os.Args[0], "-test.run=^TestPushFloodChild$", "-test.count=1"),
		started: make(chan struct{}), exited: make(chan struct{})}
	fp.cmd.Env = append(os.Environ(), floodChildEnv+"="+url)
	if sink {
		fp.cmd.Env = append(fp.cmd.Env, floodSinkEnv+"=1")
	}
	out, err := fp.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	fp.cmd.Stderr = fp.cmd.Stdout
	if fp.stdin, err = fp.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := fp.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		defer close(fp.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fp.mu.Lock()
			fp.out.WriteString(sc.Text() + "\n")
			fp.mu.Unlock()
			if sc.Text() == "FLOODING" {
				close(fp.started)
			}
		}
	}()
	select {
	case <-fp.started:
	case <-fp.exited:
		fp.cmd.Wait()
		tb.Fatalf("flood process ended before flooding:\n%s", fp.output())
	case <-time.After(loadDecisionWait):
		fp.stdin.Close()
		tb.Fatalf("flood process not flooding within %v:\n%s", loadDecisionWait, fp.output())
	}
	return fp
}

func (fp *floodProcess) output() string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.out.String()
}

// stop ends the flood (closing the child's stdin) and returns its counts.
func (fp *floodProcess) stop(tb testing.TB) floodCounts {
	tb.Helper()
	fp.stdin.Close()
	<-fp.exited
	if err := fp.cmd.Wait(); err != nil {
		tb.Fatalf("flood process: %v\n%s", err, fp.output())
	}
	for line := range strings.Lines(fp.output()) {
		if rest, ok := strings.CutPrefix(line, "FLOOD "); ok {
			var c floodCounts
			if err := json.Unmarshal([]byte(rest), &c); err != nil {
				tb.Fatalf("flood process report %q: %v", rest, err)
			}
			return c
		}
	}
	tb.Fatalf("flood process reported nothing:\n%s", fp.output())
	return floodCounts{}
}

// TestPushFloodChild is the flood process of startFloodProcess: it lowers
// its priority, floods the URL in its environment until its stdin closes,
// then prints its counts on a line "FLOOD {json}".
func TestPushFloodChild(t *testing.T) {
	url := os.Getenv(floodChildEnv)
	if url == "" {
		t.Skip("run by the push flood benchmark and test only")
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19); err != nil {
		t.Logf("nice: %v", err)
	}
	if os.Getenv(floodSinkEnv) != "" {
		// The control: the same flood against a sink in this process,
		// which answers as the kiosk answers a flood (503, hang up).
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer sink.Close()
		url = sink.URL
	}
	fl := newPushFlood(url)
	fl.start()
	fl.firstAnswer.Wait()
	fmt.Println("FLOODING")
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	fl.stop()
	last, _ := fl.lastErr.Load().(string)
	raw, _ := json.Marshal(floodCounts{Rejected: fl.rejected.Load(), Busy: fl.busy.Load(), Other: fl.other.Load(), LastErr: last})
	fmt.Printf("FLOOD %s\n", raw)
}

// floodResult is what runPushFlood measured.
type floodResult struct {
	quiet, flood   latencies
	control        latencies     // decisions while the flood process floods a sink of its own
	floodTime      time.Duration // time the flood ran
	rejected, busy int64
	journalGrowth  uint64 // events recorded during the flood phases
	backlog        int    // events pending upload at the end
}

// runPushFlood starts a push server for the kiosk (the real handler of
// SPEC §6.2 on loopback HTTP, as kioskd serves it) and decides grants
// blocks of block decisions at a time, one every decisionGap,
// alternately without and with a flood of rejected pushes, rounds times
// each; with control, a third block each round while the same flood
// process floods a sink of its own instead (what the flood's process costs
// the shared processors, with no work for the kiosk).
func (lk *loadKiosk) runPushFlood(tb testing.TB, rounds, block int, control bool) floodResult {
	tb.Helper()
	h := portalsync.NewPushHandler(portalsync.PushConfig{
		DeviceID: sbDevice, PublicKey: lk.sp.pub, SpoolDir: tb.TempDir(),
		Yield: lk.st.Yield,
		Log:   slog.New(slog.DiscardHandler),
	}, lk.st, lk.syncer)
	srv := httptest.NewServer(h)
	defer srv.Close()
	var res floodResult
	gap := decisionGap(tb)
	decide := func(into *latencies) {
		tb.Helper()
		var tick <-chan time.Time
		if gap > 0 {
			t := time.NewTicker(gap)
			defer t.Stop()
			tick = t.C
		}
		for range block {
			if tick != nil {
				<-tick
			}
			d, err := lk.grant()
			if err != nil {
				tb.Fatal(err)
			}
			*into = append(*into, d)
		}
	}
	for range rounds {
		decide(&res.quiet)
		seq0, err := lk.st.LastSeq()
		if err != nil {
			tb.Fatal(err)
		}
		fl := startFloodProcess(tb, srv.URL, false)
		t0 := time.Now()
		decide(&res.flood)
		counts := fl.stop(tb)
		res.floodTime += time.Since(t0)
		seq1, err := lk.st.LastSeq()
		if err != nil {
			tb.Fatal(err)
		}
		if counts.Other > 0 {
			tb.Fatalf("%d flood pushes answered neither 401 nor 503; the last: %v", counts.Other, counts.LastErr)
		}
		res.rejected += counts.Rejected
		res.busy += counts.Busy
		res.journalGrowth += seq1 - seq0
		if control {
			fl := startFloodProcess(tb, "sink", true)
			decide(&res.control)
			fl.stop(tb)
		}
	}
	var err error
	if res.backlog, err = lk.st.Backlog(); err != nil {
		tb.Fatal(err)
	}
	return res
}

// BenchmarkPushFlood measures grants (last key → relay on, durably
// committed; 100 000 credentials, 1 000 000 with KIOSKD_BENCH_LARGE=1)
// while floodClients clients, in a process of their own (see
// floodProcess), post pushes without the portal's signature as fast as
// the kiosk answers, against the same grants without the flood, and
// against the same grants while the flood process floods a sink of its
// own (the control: on this machine the flood's process shares the
// kiosk's two cores, which a real attacker's would not): four rounds of
// three blocks of 250 decisions, one every decisionGap (10 ms;
// KIOSKD_BENCH_GAP=0 for back to back).
//
// Metrics: quiet-, flood- and control-p50/p99/max-ms; rejected/s
// (pushes answered 401, each a push.rejected event) and busy/s (answered
// 503 before being read); journal-events/s (events recorded during the
// flood, grants included: how fast the journal grows while the portal
// takes no uploads); backlog (events pending upload at the end, with the
// portal up).
func BenchmarkPushFlood(b *testing.B) {
	lk := newLoadKiosk(b, loadBenchSize())
	var res floodResult
	b.ResetTimer()
	for range b.N {
		r := lk.runPushFlood(b, 4, 250, true)
		res.quiet = append(res.quiet, r.quiet...)
		res.flood = append(res.flood, r.flood...)
		res.control = append(res.control, r.control...)
		res.floodTime += r.floodTime
		res.rejected += r.rejected
		res.busy += r.busy
		res.journalGrowth += r.journalGrowth
		res.backlog = r.backlog
	}
	b.StopTimer()
	res.quiet.report(b, "quiet-")
	res.flood.report(b, "flood-")
	res.control.report(b, "control-")
	secs := res.floodTime.Seconds()
	b.ReportMetric(float64(res.rejected)/secs, "rejected/s")
	b.ReportMetric(float64(res.busy)/secs, "busy/s")
	b.ReportMetric(float64(res.journalGrowth)/secs, "journal-events/s")
	b.ReportMetric(float64(res.backlog), "backlog")
}

// TestPushFlood is the bounded version run by make test: grants decided
// during a flood of badly signed pushes are all granted and open the
// door; every flood push is answered 401 (or 503 when the server is
// busy); the 401s are counted, not journalled one by one: the journal
// grows by the grants' events plus at most one push.rejected per second
// of flood (and a summary), and the counts the push.rejected events
// carry to the portal add up to the pushes rejected.
func TestPushFlood(t *testing.T) {
	lk := newLoadKiosk(t, 2_000)
	res := lk.runPushFlood(t, 2, 15, false)
	if res.rejected == 0 {
		t.Fatal("no push was rejected during the flood")
	}
	// access.granted and door.unlocked per grant, credential.used_up
	// after a one-time PIN's grant; push.rejected once per second per
	// flood phase and a summary (2 phases).
	budget := 2*(2+uint64(res.floodTime/portalsync.DefaultRejectEventEvery)) + 2
	if lo, hi := 2*uint64(len(res.flood)), 3*uint64(len(res.flood))+budget; res.journalGrowth < lo || res.journalGrowth > hi {
		t.Errorf("journal grew by %d events during a flood of %d rejected pushes in %v, want %d to %d",
			res.journalGrowth, res.rejected, res.floodTime, lo, hi)
	}
	t.Logf("%d grants during the flood, %d pushes rejected, %d busy, journal +%d", len(res.flood), res.rejected, res.busy, res.journalGrowth)
	waitFor(t, fmt.Sprintf("push.rejected events at the portal counting %d pushes", res.rejected), nil, func() bool {
		evs, err := lk.sp.p.Events(context.Background(), sbDevice, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for _, raw := range evs {
			var e kiosk.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("event at the portal: %v", err)
			}
			if e.Type != kiosk.EvPushRejected {
				continue
			}
			if c, ok := e.Detail["count"].(float64); ok {
				got += int64(c)
			} else {
				got++
			}
		}
		return got == res.rejected
	})
}
