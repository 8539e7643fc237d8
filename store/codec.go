package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"kioskd/kiosk"
)

// Credential values are a compact binary encoding (JSON would double the
// file and cost a few µs per lookup). The key of a credential in its
// bucket is digest || id, so neither is repeated in the value.
//
//	byte    format version (credFormat)
//	byte    flags: bit 0 = status is active (read by Lookup without decoding)
//	str     kind
//	varint  rev
//	str     holder id, holder role, holder name
//	str     status
//	varint  uses
//	list    used: uvarint n+1 (0 = nil map), then n × (str device, varint count), sorted by device
//	time    valid_from, valid_until: byte 0 = zero time, else 1, varint unix seconds, uvarint nanoseconds
//	list    doors: uvarint n+1 (0 = nil), then n × str
//	list    schedule: uvarint n+1 (0 = nil), then n × (uvarint days+1 (0 = nil), days bytes, varint from, varint to)
//
// where str is uvarint length then bytes. Times come back in UTC.
const credFormat = 1

const flagActive = 1

// errCorrupt is wrapped by decode errors.
var errCorrupt = errors.New("corrupt credential record")

// credKey returns digest || id.
func credKey(dst []byte, digest *[kiosk.DigestSize]byte, id string) []byte {
	dst = append(dst, digest[:]...)
	return append(dst, id...)
}

// isActiveValue reports whether an encoded credential is active.
func isActiveValue(v []byte) bool { return len(v) >= 2 && v[1]&flagActive != 0 }

// appendCred appends the encoding of c (without digest and id) to dst.
func appendCred(dst []byte, c *kiosk.Credential) []byte {
	var flags byte
	if c.Status == kiosk.StatusActive {
		flags |= flagActive
	}
	dst = append(dst, credFormat, flags)
	dst = appendStr(dst, string(c.Kind))
	dst = binary.AppendVarint(dst, c.Rev)
	dst = appendStr(dst, c.Holder.ID)
	dst = appendStr(dst, string(c.Holder.Role))
	dst = appendStr(dst, c.Holder.Name)
	dst = appendStr(dst, string(c.Status))
	dst = binary.AppendVarint(dst, int64(c.Uses))
	if c.Used == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(c.Used))+1)
		if len(c.Used) == 1 {
			for k, v := range c.Used {
				dst = appendStr(dst, k)
				dst = binary.AppendVarint(dst, int64(v))
			}
		} else {
			keys := make([]string, 0, len(c.Used))
			for k := range c.Used {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				dst = appendStr(dst, k)
				dst = binary.AppendVarint(dst, int64(c.Used[k]))
			}
		}
	}
	dst = appendTime(dst, c.ValidFrom)
	dst = appendTime(dst, c.ValidUntil)
	if c.Doors == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(c.Doors))+1)
		for _, d := range c.Doors {
			dst = appendStr(dst, d)
		}
	}
	if c.Schedule == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(c.Schedule))+1)
		for _, w := range c.Schedule {
			if w.Days == nil {
				dst = append(dst, 0)
			} else {
				dst = binary.AppendUvarint(dst, uint64(len(w.Days))+1)
				for _, d := range w.Days {
					dst = append(dst, byte(d))
				}
			}
			dst = binary.AppendVarint(dst, int64(w.From))
			dst = binary.AppendVarint(dst, int64(w.To))
		}
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// decodeCred decodes a credential from its bucket key (digest || id) and
// value. It never panics on bad input.
func decodeCred(key, val []byte) (*kiosk.Credential, error) {
	if len(key) < kiosk.DigestSize {
		return nil, fmt.Errorf("%w: key of %d bytes", errCorrupt, len(key))
	}
	c := &kiosk.Credential{ID: string(key[kiosk.DigestSize:])}
	copy(c.Digest[:], key)
	// One string holds the whole value; the string fields are slices of
	// it, which saves an allocation per field on every lookup.
	d := decoder{b: val, s: string(val)}
	if v := d.byte(); v != credFormat && d.err == nil {
		return nil, fmt.Errorf("%w: format %d of credential %q", errCorrupt, v, c.ID)
	}
	flags := d.byte()
	c.Kind = kiosk.Kind(d.str())
	c.Rev = d.varint()
	c.Holder.ID = d.str()
	c.Holder.Role = kiosk.Role(d.str())
	c.Holder.Name = d.str()
	c.Status = kiosk.Status(d.str())
	c.Uses = d.int()
	if n := d.count(); n > 0 {
		c.Used = make(map[string]int, n-1)
		for i := 1; i < n && d.err == nil; i++ {
			k := d.str()
			c.Used[k] = d.int()
		}
	}
	c.ValidFrom = d.time()
	c.ValidUntil = d.time()
	if n := d.count(); n > 0 {
		c.Doors = make([]string, 0, n-1)
		for i := 1; i < n && d.err == nil; i++ {
			c.Doors = append(c.Doors, d.str())
		}
	}
	if n := d.count(); n > 0 {
		c.Schedule = make([]kiosk.Window, 0, n-1)
		for i := 1; i < n && d.err == nil; i++ {
			var w kiosk.Window
			if nd := d.count(); nd > 0 {
				days := d.bytes(nd - 1)
				w.Days = make([]time.Weekday, len(days))
				for j, b := range days {
					w.Days[j] = time.Weekday(b)
				}
			}
			w.From = d.int()
			w.To = d.int()
			c.Schedule = append(c.Schedule, w)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err == nil && (flags&flagActive != 0) != (c.Status == kiosk.StatusActive) {
		d.err = errors.New("active flag disagrees with status")
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: credential %q: %v", errCorrupt, c.ID, d.err)
	}
	return c, nil
}

// decoder reads the encoding above; the first error sticks and every
// later read returns a zero value.
type decoder struct {
	b   []byte // what is left to read
	s   string // the whole record, as a string
	err error
}

var errShort = errors.New("record too short")

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v := d.varint()
	if v < math.MinInt || v > math.MaxInt {
		d.err = errors.New("integer out of range")
		return 0
	}
	return int(v)
}

// count reads a list length n+1 (0 = nil) bounded by the bytes left, so
// bad input cannot make it allocate much.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b))+1 {
		if d.err == nil {
			d.err = errors.New("list longer than record")
		}
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	off := len(d.s) - len(d.b)
	d.b = d.b[n:]
	return d.s[off : off+int(n)]
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			if d.err == nil {
				d.err = errors.New("nanoseconds out of range")
			}
			return time.Time{}
		}
		if d.err != nil {
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		if d.err == nil {
			d.err = errors.New("bad time tag")
		}
		return time.Time{}
	}
}

// Fixed-size helpers for the meta buckets.

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// encTime encodes a time as 12 bytes (seconds, nanoseconds); nil for zero.
func encTime(t time.Time) []byte {
	if t.IsZero() {
		return nil
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func decTime(b []byte) time.Time {
	if len(b) != 12 {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint32(b[8:]))).UTC()
}
