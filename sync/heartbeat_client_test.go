package sync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store/storetest"
)

func (h *harness) nextHeartbeat() map[string]any {
	h.t.Helper()
	select {
	case hb := <-h.portal.hbReqs:
		return hb
	case <-time.After(waitTimeout):
		h.t.Fatal("no heartbeat")
		return nil
	}
}

func TestHeartbeat(t *testing.T) {
	started := time.Now().Add(-time.Hour)
	h := newHarness(t, func(c *Config) {
		c.Started = started
		c.Status = func() HeartbeatStatus {
			return HeartbeatStatus{
				Inputs: []InputStatus{{Name: "keypad", Type: "serial-keypad", Connected: true}},
				Doors:  []kiosk.DoorStatus{{ID: "main", Kind: kiosk.DoorRoom, RelayOn: false, Open: true}},
			}
		}
	})
	// Uploads refused, so the backlog the heartbeat reports holds still.
	h.portal.set(func() { h.portal.eventsStatus = http.StatusServiceUnavailable })
	h.preload("c-1", testCred("c-1", "246810"), testCred("c-2", "583920"))
	recordN(t, h.st, 3)
	answers := []string{
		`{"commands": [{"id": "cmd-1", "type": "unlock", "door": "main"}, {"id": "cmd-2", "type": "unlock", "door": "side"}]}`,
		`{"commands": [{"id": "cmd-1", "type": "unlock", "door": "main"}, {"id": "cmd-3", "type": "unlock", "door": "main"}], "later": 1}`,
		``,
		`{"commands": [{"id": "cmd-4"}]}`, // no type: the answer is malformed
	}
	h.portal.set(func() {
		h.portal.hbAnswer = func(n int) (int, string) { return http.StatusOK, answers[min(n, len(answers))-1] }
	})
	h.start()

	hb := h.nextHeartbeat()
	keys := make([]string, 0, len(hb))
	for k := range hb {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"backlog", "clock_synced", "credentials", "cursor", "device_id", "doors", "inputs", "uptime_s", "version"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("heartbeat fields %v, want %v", keys, want)
	}
	up, _ := hb["uptime_s"].(float64)
	if up < 3600 || up > 3600+waitTimeout.Seconds() || up != float64(int64(up)) {
		t.Errorf("uptime_s = %v, want whole seconds since start (3600 or a little more)", hb["uptime_s"])
	}
	want := map[string]any{
		"device_id": testDevice, "version": "1.2.3", "uptime_s": up, "cursor": "c-1",
		"credentials": float64(2), "backlog": float64(3), "clock_synced": true,
		"inputs": []any{map[string]any{"name": "keypad", "type": "serial-keypad", "connected": true}},
		"doors":  []any{map[string]any{"id": "main", "kind": "room", "relay_on": false, "open": true}},
	}
	if !reflect.DeepEqual(hb, want) {
		t.Errorf("heartbeat\n got %v\nwant %v", hb, want)
	}
	h.wantWait("heartbeat", time.Second).Fire() // the first answer is handled
	h.nextHeartbeat()
	h.nextWait("heartbeat").Fire()
	h.nextHeartbeat() // empty answer
	w := h.nextWait("heartbeat")
	if got := h.drainCmds(); !reflect.DeepEqual(got, []string{"cmd-1", "cmd-2", "cmd-3"}) {
		t.Errorf("commands run %v, want cmd-1, cmd-2, cmd-3 once each", got)
	}
	if st := h.s.Status(); st.LastHeartbeat.IsZero() || st.HeartbeatError != "" {
		t.Errorf("status after an empty answer: %+v", st)
	}
	w.Fire()
	h.nextHeartbeat() // malformed answer
	h.nextWait("heartbeat")
	if st := h.s.Status(); !strings.Contains(st.HeartbeatError, "id and type are required") {
		t.Errorf("status after a malformed answer: %+v", st)
	}
	if got := h.drainCmds(); len(got) != 0 {
		t.Errorf("commands of a malformed answer ran: %v", got)
	}
}

