package lockboard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bugst "go.bug.st/serial"

	"kioskd/hw/serial/lockboard"
	"kioskd/hw/serial/lockboard/lockboardsim"
	"kioskd/kiosk"
)

const deadline = 10 * time.Second

// Tests talk to the simulator through a link in the test's temporary
// directory, as to a /dev/serial/by-id link: after an unplug a /dev/pts
// number may be reused by another test process's pty.
func startSim(t *testing.T, o lockboardsim.Options) *lockboardsim.Sim {
	t.Helper()
	if o.Link == "" {
		o.Link = filepath.Join(t.TempDir(), "rs485")
	}
	s, err := lockboardsim.Start(o)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func simBoard(t *testing.T, s *lockboardsim.Sim, addr, channels int) *lockboardsim.Board {
	t.Helper()
	b, err := s.AddBoard(addr, channels)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testTimeout is the reply timeout of tests that expect replies: long,
// so that a loaded machine does not turn a slow reply into a failure.
const testTimeout = 500 * time.Millisecond

// fastBus opens a bus on the sim with fast polling and reconnects.
func fastBus(t *testing.T, s *lockboardsim.Sim, edit ...func(*lockboard.BusOptions)) *lockboard.Bus {
	t.Helper()
	o := lockboard.BusOptions{
		Device:       s.Path(),
		Timeout:      testTimeout,
		PollInterval: 5 * time.Millisecond,
		BackoffMin:   time.Millisecond,
		BackoffMax:   20 * time.Millisecond,
		Log:          slog.New(slog.DiscardHandler),
	}
	for _, e := range edit {
		e(&o)
	}
	bus, err := lockboard.OpenBus(o)
	if err != nil {
		t.Fatalf("OpenBus: %v", err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func board(t *testing.T, bus *lockboard.Bus, addr, channels int, opts ...lockboard.BoardOption) *lockboard.Board {
	t.Helper()
	b, err := bus.Board(addr, channels, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return c
}

func openChannels(st []bool) []int {
	var out []int
	for i, o := range st {
		if o {
			out = append(out, i+1)
		}
	}
	return out
}

func TestOpenConfirmed(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 24)
	b := board(t, fastBus(t, s), 1, 24)

	if err := b.Open(ctx(t), 5); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !sb.Door(5) || sb.Opens(5) != 1 {
		t.Fatalf("door 5 open=%v after %d open commands, want open after 1", sb.Door(5), sb.Opens(5))
	}
	want := []lockboard.Request{{Op: lockboard.OpOpen, Address: 1, Channel: 5}, {Op: lockboard.OpStatus, Address: 1}}
	if got := s.Requests(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("requests %v, want open then status %v", got, want)
	}
	if err := b.Open(ctx(t), 25); !errors.Is(err, lockboard.ErrBadChannel) {
		t.Fatalf("Open(25) on 24 channels = %v, want ErrBadChannel", err)
	}
}

// The status bits, across groups of eight and board sizes, and with
// inverted feedback wiring.
func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		channels int
		open     []int
		inverted bool
	}{
		{8, []int{2, 8}, false},
		{16, []int{1, 9, 16}, false},
		{24, []int{1, 8, 9, 17, 24}, false},
		{50, []int{1, 33, 49, 50}, false},
		{24, []int{3, 20}, true},
	} {
		t.Run(fmt.Sprintf("%dch inverted=%v", tc.channels, tc.inverted), func(t *testing.T) {
			s := startSim(t, lockboardsim.Options{})
			sb := simBoard(t, s, 3, tc.channels)
			var opts []lockboard.BoardOption
			if tc.inverted {
				opts = append(opts, lockboard.InvertedFeedback())
			}
			b := board(t, fastBus(t, s), 3, tc.channels, opts...)
			// With inverted wiring the simulator's "locked" bit reads as
			// open, so shut there means open here.
			for ch := 1; ch <= tc.channels; ch++ {
				sb.SetDoor(ch, tc.inverted)
			}
			for _, ch := range tc.open {
				sb.SetDoor(ch, !tc.inverted)
			}
			st, err := b.Status(ctx(t))
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if len(st) != tc.channels || fmt.Sprint(openChannels(st)) != fmt.Sprint(tc.open) {
				t.Fatalf("open channels %v of %d, want %v", openChannels(st), len(st), tc.open)
			}
		})
	}
}

// One fault, then the retry succeeds; the counters say what happened.
func TestFaultThenRetry(t *testing.T) {
	for _, tc := range []struct {
		fault lockboardsim.Fault
		name  string
		check func(lockboard.Stats) bool
	}{
		{lockboardsim.BadChecksum, "bad checksum", func(st lockboard.Stats) bool { return st.ChecksumErrors == 1 && st.Retries == 1 }},
		{lockboardsim.Drop, "dropped", func(st lockboard.Stats) bool { return st.Timeouts == 1 && st.Retries == 1 }},
		{lockboardsim.Late, "late", func(st lockboard.Stats) bool { return st.Timeouts == 1 && st.Retries == 1 }},
		{lockboardsim.WrongAddress, "wrong address", func(st lockboard.Stats) bool { return st.WrongAddress == 1 && st.Retries == 1 }},
		{lockboardsim.Noise, "noise", func(st lockboard.Stats) bool { return st.Timeouts == 1 && st.Retries == 1 }},
		// Garbage before a good reply costs no retry.
		{lockboardsim.Garbage, "garbage first", func(st lockboard.Stats) bool { return st.Retries == 0 && st.Transactions == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, lockboardsim.Options{})
			sb := simBoard(t, s, 1, 24)
			sb.SetDoor(7, true)
			bus := fastBus(t, s)
			b := board(t, bus, 1, 24)
			s.Inject(tc.fault)
			st, err := b.Status(ctx(t))
			if err != nil {
				t.Fatalf("Status after %s: %v (sim %+v, bus %+v)", tc.name, err, s.Stats(), bus.Stats())
			}
			if fmt.Sprint(openChannels(st)) != "[7]" {
				t.Fatalf("open channels %v, want [7]", openChannels(st))
			}
			if stats := bus.Stats(); !tc.check(stats) || stats.Failures != 0 || stats.Replies != 1 {
				t.Fatalf("stats %+v", stats)
			}
		})
	}
}

// A late reply to an open arrives during the status read that follows
// and is passed over; the open is not sent twice.
func TestLateOpenReplyIgnoredByStatus(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 24)
	b := board(t, fastBus(t, s), 1, 24)
	s.Inject(lockboardsim.Late)
	if err := b.Open(ctx(t), 2); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if sb.Opens(2) != 1 {
		t.Fatalf("%d open commands, want 1", sb.Opens(2))
	}
}

// Every attempt fails: a clear error, naming board and device, within
// the bound of (1+Retries) × Timeout.
func TestAllAttemptsFail(t *testing.T) {
	for _, tc := range []struct {
		fault lockboardsim.Fault
		want  error
	}{
		{lockboardsim.Drop, lockboard.ErrTimeout},
		{lockboardsim.BadChecksum, lockboard.ErrChecksum},
		{lockboardsim.WrongAddress, lockboard.ErrWrongAddress},
	} {
		t.Run(tc.want.Error(), func(t *testing.T) {
			s := startSim(t, lockboardsim.Options{})
			simBoard(t, s, 4, 16)
			bus := fastBus(t, s, func(o *lockboard.BusOptions) { o.Timeout = 40 * time.Millisecond; o.Retries = 2 })
			b := board(t, bus, 4, 16)
			s.Inject(tc.fault, tc.fault, tc.fault)
			begin := time.Now()
			_, err := b.Status(ctx(t))
			took := time.Since(begin)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Status = %v, want %v", err, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, "lock board 4") || !strings.Contains(msg, s.Path()) {
				t.Fatalf("error %q does not name board and device", msg)
			}
			if took < 3*40*time.Millisecond && tc.fault == lockboardsim.Drop {
				t.Fatalf("gave up after %v, before three attempts of 40ms", took)
			}
			if took > 3*40*time.Millisecond+2*time.Second {
				t.Fatalf("took %v, unbounded", took)
			}
			st := bus.Stats()
			if st.Transactions != 3 || st.Failures != 1 || st.LastError == "" || st.LastErrorTime.IsZero() {
				t.Fatalf("stats %+v, want 3 transactions and 1 failure", st)
			}
			if got := s.Stats().Requests; got != 3 {
				t.Fatalf("sim saw %d requests, want 3", got)
			}
		})
	}
}

