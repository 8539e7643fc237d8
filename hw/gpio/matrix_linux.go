package gpio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warthog618/go-gpiocdev"
	"github.com/warthog618/go-gpiocdev/uapi"
	"golang.org/x/sys/unix"
)

// cdevMatrix is the matrix keypad's line layer on the GPIO character
// device: one request for the rows (outputs, reconfigured as a scan
// walks them) and one for the columns (inputs with pull-up and edge
// events on both edges; no kernel debounce, which would also delay the
// reads of a scan).
type cdevMatrix struct {
	chip    string
	rowOffs []int
	rows    *gpiocdev.Lines
	cols    *cdevColumns

	idle    []gpiocdev.LineConfigOption   // every row output low
	sel     [][]gpiocdev.LineConfigOption // sel[i]: row i output low, the others inputs
	release []gpiocdev.LineConfigOption   // every row input (high impedance)
}

// openMatrixPort requests the rows, already driven low (idle) in the
// request itself, and the columns, whose edges go to edge with their
// kernel timestamps (CLOCK_MONOTONIC). consumer labels the lines.
func openMatrixPort(chip, consumer string, rows, cols []int, edge func(ts time.Duration)) (matrixPort, error) {
	c, err := gpiocdev.NewChip(chip, gpiocdev.WithConsumer(consumer))
	if err != nil {
		return nil, fmt.Errorf("open gpio chip %q: %w", chip, err)
	}
	defer c.Close() // requested lines live on without the chip

	zeros := make([]int, len(rows))
	r, err := c.RequestLines(rows, gpiocdev.AsOutput(zeros...))
	if err != nil {
		return nil, fmt.Errorf("gpio chip %q request matrix rows %v: %w", chip, rows, err)
	}
	k, err := requestColumns(chip, cols, consumer, edge)
	if err != nil {
		_ = r.Reconfigure(gpiocdev.WithLines(rows, gpiocdev.AsInput)) // undriven, as close leaves them
		_ = r.Close()
		return nil, fmt.Errorf("gpio chip %q request matrix columns %v: %w", chip, cols, err)
	}
	p := &cdevMatrix{
		chip: chip, rowOffs: rows, rows: r, cols: k,
		idle:    []gpiocdev.LineConfigOption{gpiocdev.WithLines(rows, gpiocdev.AsOutput(zeros...))},
		release: []gpiocdev.LineConfigOption{gpiocdev.WithLines(rows, gpiocdev.AsInput)},
	}
	for _, off := range rows {
		others := make([]int, 0, len(rows)-1)
		for _, o := range rows {
			if o != off {
				others = append(others, o)
			}
		}
		opts := []gpiocdev.LineConfigOption{gpiocdev.WithLines([]int{off}, gpiocdev.AsOutput(0))}
		if len(others) > 0 {
			opts = append(opts, gpiocdev.WithLines(others, gpiocdev.AsInput))
		}
		p.sel = append(p.sel, opts)
	}
	return p, nil
}

func (p *cdevMatrix) drive(row int) error {
	opts := p.idle
	if row != idleRow {
		opts = p.sel[row]
	}
	if err := p.rows.Reconfigure(opts...); err != nil {
		return fmt.Errorf("gpio chip %q drive matrix rows %v: %w", p.chip, p.rowOffs, err)
	}
	return nil
}

func (p *cdevMatrix) columns() (uint32, error) {
	low, err := p.cols.low()
	if err != nil {
		return 0, fmt.Errorf("gpio chip %q read matrix columns: %w", p.chip, err)
	}
	return low, nil
}

func (p *cdevMatrix) now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // cannot fail on Linux; 0 only makes more edges count
	}
	return time.Duration(ts.Nano())
}

// close releases every row to input first (see the file comment of
// matrix.go: a freed line keeps its configuration), then frees the rows
// and the columns (which waits for the edge handler to return).
func (p *cdevMatrix) close() error {
	var errs []error
	if err := p.rows.Reconfigure(p.release...); err != nil {
		errs = append(errs, fmt.Errorf("gpio chip %q release matrix rows %v to input: %w", p.chip, p.rowOffs, err))
	}
	if err := p.rows.Close(); err != nil {
		errs = append(errs, fmt.Errorf("gpio chip %q free matrix rows: %w", p.chip, err))
	}
	if err := p.cols.close(); err != nil {
		errs = append(errs, fmt.Errorf("gpio chip %q free matrix columns: %w", p.chip, err))
	}
	return errors.Join(errs...)
}

