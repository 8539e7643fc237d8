package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The decision log (decisions.log) makes a decision durable with one
// small write and one flush, where a bbolt commit takes two: the write
// set of a decision (its events, spend and lockout state) is written to a
// preallocated file and synced, and the relay may move; the applier
// commits the write sets to kioskd.db later, in order (decide.go), and
// kioskd.db's kLogLSN says up to which. Open replays the records above
// it, in LSN order, up to the first one missing. A record torn by a crash
// fails its checksum and ends the replay: its decision had not been told
// to anyone, and no later one can have been (each decision waits for its
// own record's flush).
//
// The file is a ring of logSize bytes, records starting on logAlign
// boundaries, each:
//
//	magic u32 | lsn u64 | payload length u32 | crc32c(lsn, payload) u32 | payload
//
// and a payload is the events bucket's sequence after the decision (u64)
// and its puts: bucket u8 | key length u16 | key | value length u32 |
// value. Overwriting blocks that are already allocated and written needs
// no metadata, so the sync is one data write and one cache flush. The
// records not yet in kioskd.db never fill more than half the ring
// (Access commits them first), so the ring never overwrites one.
const (
	logFile       = "decisions.log"
	logSize       = 1 << 20
	logAlign      = 4096
	logMagic      = 0x4b444c31 // "KDL1"
	logHeaderSize = 20
	// maxLogPayload bounds a record; a larger write set (none that a
	// decision makes) commits the usual way.
	maxLogPayload = logSize/4 - logHeaderSize
)

// kLogLSN (kioskd.db meta) is the LSN of the newest decision record
// committed to kioskd.db.
var kLogLSN = []byte("log_lsn")

var logCRC = crc32.MakeTable(crc32.Castagnoli)

// errLogRecordTooLarge is returned by append for a write set over
// maxLogPayload.
var errLogRecordTooLarge = errors.New("decision log: record too large")

// Buckets a logged put may name, by their number in a record.
var logBuckets = map[byte][]byte{1: bEvents, 2: bSpends, 3: bLockouts}

const (
	logBucketEvents   byte = 1
	logBucketSpends   byte = 2
	logBucketLockouts byte = 3
)

// logPut is one put of a write set.
type logPut struct {
	bucket   byte
	key, val []byte
}

// writeSet is what one decision wrote to kioskd.db.
type writeSet struct {
	lsn    uint64
	seq    uint64 // the events bucket's sequence after it (0: no event)
	puts   []logPut
	events int
}

// apply writes ws into tx: its puts, the events sequence (never lowered)
// and kLogLSN (never lowered).
func (ws *writeSet) apply(tx *bolt.Tx) error {
	for _, p := range ws.puts {
		name, ok := logBuckets[p.bucket]
		if !ok {
			return fmt.Errorf("decision log: unknown bucket %d", p.bucket)
		}
		b := tx.Bucket(name)
		if p.bucket == logBucketEvents {
			b.FillPercent = 1 // keys only ever grow
		}
		if err := b.Put(p.key, p.val); err != nil {
			return fmt.Errorf("replay decision %d: %w", ws.lsn, err)
		}
	}
	if ev := tx.Bucket(bEvents); ws.seq > ev.Sequence() {
		if err := ev.SetSequence(ws.seq); err != nil {
			return err
		}
	}
	m := tx.Bucket(bMeta)
	if ws.lsn > getU64(m.Get(kLogLSN)) {
		return m.Put(kLogLSN, u64(ws.lsn))
	}
	return nil
}

func (ws *writeSet) encode(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ws.seq)
	for _, p := range ws.puts {
		dst = append(dst, p.bucket)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.key)))
		dst = append(dst, p.key...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(p.val)))
		dst = append(dst, p.val...)
	}
	return dst
}

func decodeWriteSet(lsn uint64, b []byte) (*writeSet, error) {
	bad := func(what string) (*writeSet, error) {
		return nil, fmt.Errorf("decision log record %d: %s", lsn, what)
	}
	if len(b) < 8 {
		return bad("short")
	}
	ws := &writeSet{lsn: lsn, seq: binary.BigEndian.Uint64(b)}
	b = b[8:]
	for len(b) > 0 {
		if len(b) < 3 {
			return bad("truncated put")
		}
		p := logPut{bucket: b[0]}
		if _, ok := logBuckets[p.bucket]; !ok {
			return bad("unknown bucket")
		}
		kl := int(binary.BigEndian.Uint16(b[1:]))
		b = b[3:]
		if len(b) < kl+4 || kl == 0 {
			return bad("truncated key")
		}
		p.key, b = b[:kl:kl], b[kl:]
		vl := int(binary.BigEndian.Uint32(b))
		b = b[4:]
		if len(b) < vl {
			return bad("truncated value")
		}
		p.val, b = b[:vl:vl], b[vl:]
		ws.puts = append(ws.puts, p)
	}
	return ws, nil
}

