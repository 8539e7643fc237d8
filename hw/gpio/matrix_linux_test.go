package gpio

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warthog618/go-gpiocdev"
	"github.com/warthog618/go-gpiosim"
	"golang.org/x/sys/unix"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
)

// The gpio-sim chip of newSim has 8 lines: rows on 0-3, columns on 4-7.
var (
	simRows = []int{0, 1, 2, 3}
	simCols = []int{4, 5, 6, 7}
)

// simKeypad is a keypad wired to a gpio-sim chip. It follows the rows as
// the scanner drives them, reading each row line's direction and level
// from the kernel, and sets each column's pull as the pressed keys would
// pull it (columnsLow). The scanner's settle hook calls apply after every
// change of the rows, so each read of the columns sees the keypad's
// answer to the rows as they are: no timing is involved.
type simKeypad struct {
	s    *gpiosim.Simpleton
	info *gpiocdev.Chip // for line info only
	keys []string
	rows []int
	cols []int

	mu      sync.Mutex
	pressed map[[2]int]bool
}

func newSimKeypad(t *testing.T, s *gpiosim.Simpleton, keys []string) *simKeypad {
	t.Helper()
	c, err := gpiocdev.NewChip(s.ChipName())
	if err != nil {
		t.Fatalf("open %s for line info: %v", s.ChipName(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &simKeypad{s: s, info: c, keys: keys, rows: simRows[:len(keys)], cols: simCols[:len([]rune(keys[0]))],
		pressed: map[[2]int]bool{}}
}

// apply sets the column pulls for the keys pressed and the rows as the
// kernel has them now.
func (k *simKeypad) apply() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	driven := make([]bool, len(k.rows))
	for i, off := range k.rows {
		inf, err := k.info.LineInfo(off)
		if err != nil {
			return err
		}
		if !inf.Used || inf.Config.Direction != gpiocdev.LineDirectionOutput {
			continue // released: high impedance
		}
		lvl, err := k.s.Level(off)
		if err != nil {
			return err
		}
		driven[i] = lvl == 0
	}
	low := columnsLow(len(k.rows), len(k.cols), k.pressed, driven)
	for c, off := range k.cols {
		pull := 1
		if low&(1<<c) != 0 {
			pull = 0
		}
		if err := k.s.SetPull(off, pull); err != nil {
			return err
		}
	}
	return nil
}

func (k *simKeypad) set(t *testing.T, down bool, ks ...rune) {
	t.Helper()
	k.mu.Lock()
	for _, key := range ks {
		k.pressed[keymapPos(t, k.keys, key)] = down
	}
	k.mu.Unlock()
	if err := k.apply(); err != nil {
		t.Fatalf("sim keypad: %v", err)
	}
}

func (k *simKeypad) press(t *testing.T, ks ...rune)   { t.Helper(); k.set(t, true, ks...) }
func (k *simKeypad) release(t *testing.T, ks ...rune) { t.Helper(); k.set(t, false, ks...) }

// simMatrix runs a Matrix on a fresh gpio-sim chip with a simulated
// keypad, or skips where there is no gpio-sim.
func simMatrix(t *testing.T, keys []string, debounce time.Duration) (*matrixRun, *simKeypad, *gpiosim.Simpleton) {
	t.Helper()
	s := newSim(t)
	kp := newSimKeypad(t, s, keys)
	o := validMatrixOptions()
	o.Chip = s.ChipName()
	o.Rows, o.Cols, o.Keys, o.Debounce = kp.rows, kp.cols, keys, debounce
	m := testMatrix(t, o)
	m.settle = func() {
		if err := kp.apply(); err != nil {
			t.Errorf("sim keypad settle: %v", err)
		}
	}
	return runMatrix(t, m), kp, s
}

// The debounce of the gpio-sim tests: long against the VM's slowness, so
// that a "bounce" done in a few sysfs writes is always shorter.
const simDebounce = 100 * time.Millisecond

func TestMatrixSimKeyPress(t *testing.T) {
	r, kp, _ := simMatrix(t, keys4x4, simDebounce)
	checkKeyPress(t, r, kp)
}

func TestMatrixSimGhosts(t *testing.T) {
	r, kp, _ := simMatrix(t, keys4x4, simDebounce)
	checkGhosts(t, r, kp)
}

func TestMatrixSimBounce(t *testing.T) {
	r, kp, _ := simMatrix(t, keys4x4, time.Second)
	checkBounce(t, r, kp)
}

func TestMatrixSimSequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
	}{{"4x4", keys4x4}, {"4x3", keys4x3}} {
		t.Run(tc.name, func(t *testing.T) {
			r, kp, _ := simMatrix(t, tc.keys, 20*time.Millisecond)
			checkSequence(t, r, kp, "123456#")
		})
	}
}

