package main

// A power cut in the middle of a full snapshot (SPEC §6.1: "A failure
// midway leaves the old set intact"; §2: decisions work offline): kioskd
// runs as a process of its own, is killed with SIGKILL while it stages a
// large full snapshot, and is started again.

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// writeProcessConfig writes the config of a kioskd that the kill and crash
// tests run as a process: simulated hardware, the test portal tp (1 s
// pulls), a serial keypad on keypad, door main, the API on socket.
// portalExtra is added to [portal], extra to the end of the file.
func writeProcessConfig(t *testing.T, path, state, keypad, socket string, tp *testPortal, portalExtra, extra string) {
	t.Helper()
	if err := os.WriteFile(path, fmt.Appendf(nil, `
device_id = %q
state_dir = %q
timezone  = "America/New_York"
hardware  = "sim"

[portal]
url                = %q
token_file         = %q
site_key_file      = %q
public_key         = %q
sync_interval      = "1s"
heartbeat_interval = "1h"
%s
[[input]]
name   = "keypad"
type   = "serial-keypad"
device = %q

[[door]]
id    = "main"
relay = { chip = "gpiochip0", line = 17 }
pulse = "100ms"

[api]
socket = %q
%s`, testDevice, state, tp.URL(), tp.tokenFile, tp.siteKeyFile, tp.pubBase64(), portalExtra, keypad, socket, extra), 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildKioskd builds this command into a temp dir and returns the binary.
func buildKioskd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds kioskd and runs it as a process (SIGKILL, restart); skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go tool on PATH to build kioskd with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kioskd")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a kioskd running as a child process; its log (stderr) is
// kept and announced line by line.
type process struct {
	t     *testing.T
	cmd   *exec.Cmd
	log   *syncBuffer
	lines chan struct{} // a receive after each log line
	done  chan struct{} // closed once the process has exited
	err   error         // its exit, once done is closed
}

// startProcess starts kioskd on the config file cfg, logging at info;
// args are added to its command line (a later -log-level wins).
func startProcess(t *testing.T, bin, cfg string, args ...string) *process {
	t.Helper()
	p := &process{t: t, log: &syncBuffer{}, lines: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-config", cfg, "-log-level", "info"}, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.Write(append(sc.Bytes(), '\n'))
			notify(p.lines)
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("kioskd (pid %d) log:\n%s", p.cmd.Process.Pid, p.log)
		}
	})
	return p
}

// count returns the number of log lines that hold s.
func (p *process) count(s string) int { return strings.Count(p.log.String(), s) }

// waitLog waits until n log lines hold s.
func (p *process) waitLog(s string, n int) {
	p.t.Helper()
	waitFor(p.t, fmt.Sprintf("%d log lines with %q", n, s), p.lines, func() bool { return p.count(s) >= n })
}

// stop signals the process and waits for it to exit.
func (p *process) stop(sig syscall.Signal) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(wait):
		p.t.Fatalf("kioskd did not exit within %v of %v", wait, sig)
		return nil
	}
}

// bigSnapshot serves a large full snapshot signed with the portal's key,
// in pages, in place of the portal's pull answer. Each request for a
// first page starts a document of its own, stamped with the time then
// (an older full document would be stale after the deltas accepted
// meanwhile). While blocking, the request for the second page waits
// (announced on requested) until released or the client goes away: the
// kiosk is then in the middle of the snapshot, the first page staged. A
// pull on the snapshot's own cursor gets an empty delta.
type bigSnapshot struct {
	priv   ed25519.PrivateKey
	cursor string
	parts  [][]byte // each page's credentials, as the array's inside

	requested chan struct{}
	mu        gosync.Mutex
	pages     [][]byte // the current document
	sigs      []string
	blocking  bool
	release   chan struct{}
}

