package store

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// sorter is an external merge sort of (key, value) records: records are
// gathered in one memory arena of about limit bytes, sorted and written
// as a run file when it fills, and merged back in key order with one
// small buffered reader per run. Memory stays bounded whatever the number
// of records, which is what keeps a million-credential snapshot inside
// the memory budget while still inserting into bbolt in key order.
type sorter struct {
	dir   string // run files go here
	name  string // prefix of the run files
	limit int    // arena size that triggers a spill

	arena []byte // records: uvarint klen, key, uvarint vlen, value
	offs  []int  // start of each record in arena
	runs  []string
	n     int // records added in all
}

func newSorter(dir, name string, limit int) *sorter {
	return &sorter{dir: dir, name: name, limit: limit}
}

// add copies the record in.
func (s *sorter) add(k, v []byte) error {
	if s.arena == nil {
		s.arena = make([]byte, 0, s.limit+s.limit/8)
	}
	s.offs = append(s.offs, len(s.arena))
	s.arena = binary.AppendUvarint(s.arena, uint64(len(k)))
	s.arena = append(s.arena, k...)
	s.arena = binary.AppendUvarint(s.arena, uint64(len(v)))
	s.arena = append(s.arena, v...)
	s.n++
	if len(s.arena) >= s.limit {
		return s.spill()
	}
	return nil
}

// record returns the key and value of the record at off in arena.
func record(arena []byte, off int) (k, v []byte) {
	kl, n := binary.Uvarint(arena[off:])
	off += n
	k = arena[off : off+int(kl)]
	off += int(kl)
	vl, n := binary.Uvarint(arena[off:])
	off += n
	return k, arena[off : off+int(vl)]
}

func (s *sorter) sortArena() {
	slices.SortFunc(s.offs, func(a, b int) int {
		ka, _ := record(s.arena, a)
		kb, _ := record(s.arena, b)
		return bytes.Compare(ka, kb)
	})
}

// spill writes the arena as one sorted run file.
func (s *sorter) spill() error {
	if len(s.offs) == 0 {
		return nil
	}
	s.sortArena()
	path := filepath.Join(s.dir, fmt.Sprintf("%s-%d.run", s.name, len(s.runs)))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("sort run: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	for _, off := range s.offs {
		k, v := record(s.arena, off)
		var hdr [2 * binary.MaxVarintLen64]byte
		n := binary.PutUvarint(hdr[:], uint64(len(k)))
		w.Write(hdr[:n])
		w.Write(k)
		n = binary.PutUvarint(hdr[:], uint64(len(v)))
		w.Write(hdr[:n])
		w.Write(v)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sort run %s: %w", path, err)
	}
	s.runs = append(s.runs, path)
	s.arena = s.arena[:0]
	s.offs = s.offs[:0]
	return nil
}

// iter returns the records in key order (records with equal keys come
// out next to each other, in no particular order). The sorter must not
// be added to afterwards. Close the iterator to release its files.
func (s *sorter) iter() (*mergeIter, error) {
	s.sortArena()
	m := &mergeIter{}
	if len(s.offs) > 0 {
		m.srcs = append(m.srcs, &memSource{arena: s.arena, offs: s.offs})
	}
	for _, p := range s.runs {
		f, err := os.Open(p)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("sort run: %w", err)
		}
		m.files = append(m.files, f)
		m.srcs = append(m.srcs, &fileSource{r: bufio.NewReaderSize(f, 32<<10), name: p})
	}
	for _, src := range m.srcs {
		ok, err := src.next()
		if err != nil {
			m.Close()
			return nil, err
		}
		if ok {
			m.h = append(m.h, src)
		}
	}
	heap.Init(&m.h)
	return m, nil
}

// remove deletes the run files.
func (s *sorter) remove() {
	for _, p := range s.runs {
		os.Remove(p)
	}
	s.runs = nil
	s.arena, s.offs = nil, nil
}

type source interface {
	next() (bool, error)
	key() []byte
	value() []byte
}

type memSource struct {
	arena []byte
	offs  []int
	i     int
	k, v  []byte
}

func (m *memSource) next() (bool, error) {
	if m.i >= len(m.offs) {
		return false, nil
	}
	m.k, m.v = record(m.arena, m.offs[m.i])
	m.i++
	return true, nil
}
func (m *memSource) key() []byte   { return m.k }
func (m *memSource) value() []byte { return m.v }

type fileSource struct {
	r    *bufio.Reader
	name string
	k, v []byte
}

func (f *fileSource) next() (bool, error) {
	kl, err := binary.ReadUvarint(f.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sort run %s: %w", f.name, err)
	}
	f.k = grow(f.k, int(kl))
	if _, err := io.ReadFull(f.r, f.k); err != nil {
		return false, fmt.Errorf("sort run %s: %w", f.name, err)
	}
	vl, err := binary.ReadUvarint(f.r)
	if err != nil {
		return false, fmt.Errorf("sort run %s: %w", f.name, err)
	}
	f.v = grow(f.v, int(vl))
	if _, err := io.ReadFull(f.r, f.v); err != nil {
		return false, fmt.Errorf("sort run %s: %w", f.name, err)
	}
	return true, nil
}
func (f *fileSource) key() []byte   { return f.k }
func (f *fileSource) value() []byte { return f.v }

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

type srcHeap []source

func (h srcHeap) Len() int           { return len(h) }
func (h srcHeap) Less(i, j int) bool { return bytes.Compare(h[i].key(), h[j].key()) < 0 }
func (h srcHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *srcHeap) Push(x any)        { *h = append(*h, x.(source)) }
func (h *srcHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeIter merges the sources in key order.
type mergeIter struct {
	srcs    []source
	files   []*os.File
	h       srcHeap
	started bool
	err     error
}

// Next advances to the next record; the key and value it exposes are
// valid until the following call.
func (m *mergeIter) Next() bool {
	if m.err != nil || len(m.h) == 0 {
		return false
	}
	if !m.started {
		m.started = true
		return true
	}
	ok, err := m.h[0].next()
	if err != nil {
		m.err = err
		return false
	}
	if ok {
		heap.Fix(&m.h, 0)
	} else {
		heap.Pop(&m.h)
	}
	return len(m.h) > 0
}

func (m *mergeIter) Key() []byte   { return m.h[0].key() }
func (m *mergeIter) Value() []byte { return m.h[0].value() }
func (m *mergeIter) Err() error    { return m.err }

func (m *mergeIter) Close() {
	for _, f := range m.files {
		f.Close()
	}
	m.files = nil
}