// The lines as the kernel has them: rows requested driven low (idle),
// columns inputs with pull-up and both edges; after Run, rows released
// as inputs and every line free.
func TestMatrixSimLines(t *testing.T) {
	r, _, s := simMatrix(t, keys4x4, simDebounce)
	connected(t, r)
	c, err := gpiocdev.NewChip(s.ChipName())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, off := range simRows {
		inf, err := c.LineInfo(off)
		if err != nil {
			t.Fatal(err)
		}
		if !inf.Used || inf.Config.Direction != gpiocdev.LineDirectionOutput || !strings.HasPrefix(inf.Consumer, "kioskd") {
			t.Errorf("row line %d: %+v, want requested by kioskd as an output", off, inf)
		}
		if lvl := simLevel(t, s, off); lvl != 0 {
			t.Errorf("row line %d idle at level %d, want 0 (driven low)", off, lvl)
		}
	}
	for _, off := range simCols {
		inf, err := c.LineInfo(off)
		if err != nil {
			t.Fatal(err)
		}
		if !inf.Used || inf.Config.Direction != gpiocdev.LineDirectionInput ||
			inf.Config.Bias != gpiocdev.LineBiasPullUp || inf.Config.EdgeDetection != gpiocdev.LineEdgeBoth {
			t.Errorf("column line %d: %+v, want an input with pull-up and both edges", off, inf)
		}
	}
	r.stop(t)
	for _, off := range append(append([]int(nil), simRows...), simCols...) {
		inf, err := c.LineInfo(off)
		if err != nil {
			t.Fatal(err)
		}
		if inf.Used {
			t.Errorf("line %d still requested after Run returned", off)
		}
		if inf.Config.Direction != gpiocdev.LineDirectionInput {
			t.Errorf("line %d left as %v after Run returned, want input (high impedance)", off, inf.Config.Direction)
		}
	}
}

// A line held by someone else: InputDisconnected naming the line
// request, retries, and the keypad works once the line is free.
func TestMatrixSimLinesBusy(t *testing.T) {
	s := newSim(t)
	kp := newSimKeypad(t, s, keys4x4)
	c, err := gpiocdev.NewChip(s.ChipName(), gpiocdev.WithConsumer("intruder"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hold, err := c.RequestLine(simCols[2], gpiocdev.AsInput)
	if err != nil {
		t.Fatal(err)
	}
	o := validMatrixOptions()
	o.Chip, o.Rows, o.Cols, o.Debounce = s.ChipName(), simRows, simCols, simDebounce
	m := testMatrix(t, o)
	m.settle = func() {
		if err := kp.apply(); err != nil {
			t.Errorf("sim keypad settle: %v", err)
		}
	}
	// The hook runs in Run's goroutine right after a failed attempt and
	// before the next one: the rows, requested before the columns
	// failed, must have been freed, undriven, by then.
	attempts := make(chan error, 1)
	m.attempted = func(err error) {
		if err != nil {
			for _, off := range simRows {
				if inf, ierr := c.LineInfo(off); ierr != nil || inf.Used || inf.Config.Direction != gpiocdev.LineDirectionInput {
					t.Errorf("row line %d after the column request failed: %+v, %v; want free and undriven", off, inf, ierr)
				}
			}
		}
		select {
		case attempts <- err:
		default:
		}
	}
	r := runMatrix(t, m)
	ev := r.expect(t, kiosk.InputDisconnected)
	if !strings.Contains(ev.Detail, "request matrix columns") || !strings.Contains(ev.Detail, s.ChipName()) {
		t.Errorf("Detail %q does not say which request failed on which chip", ev.Detail)
	}
	// Retries, still failing.
	for range 2 {
		select {
		case err := <-attempts:
			if err == nil {
				t.Fatal("lines requested while one was held")
			}
		case <-time.After(matrixDeadline):
			t.Fatal("no retry")
		}
	}
	if err := hold.Close(); err != nil {
		t.Fatal(err)
	}
	parks := connected(t, r)
	typeKey(t, r, kp, '6', parks)
	r.stop(t) // before c closes: the hook uses it
}

// The chip goes away while the keypad runs (a USB GPIO expander
// unplugged): InputDisconnected with a reason.
func TestMatrixSimChipRemoved(t *testing.T) {
	r, _, s := simMatrix(t, keys4x4, simDebounce)
	connected(t, r)
	s.Close()
	ev := r.expect(t, kiosk.InputDisconnected)
	if ev.Detail == "" {
		t.Error("InputDisconnected without a reason")
	}
}

// A chip that does not exist: InputDisconnected with the reason once,
// retries with back-off, Run returns on cancel. Needs no gpio-sim.
func TestMatrixMissingChip(t *testing.T) {
	o := validMatrixOptions()
	o.Chip = "gpiochip-kioskd-missing"
	m := testMatrix(t, o)
	var mu sync.Mutex
	var errs []error
	got3 := make(chan struct{})
	m.attempted = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
		if len(errs) == 3 {
			close(got3)
		}
	}
	r := runMatrix(t, m)
	ev := r.expect(t, kiosk.InputDisconnected)
	if !strings.Contains(ev.Detail, `open gpio chip "gpiochip-kioskd-missing"`) {
		t.Errorf("Detail %q does not name the chip", ev.Detail)
	}
	select {
	case <-got3:
	case <-time.After(matrixDeadline):
		t.Fatal("fewer than 3 attempts")
	}
	mu.Lock()
	for i, err := range errs {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("attempt %d: %v, want fs.ErrNotExist", i, err)
		}
	}
	mu.Unlock()
	r.quiet(t, "one InputDisconnected per outage")
	r.stop(t)
}