func TestTwoBoardsOneBus(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	s1, s2 := simBoard(t, s, 1, 8), simBoard(t, s, 2, 24)
	bus := fastBus(t, s)
	b1, b2 := board(t, bus, 1, 8), board(t, bus, 2, 24)
	if _, err := bus.Board(2, 24); !errors.Is(err, lockboard.ErrDuplicateBoard) {
		t.Fatalf("second board 2 = %v, want ErrDuplicateBoard", err)
	}
	if err := b1.Open(ctx(t), 3); err != nil {
		t.Fatal(err)
	}
	if err := b2.Open(ctx(t), 20); err != nil {
		t.Fatal(err)
	}
	if !s1.Door(3) || s2.Door(3) || !s2.Door(20) {
		t.Fatal("an open reached the wrong board")
	}
	st1, err := b1.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	st2, err := b2.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(openChannels(st1), openChannels(st2)) != "[3] [20]" {
		t.Fatalf("open channels %v and %v, want [3] and [20]", openChannels(st1), openChannels(st2))
	}
	// A board nobody simulates does not answer.
	b9 := board(t, bus, 9, 8)
	if _, err := b9.Status(ctx(t)); !errors.Is(err, lockboard.ErrTimeout) {
		t.Fatalf("absent board: %v, want ErrTimeout", err)
	}
}

