// Package gpio drives real GPIO lines through the Linux GPIO character
// device (go-gpiocdev): the relays, LEDs and buzzers of doors as
// kiosk.OutputLine, and door contacts and request-to-exit buttons as
// kiosk.InputLine. It is the `hardware = "gpio"` twin of kioskd/hw/sim and
// has the same shape (Chip, Chip.Output, Chip.Input), so cmd/kioskd
// switches between them in one place.
//
// Guarantees (SPEC §4):
//   - An output is requested with its inactive value set in the request
//     itself, so the kernel drives the inactive physical level from the
//     first instant: a relay never blips when kioskd starts or restarts.
//   - Close drives an output inactive before it releases the line.
//   - The active level (active_low) is applied by the kernel; callers deal
//     only in logical states.
//   - Active-low inputs (contacts and buttons switching to ground) get the
//     internal pull-up, active-high inputs the pull-down, so an unwired
//     or open contact reads inactive.
//   - Input edges (both) are debounced by the kernel and delivered as
//     kiosk.LineEvent on a buffered channel; a slow reader loses the
//     oldest events, never blocks the driver (Active stays exact).
//
// The driver needs Linux; elsewhere Open fails with ErrUnsupported.
package gpio

import (
	"errors"
	"sync"

	"kioskd/kiosk"
)

// ErrUnsupported is returned by Open on systems other than Linux, which
// have no GPIO character device.
var ErrUnsupported = errors.New("GPIO lines need Linux (GPIO character device); use hardware = \"sim\" here")

// ErrClosed is returned when a closed line is set or read, or a closed
// chip is asked for a line.
var ErrClosed = errors.New("line closed")

// ErrBadOffset is returned when a line is requested at a negative offset.
var ErrBadOffset = errors.New("negative line offset")

// ErrBadDebounce is returned when an input is requested with a negative
// debounce period.
var ErrBadDebounce = errors.New("negative debounce period")

// EventBuffer is the capacity of an Input's Events channel. When a reader
// falls that far behind, the oldest pending event is dropped to make room,
// so the kernel's event handler never blocks.
const EventBuffer = 256

// eventQueue is a buffered channel of line events with drop-oldest
// semantics: push never blocks. Only push and close touch the channel's
// send side, under mu, so a push after close is impossible.
type eventQueue struct {
	mu      sync.Mutex
	ch      chan kiosk.LineEvent
	closed  bool
	dropped uint64
}

func newEventQueue(n int) *eventQueue {
	if n < 1 {
		n = 1
	}
	return &eventQueue{ch: make(chan kiosk.LineEvent, n)}
}

// push queues ev, dropping the oldest queued event when the buffer is
// full. It reports whether an event was dropped. After close it does
// nothing.
func (q *eventQueue) push(ev kiosk.LineEvent) (dropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	for {
		select {
		case q.ch <- ev:
			return dropped
		default:
		}
		select {
		case <-q.ch:
			dropped = true
			q.dropped++
		default:
		}
	}
}

// droppedCount returns how many events were dropped so far.
func (q *eventQueue) droppedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// close closes the channel once; later calls do nothing.
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

// level is the physical level (0 or 1) of a line in a logical state.
func level(active, activeLow bool) int {
	if active != activeLow {
		return 1
	}
	return 0
}

// bias names the pull an input gets, for logs.
func bias(activeLow bool) string {
	if activeLow {
		return "pull-up"
	}
	return "pull-down"
}
