package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
)

// FuzzStatusReply answers kioskctl's status request, over a real Unix
// socket, with an arbitrary status code and body: a 2xx body is read
// exactly when it is one JSON value of the right shape, and then printed
// without a panic; any other status is an apiError that carries the
// status and a message for the technician, whatever the body.
func FuzzStatusReply(f *testing.F) {
	dir, err := os.MkdirTemp("", "kfz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "kioskd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	var mu gosync.Mutex
	var code int
	var reply []byte
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c, b := code, reply
		mu.Unlock()
		w.WriteHeader(c)
		w.Write(b)
	})}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	c := newClient(sock)

	for _, s := range []string{
		`{"device_id":"spr-0001","version":"dev","uptime_s":3600,"doors":[{"id":"main","kind":"room","relay_on":false,"pulse_ms":3000}],` +
			`"inputs":[{"name":"keypad","type":"serial-keypad","connected":true,"locked_until":"2026-11-25T17:05:00Z"}],` +
			`"sync":{"portal":"http://127.0.0.1:8080","cursor":"c-1","age_s":12,"last_error":"x"},"clock":{"now":"2026-11-25T17:00:00Z","synced":true},"errors":["e"]}`,
		`{}`, `null`, `[]`, `{"uptime_s":-9223372036854775808,"sync":{"age_s":1e300}}`, ``, `not json`,
	} {
		f.Add(uint16(0), []byte(s))
	}
	f.Add(uint16(200), []byte(`{"error":"no door \"x\"","reason":"unknown_door"}`))
	f.Add(uint16(300), []byte(`{"error":""}`))
	f.Add(uint16(4), []byte(`{}`)) // 204: no body
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
		mu.Lock()
		code, reply = 200+int(status)%400, body
		want := code
		mu.Unlock()
		var st statusReply
		err := c.getJSON(context.Background(), "/v1/status", &st)
		if want/100 != 2 {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != want || ae.Msg == "" {
				t.Fatalf("status %d: error %#v, want an apiError with the status and a message", want, err)
			}
			return
		}
		served := body
		if want == http.StatusNoContent || want == http.StatusNotModified {
			served = nil
		}
		var ref statusReply
		refErr := json.NewDecoder(bytes.NewReader(served)).Decode(&ref)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("status %d, body %q: kioskctl says %v, encoding/json says %v", want, served, err, refErr)
		}
		if err != nil {
			return
		}
		var out bytes.Buffer
		printStatus(&out, &st)
		if s := out.String(); !strings.Contains(s, "\ndoors:\n") || !strings.Contains(s, "\ninputs:\n") {
			t.Fatalf("status printed without its doors and inputs:\n%s", s)
		}
	})
}