// Concurrent opens and polls on two boards run one transaction at a
// time: the simulator, which takes a while to answer each request, never
// sees a request before it has answered the previous one.
func TestTransactionsSerialised(t *testing.T) {
	s := startSim(t, lockboardsim.Options{ReplyDelay: 2 * time.Millisecond})
	s1, s2 := simBoard(t, s, 1, 24), simBoard(t, s, 2, 24)
	bus := fastBus(t, s)
	b1, b2 := board(t, bus, 1, 24), board(t, bus, 2, 24)
	sensor, err := b1.Sensor(24) // a poller runs alongside
	if err != nil {
		t.Fatal(err)
	}
	defer sensor.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for ch := 1; ch <= 8; ch++ {
		for _, b := range []*lockboard.Board{b1, b2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Open(ctx(t), ch); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for ch := 1; ch <= 8; ch++ {
		if !s1.Door(ch) || !s2.Door(ch) {
			t.Fatalf("channel %d not opened on both boards", ch)
		}
	}
	st := s.Stats()
	if st.Overlaps != 0 || st.Requests < 32 {
		t.Fatalf("sim stats %+v: want no overlapping requests among at least 32", st)
	}

	// The check above can fail: two requests written back to back
	// without waiting for the reply are seen as an overlap.
	t.Run("detector", func(t *testing.T) {
		s := startSim(t, lockboardsim.Options{ReplyDelay: 20 * time.Millisecond})
		simBoard(t, s, 1, 8)
		p, err := bugst.Open(s.Path(), &bugst.Mode{BaudRate: 9600})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		seen := s.Seen()
		req := lockboard.Request{Op: lockboard.OpStatus, Address: 1}.Bytes()
		if _, err := p.Write(append(req, req...)); err != nil {
			t.Fatal(err)
		}
		for s.Stats().Requests < 2 {
			select {
			case <-seen:
				seen = s.Seen()
			case <-time.After(deadline):
				t.Fatal("sim saw no requests")
			}
		}
		if s.Stats().Overlaps == 0 {
			t.Fatal("back-to-back requests not seen as an overlap")
		}
	})
}

func nextEvent(t *testing.T, ch <-chan kiosk.LineEvent) kiosk.LineEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(deadline):
		t.Fatal("no sensor event within deadline")
	}
	return kiosk.LineEvent{}
}

