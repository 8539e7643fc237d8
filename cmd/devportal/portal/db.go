package portal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"
	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// Buckets of portal.db.
//
//	meta          "rev" global change counter, "floor" oldest answerable
//	              cursor, "page_key" MAC key of page tokens
//	holders       holder id → Holder
//	creds         digest || id → credRecord (live records and tombstones),
//	              in the order full snapshots list them
//	cred_ids      credential id → digest
//	changes       rev → 'c' digest || id, or 'r' cid: what each rev changed
//	history       digest || id || 0 || rev → superseded version (histRecord)
//	revoked       cid → revokedRecord
//	tokens        cid → TokenInfo of signed QR tokens issued here
//	pins          digest → issue time, of every PIN ever issued
//	devices       device id → deviceRecord
//	device_tokens SHA-256(token) → device id
//	commands      queue sequence → commandRecord
//	events        device id → bucket {"log": seq → raw event, "ids": id → seq}
//	tombstones    rev of a deletion → digest || id, oldest first, for pruning
var (
	bMeta         = []byte("meta")
	bHolders      = []byte("holders")
	bCreds        = []byte("creds")
	bCredIDs      = []byte("cred_ids")
	bChanges      = []byte("changes")
	bHistory      = []byte("history")
	bRevoked      = []byte("revoked")
	bTokens       = []byte("tokens")
	bPINs         = []byte("pins")
	bDevices      = []byte("devices")
	bDeviceTokens = []byte("device_tokens")
	bCommands     = []byte("commands")
	bEvents       = []byte("events")
	bTombstones   = []byte("tombstones")

	bEventLog = []byte("log")
	bEventIDs = []byte("ids")

	kRev     = []byte("rev")
	kFloor   = []byte("floor")
	kPageKey = []byte("page_key")
)

var allBuckets = [][]byte{bMeta, bHolders, bCreds, bCredIDs, bChanges, bHistory, bRevoked,
	bTokens, bPINs, bDevices, bDeviceTokens, bCommands, bEvents, bTombstones}

// credRecord is a credential as the portal keeps it: its wire form plus
// what the portal alone needs. Deleted records are tombstones: their rev
// is the rev of the deletion.
type credRecord struct {
	Wire       portalsync.WireCredential `json:"wire"`
	Type       string                    `json:"type"` // how it was issued: pin, chosen-pin, one-time, qr, card
	CreatedRev int64                     `json:"created_rev"`
	Created    time.Time                 `json:"created"`
	Deleted    bool                      `json:"deleted,omitempty"`
	DeletedAt  time.Time                 `json:"deleted_at,omitzero"`
}

// histRecord is a superseded version of a credential record.
type histRecord struct {
	SupersededAt time.Time  `json:"superseded_at"`
	Rec          credRecord `json:"rec"`
}

// revokedRecord is one revoked token id.
type revokedRecord struct {
	Rev int64     `json:"rev"`
	At  time.Time `json:"at"`
}

func (p *Portal) init() error {
	return p.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if k := meta.Get(kPageKey); len(k) == 32 {
			p.pageKey = append([]byte(nil), k...)
			return nil
		}
		p.pageKey = make([]byte, 32)
		if err := p.randBytes(p.pageKey); err != nil {
			return err
		}
		return meta.Put(kPageKey, p.pageKey)
	})
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getInt(b *bolt.Bucket, k []byte) int64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// Cursor returns the cursor that names the set as of rev.
func Cursor(rev int64) string { return "c-" + strconv.FormatInt(rev, 10) }

