package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// matchStateOwner gives every file in the state directory the owner of the
// directory itself. kioskctl apply run as root on a stopped daemon would
// otherwise leave root-owned database files that the kioskd user cannot
// open for writing on its next start.
func matchStateOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil // only root can have created files of another owner
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil // a root-owned state dir: nothing to match
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("give %s to the state dir's owner: %w", p, err)
		}
	}
	return nil
}