// cdevColumns are the column lines, requested through the uAPI itself
// rather than gpiocdev.Lines: gpiocdev's event watcher ignores a request
// whose chip went away (the request's fd then polls as hung up, reads
// fail, and the watcher retries at once, spinning a core and never
// telling its handler). Here a hang-up ends the watch, makes every
// later read fail with errColumnsGone, and wakes the scan loop, which
// then reports the keypad disconnected and requests the lines again.
type cdevColumns struct {
	fd     int // the line request
	stopfd int // eventfd: written to stop the watch
	n      int
	done   chan struct{}
	lost   atomic.Pointer[error]
}

// errColumnsGone is the error of reads after the column request hung
// up, normally because its chip was removed.
var errColumnsGone = errors.New("column lines hung up (gpio chip removed?)")

func requestColumns(chip string, cols []int, consumer string, edge func(ts time.Duration)) (*cdevColumns, error) {
	path := chip
	if !strings.HasPrefix(path, "/dev/") {
		path = "/dev/" + path // as gpiocdev names chips
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lr := uapi.LineRequest{Lines: uint32(len(cols))}
	for i, o := range cols {
		lr.Offsets[i] = uint32(o)
	}
	copy(lr.Consumer[:len(lr.Consumer)-1], consumer)
	lr.Config.Flags = uapi.LineFlagV2Input | uapi.LineFlagV2BiasPullUp |
		uapi.LineFlagV2EdgeRising | uapi.LineFlagV2EdgeFalling
	if err := uapi.GetLine(f.Fd(), &lr); err != nil {
		return nil, err
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(int(lr.Fd))
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	c := &cdevColumns{fd: int(lr.Fd), stopfd: stopfd, n: len(cols), done: make(chan struct{})}
	go c.watch(edge)
	return c, nil
}

// watch hands each edge's kernel timestamp to edge until stopped or the
// request hangs up. It blocks in poll(2) with no timeout in between.
func (c *cdevColumns) watch(edge func(ts time.Duration)) {
	defer close(c.done)
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.stopfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			c.hangUp(fmt.Errorf("poll column lines: %w", err), edge)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		re := fds[0].Revents
		if re&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			c.hangUp(errColumnsGone, edge)
			return
		}
		if re&unix.POLLIN != 0 {
			ev, err := uapi.ReadLineEvent(uintptr(c.fd))
			if err != nil {
				c.hangUp(fmt.Errorf("read column edge: %w", err), edge)
				return
			}
			edge(time.Duration(ev.Timestamp))
		}
	}
}

// hangUp records why the watch ended and wakes the scan loop with an
// edge later than any scan, so that it reads the columns and fails.
func (c *cdevColumns) hangUp(err error, edge func(ts time.Duration)) {
	c.lost.Store(&err)
	edge(math.MaxInt64)
}

// low returns the columns that read low: bit c for column c.
func (c *cdevColumns) low() (uint32, error) {
	if err := c.lost.Load(); err != nil {
		return 0, *err
	}
	lv := uapi.LineValues{Mask: uapi.NewLineBitMask(c.n)}
	if err := uapi.GetLineValuesV2(uintptr(c.fd), &lv); err != nil {
		return 0, err
	}
	var low uint32
	for i := range c.n {
		if lv.Get(i) == 0 {
			low |= 1 << i
		}
	}
	return low, nil
}

// close stops the watch, waits for it, and frees the lines.
func (c *cdevColumns) close() error {
	var one = [8]byte{1}
	_, werr := unix.Write(c.stopfd, one[:])
	if werr == nil {
		<-c.done
	}
	unix.Close(c.stopfd)
	if err := unix.Close(c.fd); err != nil {
		return err
	}
	return werr
}
