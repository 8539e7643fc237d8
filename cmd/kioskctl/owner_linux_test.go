package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMatchStateOwner: files root left in a state dir owned by another
// user are given to that user.
func TestMatchStateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create files of another owner")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 4321, 4321); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "creds-2.db")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := matchStateOwner(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4321 || st.Gid != 4321 {
		t.Fatalf("file owned by %d:%d, want 4321:4321", st.Uid, st.Gid)
	}
}