func TestSensorEvents(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 24)
	bus := fastBus(t, s)
	b := board(t, bus, 1, 24)
	sensor, err := b.Sensor(10)
	if err != nil {
		t.Fatal(err)
	}
	if open, err := sensor.Active(); err != nil || open {
		t.Fatalf("Active = %v, %v; want shut", open, err)
	}
	sb.SetDoor(11, true) // another channel: no event for this sensor
	sb.SetDoor(10, true)
	if ev := nextEvent(t, sensor.Events()); !ev.Active || ev.Time.IsZero() {
		t.Fatalf("event %+v, want open", ev)
	}
	if open, err := sensor.Active(); err != nil || !open {
		t.Fatalf("Active = %v, %v; want open", open, err)
	}
	sb.SetDoor(10, false)
	if ev := nextEvent(t, sensor.Events()); ev.Active {
		t.Fatalf("event %+v, want shut", ev)
	}
	// An open through the lock shows as soon as it is confirmed.
	lock, err := b.Lock(10)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Set(true); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sensor.Events()); !ev.Active {
		t.Fatalf("event %+v, want open", ev)
	}
	if err := sensor.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sensor.Events(); ok {
		t.Fatal("events channel open after Close")
	}
	if _, err := sensor.Active(); !errors.Is(err, lockboard.ErrClosed) {
		t.Fatalf("Active after Close = %v", err)
	}
}

// Polling runs only while the board has a Sensor.
func TestPollOnlyWithSensor(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	simBoard(t, s, 1, 8)
	b := board(t, fastBus(t, s), 1, 8)
	if running, _ := lockboard.Poller(b); running {
		t.Fatal("poller runs without a sensor")
	}
	s1, err := b.Sensor(1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Sensor(2)
	if err != nil {
		t.Fatal(err)
	}
	// It polls: the simulator sees status requests nobody else sends.
	for seen := s.Seen(); s.Stats().Requests < 3; seen = s.Seen() {
		select {
		case <-seen:
		case <-time.After(deadline):
			t.Fatal("no polling")
		}
	}
	s1.Close()
	if running, _ := lockboard.Poller(b); !running {
		t.Fatal("poller stopped with a sensor left")
	}
	s2.Close()
	running, done := lockboard.Poller(b)
	if running {
		t.Fatal("poller still marked running after the last sensor closed")
	}
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("poller did not return")
	}
	// A later sensor starts it again.
	s3, err := b.Sensor(3)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if running, _ := lockboard.Poller(b); !running {
		t.Fatal("poller not restarted")
	}
}

func TestLockAdapter(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 16)
	bus := fastBus(t, s)
	b := board(t, bus, 1, 16)
	if _, err := b.Lock(0); !errors.Is(err, lockboard.ErrBadChannel) {
		t.Fatalf("Lock(0) = %v", err)
	}
	lock, err := b.Lock(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Set(true); err != nil {
		t.Fatalf("Set(true): %v", err)
	}
	if !sb.Door(4) {
		t.Fatal("compartment 4 not opened")
	}
	if err := lock.Set(false); err != nil {
		t.Fatal(err)
	}

	// A jammed latch: the open is retried, then a wrapped
	// ErrNotConfirmed, within the documented bound.
	sb.Jam(5, true)
	jammed, _ := b.Lock(5)
	begin := time.Now()
	err = jammed.Set(true)
	took := time.Since(begin)
	if !errors.Is(err, lockboard.ErrNotConfirmed) || !strings.Contains(err.Error(), "channel 5") {
		t.Fatalf("jammed Set(true) = %v, want ErrNotConfirmed naming channel 5", err)
	}
	if sb.Opens(5) != lockboard.DefaultOpenAttempts {
		t.Fatalf("%d open commands, want %d", sb.Opens(5), lockboard.DefaultOpenAttempts)
	}
	if bound := bus.OpenBound(); took > bound+time.Second {
		t.Fatalf("Set(true) took %v, bound %v", took, bound)
	}
	if err := jammed.Set(false); err != nil {
		t.Fatal(err)
	}
	if err := jammed.Close(); err != nil {
		t.Fatal(err)
	}
	// The bound is what the doc says: waiting for one transaction
	// (1+Retries attempts), then OpenAttempts × (open + status).
	T := testTimeout
	if got, want := bus.OpenBound(), 3*T+2*(T+3*T); got != want {
		t.Fatalf("OpenBound = %v, want %v", got, want)
	}
}

