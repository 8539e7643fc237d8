package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kioskd/kiosk"
)

// matrixDeadline bounds every wait of the matrix tests: generous, since
// the gpio-sim tests run under qemu's software emulation.
const matrixDeadline = 30 * time.Second

var (
	keys4x4 = []string{"123A", "456B", "789C", "*0#D"}
	keys4x3 = []string{"123", "456", "789", "*0#"}
)

func validMatrixOptions() MatrixOptions {
	return MatrixOptions{
		Name: "keypad", Chip: "gpiochip0",
		Rows: []int{0, 1, 2, 3}, Cols: []int{4, 5, 6, 7},
		Keys: keys4x4, Log: slog.New(slog.DiscardHandler),
	}
}

func TestNewMatrixValid(t *testing.T) {
	for _, tc := range []struct {
		name         string
		edit         func(o *MatrixOptions)
		wantDebounce time.Duration
		wantKeys     [][]rune
	}{
		{"4x4, default debounce", func(o *MatrixOptions) {}, DefaultMatrixDebounce,
			[][]rune{[]rune("123A"), []rune("456B"), []rune("789C"), []rune("*0#D")}},
		{"4x3", func(o *MatrixOptions) { o.Cols = []int{4, 5, 6}; o.Keys = keys4x3 }, DefaultMatrixDebounce,
			[][]rune{[]rune("123"), []rune("456"), []rune("789"), []rune("*0#")}},
		{"space is no key", func(o *MatrixOptions) { o.Keys = []string{"123 ", "456 ", "789 ", "*0# "} }, DefaultMatrixDebounce,
			[][]rune{{'1', '2', '3', 0}, {'4', '5', '6', 0}, {'7', '8', '9', 0}, {'*', '0', '#', 0}}},
		{"1x1", func(o *MatrixOptions) { o.Rows = []int{9}; o.Cols = []int{3}; o.Keys = []string{"#"} }, DefaultMatrixDebounce,
			[][]rune{{'#'}}},
		{"debounce given", func(o *MatrixOptions) { o.Debounce = 35 * time.Millisecond }, 35 * time.Millisecond, nil},
		{"debounce at the maximum", func(o *MatrixOptions) { o.Debounce = MaxMatrixDebounce }, MaxMatrixDebounce, nil},
		{"device path", func(o *MatrixOptions) { o.Chip = "/dev/gpiochip3" }, DefaultMatrixDebounce, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validMatrixOptions()
			tc.edit(&o)
			m, err := NewMatrix(o)
			if err != nil {
				t.Fatalf("NewMatrix: %v", err)
			}
			if m.Name() != "keypad" {
				t.Errorf("Name() = %q", m.Name())
			}
			if m.debounce != tc.wantDebounce {
				t.Errorf("debounce = %v, want %v", m.debounce, tc.wantDebounce)
			}
			if tc.wantKeys != nil && fmt.Sprint(m.keys) != fmt.Sprint(tc.wantKeys) {
				t.Errorf("keys = %q, want %q", m.keys, tc.wantKeys)
			}
		})
	}
}