// ---- idle cost -----------------------------------------------------------

// idleFor is how long the idle measurements watch: KIOSKD_MATRIX_IDLE
// (a Go duration) when set, else 3 s inside the hardware-test VM; on
// other machines they skip unless asked for, since they must let time
// pass: `KIOSKD_MATRIX_IDLE=10s go test -run IdleCost ./hw/gpio`, or
// `HWVM_ENV=KIOSKD_MATRIX_IDLE=10s scripts/test-hw.sh ./hw/gpio:IdleCost`.
func idleFor(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("KIOSKD_MATRIX_IDLE")
	if v == "" {
		if hwtest.Required() {
			return 3 * time.Second
		}
		t.Skip("set KIOSKD_MATRIX_IDLE=10s to measure the idle cost")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("KIOSKD_MATRIX_IDLE=%q: want a positive duration", v)
	}
	return d
}

type usage struct {
	cpu   time.Duration // user + system, whole process
	nvcsw int64         // voluntary context switches (sleeps), whole process
}

func rusage(t *testing.T) usage {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return usage{
		cpu:   time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		nvcsw: int64(ru.Nvcsw),
	}
}

// measureIdle leaves a connected, settled keypad alone for d and checks
// that the scan loop neither woke nor scanned (the property that keeps
// idle cost near zero) and logs the whole test process's CPU share (SPEC
// §8: below 1 % of a core; the figure goes to docs/benchmarks.md). The
// CPU share fails the test only at what a busy poll would cost: the
// emulated VM's own overhead under load reached 1.9 %.
func measureIdle(t *testing.T, r *matrixRun, d time.Duration) {
	t.Helper()
	connected(t, r)
	scans, wakes, u0 := r.m.scans.Load(), r.m.wakes.Load(), rusage(t)
	t0 := time.Now()
	// Letting time pass is the point here: nothing is awaited.
	<-time.After(d)
	el, u1 := time.Since(t0), rusage(t)
	ds, dw := r.m.scans.Load()-scans, r.m.wakes.Load()-wakes
	cpu := u1.cpu - u0.cpu
	share := float64(cpu) / float64(el) * 100
	t.Logf("idle %v: %d scans, %d scan-loop wake-ups, process CPU %v (%.3f %% of one core), %d voluntary context switches (whole process, Go runtime included)",
		el.Round(time.Millisecond), ds, dw, cpu, share, u1.nvcsw-u0.nvcsw)
	if ds != 0 || dw != 0 {
		t.Errorf("idle keypad scanned %d times and woke %d times", ds, dw)
	}
	if share >= 10 {
		t.Errorf("idle keypad used %.3f %% of a core: something polls", share)
	}
	r.quiet(t, "idle")
}

func TestMatrixSimIdleCost(t *testing.T) {
	d := idleFor(t)
	r, _, _ := simMatrix(t, keys4x4, DefaultMatrixDebounce)
	measureIdle(t, r, d)
}

func TestMatrixFakeIdleCost(t *testing.T) {
	d := idleFor(t)
	r, _ := fakeRun(t, keys4x4, DefaultMatrixDebounce)
	measureIdle(t, r, d)
}