// newBigSnapshot prepares a full snapshot of n synthetic card credentials
// plus the PIN newPIN (credential "new-b"), in ascending digest order as
// the portal lists them, pageSize credentials a page. The credentials are
// encoded once, from one encoding of each kind, so that the set builds in
// a moment even under the race detector.
func newBigSnapshot(t *testing.T, tp *testPortal, n, pageSize int, newPIN string) *bigSnapshot {
	t.Helper()
	b := &bigSnapshot{priv: tp.priv, cursor: "big-1", requested: make(chan struct{}, 1), release: make(chan struct{})}
	synth := func(i int) (d [kiosk.DigestSize]byte) {
		binary.BigEndian.PutUint64(d[:], uint64(i)*(math.MaxUint64/uint64(n))+1)
		binary.BigEndian.PutUint64(d[8:], 0x6b696f736b642121)
		return d
	}
	tmpl, err := json.Marshal(portalsync.NewWireCredential(&kiosk.Credential{ID: "b-0", Kind: kiosk.KindCard, Digest: synth(0),
		Rev: 1, Holder: kiosk.Holder{ID: "h-big", Role: kiosk.RoleResident}, Status: kiosk.StatusActive}))
	if err != nil {
		t.Fatal(err)
	}
	d0 := synth(0)
	head, rest, ok1 := bytes.Cut(tmpl, []byte(`"b-0"`))
	mid, tail, ok2 := bytes.Cut(rest, []byte(`"`+kiosk.EncodeDigest(d0)+`"`))
	if !ok1 || !ok2 {
		t.Fatalf("credential encoding %s: id or digest not found", tmpl)
	}
	newDigest := kiosk.Digest(tp.siteKey, kiosk.KindPIN, []byte(newPIN))
	newCred, err := json.Marshal(portalsync.NewWireCredential(&kiosk.Credential{ID: "new-b", Kind: kiosk.KindPIN, Digest: newDigest,
		Rev: 1, Holder: kiosk.Holder{ID: "h-new", Role: kiosk.RoleCourier}, Status: kiosk.StatusActive}))
	if err != nil {
		t.Fatal(err)
	}
	at := sort.Search(n, func(i int) bool { d := synth(i); return bytes.Compare(d[:], newDigest[:]) > 0 })
	total := n + 1
	for start := 0; start < total; start += pageSize {
		buf := make([]byte, 0, pageSize*(len(tmpl)+16))
		for i := start; i < min(start+pageSize, total); i++ {
			if i > start {
				buf = append(buf, ',')
			}
			buf = append(buf, '\n')
			if i == at {
				buf = append(buf, newCred...)
				continue
			}
			j := i // the synthetic credential's number
			if i > at {
				j--
			}
			d := synth(j)
			buf = append(buf, head...)
			buf = append(buf, `"b-`...)
			buf = strconv.AppendInt(buf, int64(j), 10)
			buf = append(buf, '"')
			buf = append(buf, mid...)
			buf = append(buf, '"')
			buf = base64.RawURLEncoding.AppendEncode(buf, d[:])
			buf = append(buf, '"')
			buf = append(buf, tail...)
		}
		b.parts = append(b.parts, append(buf, '\n'))
	}
	return b
}

// document starts a new document: every page stamped now and signed.
func (b *bigSnapshot) document() {
	issued := time.Now().UTC()
	pages := make([][]byte, len(b.parts))
	sigs := make([]string, len(b.parts))
	for i, part := range b.parts {
		h := &portalsync.Header{DeviceID: testDevice, IssuedAt: issued, Full: true, Cursor: b.cursor}
		if i+1 < len(b.parts) {
			h.Next = "p" + strconv.Itoa(i+1)
		}
		// An empty document is the frame: the credentials go inside its
		// array.
		frame, err := (&portalsync.Document{Header: *h}).Marshal()
		if err != nil {
			panic(err)
		}
		head, tail, ok := bytes.Cut(frame, []byte(`"credentials":[`))
		if !ok {
			panic("document without a credentials array")
		}
		body := slices.Concat(head, []byte(`"credentials":[`), part, tail)
		pages[i], sigs[i] = body, portalsync.Sign(b.priv, body)
	}
	b.mu.Lock()
	b.pages, b.sigs = pages, sigs
	b.mu.Unlock()
}

// unblock lets the second page go.
func (b *bigSnapshot) unblock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.blocking {
		b.blocking = false
		close(b.release)
	}
}