// NewMatrix must not keep the caller's slices: a config reload that
// reuses them must not change a running keypad.
func TestNewMatrixCopiesOffsets(t *testing.T) {
	o := validMatrixOptions()
	m, err := NewMatrix(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Rows[0], o.Cols[0] = 40, 41
	if m.rows[0] != 0 || m.cols[0] != 4 {
		t.Fatalf("rows %v cols %v changed with the caller's slices", m.rows, m.cols)
	}
}

func TestNewMatrixInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(o *MatrixOptions)
		want string // in the error
	}{
		{"no name", func(o *MatrixOptions) { o.Name = "" }, "Name is empty"},
		{"no chip", func(o *MatrixOptions) { o.Chip = "" }, "Chip is empty"},
		{"no rows", func(o *MatrixOptions) { o.Rows = nil }, "Rows is empty"},
		{"no cols", func(o *MatrixOptions) { o.Cols = nil }, "Cols is empty"},
		{"too many rows", func(o *MatrixOptions) {
			o.Rows = make([]int, MaxMatrixLines+1)
			for i := range o.Rows {
				o.Rows[i] = 100 + i
			}
		}, "Rows has 17 lines, at most 16"},
		{"negative row", func(o *MatrixOptions) { o.Rows[2] = -1 }, "Rows[2] is line -1"},
		{"negative col", func(o *MatrixOptions) { o.Cols[0] = -3 }, "Cols[0] is line -3"},
		{"row twice", func(o *MatrixOptions) { o.Rows[3] = 1 }, "Rows[3] is line 1, already used by Rows[1]"},
		{"row is a col", func(o *MatrixOptions) { o.Cols[1] = 2 }, "Cols[1] is line 2, already used by Rows[2]"},
		{"keys short of rows", func(o *MatrixOptions) { o.Keys = keys4x4[:3] }, "Keys has 3 rows, Rows has 4 lines"},
		{"keys row short", func(o *MatrixOptions) { o.Keys = keys4x3 }, `Keys[0] "123" has 3 keys, Cols has 4 lines`},
		{"keys row long", func(o *MatrixOptions) { o.Keys = []string{"123A", "456B", "789CX", "*0#D"} }, `Keys[2] "789CX" has 5 keys`},
		{"lower-case a", func(o *MatrixOptions) { o.Keys = []string{"123a", "456B", "789C", "*0#D"} }, `Keys[0] "123a": 'a' (column 3) is not a keypad key`},
		{"E", func(o *MatrixOptions) { o.Keys = []string{"123A", "456B", "789C", "*0#E"} }, `'E' (column 3) is not a keypad key`},
		{"tab", func(o *MatrixOptions) { o.Keys = []string{"123A", "456B", "789C", "*0#\t"} }, `'\t' (column 3) is not a keypad key`},
		{"non-ASCII digit", func(o *MatrixOptions) { o.Keys = []string{"123A", "456B", "789C", "*٠#D"} }, `'٠' (column 1) is not a keypad key`},
		{"duplicate key", func(o *MatrixOptions) { o.Keys = []string{"123A", "455B", "789C", "*0#D"} },
			`Keys[1] "455B": '5' (column 2) is already at Keys[1] column 1`},
		{"all spaces", func(o *MatrixOptions) { o.Keys = []string{"    ", "    ", "    ", "    "} }, "maps no key"},
		{"negative debounce", func(o *MatrixOptions) { o.Debounce = -time.Millisecond }, "Debounce -1ms is negative"},
		{"debounce too long", func(o *MatrixOptions) { o.Debounce = 2 * time.Second }, "Debounce 2s is longer than 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validMatrixOptions()
			tc.edit(&o)
			m, err := NewMatrix(o)
			if err == nil {
				t.Fatalf("NewMatrix accepted %+v", o)
			}
			if m != nil {
				t.Error("NewMatrix returned a keypad with its error")
			}
			if !errors.Is(err, ErrMatrixOptions) {
				t.Errorf("error %v does not wrap ErrMatrixOptions", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if o.Name != "" && !strings.Contains(err.Error(), `"keypad"`) {
				t.Errorf("error %q does not name the input", err)
			}
		})
	}
}

func TestDecodeScan(t *testing.T) {
	for _, tc := range []struct {
		name string
		lows []uint32
		cols int
		want reading
	}{
		{"nothing", []uint32{0, 0, 0, 0}, 4, reading{}},
		{"top left", []uint32{1, 0, 0, 0}, 4, reading{keys: 1, row: 0, col: 0}},
		{"bottom right", []uint32{0, 0, 0, 8}, 4, reading{keys: 1, row: 3, col: 3}},
		{"middle", []uint32{0, 4, 0, 0}, 4, reading{keys: 1, row: 1, col: 2}},
		{"two in a row", []uint32{0, 0b0110, 0, 0}, 4, reading{keys: 2}},
		{"two in a column", []uint32{0b10, 0b10, 0, 0}, 4, reading{keys: 2}},
		{"two apart", []uint32{1, 0, 0, 0b100}, 4, reading{keys: 2}},
		{"L of three shows a fourth", []uint32{0b11, 0b11, 0, 0}, 4, reading{keys: 4}},
		{"bits beyond the columns ignored", []uint32{0b1000, 0, 0, 0}, 3, reading{}},
		{"stray high bit beside a key", []uint32{0, 0xFFFF_FF00 | 0b010, 0}, 3, reading{keys: 1, row: 1, col: 1}},
		{"one row keypad", []uint32{0b100000}, 6, reading{keys: 1, row: 0, col: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decodeScan(tc.lows, tc.cols); got != tc.want {
				t.Fatalf("decodeScan(%b, %d) = %+v, want %+v", tc.lows, tc.cols, got, tc.want)
			}
		})
	}
}

// step is one input to the debouncer in a scripted table test: an edge,
// or a scan with its reading; at is milliseconds from the start.
type step struct {
	at      int
	edge    bool
	r       reading
	want    verdict // for scans
	wantDue int     // ms; -1: none (wait for an edge)
}

func key(row, col int) reading { return reading{keys: 1, row: row, col: col} }

var ghost = reading{keys: 2}

