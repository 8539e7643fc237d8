package gpio

// The matrix keypad of SPEC §3: a kiosk.Input that scans a row × column
// key matrix wired to GPIO lines.
//
// Wiring and electrical choices:
//   - Rows are driven by the scanner, columns are inputs with the internal
//     pull-up and edge events on both edges. A pressed key joins its row
//     to its column, so a column reads low when a pressed key connects it
//     to a row that is driven low.
//   - Idle, every row is driven low: any key press pulls its column low
//     and the kernel reports the edge. Nothing runs while no column
//     changes: no polling, no timer (SPEC §8: idle below 1 % of a core).
//   - A scan drives one row low at a time and releases the others (input,
//     high impedance) rather than driving them high: with two keys of one
//     column pressed, a row driven high would be shorted to the row driven
//     low through the two switches. Released, it just floats.
//   - When Run ends, every row is released to input (high impedance)
//     before the lines are freed: a freed line keeps its last
//     configuration on most GPIO controllers, and rows left driven low
//     would sink current through any key held down for as long as the
//     system runs, and fight whatever next drives those pins.
//
// Decisions (all in the pure functions below, table-tested):
//   - A scan that shows exactly one key, the same at the start and the end
//     of a debounce period with no column edge in the last period, yields
//     one kiosk.InputKey. A key held down yields nothing more (no
//     auto-repeat); the next key counts only after a stable scan showed
//     every key released.
//   - A scan showing two or more keys is discarded (ghosting: without
//     diodes, three keys in an L show a fourth that is not pressed, and two
//     keys at once are ambiguous anyway). It is logged at Debug, and no
//     kiosk.InputRejected is sent: that event is journalled and uploaded
//     to the portal, and a finger brushing two keys is ordinary use, not
//     garbage worth an audit record. A discarded scan also disarms, like a
//     held key: lifting one of two fingers does not enter the other key.
//   - A key held when the lines are requested (start, reconnect) is
//     treated as held: it does not count until it has been released.
//   - A scan moves the columns itself. Edges stamped by the kernel
//     (CLOCK_MONOTONIC) before the scan ended are its own and ignored; a
//     real change during a scan shows as a difference between the columns
//     read before and after it. Settled (idle or key held), an edge that
//     leaves the columns as they were wakes the loop once and scans
//     nothing, so no edge can start a cycle of scans.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync/atomic"
	"time"

	"kioskd/kiosk"
)

// ErrMatrixOptions is returned (wrapped, naming the field) by NewMatrix
// when the options describe no usable keypad.
var ErrMatrixOptions = errors.New("invalid matrix keypad options")

// DefaultMatrixDebounce is the debounce period of a matrix keypad whose
// MatrixOptions.Debounce is zero (SPEC §3).
const DefaultMatrixDebounce = 20 * time.Millisecond

// MaxMatrixDebounce is the longest debounce period NewMatrix accepts; a
// longer one would make the keypad feel dead.
const MaxMatrixDebounce = time.Second

// MaxMatrixLines is the most rows, and the most columns, a matrix keypad
// may have.
const MaxMatrixLines = 16

// matrixBackoffMax caps the wait between two attempts to request the
// lines again after a failure.
const matrixBackoffMax = 30 * time.Second

// matrixBackoffMin is the wait before the first new attempt.
const matrixBackoffMin = 100 * time.Millisecond

// matrixSettle is how long the scanner waits after changing the rows
// before it reads the columns: the column's pull-up (tens of kΩ) has to
// charge the wiring's capacitance (tens to a few hundred pF) back to
// high, a few microseconds; 100 µs leaves a wide margin and still scans a
// 4×4 keypad in well under a millisecond of waiting.
const matrixSettle = 100 * time.Microsecond