// The device vanishes and comes back: operations fail at once with an
// error naming the device, the bus reopens it, and everything works
// again; Set(false) and Close never fail meanwhile.
func TestUnplugReplug(t *testing.T) {
	link := filepath.Join(t.TempDir(), "usb-rs485")
	s := startSim(t, lockboardsim.Options{Link: link})
	sb := simBoard(t, s, 1, 24)
	bus := fastBus(t, s)
	b := board(t, bus, 1, 24)
	lock, _ := b.Lock(6)
	if _, err := b.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}

	s.Unplug()
	_, err := b.Status(ctx(t))
	if !errors.Is(err, lockboard.ErrUnavailable) || !strings.Contains(err.Error(), link) {
		t.Fatalf("Status after unplug = %v, want ErrUnavailable naming %s", err, link)
	}
	begin := time.Now()
	err = lock.Set(true)
	if !errors.Is(err, lockboard.ErrUnavailable) || !strings.Contains(err.Error(), link) {
		t.Fatalf("Set(true) while unplugged = %v", err)
	}
	if took := time.Since(begin); took > bus.OpenBound() {
		t.Fatalf("Set(true) while unplugged took %v", took)
	}
	if err := lock.Set(false); err != nil {
		t.Fatal(err)
	}
	if st := bus.Stats(); st.Connected {
		t.Fatal("stats say connected while unplugged")
	}

	back := lockboard.Reconnected(bus)
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back:
	case <-time.After(deadline):
		t.Fatalf("bus did not reconnect: %+v", bus.Stats())
	}
	if err := lock.Set(true); err != nil {
		t.Fatalf("Set(true) after replug: %v", err)
	}
	if !sb.Door(6) {
		t.Fatal("compartment 6 not opened after replug")
	}
	if st := bus.Stats(); !st.Connected || st.Reconnects != 1 {
		t.Fatalf("stats %+v, want connected after 1 reconnect", st)
	}
}

// A sensor over an unplug: Active reports the outage, events resume
// after the replug.
func TestSensorAcrossUnplug(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 8)
	bus := fastBus(t, s)
	b := board(t, bus, 1, 8)
	sensor, err := b.Sensor(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sensor.Active(); err != nil {
		t.Fatal(err)
	}
	back := lockboard.Reconnected(bus)
	s.Unplug()
	// The first transaction after the unplug finds the device gone;
	// from then on Active reads afresh and reports the outage.
	if _, err := b.Status(ctx(t)); !errors.Is(err, lockboard.ErrUnavailable) {
		t.Fatalf("Status while unplugged = %v", err)
	}
	if _, err := sensor.Active(); !errors.Is(err, lockboard.ErrUnavailable) {
		t.Fatalf("Active while unplugged = %v, want ErrUnavailable", err)
	}
	sb.SetDoor(1, true)
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	<-back
	if ev := nextEvent(t, sensor.Events()); !ev.Active {
		t.Fatalf("event %+v, want open", ev)
	}
}

