package sync

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"kioskd/kiosk"
)

// wantAllOnce checks that the portal accepted the events of seqs 1..n,
// each exactly once, and that every upload was in seq order.
func (p *fakePortal) wantAllOnce(t *testing.T, storeID string, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) != n {
		t.Errorf("portal holds %d events, want %d", len(p.events), n)
	}
	for seq := 1; seq <= n; seq++ {
		id := fmt.Sprintf("%s-%d", storeID, seq)
		if p.accepted[id] != 1 {
			t.Errorf("event %s accepted %d times, want once", id, p.accepted[id])
		}
	}
	for i, b := range p.batches {
		for j := 1; j < len(b); j++ {
			if b[j] <= b[j-1] {
				t.Errorf("upload %d not in seq order: %v", i, b)
				break
			}
		}
	}
}

// TestUploadBacklog uploads a backlog recorded before start in batches of
// at most 500, oldest first.
func TestUploadBacklog(t *testing.T) {
	h := newHarness(t)
	recordN(t, h.st, 1203)
	h.start()
	h.portal.waitAccepted(t, 1203)
	h.waitDrained()
	h.portal.wantAllOnce(t, h.st.ID(), 1203)
	h.portal.mu.Lock()
	var sizes []int
	var last uint64
	for _, b := range h.portal.batches {
		sizes = append(sizes, len(b))
		if b[0] <= last {
			t.Errorf("upload starting at seq %d after one ending at %d", b[0], last)
		}
		last = b[len(b)-1]
	}
	h.portal.mu.Unlock()
	if fmt.Sprint(sizes) != "[500 500 203]" {
		t.Errorf("batch sizes %v, want [500 500 203]", sizes)
	}
	if st := h.s.Status(); st.Backlog != 0 || st.LastUpload.IsZero() || st.UploadError != "" {
		t.Errorf("status %+v", st)
	}
}

// TestUploadPartial: events the portal does not accept are sent again,
// before newer ones, with back-off doubling from 1 s to 60 s; none is
// lost and no accepted one is sent again.
func TestUploadPartial(t *testing.T) {
	h := newHarness(t)
	const n = 3300
	recordN(t, h.st, n)
	h.portal.set(func() {
		// Refuse every third event the first time it comes.
		h.portal.accept = func(ev map[string]any, seen int) bool {
			return seen > 0 || int(ev["seq"].(float64))%3 != 0
		}
	})
	h.start()
	var waits []time.Duration
	for {
		// Either the uploader drains (all accepted) or it backs off.
		select {
		case w := <-h.waits["upload"]:
			waits = append(waits, w.d)
			w.Fire()
			continue
		case <-h.idle:
		case <-time.After(waitTimeout):
			t.Fatal("uploader neither waited nor drained")
		}
		if b, _ := h.st.Backlog(); b == 0 {
			break
		}
	}
	h.portal.wantAllOnce(t, h.st.ID(), n)
	// 3300 events, every third refused once: nine batches are partial
	// before the tenth, all resends, is accepted whole.
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v seconds", waits, want)
	}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Errorf("wait %d = %v, want %v", i, waits[i], want[i]*time.Second)
		}
	}
	h.portal.mu.Lock()
	defer h.portal.mu.Unlock()
	for id, k := range h.portal.received {
		if k > 2 {
			t.Errorf("event %s sent %d times", id, k)
		}
	}
}

// TestUploadPortalDown: while uploads fail the uploader backs off; once
// the portal is back, every event arrives, once.
func TestUploadPortalDown(t *testing.T) {
	h := newHarness(t)
	h.portal.set(func() { h.portal.eventsDown = true })
	recordN(t, h.st, 10)
	h.start()
	h.wantWait("upload", time.Second).Fire()
	recordN(t, h.st, 5) // recorded while the portal is down
	h.wantWait("upload", 2*time.Second).Fire()
	w := h.wantWait("upload", 4*time.Second)
	if st := h.s.Status(); st.UploadError == "" || st.Backlog != 15 {
		t.Errorf("status while down: %+v", st)
	}
	h.portal.set(func() { h.portal.eventsDown = false })
	w.Fire()
	h.portal.waitAccepted(t, 15)
	h.waitDrained()
	h.portal.wantAllOnce(t, h.st.ID(), 15)
}

// TestUploadPromptly: an event recorded while the portal accepts is
// uploaded within 2 s, woken by the store (SPEC §6.4).
func TestUploadPromptly(t *testing.T) {
	h := newHarness(t)
	h.start()
	select {
	case <-h.idle:
	case <-time.After(waitTimeout):
		t.Fatal("uploader not idle")
	}
	now, synced := testNow()
	ev := &kiosk.Event{Time: now.Add(123456789 * time.Nanosecond), ClockSynced: synced, Type: kiosk.EvAccessDenied, Input: "keypad", Reason: kiosk.Unknown}
	if err := h.st.Record(ev); err != nil {
		t.Fatal(err)
	}
	recorded := time.Now()
	deadline := time.After(2 * time.Second)
	for {
		h.portal.mu.Lock()
		got := h.portal.events[ev.ID]
		h.portal.mu.Unlock()
		if got != nil {
			want := map[string]any{"id": ev.ID, "seq": float64(ev.Seq), "time": "2026-11-20T11:00:00.123456789Z",
				"clock_synced": true, "type": "access.denied", "input": "keypad", "reason": "unknown"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("uploaded %v, want %v", got, want)
			}
			t.Logf("uploaded %v after recording", time.Since(recorded))
			return
		}
		select {
		case <-h.portal.evReqs:
		case <-deadline:
			t.Fatal("event not uploaded within 2 s")
		}
	}
}

// TestUploadAcksOnlyWhatWasSent: ids the portal names that were not in
// the batch are not acked, so those events are still sent.
func TestUploadAcksOnlyWhatWasSent(t *testing.T) {
	h := newHarness(t)
	recordN(t, h.st, 600)
	h.portal.set(func() {
		for seq := 501; seq <= 600; seq++ {
			h.portal.extraAccepted = append(h.portal.extraAccepted, fmt.Sprintf("%s-%d", h.st.ID(), seq))
		}
	})
	h.start()
	h.portal.waitAccepted(t, 600)
	h.waitDrained()
	h.portal.wantAllOnce(t, h.st.ID(), 600)
}

// TestUploadRetryAfter: a 429 or 503 with Retry-After is honoured when it
// is longer than the back-off.
func TestUploadRetryAfter(t *testing.T) {
	h := newHarness(t)
	n := 0
	h.portal.set(func() {
		h.portal.onEvents = func(w http.ResponseWriter) bool {
			if n++; n == 1 {
				w.Header().Set("Retry-After", "30")
				http.Error(w, "busy", http.StatusTooManyRequests)
				return true
			}
			return false
		}
	})
	recordN(t, h.st, 3)
	h.start()
	h.wantWait("upload", 30*time.Second).Fire()
	h.portal.waitAccepted(t, 3)
	h.waitDrained()
}