// MatrixOptions configure a matrix keypad.
type MatrixOptions struct {
	// Name is the input's configured name, carried by every event and
	// keying its lockout. Required.
	Name string
	// Chip is the GPIO chip of all the lines, "gpiochip0" or
	// "/dev/gpiochip0". Required.
	Chip string
	// Rows are the offsets of the row lines, which the scanner drives,
	// top row first. Required, at most MaxMatrixLines.
	Rows []int
	// Cols are the offsets of the column lines, read with the internal
	// pull-up, left column first. Required, at most MaxMatrixLines, none
	// shared with Rows.
	Cols []int
	// Keys is the keymap: one string per row, of one rune per column,
	// each '0'-'9', '*', '#' or 'A'-'D', such as
	// {"123A", "456B", "789C", "*0#D"} or {"123", "456", "789", "*0#"}.
	// A space marks a position with no key: a press there is ignored but
	// still counts as a key being down (it disarms, and with another key
	// it is ghosting). Each key may appear once. Required.
	Keys []string
	// Debounce is how long a reading must hold, with no column edge,
	// before it counts. 0 means DefaultMatrixDebounce (20 ms); at most
	// MaxMatrixDebounce.
	Debounce time.Duration
	// Log receives connection changes and discarded scans (never which
	// key was pressed); nil means slog.Default().
	Log *slog.Logger
}

// Matrix is a matrix keypad on GPIO lines (SPEC §3). It implements
// kiosk.Input, emitting kiosk.InputKey for each key press and
// kiosk.InputConnected / kiosk.InputDisconnected as its lines come and go.
type Matrix struct {
	name     string
	chip     string
	rows     []int
	cols     []int
	keys     [][]rune // keys[row][col]; 0 for no key
	debounce time.Duration
	log      *slog.Logger

	// Seams for tests; NewMatrix sets the production values.
	open       func(edge func(ts time.Duration)) (matrixPort, error)
	settle     func()           // after each change of the rows
	now        func() time.Time // debounce clock and event times
	backoffMin time.Duration
	backoffMax time.Duration
	parked     func(armed bool) // nil, or called before each wait for an edge with no deadline
	attempted  func(err error)  // nil, or called after each attempt to request the lines

	scans atomic.Uint64 // scans done, for tests and measurements
	wakes atomic.Uint64 // times the scan loop woke up
}

var _ kiosk.Input = (*Matrix)(nil)

