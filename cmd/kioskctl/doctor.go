package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"kioskd/hw/board"
	"kioskd/hw/sysclock"
	"kioskd/kiosk/config"
)

// Check results.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
)

// check is one line of doctor's report.
type check struct {
	Status string `json:"status"` // ok, warn or fail
	Name   string `json:"check"`
	Detail string `json:"detail"`
}

// doctor gathers the checks. Its fields stand in for the machine in
// tests; zero values are the real ones.
type doctor struct {
	g       *globals
	synced  func() bool   // nil = sysclock.Synced
	timeout time.Duration // for network checks; 0 = 3 s
	checks  []check
}

func (d *doctor) add(status, name, format string, args ...any) {
	d.checks = append(d.checks, check{Status: status, Name: name, Detail: fmt.Sprintf(format, args...)})
}

// Disk space thresholds of the state directory.
const (
	minFreeBytes = 16 << 20 // below: fail (the journal and decisions need room)
	spareBytes   = 64 << 20 // room wanted besides a full snapshot
)

// runDoctor is `kioskctl doctor`: it checks the installation and prints
// one line per check, "ok|warn|fail NAME: detail"; exit status 1 when
// any check fails.
func runDoctor(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, "doctor", "doctor",
		"Checks the installation, one line per check (ok, warn or fail): the config, the state\n"+
			"directory and free disk, GPIO chips and input devices with their permissions, the secret\n"+
			"files, the system clock, the portal, the push listener and kioskd's API socket. Most\n"+
			"checks need no running kioskd. Run it as root, or as kioskd's user, to check what kioskd\n"+
			"can open. Exit status 1 when a check fails.",
		stderr, args, nil)
	if err != nil {
		return err
	}
	if err := noArgs(fs, "doctor"); err != nil {
		return err
	}
	d := &doctor{g: g}
	d.run(ctx)
	if g.json {
		if err := printJSON(stdout, d.checks); err != nil {
			return err
		}
	} else {
		for _, c := range d.checks {
			fmt.Fprintf(stdout, "%-4s %s: %s\n", c.Status, c.Name, c.Detail)
		}
	}
	for _, c := range d.checks {
		if c.Status == checkFail {
			return errProblems
		}
	}
	return nil
}

func (d *doctor) run(ctx context.Context) {
	timeout := d.timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	if info := board.Detect(); info.RaspberryPi {
		d.add(checkOK, "board", "%s (%s, %s)", info.Model, info.Arch, orUnknown(info.OS))
	} else {
		d.add(checkOK, "board", "%s; %s", info, orUnknown(info.OS))
	}
	cfg, err := config.Load(d.g.configPath)
	if err != nil {
		d.add(checkFail, "config", "%v", oneLine(err))
	} else {
		d.add(checkOK, "config", "%s parses (device %s, hardware %s, %d doors, %d inputs)", cfg.Path, cfg.DeviceID, cfg.Hardware, len(cfg.Doors), len(cfg.Inputs))
		d.stateDir(cfg)
		d.gpio(cfg)
		d.inputs(cfg)
		d.lockBoards(cfg)
		d.secrets(cfg)
	}
	d.clock()
	if cfg != nil {
		d.portal(ctx, cfg, timeout)
	}
	socket := d.g.socket
	if socket == "" {
		socket = config.DefaultSocket
		if cfg != nil {
			socket = cfg.API.Socket
		}
	}
	running := d.api(ctx, socket, timeout)
	if cfg != nil {
		d.push(cfg, running, timeout)
	}
}

// oneLine joins a multi-line error (config.Load lists one problem per
// line) for a one-line check.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// noAccess explains a device or file the current user cannot open as
// kioskd needs: a warning, since kioskd runs as its own user.
func noAccess(path, want string) string {
	return fmt.Sprintf("%s (%s) is not %s by user %s; kioskd's user needs that (run doctor as root or as kioskd's user to check)", path, describeFile(path), want, currentUser())
}