// TestCommandsAtMostOnceAcrossRestart: a command id recorded by one
// syncer does not run again in the next one on the same store; and a
// command id is recorded before it runs, so one that crashed the kiosk
// does not run again either.
func TestCommandsAtMostOnceAcrossRestart(t *testing.T) {
	h := newHarness(t)
	dir := h.st.Dir()
	ctx := context.Background()
	var crashed bool
	h.cfg.RunCommand = func(ctx context.Context, c Command) error {
		if c.ID == "cmd-crash" {
			crashed = true
			return errors.New("power cut")
		}
		h.cmds <- c
		return nil
	}
	s1 := h.newSyncer(h.st)
	s1.RunCommands(ctx, []Command{{ID: "cmd-1", Type: CommandUnlock, Door: "main"}, {ID: "cmd-crash", Type: CommandUnlock}, {ID: "cmd-1", Type: CommandUnlock}})
	if !crashed {
		t.Fatal("cmd-crash did not run")
	}
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := storetest.OpenDir(t, dir)
	s2 := h.newSyncer(st2)
	s2.RunCommands(ctx, []Command{{ID: "cmd-1", Type: CommandUnlock}, {ID: "cmd-crash", Type: CommandUnlock}, {ID: "cmd-2", Type: CommandUnlock}})
	if got := h.drainCmds(); !reflect.DeepEqual(got, []string{"cmd-1", "cmd-2"}) {
		t.Errorf("commands run %v, want cmd-1 and cmd-2 once", got)
	}
}

// TestUnauthorized: a portal that refuses the token is logged as such and
// backed off by every loop; nothing crashes and the token is never logged.
func TestUnauthorized(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Token = "wrong-token" })
	recordN(t, h.st, 2)
	h.start()
	// Pull back-off: 1 s doubling, capped at SyncInterval × 10.
	for _, d := range []time.Duration{1, 2, 4, 8, 10, 10} {
		h.wantWait("pull", d*time.Second).Fire()
	}
	h.wantWait("upload", time.Second).Fire()
	h.wantWait("upload", 2*time.Second)
	h.wantWait("heartbeat", time.Second)
	st := h.s.Status()
	for _, e := range []string{st.LastError, st.UploadError, st.HeartbeatError} {
		if !strings.Contains(e, "401") || !strings.Contains(e, "token") {
			t.Errorf("error %q does not say the token was refused", e)
		}
	}
	if st.Failures < 6 || st.Backlog != 2 {
		t.Errorf("status %+v", st)
	}
	h.stop()
	logs := h.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "portal refused the device token") {
		t.Errorf("logs do not say the token was refused:\n%s", logs)
	}
	if strings.Contains(logs, "wrong-token") {
		t.Errorf("the token is in the log")
	}
	h.portal.mu.Lock()
	if h.portal.badAuth == 0 {
		t.Error("the portal saw no refused token")
	}
	h.portal.mu.Unlock()
}

// TestRunStopsPromptly: cancelling Run ends it while a request hangs.
func TestRunStopsPromptly(t *testing.T) {
	h := newHarness(t)
	hung := make(chan struct{})
	h.portal.set(func() {
		h.portal.onSync = func(w http.ResponseWriter, r *http.Request) {
			close(hung)
			<-r.Context().Done()
		}
	})
	h.start()
	select {
	case <-hung:
	case <-time.After(waitTimeout):
		t.Fatal("no pull")
	}
	h.stop() // fails the test if Run does not return
	if err := h.s.Run(context.Background()); err == nil {
		t.Error("a second Run: no error")
	}
}

func TestNewSyncerChecksConfig(t *testing.T) {
	good := func() Config {
		return Config{URL: "https://portal.example.com/kiosk", DeviceID: testDevice, Token: "t",
			PublicKey: testPriv().Public().(ed25519.PublicKey), SpoolDir: filepath.Join(t.TempDir(), "spool")}
	}
	st := StoreSyncer(storetest.Open(t))
	if _, err := NewSyncer(good(), st); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"http to another host", func(c *Config) { c.URL = "http://portal.example.com" }},
		{"no scheme", func(c *Config) { c.URL = "portal.example.com" }},
		{"ftp", func(c *Config) { c.URL = "ftp://portal.example.com" }},
		{"query", func(c *Config) { c.URL = "https://portal.example.com/?x=1" }},
		{"no device", func(c *Config) { c.DeviceID = "" }},
		{"no token", func(c *Config) { c.Token = "" }},
		{"short key", func(c *Config) { c.PublicKey = c.PublicKey[:31] }},
		{"no spool", func(c *Config) { c.SpoolDir = "" }},
		{"negative interval", func(c *Config) { c.SyncInterval = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			if _, err := NewSyncer(c, st); err == nil {
				t.Error("no error")
			}
		})
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:80"} {
		c := good()
		c.URL = u
		if _, err := NewSyncer(c, st); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