// NewMatrix checks the options and returns the keypad; it opens nothing
// (Run requests the lines). Invalid options give an error wrapping
// ErrMatrixOptions that names the field.
func NewMatrix(o MatrixOptions) (*Matrix, error) {
	if o.Name == "" {
		return nil, fmt.Errorf("matrix keypad: Name is empty: %w", ErrMatrixOptions)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("matrix keypad %q: %s: %w", o.Name, fmt.Sprintf(format, args...), ErrMatrixOptions)
	}
	if o.Chip == "" {
		return nil, bad("Chip is empty")
	}
	if err := checkOffsets(o.Rows, o.Cols); err != nil {
		return nil, bad("%v", err)
	}
	keys, err := parseKeymap(o.Keys, len(o.Rows), len(o.Cols))
	if err != nil {
		return nil, bad("%v", err)
	}
	switch {
	case o.Debounce < 0:
		return nil, bad("Debounce %v is negative", o.Debounce)
	case o.Debounce > MaxMatrixDebounce:
		return nil, bad("Debounce %v is longer than %v", o.Debounce, MaxMatrixDebounce)
	case o.Debounce == 0:
		o.Debounce = DefaultMatrixDebounce
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m := &Matrix{
		name:       o.Name,
		chip:       o.Chip,
		rows:       append([]int(nil), o.Rows...),
		cols:       append([]int(nil), o.Cols...),
		keys:       keys,
		debounce:   o.Debounce,
		log:        o.Log.With("input", o.Name, "chip", o.Chip),
		settle:     func() { time.Sleep(matrixSettle) },
		now:        time.Now,
		backoffMin: matrixBackoffMin,
		backoffMax: matrixBackoffMax,
	}
	m.open = func(edge func(time.Duration)) (matrixPort, error) {
		return openMatrixPort(m.chip, "kioskd "+m.name, m.rows, m.cols, edge)
	}
	return m, nil
}

// Name returns the input's configured name.
func (m *Matrix) Name() string { return m.name }

// checkOffsets checks the row and column line offsets.
func checkOffsets(rows, cols []int) error {
	seen := map[int]string{}
	for _, side := range []struct {
		field string
		offs  []int
	}{{"Rows", rows}, {"Cols", cols}} {
		switch {
		case len(side.offs) == 0:
			return fmt.Errorf("%s is empty", side.field)
		case len(side.offs) > MaxMatrixLines:
			return fmt.Errorf("%s has %d lines, at most %d", side.field, len(side.offs), MaxMatrixLines)
		}
		for i, off := range side.offs {
			where := fmt.Sprintf("%s[%d]", side.field, i)
			if off < 0 {
				return fmt.Errorf("%s is line %d: %w", where, off, ErrBadOffset)
			}
			if prev, ok := seen[off]; ok {
				return fmt.Errorf("%s is line %d, already used by %s", where, off, prev)
			}
			seen[off] = where
		}
	}
	return nil
}

// isKeypadKey reports whether r is a key a keypad may send (SPEC §3).
func isKeypadKey(r rune) bool {
	return r >= '0' && r <= '9' || r == '*' || r == '#' || r >= 'A' && r <= 'D'
}

// parseKeymap checks keys against a matrix of rows × cols and returns it
// as keys[row][col], with 0 where the keymap has a space (no key).
func parseKeymap(keys []string, rows, cols int) ([][]rune, error) {
	if len(keys) != rows {
		return nil, fmt.Errorf("Keys has %d rows, Rows has %d lines", len(keys), rows)
	}
	type pos struct{ row, col int }
	seen := map[rune]pos{}
	out := make([][]rune, rows)
	for r, s := range keys {
		row := []rune(s)
		if len(row) != cols {
			return nil, fmt.Errorf("Keys[%d] %q has %d keys, Cols has %d lines", r, s, len(row), cols)
		}
		for c, k := range row {
			if k == ' ' {
				row[c] = 0
				continue
			}
			if !isKeypadKey(k) {
				return nil, fmt.Errorf("Keys[%d] %q: %q (column %d) is not a keypad key (0-9, *, #, A-D, or a space for none)", r, s, k, c)
			}
			if p, dup := seen[k]; dup {
				return nil, fmt.Errorf("Keys[%d] %q: %q (column %d) is already at Keys[%d] column %d", r, s, k, c, p.row, p.col)
			}
			seen[k] = pos{r, c}
		}
		out[r] = row
	}
	if len(seen) == 0 {
		return nil, errors.New("Keys maps no key (all spaces)")
	}
	return out, nil
}

// reading is what one scan of the matrix saw.
type reading struct {
	keys     int // keys seen down: 0, 1, or more (ghosting)
	row, col int // the key, when keys == 1
}

// decodeScan turns one scan into a reading: lows[r] has bit c set when
// column c read low while row r alone was driven. Bits at or above cols
// are ignored.
func decodeScan(lows []uint32, cols int) reading {
	mask := uint32(1)<<cols - 1
	var r reading
	for row, l := range lows {
		l &= mask
		if l == 0 {
			continue
		}
		r.keys += bits.OnesCount32(l)
		r.row, r.col = row, bits.TrailingZeros32(l)
	}
	if r.keys != 1 {
		r.row, r.col = 0, 0
	}
	return r
}

// verdict is what the debouncer made of a scan.
type verdict int

const (
	// verdictPending: the reading has not held for the debounce period
	// yet; scan again at the time given.
	verdictPending verdict = iota
	// verdictReleased: stable, no key down; the next key will count.
	verdictReleased
	// verdictKey: stable, one key newly down: report it.
	verdictKey
	// verdictHeld: stable, one key down that does not count (already
	// reported, or not released since the last key or ghost).
	verdictHeld
	// verdictGhost: stable, several keys down: discarded.
	verdictGhost
)

func (v verdict) String() string {
	switch v {
	case verdictPending:
		return "pending"
	case verdictReleased:
		return "released"
	case verdictKey:
		return "key"
	case verdictHeld:
		return "held"
	case verdictGhost:
		return "ghost"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// debouncer decides, from column edges and scans with their times, when a
// reading is stable and whether it is a new key. It is pure: the caller
// supplies the times, so it is tested without a clock.
//
// A change is debounced like this: the first edge asks for a scan at once
// (the candidate); every later edge restarts the quiet period; when the
// period has passed with no edge, a scan equal to the candidate is stable,
// one that differs becomes the new candidate and waits another period.
type debouncer struct {
	period time.Duration

	armed     bool // every key was seen released (stable) since the last key or ghost
	busy      bool // a change is being debounced
	haveCand  bool // cand holds the first scan of this change
	cand      reading
	quietFrom time.Time // when cand was taken, or the last edge after it
}

// edge notes a column edge (a change seen while no scan was running) at
// now and returns when to scan next.
func (d *debouncer) edge(now time.Time) time.Time {
	if !d.busy {
		d.busy, d.haveCand = true, false
		return now
	}
	if now.After(d.quietFrom) {
		d.quietFrom = now
	}
	if !d.haveCand {
		return now
	}
	return d.quietFrom.Add(d.period)
}

// scanned takes the reading of a scan done at now and returns the
// verdict and, when pending, when to scan again (zero: wait for an edge).
func (d *debouncer) scanned(now time.Time, r reading) (verdict, time.Time) {
	if !d.busy || !d.haveCand || r != d.cand {
		d.busy, d.haveCand, d.cand, d.quietFrom = true, true, r, now
		return verdictPending, now.Add(d.period)
	}
	if due := d.quietFrom.Add(d.period); now.Before(due) {
		return verdictPending, due
	}
	d.busy, d.haveCand = false, false
	switch {
	case r.keys == 0:
		d.armed = true
		return verdictReleased, time.Time{}
	case r.keys > 1:
		d.armed = false
		return verdictGhost, time.Time{}
	case d.armed:
		d.armed = false
		return verdictKey, time.Time{}
	default:
		return verdictHeld, time.Time{}
	}
}

// matrixPort is the line layer under the scanner: the rows as outputs,
// the columns as inputs with pull-ups and edge events. matrix_linux.go
// implements it with go-gpiocdev; tests add an in-memory keypad.
type matrixPort interface {
	// drive drives row (an index into the rows) low and releases the
	// others; idleRow drives every row low.
	drive(row int) error
	// columns returns the columns that read low: bit c for column c.
	columns() (uint32, error)
	// now returns the time on the clock of the edge timestamps.
	now() time.Duration
	// close releases every row (high impedance), then every line.
	close() error
}

// idleRow, given to matrixPort.drive, drives every row low.
const idleRow = -1

// edgeSignal carries column edges from the line layer's event handler to
// the scan loop: the newest edge's timestamp, and a wake-up that never
// blocks the handler.
type edgeSignal struct {
	newest atomic.Int64 // nanoseconds on the port's clock
	wake   chan struct{}
}

func newEdgeSignal() *edgeSignal { return &edgeSignal{wake: make(chan struct{}, 1)} }

// note records an edge at ts; it never blocks.
func (e *edgeSignal) note(ts time.Duration) {
	for {
		old := e.newest.Load()
		if int64(ts) <= old || e.newest.CompareAndSwap(old, int64(ts)) {
			break
		}
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run scans the keypad until ctx is done and returns nil then. It sends
// kiosk.InputConnected once the lines are requested; when they cannot be
// requested or fail, it sends kiosk.InputDisconnected (once per outage,
// with the reason) and tries again with back-off (100 ms doubling to
// 30 s). It never gives up while ctx lives.
func (m *Matrix) Run(ctx context.Context, out chan<- kiosk.InputEvent) error {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	delay := m.backoffMin
	down := false // an outage has been reported and not yet ended
	// backOff reports the outage err (once) and waits delay; false when
	// ctx ended first.
	backOff := func(err error, msg string) bool {
		if down {
			m.log.Debug("matrix keypad still unavailable", "err", err, "retry_in", delay)
		} else {
			down = true
			m.log.Warn(msg, "err", err, "retry_in", delay)
			if !m.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputDisconnected, Detail: err.Error()}) {
				return false
			}
		}
		retry.Reset(delay)
		delay = min(delay*2, m.backoffMax)
		select {
		case <-retry.C:
			return true
		case <-ctx.Done():
			return false
		}
	}

	for ctx.Err() == nil {
		sig := newEdgeSignal()
		p, err := m.open(sig.note)
		if m.attempted != nil {
			m.attempted(err)
		}
		if err != nil {
			if !backOff(err, "matrix keypad unavailable; retrying") {
				return nil
			}
			continue
		}

		down = false
		m.log.Info("matrix keypad connected", "rows", m.rows, "cols", m.cols)
		start := m.now()
		keys := 0
		if m.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputConnected}) {
			keys, err = m.session(ctx, p, sig, out)
		}
		if cerr := p.close(); cerr != nil {
			m.log.Warn("matrix keypad: releasing the lines failed", "err", cerr)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil { // cannot happen: a session ends early only on an error
			err = errors.New("scan loop ended")
		}
		// A session that read keys or lasted a while restarts the
		// back-off; one that fails at once keeps doubling it, so a
		// flapping chip cannot flood the journal.
		if keys > 0 || m.now().Sub(start) >= m.backoffMax {
			delay = m.backoffMin
		}
		if !backOff(err, "matrix keypad failed; requesting the lines again") {
			return nil
		}
	}
	return nil
}

// session runs the scan loop on requested lines until ctx is done (nil)
// or the lines fail. keys counts the keys reported.
func (m *Matrix) session(ctx context.Context, p matrixPort, sig *edgeSignal, out chan<- kiosk.InputEvent) (keys int, err error) {
	var (
		db       = debouncer{period: m.debounce}
		lows     = make([]uint32, len(m.rows))
		scanEnd  time.Duration // port time after the last scan's own edges
		idleLows uint32        // columns low at the end of the last scan
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()

	m.settle() // the columns' pull-ups were just applied
	due := db.edge(m.now())
	for {
		now := m.now()
		if !due.IsZero() && !now.Before(due) {
			r, pre, post, end, err := m.scan(p, lows)
			if err != nil {
				return keys, err
			}
			scanEnd, idleLows = end, post
			now = m.now()
			var v verdict
			v, due = db.scanned(now, r)
			switch v {
			case verdictKey:
				k := m.keys[r.row][r.col]
				if k == 0 {
					m.log.Debug("matrix keypad: key with no symbol in the keymap; ignored")
					break
				}
				keys++
				if !m.send(ctx, out, kiosk.InputEvent{Type: kiosk.InputKey, Key: k}) {
					return keys, nil
				}
			case verdictGhost:
				m.log.Debug("matrix keypad: several keys down at once (ghosting); scan discarded", "keys", r.keys)
			}
			if pre != post {
				// The keys changed while the rows were being scanned;
				// the edges of that change were taken for the scan's
				// own and ignored.
				due = db.edge(now)
			}
			continue
		}

		var tick <-chan time.Time
		if due.IsZero() {
			if m.parked != nil {
				m.parked(db.armed)
			}
		} else {
			timer.Reset(due.Sub(now))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return keys, nil
		case <-tick:
			m.wakes.Add(1)
		case <-sig.wake:
			m.wakes.Add(1)
			timer.Stop()
			if sig.newest.Load() <= int64(scanEnd) {
				continue // only the last scan's own edges
			}
			if due.IsZero() {
				// Settled: only a change of the columns matters. An
				// edge that left them as they were (a bounce already
				// over, or a late edge of a scan) is no change.
				l, err := p.columns()
				if err != nil {
					return keys, err
				}
				if l == idleLows {
					continue
				}
				idleLows = l
			}
			due = db.edge(m.now())
		}
	}
}

// scan reads the whole matrix, one row at a time, and leaves every row
// driven low again. pre and post are the columns low with every row
// driven, before and after; end is the port's time once the rows were
// back and had settled, so that edges stamped up to then are the scan's
// own.
func (m *Matrix) scan(p matrixPort, lows []uint32) (r reading, pre, post uint32, end time.Duration, err error) {
	m.scans.Add(1)
	if pre, err = p.columns(); err != nil {
		return r, 0, 0, 0, err
	}
	if pre == 0 {
		// No column is low with every row driven: no key is down, and
		// the rows need not move.
		return reading{}, 0, 0, p.now(), nil
	}
	for i := range lows {
		if err = p.drive(i); err != nil {
			return r, 0, 0, 0, err
		}
		m.settle()
		if lows[i], err = p.columns(); err != nil {
			return r, 0, 0, 0, err
		}
	}
	if err = p.drive(idleRow); err != nil {
		return r, 0, 0, 0, err
	}
	m.settle()
	end = p.now()
	if post, err = p.columns(); err != nil {
		return r, 0, 0, 0, err
	}
	return decodeScan(lows, len(m.cols)), pre, post, end, nil
}

// send delivers ev stamped with the input's name and time; false when ctx
// ended first.
func (m *Matrix) send(ctx context.Context, out chan<- kiosk.InputEvent, ev kiosk.InputEvent) bool {
	ev.Input = m.name
	ev.Time = m.now()
	return kiosk.SendInput(ctx, out, ev)
}
