package portal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	portalsync "kioskd/sync"
)

// pusher sends pushes (SPEC §6.2), best effort and asynchronously: one
// worker per device, woken by a kick, sends what the device lacks — queued
// commands as a "command" document, then the changes since the cursor the
// portal believes the device has as a "delta" (a "hint" when that cursor
// is unknown or the delta too large). Kicks coalesce while a push is in
// flight. Nothing is sent before start.
type pusher struct {
	p *Portal

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	workers map[string]chan struct{}
	wg      sync.WaitGroup
}

func newPusher(p *Portal) *pusher { return &pusher{p: p, workers: map[string]chan struct{}{}} }

// start enables pushes until ctx is done or stop; it reports false when
// they were enabled already.
func (ps *pusher) start(ctx context.Context) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.ctx != nil {
		return false
	}
	ps.ctx, ps.cancel = context.WithCancel(ctx)
	return true
}

// stop ends the workers and waits for them.
func (ps *pusher) stop() {
	ps.mu.Lock()
	if ps.cancel != nil {
		ps.cancel()
	}
	ps.mu.Unlock()
	ps.wg.Wait()
}

// kick wakes the worker of device, starting it when needed.
func (ps *pusher) kick(device string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.ctx == nil || ps.ctx.Err() != nil {
		return
	}
	ch, ok := ps.workers[device]
	if !ok {
		ch = make(chan struct{}, 1)
		ps.workers[device] = ch
		ps.wg.Add(1)
		go ps.work(ps.ctx, device, ch)
	}
	select {
	case ch <- struct{}{}:
	default: // a push is due already
	}
}

// kickAll wakes the workers of every device with a push URL.
func (ps *pusher) kickAll() {
	ps.mu.Lock()
	running := ps.ctx != nil && ps.ctx.Err() == nil
	ps.mu.Unlock()
	if !running {
		return
	}
	var ids []string
	err := ps.p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDevices).ForEach(func(k, v []byte) error {
			var r deviceRecord
			if err := decode(v, &r); err != nil {
				return err
			}
			if r.PushURL != "" {
				ids = append(ids, r.ID)
			}
			return nil
		})
	})
	if err != nil {
		ps.p.log.Error("push: list devices", "err", err)
		return
	}
	for _, id := range ids {
		ps.kick(id)
	}
}

func (ps *pusher) work(ctx context.Context, device string, ch chan struct{}) {
	defer ps.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ps.pushDevice(ctx, device)
		}
	}
}

// pushDevice sends the device what it lacks.
func (ps *pusher) pushDevice(ctx context.Context, device string) {
	p := ps.p
	var (
		rec      *deviceRecord
		cmdDoc   *served
		setDoc   *served
		pushKind string
	)
	err := p.db.View(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getDevice(tx, device); err != nil || rec.PushURL == "" {
			return err
		}
		now := p.now()
		meta := tx.Bucket(bMeta)
		rev, floor := getInt(meta, kRev), getInt(meta, kFloor)
		cur := Cursor(rev)
		cmds, keys, err := pendingCommands(tx, device, now, p.opts.CommandTTL)
		if err != nil {
			return err
		}
		if len(cmds) > 0 {
			h := portalsync.Header{DeviceID: device, IssuedAt: now, Base: cur, Cursor: cur, Commands: cmds, Kind: portalsync.PushCommand}
			if cmdDoc, err = ps.signPush(h, nil); err != nil {
				return err
			}
			cmdDoc.Commands = keys
		}
		if rec.Cursor == cur {
			return nil
		}
		if n, ok := ParseCursor(rec.Cursor); ok && n >= floor && n < rev {
			h, creds, err := p.changesSince(tx, n, rev)
			if err != nil {
				return err
			}
			if h != nil {
				h.DeviceID, h.IssuedAt, h.Kind = device, now, portalsync.PushDelta
				setDoc, err = ps.signPush(*h, creds)
				pushKind = portalsync.PushDelta
				return err
			}
		}
		h := portalsync.Header{DeviceID: device, IssuedAt: now, Base: cur, Cursor: cur, Kind: portalsync.PushHint}
		setDoc, err = ps.signPush(h, nil)
		pushKind = portalsync.PushHint
		return err
	})
	if err != nil {
		p.log.Error("push: prepare", "device", device, "err", err)
		return
	}
	if rec == nil || rec.PushURL == "" {
		return
	}
	if cmdDoc != nil {
		if status, _ := ps.send(ctx, rec, cmdDoc, portalsync.PushCommand); status == http.StatusOK {
			if err := p.markDelivered(cmdDoc.Commands); err != nil {
				p.log.Error("push: mark commands delivered", "device", device, "err", err)
			}
		}
	}
	if setDoc != nil {
		ps.send(ctx, rec, setDoc, pushKind)
	}
}

// signPush adds a nonce to a push document and signs it.
func (ps *pusher) signPush(h portalsync.Header, creds []*portalsync.WireCredential) (*served, error) {
	nonce := make([]byte, 16)
	if err := ps.p.randBytes(nonce); err != nil {
		return nil, err
	}
	h.Nonce = base64.RawURLEncoding.EncodeToString(nonce)
	return ps.p.sign(h, creds)
}

// pushAnswer is the kiosk's answer to a push: 200 or 409 {"cursor": ...}.
type pushAnswer struct {
	Cursor string `json:"cursor"`
}

// send posts one push document and notes the outcome on the device; it
// returns the HTTP status (0 when the request failed).
func (ps *pusher) send(ctx context.Context, rec *deviceRecord, d *served, kind string) (int, error) {
	p := ps.p
	url := strings.TrimSuffix(rec.PushURL, "/") + "/v1/push"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(d.Body))
	if err != nil {
		p.log.Error("push: request", "device", rec.ID, "err", err)
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(portalsync.SignatureHeader, d.Signature)
	resp, err := p.opts.PushClient.Do(req)
	status, outcome := 0, ""
	var ans pushAnswer
	if err != nil {
		outcome = "failed: " + err.Error()
		p.log.Warn("push failed", "device", rec.ID, "kind", kind, "err", err)
	} else {
		status = resp.StatusCode
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		json.Unmarshal(b, &ans)
		outcome = fmt.Sprintf("%s %s", kind, resp.Status)
		switch status {
		case http.StatusOK:
			p.log.Info("pushed", "device", rec.ID, "kind", kind, "cursor", d.Header.Cursor, "credentials", d.Creds,
				"removed", len(d.Header.Removed), "revoked", len(d.Header.Revoked), "commands", len(d.Header.Commands))
		case http.StatusConflict:
			// The kiosk is on another base; it pulls at once by itself.
			p.log.Info("push: kiosk is on another cursor; it pulls", "device", rec.ID, "kind", kind,
				"base", d.Header.Base, "kiosk_cursor", ans.Cursor)
		default:
			p.log.Warn("push refused", "device", rec.ID, "kind", kind, "status", resp.Status, "answer", strings.TrimSpace(string(b)))
		}
	}
	nerr := p.noteDevice(rec.ID, func(r *deviceRecord) {
		r.LastPush, r.PushStatus = p.now(), outcome
		if (status == http.StatusOK || status == http.StatusConflict) && ans.Cursor != "" {
			if _, ok := ParseCursor(ans.Cursor); ok {
				r.Cursor = ans.Cursor
			}
		}
	})
	if nerr != nil {
		p.log.Error("push: note outcome", "device", rec.ID, "err", nerr)
	}
	return status, err
}
