package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"kioskd/kiosk"
)

// errNotRunning is returned (wrapped) by the API client when nothing
// answers on kioskd's socket: the file is missing or nobody listens.
var errNotRunning = errors.New("kioskd is not running")

// client talks to kioskd's local API over its Unix socket.
type client struct {
	socket string
	hc     *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
		MaxIdleConns:       1,
	}
	return &client{socket: socket, hc: &http.Client{Transport: tr}}
}

// apiError is an error reply of kioskd.
type apiError struct {
	Status int
	Msg    string `json:"error"`
	Reason string `json:"reason"`
}

func (e *apiError) Error() string { return e.Msg }

// do sends a request and returns the response when its status is 2xx;
// otherwise it returns kioskd's error. The caller closes the body.
func (c *client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://kioskd"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ae := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(b, ae) != nil || ae.Msg == "" {
		ae.Msg = fmt.Sprintf("kioskd answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil, ae
}

// dialError explains a failed request: not running, no permission, or
// what it was.
func (c *client) dialError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop `Get "http://kioskd/...":`, which names no socket
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (no answer on %s): %w", errNotRunning, c.socket, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("no permission to use kioskd's socket %s (run kioskctl as root or as a member of kioskd's group): %w", c.socket, err)
	}
	return fmt.Errorf("talk to kioskd on %s: %w", c.socket, err)
}

// getJSON GETs path and decodes the JSON reply into v.
func (c *client) getJSON(ctx context.Context, path string, v any) error {
	return c.call(ctx, http.MethodGet, path, nil, v)
}

// call sends a request with an optional JSON body and decodes the JSON
// reply into v (nil: discard).
func (c *client) call(ctx context.Context, method, path string, body, v any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("read kioskd's answer: %w", err)
	}
	return nil
}

// stream GETs path and calls fn with every line of the reply until the
// reply ends, fn fails or ctx is done (then it returns nil).
func (c *client) stream(ctx context.Context, path string, fn func(line []byte) error) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read from kioskd: %w", err)
	}
	return nil
}

// The replies of kioskd's API (cmd/kioskd/api.go), as kioskctl reads them.

type statusReply struct {
	DeviceID    string       `json:"device_id"`
	Version     string       `json:"version"`
	Started     time.Time    `json:"started"`
	UptimeS     int64        `json:"uptime_s"`
	Board       string       `json:"board"`
	Hardware    string       `json:"hardware"`
	Config      string       `json:"config"`
	Doors       []doorReply  `json:"doors"`
	Inputs      []inputReply `json:"inputs"`
	Sync        syncReply    `json:"sync"`
	Credentials int          `json:"credentials"`
	Backlog     int          `json:"backlog"`
	Clock       struct {
		Now    time.Time `json:"now"`
		Synced bool      `json:"synced"`
		Floor  time.Time `json:"floor"`
	} `json:"clock"`
	Errors []string `json:"errors"`
}

type doorReply struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	RelayOn bool   `json:"relay_on"`
	Open    bool   `json:"open"`
	PulseMS int64  `json:"pulse_ms"`
	Contact bool   `json:"contact"`
}

type inputReply struct {
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	Device      string    `json:"device"`
	Connected   bool      `json:"connected"`
	LockedUntil time.Time `json:"locked_until"`
}

type syncReply struct {
	Portal         string    `json:"portal"`
	PushAddr       string    `json:"push_addr"`
	Cursor         string    `json:"cursor"`
	IssuedAt       time.Time `json:"issued_at"`
	AgeS           *float64  `json:"age_s"`
	LastPull       time.Time `json:"last_pull"`
	LastError      string    `json:"last_error"`
	Failures       int       `json:"failures"`
	LastUpload     time.Time `json:"last_upload"`
	UploadError    string    `json:"upload_error"`
	LastHeartbeat  time.Time `json:"last_heartbeat"`
	HeartbeatError string    `json:"heartbeat_error"`
}

type unlockReply struct {
	Door    string `json:"door"`
	PulseMS int64  `json:"pulse_ms"`
	Test    bool   `json:"test"`
}

type watchLine struct {
	Time      time.Time `json:"time"`
	Input     string    `json:"input"`
	Type      string    `json:"type"`
	Key       string    `json:"key"`
	Entry     int       `json:"entry"`
	Submitted bool      `json:"submitted"`
	Cleared   bool      `json:"cleared"`
	Detail    string    `json:"detail"`
	Inputs    []string  `json:"inputs"`
}

type syncStatus struct {
	Cursor      string    `json:"cursor"`
	Credentials int       `json:"credentials"`
	LastPull    time.Time `json:"last_pull"`
	LastError   string    `json:"last_error"`
	Failures    int       `json:"failures"`
	Backlog     int       `json:"backlog"`
}

type syncAnswer struct {
	Error  string     `json:"error"`
	Done   bool       `json:"done"`
	OK     bool       `json:"ok"`
	Status syncStatus `json:"status"`
}

type applyReply struct {
	Full        bool      `json:"full"`
	Base        string    `json:"base"`
	Cursor      string    `json:"cursor"`
	IssuedAt    time.Time `json:"issued_at"`
	Changed     bool      `json:"changed"`
	Credentials int       `json:"credentials"`
	Upserted    int       `json:"upserted"`
	Removed     int       `json:"removed"`
	Commands    int       `json:"commands"`
}

// event is one journal event as /v1/events sends it.
type event = kiosk.Event