func (b *bigSnapshot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var body []byte
	var sig string
	switch page := q.Get("page"); {
	case page == "" && q.Get("cursor") == b.cursor:
		d := &portalsync.Document{Header: portalsync.Header{DeviceID: testDevice, IssuedAt: time.Now().UTC(), Base: b.cursor, Cursor: b.cursor}}
		body, _ = d.Marshal()
		sig = portalsync.Sign(b.priv, body)
	case page == "":
		b.document()
		b.mu.Lock()
		body, sig = b.pages[0], b.sigs[0]
		b.mu.Unlock()
	default:
		i, err := strconv.Atoi(strings.TrimPrefix(page, "p"))
		b.mu.Lock()
		pages, sigs, blocking, release := b.pages, b.sigs, b.blocking, b.release
		b.mu.Unlock()
		if err != nil || i < 1 || i >= len(pages) {
			http.Error(w, "unknown page", http.StatusGone)
			return
		}
		if i == 1 && blocking {
			notify(b.requested)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		body, sig = pages[i], sigs[i]
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set(portalsync.SignatureHeader, sig)
	w.Write(body)
}

// TestKillDuringFullSnapshot: kioskd, a process, syncs a small set from
// the devportal; then a full snapshot of 200 001 credentials comes, and
// kioskd is SIGKILLed while it stages it (the second page is held back).
// Started again, it opens, cleans the staging up, and serves the OLD set
// (its PIN granted, the new set's PIN unknown) while it fetches the full
// snapshot again; once the snapshot completes, the new set serves and the
// old PIN is unknown. Grants are read from the events the kiosk uploaded
// to the portal and from its "relay on" log lines.
func TestKillDuringFullSnapshot(t *testing.T) {
	bin := buildKioskd(t)
	tp := newTestPortal(t, "")
	old, oldPIN := tp.issue(portal.TypePIN, 0)
	newPIN := "583920"
	if newPIN == oldPIN {
		newPIN = "583921"
	}

	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "kioskd.toml")
	writeProcessConfig(t, cfg, state, slave.Name(), filepath.Join(apiSocketDir(t), "kioskd.sock"), tp, "", "")

	// n counts the uploaded events that pred accepts.
	n := func(pred func(kiosk.Event) bool) int {
		c := 0
		for _, e := range tp.events() {
			if pred(e) {
				c++
			}
		}
		return c
	}
	started := func(e kiosk.Event) bool { return e.Type == kiosk.EvDeviceStarted }
	connected := func(e kiosk.Event) bool { return e.Type == kiosk.EvInputConnected && e.Input == "keypad" }
	// enter types a PIN and waits for its decision at the portal.
	enter := func(pin string, reason kiosk.Reason, credID string) {
		t.Helper()
		typeKeys(t, master, pin)
		e := tp.waitEvent(func(e kiosk.Event) bool {
			return e.Type == kiosk.EvAccessGranted || e.Type == kiosk.EvAccessDenied
		})
		if e.Reason != reason || e.CredentialID != credID {
			t.Fatalf("decision %s %s credential %q, want %s credential %q", e.Type, e.Reason, e.CredentialID, reason, credID)
		}
	}

	// 1. The old set, pulled from the devportal.
	p1 := startProcess(t, bin, cfg)
	waitFor(t, "first start: old set applied, keypad connected", tp.uploads, func() bool {
		return n(func(e kiosk.Event) bool { return e.Type == kiosk.EvSyncApplied && e.Detail["full"] == true }) == 1 &&
			n(connected) == 1
	})
	enter(oldPIN, kiosk.Granted, old.ID)
	p1.waitLog(`msg="relay on"`, 1)

	// 2. A large full snapshot; the kiosk is killed while it stages it.
	const bigN, pageSize = 200_000, 20_000
	genStart := time.Now()
	big := newBigSnapshot(t, tp, bigN, pageSize, newPIN)
	big.blocking = true
	t.Logf("encoded a full snapshot of %d credentials in %d pages (%d bytes a page) in %v",
		bigN+1, len(big.parts), len(big.parts[0]), time.Since(genStart).Round(time.Millisecond))
	tp.setSyncHandler(big)
	t.Cleanup(big.unblock)
	select {
	case <-big.requested:
	case <-time.After(wait):
		t.Fatalf("kioskd did not ask for the second page within %v", wait)
	}
	// Page 2 is fetched while page 1 is applied, so the staging file may
	// appear just after the request: wait for it (page 2 stays blocked).
	waitFor(t, "the staging file next to the live one", nil, func() bool {
		files, _ := filepath.Glob(filepath.Join(state, "creds-*.db"))
		return len(files) >= 2
	})
	if err := p1.stop(syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("kioskd exit after SIGKILL: %v", err)
	}

	// 3. Started again (the pty as the keypad was: its exclusive flag,
	// set by the dead process, cleared as a replug would).
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCNXCL, 0); err != nil {
		t.Fatalf("TIOCNXCL: %v", err)
	}
	p2 := startProcess(t, bin, cfg)
	waitFor(t, "second start: keypad connected", tp.uploads, func() bool { return n(started) == 2 && n(connected) == 2 })
	select {
	case <-big.requested: // fetching the snapshot again, first page staged
	case <-time.After(wait):
		t.Fatalf("restarted kioskd did not fetch the snapshot again within %v", wait)
	}
	if !strings.Contains(p2.log.String(), "removed leftover of an interrupted full load") {
		t.Errorf("restarted kioskd did not remove the staging of the killed load")
	}
	enter(oldPIN, kiosk.Granted, old.ID) // the old set serves
	p2.waitLog(`msg="relay on"`, 1)
	enter(newPIN, kiosk.Unknown, "") // the new one is not live yet

	// 4. The snapshot completes on its own.
	big.unblock()
	e := tp.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvSyncApplied })
	if e.Detail["cursor"] != big.cursor || e.Detail["full"] != true ||
		e.Detail["upserted"] != float64(bigN+1) || e.Detail["removed"] != float64(1) {
		t.Fatalf("sync.applied %v, want cursor %s, full, %d upserted, 1 removed", e.Detail, big.cursor, bigN+1)
	}
	enter(newPIN, kiosk.Granted, "new-b")
	p2.waitLog(`msg="relay on"`, 2)
	enter(oldPIN, kiosk.Unknown, "")
	if got := p2.count(`msg="relay on"`); got != 2 {
		t.Errorf("%d relay pulses after the restart, want 2 (the two grants)", got)
	}
	if err := p2.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("kioskd exit after SIGTERM: %v", err)
	}
}
