package gpio

import (
	"testing"
	"time"

	"kioskd/kiosk"
)

func ev(i int) kiosk.LineEvent {
	return kiosk.LineEvent{Active: i%2 == 0, Time: time.Unix(int64(i), 0)}
}

func TestEventQueueDropsOldest(t *testing.T) {
	const capacity = 4
	for _, tc := range []struct {
		name        string
		pushed      int
		wantFirst   int // index of the first event still queued
		wantDropped uint64
	}{
		{"under capacity", 3, 0, 0},
		{"exactly full", 4, 0, 0},
		{"one over", 5, 1, 1},
		{"far over", 100, 96, 96},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newEventQueue(capacity)
			for i := range tc.pushed {
				dropped := q.push(ev(i))
				if want := i >= capacity; dropped != want {
					t.Fatalf("push %d reported dropped=%v, want %v", i, dropped, want)
				}
			}
			if got := q.droppedCount(); got != tc.wantDropped {
				t.Errorf("dropped count = %d, want %d", got, tc.wantDropped)
			}
			q.close()
			var got []kiosk.LineEvent
			for e := range q.ch {
				got = append(got, e)
			}
			if want := tc.pushed - tc.wantFirst; len(got) != want {
				t.Fatalf("queued %d events, want %d", len(got), want)
			}
			for k, e := range got {
				if w := ev(tc.wantFirst + k); e != w {
					t.Errorf("event %d = %+v, want %+v (oldest must go first, order kept)", k, e, w)
				}
			}
		})
	}
}

// A reader that never reads must not block the pusher (the kernel's
// event handler).
func TestEventQueueNeverBlocks(t *testing.T) {
	q := newEventQueue(EventBuffer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 * EventBuffer {
			q.push(ev(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("push blocked with no reader")
	}
	if got, want := q.droppedCount(), uint64(9*EventBuffer); got != want {
		t.Errorf("dropped %d, want %d", got, want)
	}
}

// Pushes racing a reader and a close neither panic nor lose order.
func TestEventQueueConcurrentClose(t *testing.T) {
	q := newEventQueue(8)
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for i := range 1000 {
			q.push(ev(i))
		}
	}()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		last := time.Time{}
		for e := range q.ch {
			if !e.Time.After(last) {
				t.Errorf("event out of order: %v after %v", e.Time, last)
			}
			last = e.Time
		}
	}()
	<-pushed
	q.close()
	q.close() // twice is harmless
	if q.push(ev(5000)) {
		t.Error("push after close reported a drop")
	}
	select {
	case <-readerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not see the channel close")
	}
}

func TestLevel(t *testing.T) {
	for _, tc := range []struct {
		active, activeLow bool
		want              int
	}{
		{false, false, 0}, {true, false, 1}, {false, true, 1}, {true, true, 0},
	} {
		if got := level(tc.active, tc.activeLow); got != tc.want {
			t.Errorf("level(active=%v, activeLow=%v) = %d, want %d", tc.active, tc.activeLow, got, tc.want)
		}
	}
}
