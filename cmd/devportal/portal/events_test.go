package portal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"kioskd/kiosk"
)

// ev returns an uploaded event as a kiosk writes it.
func ev(id string, seq int, typ, cred string) map[string]any {
	m := map[string]any{"id": id, "seq": seq, "time": "2026-11-20T10:00:00.5Z", "clock_synced": true, "type": typ}
	if cred != "" {
		m["credential_id"] = cred
		m["holder_id"] = "h-1"
		m["role"] = "resident"
	}
	return m
}

func (e *env) upload(device string, evs ...any) (int, []string) {
	e.t.Helper()
	status, _, body := e.request(http.MethodPost, "/v1/devices/"+device+"/events", e.tokens[device], mustJSON(e.t, map[string]any{"events": evs}))
	var ans struct {
		Accepted []string `json:"accepted"`
	}
	if status == http.StatusOK {
		if err := json.Unmarshal(body, &ans); err != nil {
			e.t.Fatalf("answer %s: %v", body, err)
		}
	}
	return status, ans.Accepted
}

func TestEventsUpload(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice("spr-0001", "")
	e.addDevice("spr-0002", "")
	h := e.holder(kiosk.RoleResident, "Guest")
	once := e.issue(CredentialSpec{Holder: h, Type: TypeOneTime})
	three := e.issue(CredentialSpec{Holder: h, Type: TypePIN, Uses: 3})
	unlimited := e.issue(CredentialSpec{Holder: h, Type: TypePIN})
	base := e.pull("spr-0001", "", "").hdr.Cursor

	status, acc := e.upload("spr-0001",
		ev("e1", 1, kiosk.EvAccessGranted, three.Credential.ID),
		ev("e2", 2, kiosk.EvDoorUnlocked, ""),
		ev("e3", 3, kiosk.EvAccessGranted, three.Credential.ID),
		ev("e3", 3, kiosk.EvAccessGranted, three.Credential.ID), // twice in one upload
		ev("e4", 4, kiosk.EvAccessGranted, unlimited.Credential.ID),
		ev("e5", 5, kiosk.EvAccessGranted, "tok-abc"), // a signed token: not in the set
		ev("e6", 6, kiosk.EvAccessDenied, once.Credential.ID),
		map[string]any{"seq": 7, "type": "access.denied"}, // no id: not accepted
		"not an object",
	)
	if status != http.StatusOK || !slices.Equal(acc, []string{"e1", "e2", "e3", "e4", "e5", "e6"}) {
		t.Fatalf("status %d accepted %v", status, acc)
	}
	// Sent again (the kiosk lost the answer): accepted, stored once, not
	// counted twice.
	status, acc = e.upload("spr-0001", ev("e1", 1, kiosk.EvAccessGranted, three.Credential.ID), ev("e3", 3, kiosk.EvAccessGranted, three.Credential.ID))
	if status != http.StatusOK || !slices.Equal(acc, []string{"e1", "e3"}) {
		t.Fatalf("again: status %d accepted %v", status, acc)
	}
	e.upload("spr-0002", ev("e1", 1, kiosk.EvAccessGranted, three.Credential.ID), ev("k2", 2, kiosk.EvAccessGranted, once.Credential.ID))

	evs, err := e.p.Events(ctx, "spr-0001", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, raw := range evs {
		var x kiosk.Event
		if err := json.Unmarshal(raw, &x); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, x.ID)
	}
	if !slices.Equal(ids, []string{"e6", "e5", "e4", "e3", "e2", "e1"}) {
		t.Errorf("events newest first: %v", ids)
	}
	if evs, _ := e.p.Events(ctx, "spr-0001", 2); len(evs) != 2 {
		t.Errorf("limit 2: %d events", len(evs))
	}

	got := credIDs([]*page{e.pull("spr-0001", base, "")})
	if c := got[three.Credential.ID]; c == nil || c.Used["spr-0001"] != 2 || c.Used["spr-0002"] != 1 {
		t.Errorf("3-use PIN used %v, want spr-0001: 2, spr-0002: 1", c)
	}
	if c := got[once.Credential.ID]; c == nil || c.Used["spr-0002"] != 1 || c.Used["spr-0001"] != 0 {
		t.Errorf("one-time PIN used %v", c)
	}
	if c, ok := got[unlimited.Credential.ID]; ok {
		t.Errorf("an unlimited credential changed: %v", c.Used)
	}
}

func TestEventsUploadRejected(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice("spr-0001", "")
	many := make([]any, MaxEventsPerUpload+1)
	for i := range many {
		many[i] = ev(fmt.Sprint("e", i), i+1, kiosk.EvDoorClosed, "")
	}
	tests := []struct {
		name string
		body string
		want int
	}{
		{"not JSON", "events please", http.StatusBadRequest},
		{"an array", "[]", http.StatusBadRequest},
		{"too many", string(mustJSON(t, map[string]any{"events": many})), http.StatusBadRequest},
		{"too large", `{"events":["` + strings.Repeat("x", maxUploadBytes) + `"]}`, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := e.request(http.MethodPost, "/v1/devices/spr-0001/events", e.tokens["spr-0001"], []byte(tt.body))
			if status != tt.want {
				t.Errorf("status %d, want %d: %s", status, tt.want, body)
			}
		})
	}
	if evs, _ := e.p.Events(ctx, "spr-0001", 0); len(evs) != 0 {
		t.Errorf("a rejected upload stored %d events", len(evs))
	}
}