// ParseCursor returns the rev a cursor names; ok is false when s is not a
// cursor this portal makes.
func ParseCursor(s string) (rev int64, ok bool) {
	num, found := strings.CutPrefix(s, "c-")
	if !found || num == "" || len(num) > 19 || (len(num) > 1 && num[0] == '0') {
		return 0, false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// credKey is the key of a credential record: digest || id.
func credKey(digest [kiosk.DigestSize]byte, id string) []byte {
	k := make([]byte, 0, kiosk.DigestSize+len(id))
	k = append(k, digest[:]...)
	return append(k, id...)
}

// histPrefix is the prefix of a record's versions in the history bucket.
func histPrefix(credKey []byte) []byte {
	k := make([]byte, 0, len(credKey)+9)
	k = append(k, credKey...)
	return append(k, 0)
}

func decodeRec(v []byte) (*credRecord, error) {
	var r credRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode credential record: %w", err)
	}
	return &r, nil
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

func decode(v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// wtx is a write transaction of the portal with the helpers that keep the
// rev counter, the change log and the history consistent.
type wtx struct {
	tx      *bolt.Tx
	p       *Portal
	now     time.Time
	changed bool // the credential set changed (pushes are due)
}

func (p *Portal) update(fn func(w *wtx) error) error {
	var changed bool
	err := p.db.Update(func(tx *bolt.Tx) error {
		w := &wtx{tx: tx, p: p, now: p.now()}
		if err := fn(w); err != nil {
			return err
		}
		changed = w.changed
		return nil
	})
	if err == nil && changed {
		p.push.kickAll()
	}
	return err
}

func (w *wtx) nextRev() int64 {
	meta := w.tx.Bucket(bMeta)
	rev := getInt(meta, kRev) + 1
	meta.Put(kRev, u64(uint64(rev)))
	w.changed = true
	return rev
}

// credByID returns the record of a credential id and its key; nil when
// there is none.
func credByID(tx *bolt.Tx, id string) (*credRecord, []byte, error) {
	d := tx.Bucket(bCredIDs).Get([]byte(id))
	if len(d) != kiosk.DigestSize {
		return nil, nil, nil
	}
	key := append(append([]byte(nil), d...), id...)
	v := tx.Bucket(bCreds).Get(key)
	if v == nil {
		return nil, nil, fmt.Errorf("credential %s: index names a missing record", id)
	}
	r, err := decodeRec(v)
	if err != nil {
		return nil, nil, fmt.Errorf("credential %s: %w", id, err)
	}
	return r, key, nil
}

// putCred stores rec under the next rev. prev is the version it replaces
// (nil for a new credential); it goes to the history, so that snapshots
// pinned to an older rev still see it.
func (w *wtx) putCred(rec *credRecord, prev *credRecord) error {
	digest, err := kiosk.DecodeDigest(rec.Wire.Digest)
	if err != nil {
		return fmt.Errorf("credential %s: %w", rec.Wire.ID, err)
	}
	key := credKey(digest, rec.Wire.ID)
	if prev != nil {
		h, err := encode(histRecord{SupersededAt: w.now, Rec: *prev})
		if err != nil {
			return err
		}
		hk := append(histPrefix(key), u64(uint64(prev.Wire.Rev))...)
		if err := w.tx.Bucket(bHistory).Put(hk, h); err != nil {
			return err
		}
		if err := w.tx.Bucket(bChanges).Delete(u64(uint64(prev.Wire.Rev))); err != nil {
			return err
		}
	}
	rec.Wire.Rev = w.nextRev()
	if prev == nil {
		rec.CreatedRev = rec.Wire.Rev
	}
	v, err := encode(rec)
	if err != nil {
		return err
	}
	if err := w.tx.Bucket(bCreds).Put(key, v); err != nil {
		return err
	}
	if err := w.tx.Bucket(bCredIDs).Put([]byte(rec.Wire.ID), digest[:]); err != nil {
		return err
	}
	return w.tx.Bucket(bChanges).Put(u64(uint64(rec.Wire.Rev)), append([]byte{'c'}, key...))
}

// activeWithDigest returns the id of a live active credential with this
// digest other than except, or "".
func activeWithDigest(tx *bolt.Tx, digest [kiosk.DigestSize]byte, except string) (string, error) {
	c := tx.Bucket(bCreds).Cursor()
	for k, v := c.Seek(digest[:]); k != nil && bytes.HasPrefix(k, digest[:]); k, v = c.Next() {
		r, err := decodeRec(v)
		if err != nil {
			return "", err
		}
		if !r.Deleted && r.Wire.Status == string(kiosk.StatusActive) && r.Wire.ID != except {
			return r.Wire.ID, nil
		}
	}
	return "", nil
}

// asOf returns the version of the record stored at key (current version
// cur) that was live at rev: cur itself when its rev is not above rev, else
// the newest superseded version at or below rev; nil when the credential
// did not exist then, or was deleted.
func asOf(tx *bolt.Tx, key []byte, cur *credRecord, rev int64) (*credRecord, error) {
	r := cur
	if cur.Wire.Rev > rev {
		prefix := histPrefix(key)
		c := tx.Bucket(bHistory).Cursor()
		k, v := c.Seek(append(append([]byte(nil), prefix...), u64(uint64(rev)+1)...))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		if k == nil || len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
			return nil, nil
		}
		var h histRecord
		if err := decode(v, &h); err != nil {
			return nil, err
		}
		r = &h.Rec
	}
	if r.Deleted {
		return nil, nil
	}
	return r, nil
}
