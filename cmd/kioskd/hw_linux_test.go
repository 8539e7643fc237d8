package main

// kioskd with hardware = "gpio" against the kernel's gpio-sim (SPEC §4):
// the relay, contact, exit button, buzzer and LEDs of doors are real
// lines of a simulated chip, driven through the GPIO character device.
// These tests need gpio-sim and configfs, which build machines lack: they
// skip here and run in the VM of `make test-hw` (scripts/test-hw.sh),
// whose KIOSKD_HW=require turns the skip into a failure.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warthog618/go-gpiosim"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
)

// Lines of the simulated chip.
const (
	hwRelay       = 0 // door main, active low
	hwContact     = 1 // door main, active high (open = high)
	hwExit        = 2 // door main, active low (pressed = low)
	hwBuzzer      = 3
	hwLEDGreen    = 4
	hwLEDRed      = 5
	hwLockerRelay = 6 // door locker-1, active high
	hwSpare       = 7 // requested by nobody
)

// hwPulse is door main's pulse; long enough to measure on a slow VM.
const hwPulse = 400 * time.Millisecond

func newGPIOSim(t *testing.T, lines int) *gpiosim.Simpleton {
	t.Helper()
	return hwtest.GPIOSim(t, lines)
}

func simLevelOf(t *testing.T, s *gpiosim.Simpleton, line int) int {
	t.Helper()
	v, err := s.Level(line)
	if err != nil {
		t.Fatalf("gpio-sim level of line %d: %v", line, err)
	}
	return v
}

func simPull(t *testing.T, s *gpiosim.Simpleton, line, v int) {
	t.Helper()
	if err := s.SetPull(line, v); err != nil {
		t.Fatalf("gpio-sim pull line %d to %d: %v", line, v, err)
	}
}

// waitLevel polls a simulated line until it reads want and returns when
// it did; gpio-sim announces output changes nowhere a test can listen.
func waitLevel(t *testing.T, s *gpiosim.Simpleton, line, want int) time.Time {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if simLevelOf(t, s, line) == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("line %d did not read %d within %v", line, want, wait)
		}
	}
}

func TestHWGPIODoors(t *testing.T) {
	s := newGPIOSim(t, 8)
	chip := s.ChipName()
	// The relay board's own pull-up holds an active-low relay off while
	// no one drives the line (before kioskd starts and after it stops).
	simPull(t, s, hwRelay, 1)

	h := newHarness(t, harnessOpts{hardware: "gpio", doors: fmt.Sprintf(`
[[door]]
id              = "main"
relay           = { chip = %[1]q, line = %[2]d, active_low = true }
pulse           = %[9]q
contact         = { chip = %[1]q, line = %[3]d }
exit_button     = { chip = %[1]q, line = %[4]d, active_low = true }
buzzer          = { chip = %[1]q, line = %[5]d }
led_green       = { chip = %[1]q, line = %[6]d }
led_red         = { chip = %[1]q, line = %[7]d }
held_open_after = "1h"

[[door]]
id    = "locker-1"
kind  = "locker"
relay = { chip = %[1]q, line = %[8]d }
pulse = "150ms"
`, chip, hwRelay, hwContact, hwExit, hwBuzzer, hwLEDGreen, hwLEDRed, hwLockerRelay, hwPulse.String())})

	// Requested inactive: the active-low relay reads high, the locker's
	// active-high relay low, and no one touched the spare line.
	for line, want := range map[int]int{hwRelay: 1, hwLockerRelay: 0, hwBuzzer: 0, hwLEDGreen: 0, hwLEDRed: 0, hwSpare: 0} {
		if got := simLevelOf(t, s, line); got != want {
			t.Errorf("after start, line %d reads %d, want %d", line, got, want)
		}
	}

	h.applyFull("c-1", testNow.Add(-time.Hour), nil, pinCred("c-1", "246810", nil))

	t.Run("grant pulses exactly the door's relay for its pulse length", func(t *testing.T) {
		typeKeys(t, h.keypad, "246810")
		on := waitLevel(t, s, hwRelay, 0) // energised: active low
		if d := h.decision("keypad"); d.Reason != kiosk.Granted {
			t.Fatalf("decision %+v, want granted", d)
		}
		if got := simLevelOf(t, s, hwLockerRelay); got != 0 {
			t.Errorf("locker relay reads %d during main's pulse", got)
		}
		off := waitLevel(t, s, hwRelay, 1)
		if got := simLevelOf(t, s, hwLockerRelay); got != 0 {
			t.Errorf("locker relay reads %d after main's pulse", got)
		}
		// The pulse is measured from the poll that saw it on to the poll
		// that saw it off: never shorter than the pulse (less the
		// poll's granularity), and bounded (a slow VM adds latency).
		if held := off.Sub(on); held < hwPulse-50*time.Millisecond || held > hwPulse+2*time.Second {
			t.Errorf("relay held %v, want about %v", held, hwPulse)
		}
		e := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
		if e.Door != "main" || e.Source != kiosk.SourceCredential {
			t.Errorf("unlock event %+v", e)
		}
	})

	t.Run("denied entry leaves every relay off and shows red", func(t *testing.T) {
		typeKeys(t, h.keypad, "999999")
		if d := h.decision("keypad"); d.Reason != kiosk.Unknown {
			t.Fatalf("decision %+v, want unknown", d)
		}
		waitLevel(t, s, hwLEDRed, 1)
		if simLevelOf(t, s, hwRelay) != 1 || simLevelOf(t, s, hwLockerRelay) != 0 {
			t.Error("a relay is energised after a denial")
		}
		waitLevel(t, s, hwLEDRed, 0) // the pattern ends by itself
	})

	t.Run("contact opened without an unlock is forced, then closed", func(t *testing.T) {
		simPull(t, s, hwContact, 1)
		h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorOpened && e.Door == "main" })
		h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorForced && e.Door == "main" })
		simPull(t, s, hwContact, 0)
		h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorClosed && e.Door == "main" })
	})

	t.Run("exit button pulses the relay", func(t *testing.T) {
		simPull(t, s, hwExit, 0) // pressed: active low
		e := h.waitEvent(func(e kiosk.Event) bool { return e.Type == kiosk.EvDoorUnlocked })
		if e.Door != "main" || e.Source != kiosk.SourceExitButton {
			t.Errorf("unlock event %+v, want main by exit_button", e)
		}
		waitLevel(t, s, hwRelay, 0)
		simPull(t, s, hwExit, 1)
		waitLevel(t, s, hwRelay, 1)
	})

	t.Run("stop releases every relay inactive", func(t *testing.T) {
		h.stop()
		if got := simLevelOf(t, s, hwRelay); got != 1 {
			t.Errorf("after stop the active-low relay reads %d, want 1 (off)", got)
		}
		if got := simLevelOf(t, s, hwLockerRelay); got != 0 {
			t.Errorf("after stop the locker relay reads %d, want 0 (off)", got)
		}
	})
}