func TestDebouncer(t *testing.T) {
	const period = 20 * time.Millisecond
	none := reading{}
	for _, tc := range []struct {
		name  string
		armed bool
		steps []step
	}{
		{"press counts after one quiet period", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(1, 1), want: verdictPending, wantDue: 20},
			{at: 20, r: key(1, 1), want: verdictKey, wantDue: -1},
		}},
		{"bounces restart the quiet period", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(0, 2), want: verdictPending, wantDue: 20},
			{at: 3, edge: true, wantDue: 23},
			{at: 7, edge: true, wantDue: 27},
			{at: 27, r: key(0, 2), want: verdictKey, wantDue: -1},
		}},
		{"scan early after a bounce waits on", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(0, 2), want: verdictPending, wantDue: 20},
			{at: 15, edge: true, wantDue: 35},
			{at: 20, r: key(0, 2), want: verdictPending, wantDue: 35},
			{at: 35, r: key(0, 2), want: verdictKey, wantDue: -1},
		}},
		{"bounce shorter than the period yields nothing", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(2, 0), want: verdictPending, wantDue: 20},
			{at: 5, edge: true, wantDue: 25},
			{at: 25, r: none, want: verdictPending, wantDue: 45},
			{at: 45, r: none, want: verdictReleased, wantDue: -1},
		}},
		{"reading seen first after the bounce", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: none, want: verdictPending, wantDue: 20}, // scanned between bounces
			{at: 2, edge: true, wantDue: 22},
			{at: 22, r: key(3, 3), want: verdictPending, wantDue: 42},
			{at: 42, r: key(3, 3), want: verdictKey, wantDue: -1},
		}},
		{"held key: one key, then nothing until released", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(1, 2), want: verdictPending, wantDue: 20},
			{at: 20, r: key(1, 2), want: verdictKey, wantDue: -1},
			// a late edge while held: rescanned, still held
			{at: 500, edge: true, wantDue: 500},
			{at: 500, r: key(1, 2), want: verdictPending, wantDue: 520},
			{at: 520, r: key(1, 2), want: verdictHeld, wantDue: -1},
			// released, then pressed again: a new key
			{at: 900, edge: true, wantDue: 900},
			{at: 900, r: none, want: verdictPending, wantDue: 920},
			{at: 920, r: none, want: verdictReleased, wantDue: -1},
			{at: 1000, edge: true, wantDue: 1000},
			{at: 1000, r: key(1, 2), want: verdictPending, wantDue: 1020},
			{at: 1020, r: key(1, 2), want: verdictKey, wantDue: -1},
		}},
		{"next key only after a debounced release", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(0, 0), want: verdictPending, wantDue: 20},
			{at: 20, r: key(0, 0), want: verdictKey, wantDue: -1},
			// released for less than the period, then another key
			{at: 100, edge: true, wantDue: 100},
			{at: 100, r: none, want: verdictPending, wantDue: 120},
			{at: 110, edge: true, wantDue: 130},
			{at: 130, r: key(0, 1), want: verdictPending, wantDue: 150},
			{at: 150, r: key(0, 1), want: verdictHeld, wantDue: -1},
		}},
		{"ghost discarded and disarms", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(0, 0), want: verdictPending, wantDue: 20},
			{at: 4, edge: true, wantDue: 24},
			{at: 24, r: ghost, want: verdictPending, wantDue: 44},
			{at: 44, r: ghost, want: verdictGhost, wantDue: -1},
			// one finger lifted: the other key does not count
			{at: 200, edge: true, wantDue: 200},
			{at: 200, r: key(0, 0), want: verdictPending, wantDue: 220},
			{at: 220, r: key(0, 0), want: verdictHeld, wantDue: -1},
			{at: 300, edge: true, wantDue: 300},
			{at: 300, r: none, want: verdictPending, wantDue: 320},
			{at: 320, r: none, want: verdictReleased, wantDue: -1},
			{at: 400, edge: true, wantDue: 400},
			{at: 400, r: key(0, 0), want: verdictPending, wantDue: 420},
			{at: 420, r: key(0, 0), want: verdictKey, wantDue: -1},
		}},
		{"key held at start does not count", false, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(2, 2), want: verdictPending, wantDue: 20},
			{at: 20, r: key(2, 2), want: verdictHeld, wantDue: -1},
		}},
		{"start released arms", false, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: none, want: verdictPending, wantDue: 20},
			{at: 20, r: none, want: verdictReleased, wantDue: -1},
			{at: 30, edge: true, wantDue: 30},
			{at: 30, r: key(2, 2), want: verdictPending, wantDue: 50},
			{at: 50, r: key(2, 2), want: verdictKey, wantDue: -1},
		}},
		{"edges before the first scan ask for it at once", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 1, edge: true, wantDue: 1},
			{at: 2, r: key(0, 3), want: verdictPending, wantDue: 22},
			{at: 22, r: key(0, 3), want: verdictKey, wantDue: -1},
		}},
		{"different key at the end starts over", true, []step{
			{at: 0, edge: true, wantDue: 0},
			{at: 0, r: key(0, 0), want: verdictPending, wantDue: 20},
			{at: 20, r: key(1, 0), want: verdictPending, wantDue: 40},
			{at: 40, r: key(1, 0), want: verdictKey, wantDue: -1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
			d := debouncer{period: period, armed: tc.armed}
			for i, s := range tc.steps {
				var due time.Time
				var v verdict
				if s.edge {
					due = d.edge(at(s.at))
				} else {
					v, due = d.scanned(at(s.at), s.r)
					if v != s.want {
						t.Fatalf("step %d (scan at %d ms, %+v): verdict %v, want %v", i, s.at, s.r, v, s.want)
					}
				}
				wantDue := time.Time{}
				if s.wantDue >= 0 {
					wantDue = at(s.wantDue)
				}
				if !due.Equal(wantDue) {
					t.Fatalf("step %d (at %d ms): next scan at %v, want %v", i, s.at, due.Sub(t0), wantDue.Sub(t0))
				}
			}
		})
	}
}

