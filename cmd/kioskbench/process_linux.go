package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"

	"kioskd/kiosk"
	"kioskd/store"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture kioskd runs on).
const clockTick = 10 * time.Millisecond

// readyWait bounds the wait for READY=1 and for a stop.
const readyWait = 2 * time.Minute

// rig is a kioskd state directory provisioned with a credential set, its
// config file, and a pseudo-terminal as the serial keypad.
type rig struct {
	dir, cfg string
	creds    int
	keypad   *os.File // pty master, kept open while kioskd runs
	slave    *os.File
}

// newRig provisions n credentials into a fresh state directory under
// dir through the store package (one full load, in digest order as the
// portal lists them), and writes a config for simulated hardware: one
// door, a serial keypad on a pty, no portal.
func newRig(dir string, n int) (*rig, error) {
	r := &rig{dir: dir, creds: n}
	state := filepath.Join(dir, "state")
	if err := provision(state, n); err != nil {
		return nil, err
	}
	site := make([]byte, 32)
	rand.Read(site)
	siteFile := filepath.Join(dir, "site.key")
	if err := os.WriteFile(siteFile, []byte(base64.StdEncoding.EncodeToString(site)+"\n"), 0o600); err != nil {
		return nil, err
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if r.keypad, r.slave, err = pty.Open(); err != nil {
		return nil, fmt.Errorf("pty for the keypad: %w", err)
	}
	r.cfg = filepath.Join(dir, "kioskd.toml")
	cfg := fmt.Sprintf(`device_id = "bench-0001"
state_dir = %q
timezone  = "UTC"
hardware  = "sim"

[portal]
site_key_file = %q
public_key    = %q

[[input]]
name   = "keypad"
type   = "serial-keypad"
device = %q

[[door]]
id    = "main"
relay = { chip = "gpiochip0", line = 17 }
pulse = "3s"

[api]
socket = %q
`, state, siteFile, base64.StdEncoding.EncodeToString(pub), r.slave.Name(), filepath.Join(dir, "kioskd.sock"))
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rig) close() {
	if r.keypad != nil {
		r.keypad.Close()
		r.slave.Close()
	}
}

// provision loads n synthetic PIN credentials into a store in dir. The
// digests are spread evenly over the key space (so they come in
// ascending order) with pseudo-random low bytes.
func provision(dir string, n int) error {
	st, err := store.Open(store.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	defer st.Close()
	l, err := st.BeginFull()
	if err != nil {
		return err
	}
	step := ^uint64(0) / uint64(max(n, 1))
	until := time.Now().AddDate(1, 0, 0).UTC()
	for i := range n {
		c := &kiosk.Credential{ID: "c-" + strconv.Itoa(i), Kind: kiosk.KindPIN, Rev: 1, Status: kiosk.StatusActive,
			Holder:     kiosk.Holder{ID: "h-" + strconv.Itoa(i/2), Role: kiosk.RoleResident, Name: "Resident " + strconv.Itoa(i/2)},
			ValidUntil: until, Doors: []string{"main"}}
		binary.BigEndian.PutUint64(c.Digest[:8], uint64(i)*step)
		x := uint64(i)*0x9e3779b97f4a7c15 + 1
		for j := 8; j < kiosk.DigestSize; j += 8 {
			x ^= x >> 31
			x *= 0xbf58476d1ce4e5b9
			binary.BigEndian.PutUint64(c.Digest[j:], x)
		}
		if err := l.Put(c); err != nil {
			l.Abort()
			return fmt.Errorf("provision credential %d: %w", i, err)
		}
	}
	if _, err := l.Commit(store.DocMeta{Cursor: "bench", IssuedAt: time.Now()}, nil); err != nil {
		return fmt.Errorf("provision: commit: %w", err)
	}
	if st.Count() != n {
		return fmt.Errorf("provision: store holds %d credentials, want %d", st.Count(), n)
	}
	return nil
}

// proc is a running kioskd.
type proc struct {
	cmd     *exec.Cmd
	log     bytes.Buffer
	logMu   sync.Mutex
	done    chan struct{}
	err     error
	started time.Time     // just before exec
	ready   time.Duration // exec to READY=1
}

// start runs kioskd on the rig under a fake systemd notify socket and
// waits for READY=1 (or the process's end, or readyWait).
func (r *rig) start(bin string) (*proc, error) {
	sock := filepath.Join(r.dir, "notify.sock")
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	defer conn.Close()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-config", r.cfg, "-log-level", "info")
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	readyCh := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
				readyCh <- time.Now()
				return
			}
		}
	}()
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logMu.Lock()
			p.log.Write(append(sc.Bytes(), '\n'))
			p.logMu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case t := <-readyCh:
		p.ready = t.Sub(p.started)
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("kioskd exited before READY=1: %v\n%s", p.err, p.logText())
	case <-time.After(readyWait):
		p.cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("no READY=1 from kioskd within %v\n%s", readyWait, p.logText())
	}
}

