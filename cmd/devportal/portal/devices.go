package portal

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// deviceRecord is a device as the portal keeps it.
type deviceRecord struct {
	ID            string    `json:"id"`
	TokenHash     []byte    `json:"token_hash"` // SHA-256 of the bearer token
	PushURL       string    `json:"push_url,omitempty"`
	Cursor        string    `json:"cursor,omitempty"`
	LastSync      time.Time `json:"last_sync,omitzero"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	Heartbeat     string    `json:"heartbeat,omitempty"` // raw JSON of the last heartbeat
	LastPush      time.Time `json:"last_push,omitzero"`
	PushStatus    string    `json:"push_status,omitempty"`
	Created       time.Time `json:"created"`
}

func (r *deviceRecord) info() Device {
	d := Device{ID: r.ID, PushURL: r.PushURL, Cursor: r.Cursor, LastSync: r.LastSync,
		LastHeartbeat: r.LastHeartbeat, LastPush: r.LastPush, PushStatus: r.PushStatus, Created: r.Created}
	if r.Heartbeat != "" {
		d.Heartbeat = json.RawMessage(r.Heartbeat)
	}
	return d
}

// minTokenLen is the shortest device token accepted.
const minTokenLen = 16

func tokenHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// CheckDeviceID checks a device id: 1 to 64 characters of A-Z a-z 0-9 . _ -
// (it is a path segment of the protocol's URLs).
func CheckDeviceID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: a device id has 1 to 64 characters", ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: device id %q: only A-Z a-z 0-9 . _ - are allowed", ErrInvalid, id)
		}
	}
	return nil
}

// checkPushURL checks a kiosk's push URL: http or https with a host, no
// query; plain http only to a loopback address (SPEC §6).
func checkPushURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%w: push URL %q is not an http(s)://host:port URL", ErrInvalid, s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return fmt.Errorf("%w: push URL %q: plain http is allowed only to loopback; use https", ErrInvalid, s)
		}
	default:
		return fmt.Errorf("%w: push URL %q is not http or https", ErrInvalid, s)
	}
	return nil
}

func getDevice(tx *bolt.Tx, id string) (*deviceRecord, error) {
	v := tx.Bucket(bDevices).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: device %q", ErrNotFound, id)
	}
	var r deviceRecord
	if err := decode(v, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func putDevice(tx *bolt.Tx, r *deviceRecord) error {
	v, err := encode(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bDevices).Put([]byte(r.ID), v)
}

// AddDevice registers a kiosk with its bearer token (only the token's
// SHA-256 is kept) and optional push URL; with spec.Update it changes a
// registered one.
func (p *Portal) AddDevice(ctx context.Context, spec DeviceSpec) (AddedDevice, error) {
	out, err := p.addDevice(spec)
	if err != nil {
		return AddedDevice{}, fmt.Errorf("add device %s: %w", spec.ID, err)
	}
	p.log.Info("device registered", "device", spec.ID, "push_url", out.Device.PushURL, "update", spec.Update)
	p.push.kick(spec.ID)
	return out, nil
}

func (p *Portal) addDevice(spec DeviceSpec) (AddedDevice, error) {
	if err := CheckDeviceID(spec.ID); err != nil {
		return AddedDevice{}, err
	}
	if spec.PushURL != "" {
		if err := checkPushURL(spec.PushURL); err != nil {
			return AddedDevice{}, err
		}
	}
	tok := string(spec.Token)
	if tok != "" && (len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n")) {
		return AddedDevice{}, fmt.Errorf("%w: a device token has at least %d characters and no white space", ErrInvalid, minTokenLen)
	}
	var out AddedDevice
	err := p.update(func(w *wtx) error {
		rec, err := getDevice(w.tx, spec.ID)
		switch {
		case err == nil && !spec.Update:
			return fmt.Errorf("%w: device %s is registered (update it instead)", ErrConflict, spec.ID)
		case err != nil && spec.Update:
			return err
		case err != nil:
			rec = &deviceRecord{ID: spec.ID, Created: w.now}
		}
		if tok == "" && rec.TokenHash == nil {
			if tok, err = NewToken(); err != nil {
				return err
			}
			out.Token = SecretText(tok)
		}
		toks := w.tx.Bucket(bDeviceTokens)
		if tok != "" {
			h := tokenHash(tok)
			if owner := toks.Get(h); owner != nil && string(owner) != spec.ID {
				return fmt.Errorf("%w: another device has this token", ErrConflict)
			}
			if rec.TokenHash != nil {
				if err := toks.Delete(rec.TokenHash); err != nil {
					return err
				}
			}
			rec.TokenHash = h
			if err := toks.Put(h, []byte(spec.ID)); err != nil {
				return err
			}
		}
		rec.PushURL = spec.PushURL
		out.Device = rec.info()
		return putDevice(w.tx, rec)
	})
	return out, err
}

// Devices lists the registered kiosks.
func (p *Portal) Devices(ctx context.Context) ([]Device, error) {
	var out []Device
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDevices).ForEach(func(k, v []byte) error {
			var r deviceRecord
			if err := decode(v, &r); err != nil {
				return err
			}
			out = append(out, r.info())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// authResult is the outcome of checking a device's bearer token.
type authResult int

const (
	authOK        authResult = iota
	authMissing              // no or an unknown token: 401
	authForbidden            // the token of another device: 403
)

// authDevice checks the bearer token of a request for device id.
func (p *Portal) authDevice(id, token string) (authResult, error) {
	if token == "" {
		return authMissing, nil
	}
	res := authMissing
	err := p.db.View(func(tx *bolt.Tx) error {
		owner := tx.Bucket(bDeviceTokens).Get(tokenHash(token))
		switch {
		case owner == nil:
			res = authMissing
		case string(owner) != id:
			res = authForbidden
		default:
			res = authOK
		}
		return nil
	})
	return res, err
}

// noteDevice updates a device's record with fn, in its own transaction.
func (p *Portal) noteDevice(id string, fn func(r *deviceRecord)) error {
	return p.db.Update(func(tx *bolt.Tx) error {
		r, err := getDevice(tx, id)
		if err != nil {
			return err
		}
		fn(r)
		return putDevice(tx, r)
	})
}