func TestEdgeSignal(t *testing.T) {
	e := newEdgeSignal()
	e.note(5)
	e.note(3) // older: newest stays 5
	e.note(9)
	e.note(7)
	if got := e.newest.Load(); got != 9 {
		t.Fatalf("newest = %d, want 9", got)
	}
	// Four notes, one pending wake-up, none blocked.
	select {
	case <-e.wake:
	default:
		t.Fatal("no wake-up pending")
	}
	select {
	case <-e.wake:
		t.Fatal("more than one wake-up pending")
	default:
	}
}

// FuzzParseKeymap: no keymap makes parseKeymap panic, and an accepted
// one has the shape asked for and only keypad keys, each once.
func FuzzParseKeymap(f *testing.F) {
	for _, s := range []string{
		"123A\n456B\n789C\n*0#D", "123\n456\n789\n*0#", "12 \n 45", "#", "", "\n", "123a", "11", "٠١\n٢٣", "\xff\xfe",
	} {
		f.Add(s, uint8(4), uint8(4))
	}
	f.Add("12\n34", uint8(2), uint8(2))
	f.Fuzz(func(t *testing.T, s string, rows, cols uint8) {
		keys := strings.Split(s, "\n")
		got, err := parseKeymap(keys, int(rows), int(cols))
		if err != nil {
			if got != nil {
				t.Fatal("keymap returned with an error")
			}
			return
		}
		if len(got) != int(rows) {
			t.Fatalf("%d rows, want %d", len(got), rows)
		}
		seen := map[rune]bool{}
		for r, row := range got {
			if len(row) != int(cols) {
				t.Fatalf("row %d has %d keys, want %d", r, len(row), cols)
			}
			for _, k := range row {
				if k == 0 {
					continue
				}
				if !isKeypadKey(k) || seen[k] {
					t.Fatalf("accepted key %q (seen before: %v)", k, seen[k])
				}
				seen[k] = true
			}
		}
		if len(seen) == 0 {
			t.Fatal("accepted a keymap without keys")
		}
	})
}

// FuzzDecodeScan: decodeScan agrees with counting every low bit.
func FuzzDecodeScan(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, uint8(4))
	f.Add([]byte{0, 4, 0, 0}, uint8(4))
	f.Add([]byte{3, 3, 0, 0}, uint8(4))
	f.Add([]byte{0xff, 0, 1}, uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, cols uint8) {
		c := int(cols%MaxMatrixLines) + 1
		lows := make([]uint32, 0, len(b)/2)
		for i := 0; i+1 < len(b); i += 2 {
			lows = append(lows, uint32(b[i])|uint32(b[i+1])<<8)
		}
		got := decodeScan(lows, c)
		want := reading{}
		for r, l := range lows {
			for col := 0; col < c; col++ {
				if l&(1<<col) != 0 {
					want.keys++
					want.row, want.col = r, col
				}
			}
		}
		if want.keys != 1 {
			want.row, want.col = 0, 0
		}
		if got != want {
			t.Fatalf("decodeScan(%b, %d) = %+v, want %+v", lows, c, got, want)
		}
	})
}

// ---- the electrical model and an in-memory keypad --------------------

// columnsLow is how a key matrix without diodes behaves: a pressed key
// joins its row and its column; a column reads low when it is joined,
// through any chain of pressed keys and floating rows and columns, to a
// row that is driven low; otherwise its pull-up holds it high.
func columnsLow(rows, cols int, pressed map[[2]int]bool, driven []bool) uint32 {
	parent := make([]int, rows+cols) // union-find: rows, then columns
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	for p, down := range pressed {
		if down {
			parent[find(p[0])] = find(rows + p[1])
		}
	}
	lowRoot := map[int]bool{}
	for r, d := range driven {
		if d {
			lowRoot[find(r)] = true
		}
	}
	var low uint32
	for c := range cols {
		if lowRoot[find(rows+c)] {
			low |= 1 << c
		}
	}
	return low
}