func (d *doctor) stateDir(cfg *config.Config) {
	dir := cfg.StateDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if access(parent, false, true) {
			d.add(checkWarn, "state_dir", "%s does not exist yet; kioskd creates it at start", dir)
		} else {
			d.add(checkFail, "state_dir", "%s does not exist and %s", dir, noAccess(parent, "writable"))
		}
		return
	case errors.Is(err, fs.ErrPermission):
		d.add(checkWarn, "state_dir", "%s", noAccess(dir, "reachable"))
		return
	case err != nil:
		d.add(checkFail, "state_dir", "%v", err)
		return
	case !fi.IsDir():
		d.add(checkFail, "state_dir", "%s is not a directory", dir)
		return
	}
	if access(dir, true, true) {
		d.add(checkOK, "state_dir", "%s exists and is writable", dir)
	} else {
		d.add(checkWarn, "state_dir", "%s", noAccess(dir, "writable"))
	}
	free, err := freeBytes(dir)
	if err != nil {
		d.add(checkWarn, "disk", "free space in %s: %v", dir, err)
		return
	}
	// A full snapshot is staged into a second credential file beside the
	// live one, and its pages are spooled first.
	var creds int64
	matches, _ := filepath.Glob(filepath.Join(dir, "creds-*.db"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			creds += fi.Size()
		}
	}
	need := uint64(creds + cfg.Portal.MaxDocumentBytes + spareBytes)
	switch {
	case free < minFreeBytes:
		d.add(checkFail, "disk", "only %s free in %s: events and decisions need room", mib(free), dir)
	case free < need:
		d.add(checkWarn, "disk", "%s free in %s; a full snapshot needs about %s", mib(free), dir, mib(need))
	default:
		d.add(checkOK, "disk", "%s free in %s", mib(free), dir)
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// chipPath returns the device file of a GPIO chip name.
func chipPath(chip string) string {
	if strings.HasPrefix(chip, "/") {
		return chip
	}
	return "/dev/" + chip
}

func (d *doctor) gpio(cfg *config.Config) {
	if cfg.Hardware == config.HardwareSim {
		d.add(checkOK, "gpio", "hardware = sim: GPIO lines are simulated in memory")
		return
	}
	chips := map[string]bool{}
	for _, dc := range cfg.Doors {
		relay := &dc.Relay
		if dc.Lock != nil {
			relay = nil
		}
		for _, l := range []*config.Line{relay, dc.Contact, dc.ExitButton, dc.Buzzer, dc.LEDGreen, dc.LEDRed} {
			if l != nil {
				chips[chipPath(l.Chip)] = true
			}
		}
	}
	for _, in := range cfg.Inputs {
		if in.Type == config.InputMatrixKeypad {
			chips[chipPath(in.Chip)] = true
		}
	}
	present, _ := filepath.Glob("/dev/gpiochip*")
	names := make([]string, 0, len(chips))
	for c := range chips {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, path := range names {
		name := "gpio " + filepath.Base(path)
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			have := "none"
			if len(present) > 0 {
				have = strings.Join(present, ", ")
			}
			d.add(checkFail, name, "%s does not exist (GPIO chips here: %s)", path, have)
		case err != nil:
			d.add(checkFail, name, "%v", err)
		case fi.Mode()&fs.ModeCharDevice == 0:
			d.add(checkFail, name, "%s is not a character device", path)
		case !access(path, true, true):
			d.add(checkWarn, name, "%s", noAccess(path, "readable and writable"))
		default:
			d.add(checkOK, name, "%s (%s) is readable and writable", path, describeFile(path))
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "OS unknown"
	}
	return s
}

// lockBoards checks the serial port of every RS-485 bus once.
func (d *doctor) lockBoards(cfg *config.Config) {
	seen := map[string]bool{}
	for _, b := range cfg.LockBoards {
		if seen[b.Device] {
			continue
		}
		seen[b.Device] = true
		name := "lock board " + b.Name
		fi, err := os.Stat(b.Device)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			d.add(checkFail, name, "%s does not exist: the RS-485 adapter is unplugged or has another name; its lockers cannot open", b.Device)
		case err != nil:
			d.add(checkFail, name, "%v", err)
		case fi.Mode()&fs.ModeCharDevice == 0:
			d.add(checkFail, name, "%s is not a character device", b.Device)
		case !access(b.Device, true, true):
			d.add(checkWarn, name, "%s", noAccess(b.Device, "readable and writable"))
		default:
			d.add(checkOK, name, "RS-485 bus %s (%s) is readable and writable", b.Device, describeFile(b.Device))
		}
	}
}

func (d *doctor) inputs(cfg *config.Config) {
	for _, in := range cfg.Inputs {
		name := "input " + in.Name
		switch in.Type {
		case config.InputTerminal:
			d.add(checkOK, name, "terminal input: reads kioskd's controlling terminal")
			continue
		case config.InputMatrixKeypad:
			d.add(checkOK, name, "matrix keypad on %s (see its gpio check)", in.Chip)
			continue
		}
		write := in.Type != config.InputEvdev // evdev is only read
		want := "readable and writable"
		if !write {
			want = "readable"
		}
		fi, err := os.Stat(in.Device)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			d.add(checkFail, name, "%s (%s) does not exist: unplugged, or another device name? kioskd retries it and reports it disconnected", in.Device, in.Type)
		case err != nil:
			d.add(checkFail, name, "%v", err)
		case fi.Mode()&fs.ModeCharDevice == 0:
			d.add(checkFail, name, "%s is not a character device", in.Device)
		case !access(in.Device, true, write):
			d.add(checkWarn, name, "%s", noAccess(in.Device, want))
		default:
			d.add(checkOK, name, "%s %s (%s) is %s", in.Type, in.Device, describeFile(in.Device), want)
		}
	}
}

