package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notifySocket is a fake systemd notify socket: a unixgram listener whose
// datagrams arrive on a channel.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(apiSocketDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &notifySocket{conn: conn, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ns.msgs)
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line != "" {
					ns.msgs <- line
				}
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return ns
}

// want waits for a message with the prefix and returns it.
func (ns *notifySocket) want(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-ns.msgs:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from kioskd within %v", prefix, wait)
		}
	}
}

// TestSystemdNotify runs kioskd under a fake notify socket: READY=1 with a
// status line once it serves, STATUS refreshes, WATCHDOG=1 pings while the
// decision loop answers, none while it is wedged, pings again once it is
// free, and STOPPING=1 on the way out.
func TestSystemdNotify(t *testing.T) {
	ns := newNotifySocket(t)
	const watchdog = 200 * time.Millisecond // pings every 100 ms
	t.Setenv("WATCHDOG_USEC", "200000")
	old := statusEvery
	statusEvery = 50 * time.Millisecond
	t.Cleanup(func() { statusEvery = old })

	h := newHarness(t, harnessOpts{})
	ns.want(t, "READY=1")
	if st := ns.want(t, "STATUS="); !strings.Contains(st, "2 doors, 3 inputs") {
		t.Errorf("status line %q", st)
	}
	for i := 0; i < 3; i++ {
		ns.want(t, "WATCHDOG=1")
	}

	// Wedge the decision loop: the pings must stop.
	release := make(chan struct{})
	wedged := make(chan struct{})
	go h.d.Engine.Do(context.Background(), func() { close(wedged); <-release })
	<-wedged
	// Drain what was in flight when the loop wedged (at most one ping),
	// then expect silence for five watchdog intervals.
	quiet := time.After(5 * watchdog)
	pings := 0
silence:
	for {
		select {
		case m := <-ns.msgs:
			if m == "WATCHDOG=1" {
				pings++
			}
		case <-quiet:
			break silence
		}
	}
	if pings > 1 {
		t.Fatalf("%d watchdog pings while the decision loop was wedged; want none (one may be in flight)", pings)
	}

	close(release)
	ns.want(t, "WATCHDOG=1")
	h.stop()
	ns.want(t, "STOPPING=1")
}

// TestMetricsOnTCP: with api.metrics_listen set, the Prometheus metrics
// are served on that TCP address too, and count a decision.
func TestMetricsOnTCP(t *testing.T) {
	addr := freePort(t)
	h := newHarness(t, harnessOpts{extra: fmt.Sprintf("metrics_listen = %q\n", addr)})
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, pinCred("res", "246810", nil))
	typeKeys(t, h.keypad, "246810")
	h.decision("keypad")
	// The event is recorded before the relay moves; the counters are
	// told after: the scrape may come between.
	var body []byte
	waitFor(t, "the grant counted on the TCP metrics listener", nil, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("metrics on %s: %v", addr, err)
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %s\n%s", resp.Status, body)
		}
		return strings.Contains(string(body), `kioskd_decisions_total{reason="granted"} 1`)
	})
	if r, err := http.Get("http://" + addr + "/v1/status"); err == nil {
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Fatal("the TCP metrics listener serves the API too; it must serve /metrics only")
		}
	}
}