func TestColumnsLow(t *testing.T) {
	all := []bool{true, true, true, true}
	only := func(r int) []bool { d := make([]bool, 4); d[r] = true; return d }
	for _, tc := range []struct {
		name    string
		pressed [][2]int
		driven  []bool
		want    uint32
	}{
		{"nothing pressed", nil, all, 0},
		{"key, rows idle", [][2]int{{1, 2}}, all, 0b100},
		{"key, its row driven", [][2]int{{1, 2}}, only(1), 0b100},
		{"key, another row driven", [][2]int{{1, 2}}, only(0), 0},
		{"key, no row driven", [][2]int{{1, 2}}, make([]bool, 4), 0},
		{"L of three shows the fourth", [][2]int{{0, 0}, {0, 1}, {1, 0}}, only(1), 0b11},
		{"two in a column, other row", [][2]int{{0, 3}, {2, 3}}, only(2), 0b1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := map[[2]int]bool{}
			for _, k := range tc.pressed {
				p[k] = true
			}
			if got := columnsLow(4, 4, p, tc.driven); got != tc.want {
				t.Fatalf("columnsLow = %04b, want %04b", got, tc.want)
			}
		})
	}
}

// keymapPos finds k in keys; the test fails if it is not there.
func keymapPos(t *testing.T, keys []string, k rune) [2]int {
	t.Helper()
	for r, row := range keys {
		for c, x := range []rune(row) {
			if x == k {
				return [2]int{r, c}
			}
		}
	}
	t.Fatalf("key %q not in the keymap %q", k, keys)
	return [2]int{}
}

// fakeKeypad is an in-memory line layer with a keypad wired to it,
// following columnsLow. Changing the rows or the keys changes the
// columns at once, and each change of the columns is an edge, stamped
// like the kernel's: the scanner's own scans make edges too.
type fakeKeypad struct {
	keys []string
	base time.Time

	mu      sync.Mutex
	pressed map[[2]int]bool
	driven  []bool
	low     uint32
	edge    func(time.Duration)
	fail    error // columns and drive fail with it when set
	closed  int
}

func newFakeKeypad(keys []string) *fakeKeypad {
	f := &fakeKeypad{keys: keys, base: time.Now(), pressed: map[[2]int]bool{}}
	return f
}

// attach is the Matrix's open: rows requested driven low.
func (f *fakeKeypad) attach(edge func(time.Duration)) (matrixPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edge = edge
	f.driven = make([]bool, len(f.keys))
	for i := range f.driven {
		f.driven[i] = true
	}
	f.fail = nil
	f.updateLocked()
	return f, nil
}

func (f *fakeKeypad) nowLocked() time.Duration { return time.Since(f.base) }

func (f *fakeKeypad) updateLocked() {
	low := columnsLow(len(f.keys), len([]rune(f.keys[0])), f.pressed, f.driven)
	if low != f.low {
		f.low = low
		if f.edge != nil {
			f.edge(f.nowLocked())
		}
	}
}

func (f *fakeKeypad) set(t *testing.T, down bool, ks ...rune) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range ks {
		f.pressed[keymapPos(t, f.keys, k)] = down
	}
	f.updateLocked()
}

func (f *fakeKeypad) press(t *testing.T, ks ...rune)   { t.Helper(); f.set(t, true, ks...) }
func (f *fakeKeypad) release(t *testing.T, ks ...rune) { t.Helper(); f.set(t, false, ks...) }

func (f *fakeKeypad) drive(row int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	for i := range f.driven {
		f.driven[i] = row == idleRow || i == row
	}
	f.updateLocked()
	return nil
}

func (f *fakeKeypad) columns() (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	return f.low, nil
}

func (f *fakeKeypad) now() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nowLocked()
}

func (f *fakeKeypad) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.driven {
		f.driven[i] = false
	}
	f.edge = nil
	f.closed++
	return nil
}

// unplug makes the lines fail and fires an edge, as a vanished chip
// would wake the scanner.
func (f *fakeKeypad) unplug(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
	if f.edge != nil {
		f.edge(f.nowLocked())
	}
}

func (f *fakeKeypad) rowsDriven() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.driven...)
}

// ---- running a Matrix under test --------------------------------------

// parkLog records each time the scan loop settles to wait for an edge
// with no timer, and whether the next key would count then.
type parkLog struct {
	mu     sync.Mutex
	armed  []bool
	change chan struct{}
}

func (p *parkLog) hook(armed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = append(p.armed, armed)
	close(p.change)
	p.change = make(chan struct{})
}

