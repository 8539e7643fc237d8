package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// logRecords is a slog handler's output parsed back, for asserting that
// every change is logged.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

func newLog() (*logBuf, *slog.Logger) {
	lb := &logBuf{}
	return lb, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestOutputStartsInactiveAndLogsEveryChange(t *testing.T) {
	for _, tc := range []struct {
		name      string
		activeLow bool
		idleLevel float64
		onLevel   float64
	}{
		{"active high", false, 0, 1},
		{"active low", true, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb, log := newLog()
			c := NewChip("gpiochip7", log)
			o, err := c.Output(17, tc.activeLow, "door main")
			if err != nil {
				t.Fatal(err)
			}
			if o.Active() || float64(o.Level()) != tc.idleLevel {
				t.Fatalf("requested: active=%v level=%d, want inactive at level %v", o.Active(), o.Level(), tc.idleLevel)
			}
			recs := lb.records(t)
			if len(recs) != 1 || recs[0]["active"] != false || recs[0]["level"] != tc.idleLevel {
				t.Fatalf("request log = %v, want one record inactive at level %v", recs, tc.idleLevel)
			}
			for _, v := range []bool{true, true, false, true} {
				if err := o.Set(v); err != nil {
					t.Fatal(err)
				}
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			var got []bool
			for v := range o.Changes() { // closed by Close
				got = append(got, v)
			}
			want := []bool{true, false, true, false}
			if !equal(got, want) {
				t.Fatalf("changes = %v, want %v", got, want)
			}
			if o.Active() {
				t.Fatal("active after Close")
			}
			var sets []map[string]any
			for _, r := range lb.records(t) {
				if r["msg"] == "sim line set" {
					sets = append(sets, r)
				}
			}
			if len(sets) != len(want) {
				t.Fatalf("logged %d changes, want %d: %v", len(sets), len(want), sets)
			}
			for i, r := range sets {
				lvl := tc.idleLevel
				if want[i] {
					lvl = tc.onLevel
				}
				if r["chip"] != "gpiochip7" || r["line"] != float64(17) || r["consumer"] != "door main" ||
					r["active"] != want[i] || r["level"] != lvl {
					t.Errorf("log %d = %v, want chip gpiochip7 line 17 consumer door main active %v level %v", i, r, want[i], lvl)
				}
			}
			if err := o.Set(true); !errors.Is(err, ErrClosed) {
				t.Fatalf("Set after Close = %v, want ErrClosed", err)
			}
			if err := o.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
		})
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRequestConflicts(t *testing.T) {
	c := NewChip("x", slog.New(slog.DiscardHandler))
	o, err := c.Output(3, false, "relay")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Output(3, false, "again"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second output on 3 = %v, want ErrBusy", err)
	}
	if _, err := c.Input(3, false, "contact"); !errors.Is(err, ErrBusy) {
		t.Fatalf("input on taken 3 = %v, want ErrBusy", err)
	}
	if _, err := c.Input(-1, false, "bad"); !errors.Is(err, ErrBadOffset) {
		t.Fatalf("input on -1 = %v, want ErrBadOffset", err)
	}
	o.Close()
	o2, err := c.Output(3, true, "relay")
	if err != nil {
		t.Fatalf("request after Close: %v", err)
	}
	// The first line's late Close must not release the new holder.
	o.Close()
	if _, err := c.FindOutput(3); err != nil {
		t.Fatalf("new holder released by old Close: %v", err)
	}
	o2.Close()
}

func TestInputSetDeliversEvents(t *testing.T) {
	lb, log := newLog()
	b := NewBank(log)
	in, err := b.Chip("gpiochip0").Input(27, true, "door main contact")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := in.Active(); err != nil || a {
		t.Fatalf("new input Active = %v, %v; want false", a, err)
	}
	// A technician tool finds the line by (chip, offset).
	found, err := b.FindInput("gpiochip0", 27)
	if err != nil || found != in {
		t.Fatalf("FindInput = %p, %v; want %p", found, err, in)
	}
	before := time.Now()
	for _, v := range []bool{true, true, false} {
		if err := found.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{true, false} {
		select {
		case ev := <-in.Events():
			if ev.Active != want || ev.Time.Before(before) {
				t.Fatalf("event %d = %+v, want active %v at or after %v", i, ev, want, before)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
	}
	select {
	case ev := <-in.Events():
		t.Fatalf("extra event %+v for a Set that changed nothing", ev)
	default:
	}
	var changed []map[string]any
	for _, r := range lb.records(t) {
		if r["msg"] == "sim line changed" {
			changed = append(changed, r)
		}
	}
	if len(changed) != 2 || changed[0]["level"] != float64(0) || changed[1]["level"] != float64(1) {
		t.Fatalf("change log = %v; want two records, active-low levels 0 then 1", changed)
	}

	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-in.Events(); ok {
		t.Fatal("Events not closed by Close")
	}
	if err := in.Set(true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v, want ErrClosed", err)
	}
	if _, err := b.FindInput("gpiochip0", 27); !errors.Is(err, ErrNotRequested) {
		t.Fatalf("FindInput after Close = %v, want ErrNotRequested", err)
	}
}

func TestBankSharesChipsAndLists(t *testing.T) {
	b := NewBank(slog.New(slog.DiscardHandler))
	if b.Chip("a") != b.Chip("a") {
		t.Fatal("same name gave two chips")
	}
	if b.Chip("a") == b.Chip("b") {
		t.Fatal("two names gave one chip")
	}
	o, _ := b.Chip("b").Output(5, false, "relay")
	in, _ := b.Chip("a").Input(9, false, "button")
	o.Set(true)
	in.Set(true)
	got := b.Lines()
	want := []LineInfo{
		{Chip: "a", Offset: 9, Consumer: "button", Direction: DirInput, Active: true},
		{Chip: "b", Offset: 5, Consumer: "relay", Direction: DirOutput, Active: true},
	}
	if len(got) != len(want) {
		t.Fatalf("Lines = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Lines[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := b.FindOutput("nochip", 1); !errors.Is(err, ErrNotRequested) {
		t.Fatalf("FindOutput on unknown chip = %v", err)
	}
	if _, err := b.FindOutput("a", 9); !errors.Is(err, ErrNotRequested) {
		t.Fatalf("FindOutput on an input = %v", err)
	}
	if fo, err := b.FindOutput("b", 5); err != nil || fo != o {
		t.Fatalf("FindOutput = %v, %v", fo, err)
	}
}

// A reader that does not keep up never blocks the driver: the oldest
// change is dropped and the latest kept.
func TestChangesNeverBlock(t *testing.T) {
	c := NewChip("x", slog.New(slog.DiscardHandler))
	o, _ := c.Output(1, false, "relay")
	in, _ := c.Input(2, false, "contact")
	n := ChangesBuffer + 11 // odd, so the last value is true
	for i := range n {
		o.Set(i%2 == 0)
		in.Set(i%2 == 0)
	}
	if len(o.Changes()) != ChangesBuffer || len(in.Events()) != ChangesBuffer {
		t.Fatalf("buffered %d / %d, want %d", len(o.Changes()), len(in.Events()), ChangesBuffer)
	}
	var last bool
	for range ChangesBuffer {
		last = <-o.Changes()
	}
	var lastEv bool
	for range ChangesBuffer {
		lastEv = (<-in.Events()).Active
	}
	if !last || !lastEv {
		t.Fatal("latest change was dropped instead of the oldest")
	}
}

func TestConcurrentUse(t *testing.T) {
	b := NewBank(slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := b.Chip("shared")
			o, err := c.Output(g, g%2 == 0, "relay")
			if err != nil {
				t.Error(err)
				return
			}
			in, err := c.Input(100+g, false, "contact")
			if err != nil {
				t.Error(err)
				return
			}
			go func() {
				for range in.Events() {
				}
			}()
			for i := range 200 {
				o.Set(i%2 == 0)
				if f, err := b.FindInput("shared", 100+g); err == nil {
					f.Set(i%3 == 0)
				}
				b.Lines()
			}
			o.Close()
			in.Close()
		}()
	}
	wg.Wait()
	if l := b.Lines(); len(l) != 0 {
		t.Fatalf("lines left after Close: %+v", l)
	}
}
