package store

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecisionLog: whatever a decisions.log holds (a torn write, another
// file copied over it, a disk's garbage), opening it never panics, and
// every record it accepts is one whose checksum matched and whose write
// set encodes back to the same payload.
func FuzzDecisionLog(f *testing.F) {
	ws := &writeSet{seq: 7, puts: []logPut{
		{bucket: logBucketEvents, key: u64(7), val: []byte(`{"type":"access.granted"}`)},
		{bucket: logBucketSpends, key: []byte("c-1"), val: u64(1)},
		{bucket: logBucketLockouts, key: []byte("keypad"), val: []byte(`{}`)},
	}}
	rec := func(lsn uint64, ws *writeSet) []byte {
		payload := ws.encode(nil)
		b := binary.BigEndian.AppendUint32(nil, logMagic)
		b = binary.BigEndian.AppendUint64(b, lsn)
		b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
		b = binary.BigEndian.AppendUint32(b, recordCRC(lsn, payload))
		return append(b, payload...)
	}
	one := rec(1, ws)
	f.Add(one)
	two := append(append(bytes.Clone(one), make([]byte, logAlign-len(one))...), rec(2, &writeSet{seq: 7})...)
	f.Add(two)
	f.Add(one[:len(one)-3])
	f.Add([]byte("KDL1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, records, _, err := openDecLog(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.close()
		var prev uint64
		for _, ws := range records {
			if ws.lsn < prev {
				t.Fatalf("records out of LSN order: %d after %d", ws.lsn, prev)
			}
			prev = ws.lsn
			if ws.lsn > l.lsn {
				t.Fatalf("record LSN %d above the log's %d", ws.lsn, l.lsn)
			}
			back, err := decodeWriteSet(ws.lsn, ws.encode(nil))
			if err != nil || back.seq != ws.seq || len(back.puts) != len(ws.puts) {
				t.Fatalf("write set does not round-trip: %+v → %+v, %v", ws, back, err)
			}
			for i := range ws.puts {
				if _, ok := logBuckets[ws.puts[i].bucket]; !ok {
					t.Fatalf("accepted a put to bucket %d", ws.puts[i].bucket)
				}
			}
		}
	})
}