func (p *parkLog) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.armed)
}

// wait waits for a park after the first `after` ones with armed as
// given, and returns the number of parks then.
func (p *parkLog) wait(t *testing.T, after int, armed bool) int {
	t.Helper()
	deadline := time.After(matrixDeadline)
	for {
		p.mu.Lock()
		for i := after; i < len(p.armed); i++ {
			if p.armed[i] == armed {
				n := len(p.armed)
				p.mu.Unlock()
				return n
			}
		}
		ch := p.change
		p.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("scan loop did not settle (armed=%v) within %v", armed, matrixDeadline)
		}
	}
}

type matrixRun struct {
	m      *Matrix
	out    chan kiosk.InputEvent
	parks  *parkLog
	cancel context.CancelFunc
	done   chan error
}

// testMatrix builds a Matrix for tests: quick back-off, no settle delay
// (a test replaces it when its keypad needs one), parks logged.
func testMatrix(t *testing.T, o MatrixOptions) *Matrix {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m, err := NewMatrix(o)
	if err != nil {
		t.Fatalf("NewMatrix: %v", err)
	}
	m.settle = func() {}
	m.backoffMin, m.backoffMax = time.Millisecond, 20*time.Millisecond
	return m
}

func runMatrix(t *testing.T, m *Matrix) *matrixRun {
	t.Helper()
	r := &matrixRun{m: m, out: make(chan kiosk.InputEvent, 64), parks: &parkLog{change: make(chan struct{})}, done: make(chan error, 1)}
	m.parked = r.parks.hook
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- m.Run(ctx, r.out) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return nil.
func (r *matrixRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(matrixDeadline):
		t.Fatal("Run did not return after cancel")
	}
}

func (r *matrixRun) event(t *testing.T) kiosk.InputEvent {
	t.Helper()
	select {
	case ev := <-r.out:
		if ev.Input != r.m.Name() {
			t.Fatalf("event %+v from input %q, want %q", ev, ev.Input, r.m.Name())
		}
		if ev.Time.IsZero() {
			t.Fatalf("event %+v has no time", ev)
		}
		return ev
	case <-time.After(matrixDeadline):
		t.Fatalf("no input event within %v", matrixDeadline)
		return kiosk.InputEvent{}
	}
}

func (r *matrixRun) expect(t *testing.T, typ kiosk.InputEventType) kiosk.InputEvent {
	t.Helper()
	ev := r.event(t)
	if ev.Type != typ {
		t.Fatalf("event %+v, want type %d", ev, typ)
	}
	return ev
}

func (r *matrixRun) expectKey(t *testing.T, k rune) {
	t.Helper()
	if ev := r.expect(t, kiosk.InputKey); ev.Key != k {
		t.Fatalf("key %q, want %q", ev.Key, k)
	}
}

// quiet fails if an event is waiting. The scan loop sends before it
// parks, so after a park anything it produced is already queued.
func (r *matrixRun) quiet(t *testing.T, why string) {
	t.Helper()
	select {
	case ev := <-r.out:
		t.Fatalf("%s: unexpected event %+v", why, ev)
	default:
	}
}

// keypad is what the behaviour tests drive: the in-memory fakeKeypad
// here, gpio-sim in matrix_linux_test.go.
type keypad interface {
	press(t *testing.T, ks ...rune)
	release(t *testing.T, ks ...rune)
}

// connected waits for InputConnected and the first settled park (nothing
// pressed), and returns the park count.
func connected(t *testing.T, r *matrixRun) int {
	t.Helper()
	r.expect(t, kiosk.InputConnected)
	return r.parks.wait(t, 0, true)
}

// typeKey presses k, expects exactly that key, waits for the loop to
// settle with k held (no timer running), releases it and waits for the
// release to be debounced. It returns the park count.
func typeKey(t *testing.T, r *matrixRun, kp keypad, k rune, parks int) int {
	t.Helper()
	kp.press(t, k)
	r.expectKey(t, k)
	parks = r.parks.wait(t, parks, false)
	r.quiet(t, fmt.Sprintf("key %q held", k))
	kp.release(t, k)
	parks = r.parks.wait(t, parks, true)
	r.quiet(t, fmt.Sprintf("key %q released", k))
	return parks
}

// The behaviour tests, shared by the in-memory keypad and gpio-sim.

func checkKeyPress(t *testing.T, r *matrixRun, kp keypad) {
	parks := connected(t, r)
	scans := r.m.scans.Load()
	kp.press(t, '5')
	r.expectKey(t, '5')
	// Held: the loop settles with no timer running, having sent one key.
	parks = r.parks.wait(t, parks, false)
	r.quiet(t, "key held")
	held := r.m.scans.Load()
	if held <= scans {
		t.Fatalf("no scan counted for the press (%d before, %d after)", scans, held)
	}
	kp.release(t, '5')
	parks = r.parks.wait(t, parks, true)
	r.quiet(t, "key released")
	// Pressed again after a release: a key again.
	typeKey(t, r, kp, '5', parks)
}

