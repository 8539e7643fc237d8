package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// writeback writes the whole file out a chunk at a time, yielding before
// each chunk, and leaves its content as it was.
func TestWriteback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	data := bytes.Repeat([]byte("kioskd "), 10_000) // 70 000 bytes
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	yields := 0
	if err := writeback(path, 16<<10, func() { yields++ }); err != nil {
		t.Fatal(err)
	}
	if yields != 5 { // 70 000 bytes in 16 KiB chunks
		t.Errorf("%d yields, want 5 (one per chunk)", yields)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content changed by write-back (err %v)", err)
	}
	if err := writeback(filepath.Join(t.TempDir(), "missing"), 1<<20, func() {}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write-back of a missing file: %v, want not-exist", err)
	}
}

// removeGently shrinks the file a step at a time, yielding before each
// step, then deletes it.
func TestRemoveGently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(path, make([]byte, 100_000), 0o600); err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	err := removeGently(path, 32<<10, func() {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{100_000, 100_000 - 32<<10, 100_000 - 64<<10, 100_000 - 96<<10}
	if len(sizes) != len(want) {
		t.Fatalf("sizes seen at each step %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("sizes seen at each step %v, want %v", sizes, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there after removeGently: %v", err)
	}
	if err := removeGently(path, 1<<20, func() {}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removing a missing file: %v, want not-exist", err)
	}
}
