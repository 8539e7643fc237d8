package portal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// MaxEventsPerUpload is the most events one upload may carry (SPEC §6.4).
const MaxEventsPerUpload = 500

// maxEventBytes bounds one stored event.
const maxEventBytes = 64 << 10

// eventHead is what the portal reads of an uploaded event.
type eventHead struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	CredentialID string `json:"credential_id"`
}

// IngestEvents stores the events a device uploaded, de-duplicated by id,
// and returns the ids it accepted: every event stored now or before. An
// event without an id, or not a JSON object, is not accepted. A new
// access.granted event of a credential with a use limit raises the
// credential's used[device] (SPEC §6.3), which deltas then carry to every
// kiosk.
func (p *Portal) IngestEvents(device string, events []json.RawMessage) ([]string, error) {
	if len(events) > MaxEventsPerUpload {
		return nil, fmt.Errorf("ingest events: %w: %d events, at most %d per upload", ErrInvalid, len(events), MaxEventsPerUpload)
	}
	accepted := []string{}
	fresh := 0
	err := p.update(func(w *wtx) error {
		accepted, fresh = accepted[:0], 0
		if _, err := getDevice(w.tx, device); err != nil {
			return err
		}
		eb, err := w.tx.Bucket(bEvents).CreateBucketIfNotExists([]byte(device))
		if err != nil {
			return err
		}
		logb, err := eb.CreateBucketIfNotExists(bEventLog)
		if err != nil {
			return err
		}
		ids, err := eb.CreateBucketIfNotExists(bEventIDs)
		if err != nil {
			return err
		}
		grants := map[string]int{}
		seen := map[string]bool{}
		accept := func(id string) {
			if !seen[id] {
				seen[id] = true
				accepted = append(accepted, id)
			}
		}
		for _, raw := range events {
			var head eventHead
			if len(raw) > maxEventBytes || json.Unmarshal(raw, &head) != nil || head.ID == "" || len(head.ID) > maxIDLen {
				continue
			}
			if ids.Get([]byte(head.ID)) != nil {
				accept(head.ID)
				continue
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				continue
			}
			seq, err := logb.NextSequence()
			if err != nil {
				return err
			}
			if err := logb.Put(u64(seq), compact.Bytes()); err != nil {
				return err
			}
			if err := ids.Put([]byte(head.ID), u64(seq)); err != nil {
				return err
			}
			accept(head.ID)
			fresh++
			if head.Type == kiosk.EvAccessGranted && head.CredentialID != "" {
				grants[head.CredentialID]++
			}
		}
		for _, id := range slices.Sorted(maps.Keys(grants)) {
			prev, _, err := credByID(w.tx, id)
			if err != nil {
				return err
			}
			if prev == nil || prev.Deleted || prev.Wire.Uses <= 0 {
				continue // a signed token, an unlimited or a deleted credential
			}
			next := *prev
			next.Wire.Used = maps.Clone(prev.Wire.Used)
			if next.Wire.Used == nil {
				next.Wire.Used = map[string]int{}
			}
			next.Wire.Used[device] += grants[id]
			if err := w.putCred(&next, prev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ingest events of %s: %w", device, err)
	}
	if fresh > 0 {
		p.log.Info("events received", "device", device, "new", fresh, "accepted", len(accepted))
	}
	return accepted, nil
}

// Events lists the events device uploaded, newest first; limit <= 0 means
// 50.
func (p *Portal) Events(ctx context.Context, device string, limit int) ([]json.RawMessage, error) {
	if limit <= 0 {
		limit = 50
	}
	out := []json.RawMessage{}
	err := p.db.View(func(tx *bolt.Tx) error {
		if _, err := getDevice(tx, device); err != nil {
			return err
		}
		eb := tx.Bucket(bEvents).Bucket([]byte(device))
		if eb == nil {
			return nil
		}
		c := eb.Bucket(bEventLog).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			out = append(out, json.RawMessage(slices.Clone(v)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", device, err)
	}
	return out, nil
}

// heartbeatHead is what the portal reads of a heartbeat.
type heartbeatHead struct {
	Cursor string `json:"cursor"`
}

// Heartbeat stores a device's heartbeat (SPEC §6.6) and returns the queued
// commands to answer it with; the caller marks them delivered once the
// answer is sent (MarkDelivered).
func (p *Portal) Heartbeat(device string, body []byte) ([]portalsync.Command, [][]byte, error) {
	var head heartbeatHead
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		return nil, nil, fmt.Errorf("heartbeat: %w: not a JSON object", ErrInvalid)
	}
	// JSON is UTF-8 (RFC 8259); the heartbeat is stored as sent, and the
	// device record it goes into would not encode otherwise.
	if !utf8.Valid(body) {
		return nil, nil, fmt.Errorf("heartbeat: %w: not UTF-8", ErrInvalid)
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, nil, fmt.Errorf("heartbeat: %w: %v", ErrInvalid, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, nil, fmt.Errorf("heartbeat: %w: %v", ErrInvalid, err)
	}
	var cmds []portalsync.Command
	var keys [][]byte
	err := p.db.Update(func(tx *bolt.Tx) error {
		r, err := getDevice(tx, device)
		if err != nil {
			return err
		}
		now := p.now()
		r.LastHeartbeat, r.Heartbeat = now, compact.String()
		if _, ok := ParseCursor(head.Cursor); ok {
			r.Cursor = head.Cursor
		}
		if err := putDevice(tx, r); err != nil {
			return err
		}
		cmds, keys, err = pendingCommands(tx, device, now, p.opts.CommandTTL)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %s: %w", device, err)
	}
	return cmds, keys, nil
}

// commandRecord is a queued command.
type commandRecord struct {
	Device    string             `json:"device"`
	Command   portalsync.Command `json:"command"`
	Queued    time.Time          `json:"queued"`
	Delivered time.Time          `json:"delivered,omitzero"`
}

// pendingCommands returns the undelivered, unexpired commands of device
// and their keys.
func pendingCommands(tx *bolt.Tx, device string, now time.Time, ttl time.Duration) ([]portalsync.Command, [][]byte, error) {
	var cmds []portalsync.Command
	var keys [][]byte
	err := tx.Bucket(bCommands).ForEach(func(k, v []byte) error {
		var r commandRecord
		if err := decode(v, &r); err != nil {
			return err
		}
		if r.Device == device && r.Delivered.IsZero() && now.Sub(r.Queued) <= ttl {
			cmds = append(cmds, r.Command)
			keys = append(keys, slices.Clone(k))
		}
		return nil
	})
	return cmds, keys, err
}

// markDelivered marks queued commands delivered: they are not sent again.
func (p *Portal) markDelivered(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	return p.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCommands)
		now := p.now()
		for _, k := range keys {
			v := b.Get(k)
			if v == nil {
				continue
			}
			var r commandRecord
			if err := decode(v, &r); err != nil {
				return err
			}
			r.Delivered = now
			nv, err := encode(r)
			if err != nil {
				return err
			}
			if err := b.Put(k, nv); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unlock queues a remote unlock of door for device (SPEC §6.2 commands).
// The command goes out in the device's next sync document or heartbeat
// answer, and at once as a pushed "command" document when the device has a
// push URL and the server runs; it expires after CommandTTL.
func (p *Portal) Unlock(ctx context.Context, device, door string) (portalsync.Command, error) {
	if err := checkID("door", door); err != nil {
		return portalsync.Command{}, fmt.Errorf("unlock: %w", err)
	}
	var cmd portalsync.Command
	err := p.db.Update(func(tx *bolt.Tx) error {
		if _, err := getDevice(tx, device); err != nil {
			return err
		}
		b := make([]byte, 8)
		if err := p.randBytes(b); err != nil {
			return err
		}
		cmd = portalsync.Command{ID: "cmd-" + hex.EncodeToString(b), Type: "unlock", Door: door}
		cb := tx.Bucket(bCommands)
		seq, err := cb.NextSequence()
		if err != nil {
			return err
		}
		v, err := encode(commandRecord{Device: device, Command: cmd, Queued: p.now()})
		if err != nil {
			return err
		}
		return cb.Put(u64(seq), v)
	})
	if err != nil {
		return portalsync.Command{}, fmt.Errorf("unlock %s on %s: %w", door, device, err)
	}
	p.log.Info("remote unlock queued", "device", device, "door", door, "command", cmd.ID)
	p.push.kick(device)
	return cmd, nil
}
