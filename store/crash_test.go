package store_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
)

// TestKillDuringFullLoad kills (SIGKILL) a child process that replaces a
// set of credentials with another, at several points of the load, and
// checks that the store opens afterwards and serves exactly one of the
// two sets, with nothing left behind.
func TestKillDuringFullLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n = 3000
	points := []struct {
		name  string
		after string // kill after the child printed this line
	}{
		{"during puts", "put 1000"},
		{"after the last put", "put 3000"},
		{"as commit starts", "committing"},
		{"after commit", "committed"},
		{"after a delta", "delta"},
	}
	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
			cmd.Env = append(os.Environ(), "KIOSKD_KILL_CHILD="+dir, "KIOSKD_KILL_N="+strconv.Itoa(n))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			deadline := time.After(2 * time.Minute)
			var seen []string
		wait:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						cmd.Wait()
						t.Fatalf("child ended before %q; it said %v", p.after, seen)
					}
					seen = append(seen, l)
					if l == p.after {
						break wait
					}
				case <-deadline:
					cmd.Process.Kill()
					t.Fatalf("child did not reach %q; it said %v", p.after, seen)
				}
			}
			cmd.Process.Kill()
			cmd.Wait()
			for range lines {
			}

			s, err := store.Open(store.Options{Dir: dir})
			if err != nil {
				t.Fatalf("open after kill: %v", err)
			}
			defer s.Close()
			var c kiosk.Credential
			old, new := 0, 0
			for i := range n {
				genCred(&c, i, n, 0)
				if got, err := s.Lookup(c.Digest); err != nil {
					t.Fatal(err)
				} else if got != nil && got.ID == c.ID {
					old++
				}
				genCred(&c, i, n, n)
				c.Digest[31] ^= 0xff
				if got, err := s.Lookup(c.Digest); err != nil {
					t.Fatal(err)
				} else if got != nil && got.ID == c.ID {
					new++
				}
			}
			st, err := s.SyncState()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case old == n && new == 0 && st.Cursor == "old" && s.Count() == n:
			case new == n && old == 0 && strings.HasPrefix(st.Cursor, "new") && s.Count() == n:
			default:
				t.Fatalf("after a kill %s: %d of the old set, %d of the new, cursor %q, count %d", p.name, old, new, st.Cursor, s.Count())
			}
			// The child goes on to a delta after "committed"; the kill may
			// land after it, so "new-d" also shows the load was kept.
			if p.after == "committed" && !strings.HasPrefix(st.Cursor, "new") {
				t.Errorf("committed load lost: cursor %q", st.Cursor)
			}
			if p.after == "delta" {
				if st.Cursor != "new-d" {
					t.Errorf("delta lost: cursor %q", st.Cursor)
				}
				evs, _ := s.Pending(0, 100)
				if len(evs) != 2 || evs[1].Detail["cursor"] != "new-d" {
					t.Errorf("journal after a kill right after a delta: %+v", evs)
				}
			}
			if files := dirFiles(t, dir); len(files) != 2 {
				t.Errorf("leftovers after reopen: %v", files)
			}
		})
	}
}

// TestKillChild is the child of TestKillDuringFullLoad; it does nothing
// in a normal test run.
func TestKillChild(t *testing.T) {
	dir := os.Getenv("KIOSKD_KILL_CHILD")
	if dir == "" {
		t.Skip("child process only")
	}
	n, _ := strconv.Atoi(os.Getenv("KIOSKD_KILL_N"))
	defer store.SetTuning(8<<10, 8<<10, 64)()
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadGenerated(s, n, 0, "old", t0); err != nil {
		t.Fatal(err)
	}
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	var c kiosk.Credential
	for i := range n {
		genCred(&c, i, n, n)
		c.Digest[31] ^= 0xff
		if err := l.Put(&c); err != nil {
			t.Fatal(err)
		}
		if (i+1)%500 == 0 {
			fmt.Printf("put %d\n", i+1)
		}
	}
	fmt.Println("committing")
	mk := func(st store.ApplyStats) []*kiosk.Event {
		return []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: t0, Detail: map[string]any{"cursor": "new", "upserted": st.Upserted}}}
	}
	if _, err := l.Commit(store.DocMeta{Cursor: "new", IssuedAt: t0.Add(time.Minute)}, mk); err != nil {
		t.Fatal(err)
	}
	fmt.Println("committed")
	_, err = s.ApplyDelta("new", store.DocMeta{Cursor: "new-d", IssuedAt: t0.Add(2 * time.Minute)}, nil, nil, []string{"tok"}, func(st store.ApplyStats) []*kiosk.Event {
		return []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: t0, Detail: map[string]any{"cursor": "new-d"}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("delta")
	// Wait to be killed.
	select {}
}