func TestOpenBusErrors(t *testing.T) {
	if _, err := lockboard.OpenBus(lockboard.BusOptions{}); !errors.Is(err, lockboard.ErrNoDevice) {
		t.Fatalf("no device: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	_, err := lockboard.OpenBus(lockboard.BusOptions{Device: missing})
	if !errors.Is(err, lockboard.ErrUnavailable) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing device: %v, want ErrUnavailable naming it", err)
	}
	if _, err := lockboard.OpenBus(lockboard.BusOptions{Device: missing, Timeout: -1}); !errors.Is(err, lockboard.ErrBadOptions) {
		t.Fatalf("negative timeout: %v", err)
	}
	s := startSim(t, lockboardsim.Options{})
	bus := fastBus(t, s)
	for _, tc := range []struct{ addr, channels int }{{-1, 8}, {256, 8}, {1, 0}, {1, lockboard.MaxChannels + 1}} {
		if _, err := bus.Board(tc.addr, tc.channels); err == nil {
			t.Errorf("Board(%d, %d) accepted", tc.addr, tc.channels)
		}
	}
}

func TestClose(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	simBoard(t, s, 1, 8)
	bus := fastBus(t, s)
	b := board(t, bus, 1, 8)
	sensor, err := b.Sensor(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sensor.Events(); ok {
		t.Fatal("sensor events open after bus Close")
	}
	if _, err := b.Status(ctx(t)); !errors.Is(err, lockboard.ErrClosed) {
		t.Fatalf("Status after Close = %v", err)
	}
	if _, err := b.Sensor(2); !errors.Is(err, lockboard.ErrClosed) {
		t.Fatalf("Sensor after Close = %v", err)
	}
	if err := bus.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// The board behind kiosk's door controller: an unlock opens the
// compartment, the contact reports it opened (not forced) and closed.
func TestDoorController(t *testing.T) {
	s := startSim(t, lockboardsim.Options{})
	sb := simBoard(t, s, 1, 24)
	b := board(t, fastBus(t, s), 1, 24)
	relay, err := b.Lock(12)
	if err != nil {
		t.Fatal(err)
	}
	contact, err := b.Sensor(12)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *kiosk.Event, 16)
	record := func(evs ...*kiosk.Event) error {
		for _, ev := range evs {
			events <- ev
		}
		return nil
	}
	now := func() (time.Time, bool) { return time.Now(), true }
	d := kiosk.NewDoor(kiosk.DoorSpec{Door: kiosk.Door{ID: "locker-12", Kind: kiosk.DoorLocker}, Relay: relay, Contact: contact},
		record, now, slog.New(slog.DiscardHandler))
	d.Start(context.Background())
	defer d.Close()

	next := func() *kiosk.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(deadline):
			t.Fatal("no door event")
			return nil
		}
	}
	if err := d.Unlock(kiosk.SourceTechnician, nil); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if ev := next(); ev.Type != kiosk.EvDoorUnlocked {
		t.Fatalf("event %s, want %s", ev.Type, kiosk.EvDoorUnlocked)
	}
	if ev := next(); ev.Type != kiosk.EvDoorOpened || ev.Detail != nil {
		t.Fatalf("event %s %v, want a plain %s", ev.Type, ev.Detail, kiosk.EvDoorOpened)
	}
	sb.SetDoor(12, false)
	if ev := next(); ev.Type != kiosk.EvDoorClosed {
		t.Fatalf("event %s, want %s", ev.Type, kiosk.EvDoorClosed)
	}
}

// BenchmarkOpenConfirm measures one confirmed open (open request, status
// read) through a real serial port on a pseudo-terminal, which adds no
// baud-rate delay: the driver's own cost.
func BenchmarkOpenConfirm(b *testing.B) {
	link := filepath.Join(b.TempDir(), "rs485")
	s, err := lockboardsim.Start(lockboardsim.Options{Link: link})
	if err != nil {
		b.Skipf("no pseudo-terminals here: %v", err)
	}
	defer s.Close()
	if _, err := s.AddBoard(1, 24); err != nil {
		b.Fatal(err)
	}
	bus, err := lockboard.OpenBus(lockboard.BusOptions{Device: link, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	bd, err := bus.Board(1, 24)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := bd.Open(context.Background(), 1); err != nil {
			b.Fatal(err)
		}
	}
}
