package main

// Portal faults through the whole daemon (issue 6): pulls that hang and
// storms of 5xx while residents type PINs. (A portal that is down, the
// connection refused, is TestPortalDown.)

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
)

// TestPortalFaultsDoorsKeepWorking: while the portal's pulls hang and
// then answer a storm of 502s, and it refuses uploads with 503, the door
// opens for a known PIN at once (the decision path never waits on the
// portal), the failures show in the sync status, and the events of those
// grants reach the portal once it is healthy, with a credential issued
// meanwhile.
func TestPortalFaultsDoorsKeepWorking(t *testing.T) {
	tp := newTestPortal(t, "")
	h := newHarness(t, harnessOpts{portal: tp, syncInterval: "1s", heartbeatInterval: "1h"})
	c, pin := tp.issue(portal.TypePIN, 0)
	h.waitCred("PIN pulled", pin, isActive)
	relay := h.relay("main")

	release := make(chan struct{})
	var hung, stormed atomic.Int64
	tp.setRefuseUploads(true)
	tp.setSyncHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release: // the storm
			stormed.Add(1)
			http.Error(w, "<html>502 Bad Gateway</html>", http.StatusBadGateway)
		default: // accept, read, and never answer (until released)
			hung.Add(1)
			select {
			case <-r.Context().Done():
			case <-release:
				http.Error(w, "<html>502 Bad Gateway</html>", http.StatusBadGateway)
			}
		}
	}))

	h.d.Syncer.PullNow()
	waitFor(t, "a pull to hang at the portal", nil, func() bool { return hung.Load() > 0 })
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, relay, true)
	waitLine(t, relay, false)

	close(release)
	waitFor(t, "two failed pulls in the storm", nil, func() bool { return h.d.Syncer.Status().Failures >= 2 })
	if st := h.d.Syncer.Status(); !strings.Contains(st.LastError, "502") {
		t.Errorf("sync status during the storm: %+v, want the 502 in last_error", st)
	}
	h.wantDecision(pin, kiosk.Granted, c.ID)
	waitLine(t, relay, true)
	waitLine(t, relay, false)
	h.wantDecision("000000", kiosk.Unknown, "")
	if st := h.d.Syncer.Status(); st.UploadError == "" || st.Backlog == 0 {
		t.Errorf("sync status with uploads refused: %+v, want an upload error and a backlog", st)
	}
	pending, err := h.d.Store.Pending(0, 10000)
	if err != nil {
		t.Fatal(err)
	}

	// The portal recovers: a credential issued during the storm arrives,
	// and every event recorded during it is uploaded.
	c2, pin2 := tp.issue(portal.TypePIN, 0)
	tp.setSyncHandler(nil)
	tp.setRefuseUploads(false)
	h.d.Syncer.PullNow()
	h.waitCred("PIN issued during the storm pulled", pin2, isActive)
	h.wantDecision(pin2, kiosk.Granted, c2.ID)
	waitFor(t, "the events recorded during the storm at the portal", tp.uploads, func() bool {
		have := map[string]bool{}
		for _, e := range tp.events() {
			have[e.ID] = true
		}
		for _, e := range pending {
			if !have[e.ID] {
				return false
			}
		}
		return true
	})
	waitFor(t, "the failure count to reset", nil, func() bool { return h.d.Syncer.Status().Failures == 0 })
	t.Logf("pulls hung: %d, answered 502: %d; %d events waited for the portal", hung.Load(), stormed.Load(), len(pending))
}