// decLog is the open decision log. append is called with wmu held.
type decLog struct {
	f    *os.File
	head int64  // where the next record goes
	lsn  uint64 // of the newest record written or found
	buf  []byte
}

// openDecLog opens the decision log in dir, creating it (preallocated,
// written, synced) when it is missing, and returns the valid records it
// holds in LSN order. A log of the wrong size is read all the same and
// should be made anew (remake) once its records are committed.
func openDecLog(dir string) (l *decLog, records []*writeSet, fix bool, err error) {
	path := filepath.Join(dir, logFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if f, err = createDecLog(path); err != nil {
			return nil, nil, false, err
		}
		return &decLog{f: f}, nil, false, nil
	case err != nil:
		return nil, nil, false, fmt.Errorf("decision log: %w", err)
	}
	l = &decLog{f: f}
	records, end, err := l.scan()
	if err != nil {
		f.Close()
		return nil, nil, false, err
	}
	if n := len(records); n > 0 {
		l.lsn, l.head = records[n-1].lsn, end
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, false, fmt.Errorf("decision log: %w", err)
	}
	return l, records, fi.Size() != logSize, nil
}

// remake replaces the log by a fresh one, keeping the LSN counter (its
// record has been replayed and committed).
func (l *decLog) remake(dir string) error {
	l.f.Close()
	f, err := createDecLog(filepath.Join(dir, logFile))
	if err != nil {
		return err
	}
	l.f, l.head = f, 0
	return nil
}

// createDecLog writes a zeroed log of logSize bytes to a temporary file,
// syncs it and renames it into place.
func createDecLog(path string) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create decision log: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("create decision log: %w", err)
	}
	if _, err := f.Write(make([]byte, logSize)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// scan reads every record start of the file and returns the valid
// records in LSN order and the offset after the newest.
func (l *decLog) scan() ([]*writeSet, int64, error) {
	data, err := io.ReadAll(io.NewSectionReader(l.f, 0, 1<<31))
	if err != nil {
		return nil, 0, fmt.Errorf("decision log: %w", err)
	}
	var out []*writeSet
	var newest uint64
	var end int64
	for off := 0; off+logHeaderSize <= len(data); off += logAlign {
		h := data[off:]
		if binary.BigEndian.Uint32(h) != logMagic {
			continue
		}
		lsn := binary.BigEndian.Uint64(h[4:])
		n := int(binary.BigEndian.Uint32(h[12:]))
		if n > maxLogPayload || off+logHeaderSize+n > len(data) {
			continue
		}
		payload := h[logHeaderSize : logHeaderSize+n]
		if binary.BigEndian.Uint32(h[16:]) != recordCRC(lsn, payload) {
			continue
		}
		ws, err := decodeWriteSet(lsn, payload)
		if err != nil {
			continue // checksummed but not ours to read: ignore it
		}
		out = append(out, ws)
		if lsn > newest {
			newest, end = lsn, int64(off)+alignUp(int64(logHeaderSize+n))
		}
	}
	slices.SortFunc(out, func(a, b *writeSet) int { return cmp.Compare(a.lsn, b.lsn) })
	return out, end, nil
}

func recordCRC(lsn uint64, payload []byte) uint32 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], lsn)
	return crc32.Update(crc32.Checksum(b[:], logCRC), logCRC, payload)
}

func alignUp(n int64) int64 { return (n + logAlign - 1) / logAlign * logAlign }

// append gives ws the next LSN and writes it durably (one pwrite, one
// fdatasync). After an error other than errLogRecordTooLarge the LSN is
// used up all the same (see below).
func (l *decLog) append(ws *writeSet) error {
	l.buf = ws.encode(append(l.buf[:0], make([]byte, logHeaderSize)...))
	n := len(l.buf) - logHeaderSize
	if n > maxLogPayload {
		return errLogRecordTooLarge
	}
	lsn := l.lsn + 1
	binary.BigEndian.PutUint32(l.buf, logMagic)
	binary.BigEndian.PutUint64(l.buf[4:], lsn)
	binary.BigEndian.PutUint32(l.buf[12:], uint32(n))
	binary.BigEndian.PutUint32(l.buf[16:], recordCRC(lsn, l.buf[logHeaderSize:]))
	size := alignUp(int64(len(l.buf)))
	head := l.head
	if head+size > logSize {
		head = 0
	}
	// From here the record may reach the disk whatever happens, so its
	// LSN is used up: a caller that commits the decision the usual way
	// after an error writes kLogLSN = l.lsn, and Open never replays it
	// over what came later.
	l.lsn, l.head = lsn, head+size
	if _, err := l.f.WriteAt(l.buf, head); err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	ws.lsn = lsn
	return nil
}

func (l *decLog) close() error { return l.f.Close() }