func (p *proc) logText() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("kioskd exit: %v\n%s", p.err, p.logText())
		}
		return nil
	case <-time.After(readyWait):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("kioskd did not stop within %v of SIGTERM", readyWait)
	}
}

// servingCredentials returns the credential count kioskd logged when it
// started serving ("kioskd serving … credentials=N").
func (p *proc) servingCredentials() (int, error) {
	for line := range strings.SplitSeq(p.logText(), "\n") {
		if !strings.Contains(line, "kioskd serving") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "credentials="); ok {
				return strconv.Atoi(v)
			}
		}
	}
	return 0, errors.New("no \"kioskd serving\" line with credentials= in kioskd's log")
}

// MeasureReady starts kioskd on a rig of n credentials runs times, each
// time from exec to READY=1 on the notify socket, and stops it with
// SIGTERM in between. Every start must serve the whole set.
func MeasureReady(bin, dir string, n, runs int) (ReadyResult, error) {
	r, err := newRig(dir, n)
	if err != nil {
		return ReadyResult{}, err
	}
	defer r.close()
	res := ReadyResult{Credentials: n}
	for range runs {
		p, err := r.start(bin)
		if err != nil {
			return res, err
		}
		if err := p.stop(); err != nil {
			return res, err
		}
		// Read once kioskd has exited: its log is then complete.
		got, err := p.servingCredentials()
		if err != nil {
			return res, err
		}
		if got != n {
			return res, fmt.Errorf("kioskd served %d credentials, want %d", got, n)
		}
		res.Runs = append(res.Runs, p.ready)
	}
	return res, nil
}

// MeasureIdle starts kioskd on a rig of n credentials, lets it settle
// for settle after READY=1, and measures over window its CPU time
// (/proc/PID/stat utime+stime), context switches (every thread's
// /proc/PID/task/*/status) and resident memory (VmRSS, VmHWM).
func MeasureIdle(bin, dir string, n int, settle, window time.Duration) (IdleResult, error) {
	r, err := newRig(dir, n)
	if err != nil {
		return IdleResult{}, err
	}
	defer r.close()
	p, err := r.start(bin)
	if err != nil {
		return IdleResult{}, err
	}
	res := IdleResult{Credentials: n, Window: window, ReadyElapsed: p.ready}
	measure := func() error {
		time.Sleep(settle) // a measuring tool, not a test: wall time is the point
		pid := p.cmd.Process.Pid
		cpu0, err := procCPU(pid)
		if err != nil {
			return err
		}
		cs0, err := procCtxSwitches(pid)
		if err != nil {
			return err
		}
		t0 := time.Now()
		time.Sleep(window)
		cpu1, err := procCPU(pid)
		if err != nil {
			return err
		}
		cs1, err := procCtxSwitches(pid)
		if err != nil {
			return err
		}
		res.Window = time.Since(t0)
		res.CPU = cpu1 - cpu0
		res.CtxSwitches = cs1 - cs0
		if res.VmRSSKiB, err = procStatusKiB(pid, "VmRSS"); err != nil {
			return err
		}
		res.VmHWMKiB, err = procStatusKiB(pid, "VmHWM")
		return err
	}
	merr := measure()
	serr := p.stop()
	if merr != nil {
		return res, merr
	}
	return res, serr
}

// procCPU returns utime+stime of the process (all threads).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// procCtxSwitches sums the context switches of every thread.
func procCtxSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of %d: %v", pid, err)
	}
	var sum int64
	for _, t := range tasks {
		for _, key := range []string{"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"} {
			v, err := statusField(t, key)
			if err != nil {
				continue // the thread ended meanwhile
			}
			sum += v
		}
	}
	return sum, nil
}

// procStatusKiB reads a "kB" field of /proc/PID/status.
func procStatusKiB(pid int, key string) (int64, error) {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), key)
}

func statusField(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
