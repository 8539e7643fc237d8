package portal

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// FuzzDeviceBodies posts arbitrary bodies, with a good device token, to
// the two device endpoints that take a body (SPEC §6.4 events, §6.6
// heartbeat) of a portal on a real bbolt file behind real HTTP: a body is
// never a 5xx (the portal's fault) but 200 or a 4xx; an events answer
// accepts only ids the body holds, and the same upload again is answered
// the same and stores nothing more (the portal de-duplicates by id).
func FuzzDeviceBodies(f *testing.F) {
	e := newEnv(f, nil)
	token := e.addDevice("spr-0001", "")
	for _, s := range []string{
		string(mustJSON(f, map[string]any{"events": []any{ev("e1", 1, "access.granted", "c-1"), ev("e2", 2, "door.unlocked", ""), "x", map[string]any{"seq": 3}}})),
		`{"events":[]}`, `{"events":null}`, `{"events":[{"id":"e1","id":"e9"},{"ID":"e3"},{"id":""}]}`, `[]`, `not json`, ``,
		`{"device_id":"spr-0001","version":"1.2.0","uptime_s":3600,"cursor":"c-1","credentials":2,"backlog":0,"clock_synced":true,` +
			`"inputs":[{"name":"keypad","type":"serial-keypad","connected":true}],"doors":[{"id":"main","kind":"room","relay_on":false,"open":false}]}`,
		`{"device_id":"spr-0002"}`, ` {} `, `{"uptime_s":"x"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, heartbeat bool) {
		e.t = t
		if heartbeat {
			status, _, ans := e.request(http.MethodPost, "/v1/devices/spr-0001/heartbeat", token, body)
			if status != http.StatusOK && (status < 400 || status >= 500) {
				t.Fatalf("heartbeat %q: %d %s", body, status, ans)
			}
			return
		}
		upload := func() (int, []string) {
			status, _, ans := e.request(http.MethodPost, "/v1/devices/spr-0001/events", token, body)
			if status != http.StatusOK {
				if status < 400 || status >= 500 {
					t.Fatalf("events %q: %d %s", body, status, ans)
				}
				return status, nil
			}
			var a struct {
				Accepted []string `json:"accepted"`
			}
			if err := json.Unmarshal(ans, &a); err != nil {
				t.Fatalf("answer %q: %v", ans, err)
			}
			return status, a.Accepted
		}
		status, accepted := upload()
		if status != http.StatusOK {
			return
		}
		// The portal reads the first JSON value of the body and ignores
		// what follows it (lenient, like most JSON APIs).
		var up uploadBody
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&up); err != nil {
			t.Fatalf("200 for a body whose first value encoding/json rejects: %v", err)
		}
		held := map[string]bool{}
		for _, raw := range up.Events {
			var head struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &head) == nil {
				held[head.ID] = true
			}
		}
		for _, id := range accepted {
			if !held[id] || id == "" {
				t.Fatalf("accepted %q, which the upload does not hold", id)
			}
		}
		stored, err := e.p.Events(ctx, "spr-0001", 0)
		if err != nil {
			t.Fatal(err)
		}
		status2, again := upload()
		if status2 != status || !slices.Equal(again, accepted) {
			t.Fatalf("the same upload again: %d %q, first %d %q", status2, again, status, accepted)
		}
		if now, err := e.p.Events(ctx, "spr-0001", 0); err != nil || len(now) != len(stored) {
			t.Fatalf("the same upload again stored %d events more (%v)", len(now)-len(stored), err)
		}
	})
}