func checkGhosts(t *testing.T, r *matrixRun, kp keypad) {
	parks := connected(t, r)
	for _, g := range []struct {
		name string
		keys []rune
		lift rune // lifted first, leaving a key down; 0: none (lifting one would change no column)
	}{
		{"two in one row", []rune{'1', '2'}, '1'},
		{"two in one column", []rune{'2', '8'}, 0},
		{"two apart", []rune{'1', '9'}, '1'},
		{"L of three", []rune{'4', '5', '7'}, '5'},
	} {
		kp.press(t, g.keys...)
		parks = r.parks.wait(t, parks, false)
		r.quiet(t, g.name)
		if g.lift != 0 {
			// Lifting one finger does not enter the other key.
			kp.release(t, g.lift)
			parks = r.parks.wait(t, parks, false)
			r.quiet(t, g.name+", one key lifted")
		}
		kp.release(t, g.keys...)
		parks = r.parks.wait(t, parks, true)
		r.quiet(t, g.name+", released")
	}
	typeKey(t, r, kp, '9', parks)
}

// checkBounce: a press shorter than the debounce period yields nothing:
// the key typed next is the next event.
func checkBounce(t *testing.T, r *matrixRun, kp keypad) {
	parks := connected(t, r)
	t0 := time.Now()
	kp.press(t, '3')
	kp.release(t, '3')
	kp.press(t, '3')
	kp.release(t, '3')
	if d := time.Since(t0); d >= r.m.debounce {
		t.Fatalf("the bounce took %v, not shorter than the debounce period %v: machine too loaded for this test", d, r.m.debounce)
	}
	parks = r.parks.wait(t, parks, true)
	r.quiet(t, "after a bounce")
	typeKey(t, r, kp, '7', parks)
}

func checkSequence(t *testing.T, r *matrixRun, kp keypad, seq string) {
	parks := connected(t, r)
	for _, k := range seq {
		parks = typeKey(t, r, kp, k, parks)
	}
}

// ---- the behaviour on the in-memory keypad (runs everywhere) ---------

func fakeRun(t *testing.T, keys []string, debounce time.Duration) (*matrixRun, *fakeKeypad) {
	t.Helper()
	o := validMatrixOptions()
	o.Keys = keys
	o.Cols = o.Cols[:len([]rune(keys[0]))]
	o.Debounce = debounce
	m := testMatrix(t, o)
	f := newFakeKeypad(keys)
	m.open = f.attach
	return runMatrix(t, m), f
}

func TestMatrixFakeKeyPress(t *testing.T) {
	r, f := fakeRun(t, keys4x4, 5*time.Millisecond)
	checkKeyPress(t, r, f)
}

func TestMatrixFakeGhosts(t *testing.T) {
	r, f := fakeRun(t, keys4x4, 5*time.Millisecond)
	checkGhosts(t, r, f)
}

func TestMatrixFakeBounce(t *testing.T) {
	r, f := fakeRun(t, keys4x4, 250*time.Millisecond)
	checkBounce(t, r, f)
}

func TestMatrixFakeSequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
		seq  string
	}{
		{"4x4", keys4x4, "123456#ABCD*0789"},
		{"4x3", keys4x3, "123456#"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, f := fakeRun(t, tc.keys, 2*time.Millisecond)
			checkSequence(t, r, f, tc.seq)
		})
	}
}

// A key with no symbol (a space in the keymap) sends nothing, and counts
// as a key down.
func TestMatrixFakeUnmappedKey(t *testing.T) {
	keys := []string{"123 ", "456B", "789C", "*0#D"}
	r, f := fakeRun(t, keys, 2*time.Millisecond)
	parks := connected(t, r)
	f.mu.Lock()
	f.pressed[[2]int{0, 3}] = true
	f.updateLocked()
	f.mu.Unlock()
	parks = r.parks.wait(t, parks, false)
	r.quiet(t, "unmapped key")
	f.mu.Lock()
	f.pressed[[2]int{0, 3}] = false
	f.updateLocked()
	f.mu.Unlock()
	parks = r.parks.wait(t, parks, true)
	typeKey(t, r, f, 'B', parks)
}

// A key held when the lines are requested counts only once released and
// pressed again.
func TestMatrixFakeKeyHeldAtStart(t *testing.T) {
	o := validMatrixOptions()
	o.Debounce = 2 * time.Millisecond
	m := testMatrix(t, o)
	f := newFakeKeypad(keys4x4)
	f.press(t, '8')
	m.open = f.attach
	r := runMatrix(t, m)
	r.expect(t, kiosk.InputConnected)
	parks := r.parks.wait(t, 0, false)
	r.quiet(t, "key held at start")
	f.release(t, '8')
	parks = r.parks.wait(t, parks, true)
	typeKey(t, r, f, '8', parks)
}