// secretFile checks a secret file with read (the config's reader, e.g.
// ReadSiteKey) and its mode.
func (d *doctor) secretFile(name, path string, read func() error) {
	err := read()
	switch {
	case errors.Is(err, fs.ErrPermission):
		d.add(checkWarn, name, "%s", noAccess(path, "readable")+"; secret files are root-only")
		return
	case errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(path, "/run/credentials/"):
		d.add(checkWarn, name, "%s does not exist: systemd makes credential files only while kioskd runs; run doctor with kioskd running", path)
		return
	case err != nil:
		d.add(checkFail, name, "%v", err)
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		d.add(checkWarn, name, "%s is readable by every user (mode %04o); make it 0600", path, fi.Mode().Perm())
		return
	}
	d.add(checkOK, name, "%s is valid", path)
}

func (d *doctor) secrets(cfg *config.Config) {
	d.secretFile("site key", cfg.Portal.SiteKeyFile, func() error { _, err := cfg.ReadSiteKey(); return err })
	if cfg.Portal.URL != "" {
		d.secretFile("token", cfg.Portal.TokenFile, func() error { _, err := cfg.ReadToken(); return err })
	}
	if cfg.Portal.TLSCertFile != "" {
		d.secretFile("push tls", cfg.Portal.TLSKeyFile, func() error {
			_, err := tls.LoadX509KeyPair(cfg.Portal.TLSCertFile, cfg.Portal.TLSKeyFile)
			return err
		})
	}
}

func (d *doctor) clock() {
	synced := d.synced
	if synced == nil {
		synced = sysclock.Synced
	}
	if synced() {
		d.add(checkOK, "clock", "system clock synchronised")
	} else {
		d.add(checkWarn, "clock", "system clock not synchronised (no NTP yet?): kioskd decides with the later of the clock and its floor; check timedatectl")
	}
}

func (d *doctor) portal(ctx context.Context, cfg *config.Config, timeout time.Duration) {
	if cfg.Portal.URL == "" {
		d.add(checkOK, "portal", "none configured: the kiosk runs offline and takes documents from files")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Portal.URL, nil)
	if err != nil {
		d.add(checkFail, "portal", "%s: %v", cfg.Portal.URL, err)
		return
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		d.add(checkFail, "portal", "%s does not answer: %v", cfg.Portal.URL, err)
		return
	}
	resp.Body.Close()
	d.add(checkOK, "portal", "%s answers (HTTP %d)", cfg.Portal.URL, resp.StatusCode)
}

// api checks kioskd's socket and reports whether kioskd answers.
func (d *doctor) api(ctx context.Context, socket string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st statusReply
	if err := newClient(socket).getJSON(ctx, "/v1/status", &st); err != nil {
		d.add(checkFail, "kioskd", "%v", err)
		return false
	}
	d.add(checkOK, "kioskd", "kioskd %s answers on %s (device %s, up %s, %d credentials, %d events not yet uploaded)",
		st.Version, socket, st.DeviceID, time.Duration(st.UptimeS)*time.Second, st.Credentials, st.Backlog)
	for _, in := range st.Inputs {
		if !in.Connected {
			d.add(checkWarn, "input "+in.Name, "kioskd reports it disconnected")
		}
	}
	return true
}

// push checks that something accepts connections on push_listen.
func (d *doctor) push(cfg *config.Config, running bool, timeout time.Duration) {
	addr := cfg.Portal.PushListen
	if addr == "" || cfg.Portal.URL == "" {
		return
	}
	if !running {
		d.add(checkWarn, "push", "push_listen %s: not checked, kioskd is not running", addr)
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		d.add(checkFail, "push", "push_listen %q: %v", addr, err)
		return
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), timeout)
	if err != nil {
		d.add(checkFail, "push", "push_listen %s: nothing accepts connections: %v", addr, err)
		return
	}
	c.Close()
	d.add(checkOK, "push", "push_listen %s accepts connections", addr)
}
