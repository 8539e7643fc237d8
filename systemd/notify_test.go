//go:build linux

package systemd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wait bounds every wait on the fake notify socket.
const wait = 5 * time.Second

// notifySocket is a fake service manager: a unixgram listener that
// $NOTIFY_SOCKET points at for the duration of the test.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
}

// listen binds the fake socket: in t.TempDir(), or in the abstract
// namespace when abstract is set (systemd passes "@name" for those).
func listen(t *testing.T, abstract bool) *notifySocket {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name = "@kioskd-test-" + hex.EncodeToString(b[:])
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return &notifySocket{t: t, conn: conn}
}

// next returns the next datagram, failing the test if none arrives in time.
func (s *notifySocket) next() string {
	s.t.Helper()
	if err := s.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		s.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no notification within %v: %v", wait, err)
	}
	return string(buf[:n])
}

// empty fails the test if a datagram is queued. It does not wait: the
// callers know that any message they are checking for was already sent.
func (s *notifySocket) empty() {
	s.t.Helper()
	raw, err := s.conn.SyscallConn()
	if err != nil {
		s.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var n int
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return true
	}); err != nil {
		s.t.Fatal(err)
	}
	if rerr == nil {
		s.t.Fatalf("unexpected notification %q", buf[:n])
	}
	if !errors.Is(rerr, unix.EAGAIN) {
		s.t.Fatalf("recv: %v", rerr)
	}
}

func setWatchdog(t *testing.T, usec, pid string) {
	t.Helper()
	t.Setenv("WATCHDOG_USEC", usec)
	t.Setenv("WATCHDOG_PID", pid)
}

func TestMessages(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run("abstract="+strconv.FormatBool(abstract), func(t *testing.T) {
			sock := listen(t, abstract)
			n := New()
			if !n.Enabled() {
				t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
			}
			for _, tc := range []struct {
				name string
				call func()
				want string
			}{
				{"ready with status", func() { n.Ready("serving 2 doors") }, "READY=1\nSTATUS=serving 2 doors"},
				{"ready alone", func() { n.Ready("") }, "READY=1"},
				{"status", func() { n.Status("pulling from portal") }, "STATUS=pulling from portal"},
				{"status stays on one line", func() { n.Status("a\nREADY=1\r") }, "STATUS=a READY=1 "},
				{"stopping", n.Stopping, "STOPPING=1"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					tc.call()
					if got := sock.next(); got != tc.want {
						t.Errorf("got %q, want %q", got, tc.want)
					}
				})
			}
		})
	}
}

func TestNoSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	setWatchdog(t, "100000", strconv.Itoa(os.Getpid()))
	n := New()
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	if d, ok := n.WatchdogInterval(); ok {
		t.Errorf("WatchdogInterval() = %v, true without NOTIFY_SOCKET", d)
	}
	// A socket that appears later is not used: New decided once.
	sock := listen(t, false)
	n.Ready("ready")
	n.Status("status")
	n.Stopping()
	sock.empty()

	runReturnsAtOnce(t, n)
	// nil and zero Notifiers are no-ops too.
	for _, n := range []*Notifier{nil, {}} {
		n.Ready("x")
		n.Status("x")
		n.Stopping()
		if n.Enabled() {
			t.Error("Enabled() = true")
		}
		runReturnsAtOnce(t, n)
	}
	sock.empty()
}

// runReturnsAtOnce checks that RunWatchdog returns without calling alive.
func runReturnsAtOnce(t *testing.T, n *Notifier) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(context.Background(), func(context.Context) error {
			t.Error("alive called without a watchdog")
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("RunWatchdog did not return without a watchdog")
	}
}

func TestSendFailureDoesNotFail(t *testing.T) {
	// The socket named does not exist: every call must still return.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	n := New()
	n.Ready("ready")
	n.Status("status")
	n.Stopping()
	if !n.failing.Load() {
		t.Error("a failed send was not noted")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		ok              bool
	}{
		{"this process", "10000000", self, 10 * time.Second, true},
		{"no pid given", "2500000", "", 2500 * time.Millisecond, true},
		{"another process", "10000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"no watchdog", "", "", 0, false},
		{"zero", "0", self, 0, false},
		{"garbage", "10s", self, 0, false},
		{"bad pid", "10000000", "me", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen(t, false)
			setWatchdog(t, tc.usec, tc.pid)
			got, ok := New().WatchdogInterval()
			if got != tc.want || ok != tc.ok {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestRunWatchdog drives the liveness check one round at a time: each
// round's answer is handed to alive over an unbuffered channel, so a
// successful hand-over of round k+1 proves round k (and any ping it sent)
// is complete.
func TestRunWatchdog(t *testing.T) {
	sock := listen(t, false)
	const interval = 100 * time.Millisecond
	setWatchdog(t, strconv.Itoa(int(interval/time.Microsecond)), strconv.Itoa(os.Getpid()))
	n := New()
	if d, ok := n.WatchdogInterval(); !ok || d != interval {
		t.Fatalf("WatchdogInterval() = %v, %v", d, ok)
	}

	answers := make(chan func(context.Context) error)
	stop := make(chan struct{})
	alive := func(ctx context.Context) error {
		select {
		case f := <-answers:
			return f(ctx)
		case <-stop:
			return errors.New("test over")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, alive)
	}()
	defer func() {
		cancel()
		close(stop)
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("RunWatchdog did not return after cancel")
		}
	}()

	round := func(f func(context.Context) error) {
		t.Helper()
		select {
		case answers <- f:
		case <-time.After(wait):
			t.Fatal("alive was not called")
		}
	}
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("decision loop: deadline exceeded") }
	wedged := func(ctx context.Context) error {
		dl, has := ctx.Deadline()
		if !has || time.Until(dl) > interval/4 {
			t.Errorf("alive's context: deadline %v (set: %v), want at most %v away", time.Until(dl), has, interval/4)
		}
		<-ctx.Done() // a loop that never answers
		return ctx.Err()
	}
	panicking := func(context.Context) error { panic("boom") }

	round(ok)
	if got := sock.next(); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	for _, f := range []func(context.Context) error{failing, wedged, panicking} {
		round(f)
	}
	// Hand over a healthy answer that waits for the gate: the three
	// unhealthy rounds are then over, and must have sent nothing.
	gate := make(chan struct{})
	round(func(context.Context) error { <-gate; return nil })
	sock.empty()
	close(gate)
	if got := sock.next(); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q, want WATCHDOG=1", got)
	}
	round(ok)
	if got := sock.next(); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
}

// TestRunWatchdogStopsOnCancel checks that a cancel ends RunWatchdog even
// while a liveness check is in progress, without a ping for it.
func TestRunWatchdogStopsOnCancel(t *testing.T) {
	sock := listen(t, false)
	setWatchdog(t, "60000000", strconv.Itoa(os.Getpid())) // 60 s: no second round
	n := New()
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, func(ctx context.Context) error {
			close(called)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	select {
	case <-called:
	case <-time.After(wait):
		t.Fatal("alive was not called at start")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("RunWatchdog did not return after cancel")
	}
	sock.empty()
}