// Idle costs nothing: settled, the loop waits for an edge with no timer
// (the parked hook runs only just before such a wait), and an edge that
// changes no column (a late edge of the loop's own scan) wakes it once
// without a scan.
func TestMatrixFakeIdleNoTimer(t *testing.T) {
	r, f := fakeRun(t, keys4x4, 2*time.Millisecond)
	parks := connected(t, r)
	scans, wakes := r.m.scans.Load(), r.m.wakes.Load()
	f.mu.Lock()
	f.edge(f.nowLocked()) // an edge with the columns unchanged
	f.mu.Unlock()
	parks = r.parks.wait(t, parks, true)
	if got := r.m.scans.Load(); got != scans {
		t.Errorf("an edge that changed no column caused %d scans", got-scans)
	}
	if got := r.m.wakes.Load(); got != wakes+1 {
		t.Errorf("one edge woke the loop %d times", got-wakes)
	}
	// Held key: edges that change no column cause no scan. (The loop's
	// own last scan may leave one wake-up pending, so count parks: after
	// five more parks at least four of these edges were handled.)
	f.press(t, '0')
	r.expectKey(t, '0')
	parks = r.parks.wait(t, parks, false)
	scans = r.m.scans.Load()
	for range 5 {
		f.mu.Lock()
		f.edge(f.nowLocked())
		f.mu.Unlock()
		parks = r.parks.wait(t, parks, false)
	}
	if got := r.m.scans.Load(); got != scans {
		t.Errorf("held: edges that changed no column caused %d scans", got-scans)
	}
	r.quiet(t, "held")
}

// Lines that cannot be requested: one InputDisconnected with the reason,
// retries with back-off, then InputConnected when they come back.
func TestMatrixFakeRetry(t *testing.T) {
	o := validMatrixOptions()
	o.Debounce = 2 * time.Millisecond
	m := testMatrix(t, o)
	f := newFakeKeypad(keys4x4)
	busy := errors.New("gpio chip \"gpiochip0\" request matrix rows [0 1 2 3]: device or resource busy")
	var mu sync.Mutex
	failures := 4
	m.open = func(edge func(time.Duration)) (matrixPort, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return nil, busy
		}
		return f.attach(edge)
	}
	attempts := make(chan error, 16)
	m.attempted = func(err error) {
		select {
		case attempts <- err:
		default:
		}
	}
	r := runMatrix(t, m)
	ev := r.expect(t, kiosk.InputDisconnected)
	if ev.Detail != busy.Error() {
		t.Fatalf("Detail %q, want %q", ev.Detail, busy.Error())
	}
	for i := range 5 {
		select {
		case err := <-attempts:
			if (err == nil) != (i == 4) {
				t.Fatalf("attempt %d: %v", i, err)
			}
		case <-time.After(matrixDeadline):
			t.Fatalf("attempt %d not made", i)
		}
	}
	// One Disconnected for the whole outage, then Connected.
	parks := connected(t, r)
	parks = typeKey(t, r, f, '1', parks)

	// The lines fail while running: Disconnected, then back again.
	lost := errors.New("gpio chip \"gpiochip0\" read matrix columns: no such device")
	f.unplug(lost)
	if ev := r.expect(t, kiosk.InputDisconnected); ev.Detail != lost.Error() {
		t.Fatalf("Detail %q, want %q", ev.Detail, lost.Error())
	}
	parks = r.parks.count()
	r.expect(t, kiosk.InputConnected)
	parks = r.parks.wait(t, parks, true)
	typeKey(t, r, f, '2', parks)
}

// Stopping releases the lines, rows undriven.
func TestMatrixFakeStop(t *testing.T) {
	r, f := fakeRun(t, keys4x4, 2*time.Millisecond)
	connected(t, r)
	r.stop(t)
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed != 1 {
		t.Fatalf("lines closed %d times, want 1", closed)
	}
	for i, d := range f.rowsDriven() {
		if d {
			t.Errorf("row %d still driven after Run returned", i)
		}
	}
}

// Run returns when ctx ends even while the decision loop does not read.
func TestMatrixFakeStopWhileBlocked(t *testing.T) {
	o := validMatrixOptions()
	m := testMatrix(t, o)
	f := newFakeKeypad(keys4x4)
	m.open = f.attach
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, make(chan kiosk.InputEvent)) }() // nobody reads
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(matrixDeadline):
		t.Fatal("Run blocked on a full channel after cancel")
	}
}