// TestHWIdleWithMatrixKeypad runs the kioskd binary (KIOSKD_BIN in the
// VM; built here otherwise) with hardware = "gpio", a door relay and a 4×4
// matrix keypad on gpio-sim, waits until the keypad is connected, and
// reads the process's CPU time over an idle window from /proc. The
// keypad waits on column edges, so idle costs next to nothing; the test
// fails only on what a busy poll would cost (a tenth of a core), and logs
// the figure (SPEC §8: below 1 % of one core) for docs/benchmarks.md.
func TestHWIdleWithMatrixKeypad(t *testing.T) {
	s := newGPIOSim(t, 9)
	chip := s.ChipName()
	bin := os.Getenv("KIOSKD_BIN")
	if bin == "" {
		bin = buildKioskd(t)
	}
	dir := t.TempDir()
	siteKey := filepath.Join(dir, "site.key")
	if err := os.WriteFile(siteKey, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(apiSocketDir(t), "kioskd.sock")
	cfg := filepath.Join(dir, "kioskd.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
device_id = "spr-idle"
state_dir = %q
hardware  = "gpio"

[portal]
site_key_file = %q

[[input]]
name = "matrix"
type = "matrix-keypad"
chip = %q
rows = [1, 2, 3, 4]
cols = [5, 6, 7, 8]
keys = ["123A", "456B", "789C", "*0#D"]

[[door]]
id    = "main"
relay = { chip = %q, line = 0, active_low = true }

[api]
socket = %q
`, filepath.Join(dir, "state"), siteKey, chip, chip, socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, cfg)
	p.waitLog("kioskd serving", 1)
	hc := apiHTTPClient(socket)
	waitFor(t, "matrix keypad connected", p.lines, func() bool {
		resp, err := hc.Get("http://kioskd/v1/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st statusReply
		if json.NewDecoder(resp.Body).Decode(&st) != nil {
			return false
		}
		return len(st.Inputs) == 1 && st.Inputs[0].Connected
	})
	hc.CloseIdleConnections()

	pid := p.cmd.Process.Pid
	window := 10 * time.Second
	cpu0, sw0 := procCPU(t, pid)
	start := time.Now()
	idle := time.NewTimer(window) // the window measured, not a wait for a result
	select {
	case <-idle.C:
	case <-p.done:
		t.Fatalf("kioskd exited while idle: %v", p.err)
	}
	cpu1, sw1 := procCPU(t, pid)
	elapsed := time.Since(start)
	share := float64(cpu1-cpu0) / float64(elapsed)
	t.Logf("IDLE kioskd with a 4x4 matrix keypad on gpio-sim: %.3f %% of one core (%v CPU in %v), %d context switches",
		100*share, cpu1-cpu0, elapsed.Round(time.Millisecond), sw1-sw0)
	if share > 0.10 {
		t.Errorf("idle kioskd used %.1f %% of a core: something polls", 100*share)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Errorf("kioskd exit: %v", err)
	}
}

// procCPU returns a process's CPU time (user + system, from
// /proc/PID/stat at clock-tick resolution) and its context switches.
func procCPU(t *testing.T, pid int) (time.Duration, int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sw := 0
	for _, line := range strings.Split(string(st), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			sw += n
		}
	}
	return time.Duration(utime+stime) * time.Second / ticks, sw
}
