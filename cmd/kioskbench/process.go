package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

// ReadyResult is what MeasureReady measured.
type ReadyResult struct {
	Credentials int
	Runs        []time.Duration // exec to READY=1, one per start
}

// IdleResult is what MeasureIdle measured.
type IdleResult struct {
	Credentials  int
	Window       time.Duration
	CPU          time.Duration // utime + stime over the window
	CtxSwitches  int64         // voluntary and involuntary, all threads, over the window
	VmRSSKiB     int64         // at the end of the window
	VmHWMKiB     int64         // peak since exec
	ReadyElapsed time.Duration
}

// CPUPercent is the CPU used over the window in percent of one core.
func (r IdleResult) CPUPercent() float64 {
	return 100 * r.CPU.Seconds() / r.Window.Seconds()
}

// buildKioskd builds cmd/kioskd of the module in dir as a static binary
// (CGO off, as shipped) into out.
func buildKioskd(dir, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/kioskd")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/kioskd: %w\n%s", err, b)
	}
	return nil
}
