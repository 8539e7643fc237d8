package portal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	portalsync "kioskd/sync"
)

// pageToken is the state of a full snapshot between its pages: the rev it
// shows, its issued_at, and the key of the last record the previous page
// looked at. On the wire it is base64url(version || rev || issued_at ns ||
// key || MAC), the MAC (HMAC-SHA256 under the portal's page key, over the
// device id and the rest, truncated) keeps kiosks from forging one.
type pageToken struct {
	rev    int64
	issued time.Time
	after  []byte
}

const (
	pageTokenVersion = 1
	pageTokenMAC     = 16
	pageTokenFixed   = 1 + 8 + 8
	maxPageToken     = 1024 // characters
)

func (p *Portal) pageMAC(device string, payload []byte) []byte {
	m := hmac.New(sha256.New, p.pageKey)
	m.Write([]byte(device))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:pageTokenMAC]
}

func (p *Portal) encodePageToken(device string, t pageToken) string {
	b := make([]byte, 0, pageTokenFixed+len(t.after)+pageTokenMAC)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(t.rev))
	b = binary.BigEndian.AppendUint64(b, uint64(t.issued.UnixNano()))
	b = append(b, t.after...)
	b = append(b, p.pageMAC(device, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken parses and authenticates a page token of device. Any
// defect is ErrUnknownCursor: the kiosk starts the snapshot again.
func (p *Portal) decodePageToken(device, s string) (pageToken, error) {
	bad := func(why string) (pageToken, error) {
		return pageToken{}, fmt.Errorf("%w: page token %s", ErrUnknownCursor, why)
	}
	if len(s) > maxPageToken {
		return bad("is too long")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return bad("is not base64url")
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return bad("is not base64url")
	}
	if len(b) < pageTokenFixed+pageTokenMAC || b[0] != pageTokenVersion {
		return bad("is malformed")
	}
	payload, mac := b[:len(b)-pageTokenMAC], b[len(b)-pageTokenMAC:]
	if !hmac.Equal(mac, p.pageMAC(device, payload)) {
		return bad("does not authenticate")
	}
	t := pageToken{
		rev:    int64(binary.BigEndian.Uint64(payload[1:9])),
		issued: time.Unix(0, int64(binary.BigEndian.Uint64(payload[9:17]))).UTC(),
		after:  slices.Clone(payload[17:]),
	}
	return t, nil
}

// served is a document page ready to send.
type served struct {
	Header    portalsync.Header
	Body      []byte
	Signature string
	Creds     int
	// Commands are the keys of the queued commands the page carries, to
	// mark delivered once it is sent.
	Commands [][]byte
}

// document builds the signed sync document page (SPEC §6.1) that answers a
// pull of device with the cursor and page parameters given: a page of a
// full snapshot when page is set or cursor is empty, or when the delta
// since cursor would carry more than MaxDeltaChanges changes; otherwise
// the delta since cursor (empty, with cursor = base, when nothing
// changed). Queued commands ride on the first page. ErrUnknownCursor means
// 410 Gone.
func (p *Portal) document(device, cursor, page string) (*served, error) {
	now := p.now()
	var out *served
	err := p.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		rev, floor := getInt(meta, kRev), getInt(meta, kFloor)
		if page != "" {
			t, err := p.decodePageToken(device, page)
			if err != nil {
				return err
			}
			if now.Sub(t.issued) > p.opts.SnapshotTTL || t.issued.After(now.Add(time.Minute)) || t.rev > rev {
				return fmt.Errorf("%w: the snapshot of that page token has expired", ErrUnknownCursor)
			}
			var err2 error
			out, err2 = p.fullPage(tx, device, t.rev, t.issued, t.after, nil)
			return err2
		}
		cmds, keys, err := pendingCommands(tx, device, now, p.opts.CommandTTL)
		if err != nil {
			return err
		}
		if cursor == "" {
			out, err = p.fullPage(tx, device, rev, now, nil, cmds)
		} else {
			n, ok := ParseCursor(cursor)
			if !ok || n > rev || n < floor {
				return fmt.Errorf("%w: %q", ErrUnknownCursor, cursor)
			}
			out, err = p.delta(tx, device, n, rev, now, cmds)
			if err == nil && out == nil { // too many changes: a full snapshot instead
				out, err = p.fullPage(tx, device, rev, now, nil, cmds)
			}
		}
		if err == nil {
			out.Commands = keys
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// revokedAsOf returns the cids revoked at or before rev, sorted.
func revokedAsOf(tx *bolt.Tx, rev int64) ([]string, error) {
	out := []string{}
	err := tx.Bucket(bRevoked).ForEach(func(k, v []byte) error {
		var r revokedRecord
		if err := decode(v, &r); err != nil {
			return err
		}
		if r.Rev <= rev {
			out = append(out, string(k))
		}
		return nil
	})
	return out, err
}

// fullPage builds the page of the full snapshot as of rev that follows the
// record key after (nil: the first page, which also carries the revoked
// list and cmds).
func (p *Portal) fullPage(tx *bolt.Tx, device string, rev int64, issued time.Time, after []byte, cmds []portalsync.Command) (*served, error) {
	h := portalsync.Header{DeviceID: device, IssuedAt: issued, Full: true, Cursor: Cursor(rev)}
	if after == nil {
		revoked, err := revokedAsOf(tx, rev)
		if err != nil {
			return nil, err
		}
		h.Revoked, h.Commands = revoked, cmds
	}
	creds := make([]*portalsync.WireCredential, 0, min(p.opts.PageSize, 1024))
	c := tx.Bucket(bCreds).Cursor()
	var k, v []byte
	if after == nil {
		k, v = c.First()
	} else {
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	var last []byte
	for ; k != nil && len(creds) < p.opts.PageSize; k, v = c.Next() {
		last = k
		cur, err := decodeRec(v)
		if err != nil {
			return nil, err
		}
		r, err := asOf(tx, k, cur, rev)
		if err != nil {
			return nil, err
		}
		if r != nil {
			creds = append(creds, &r.Wire)
		}
	}
	if k != nil {
		h.Next = p.encodePageToken(device, pageToken{rev: rev, issued: issued, after: slices.Clone(last)})
	}
	return p.sign(h, creds)
}

// delta builds the delta since rev n at rev, or returns nil when it would
// carry more than MaxDeltaChanges changes.
func (p *Portal) delta(tx *bolt.Tx, device string, n, rev int64, issued time.Time, cmds []portalsync.Command) (*served, error) {
	h, creds, err := p.changesSince(tx, n, rev)
	if err != nil || h == nil {
		return nil, err
	}
	h.DeviceID, h.IssuedAt, h.Commands = device, issued, cmds
	return p.sign(*h, creds)
}

// changesSince gathers the changes after rev n up to rev as a delta header
// (base, cursor, removed, revoked) and its credentials; nil when there are
// more than MaxDeltaChanges.
func (p *Portal) changesSince(tx *bolt.Tx, n, rev int64) (*portalsync.Header, []*portalsync.WireCredential, error) {
	h := &portalsync.Header{Base: Cursor(n), Cursor: Cursor(n)}
	var creds []*portalsync.WireCredential
	count := 0
	creds_ := tx.Bucket(bCreds)
	c := tx.Bucket(bChanges).Cursor()
	for k, v := c.Seek(u64(uint64(n) + 1)); k != nil; k, v = c.Next() {
		if len(v) == 0 {
			continue
		}
		count++
		if count > p.opts.MaxDeltaChanges {
			return nil, nil, nil
		}
		switch v[0] {
		case 'r':
			h.Revoked = append(h.Revoked, string(v[1:]))
		case 'c':
			rv := creds_.Get(v[1:])
			if rv == nil {
				return nil, nil, fmt.Errorf("change %d names a missing record", binary.BigEndian.Uint64(k))
			}
			r, err := decodeRec(rv)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case !r.Deleted:
				creds = append(creds, &r.Wire)
			case r.CreatedRev <= n: // created after n: the kiosk never had it
				h.Removed = append(h.Removed, r.Wire.ID)
			}
		}
	}
	if count > 0 {
		h.Cursor = Cursor(rev)
	}
	return h, creds, nil
}

// sign writes the document and signs it.
func (p *Portal) sign(h portalsync.Header, creds []*portalsync.WireCredential) (*served, error) {
	var buf bytes.Buffer
	w, err := portalsync.NewDocWriter(&buf, &h)
	if err != nil {
		return nil, err
	}
	for _, c := range creds {
		if err := w.Write(c); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	body := buf.Bytes()
	return &served{Header: h, Body: body, Signature: portalsync.Sign(p.priv, body), Creds: len(creds)}, nil
}
