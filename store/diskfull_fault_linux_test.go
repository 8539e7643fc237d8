package store_test

// Disk full (issue 6): the state directory on a tiny tmpfs whose free
// space a filler file takes. Writes then fail with ENOSPC for real, inside
// bbolt, exactly as on a full SD card.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// tinyFS mounts a tmpfs of the given size (e.g. "4m") on a new directory
// and unmounts it when the test ends (after the cleanups registered
// later, such as closing a store on it). Without the right to mount, the
// test skips with a message; inside the hardware VM it fails.
func tinyFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		hwtest.Unavailable(t, "a tmpfs mount for the disk-full tests (needs root or CAP_SYS_ADMIN)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// filler takes the free space of a file system.
type filler struct {
	t    *testing.T
	path string
}

// fill writes a filler file in dir until the file system is full.
func fill(t *testing.T, dir string) *filler {
	t.Helper()
	f := &filler{t: t, path: filepath.Join(dir, "filler")}
	f.top()
	return f
}

// top grows the filler until the file system has no block left (a
// delete elsewhere may have freed some).
func (f *filler) top() {
	f.t.Helper()
	fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		f.t.Fatalf("filler: %v", err)
	}
	defer fd.Close()
	for _, size := range []int{64 << 10, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := fd.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					f.t.Fatalf("filler: %v", err)
				}
				break
			}
		}
	}
}

// leave shrinks the filler so that n bytes are free.
func (f *filler) leave(n int64) {
	f.t.Helper()
	fi, err := os.Stat(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.Truncate(f.path, max(fi.Size()-n, 0)); err != nil {
		f.t.Fatal(err)
	}
}

// release deletes the filler: the space is back.
func (f *filler) release() {
	f.t.Helper()
	if err := os.Remove(f.path); err != nil {
		f.t.Fatal(err)
	}
}

// isNoSpace reports whether err says the disk is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || (err != nil && strings.Contains(err.Error(), "no space left"))
}

// grant is what the engine's decision transaction does for a grant of
// credential id with a use limit of uses (0 = unlimited): read the local
// spends, deny when none is left, else spend one and append the grant
// event, all in one Access. It returns the event when it was durably
// recorded.
func grant(s *store.Store, id string, uses int) (ev *kiosk.Event, denied bool, err error) {
	ev = &kiosk.Event{Time: t0, ClockSynced: true, Type: kiosk.EvAccessGranted, Input: "keypad", CredentialID: id, Reason: kiosk.Granted}
	err = s.Access(func(tx kiosk.AccessTx) error {
		if uses > 0 {
			n, err := tx.LocalSpent(id)
			if err != nil {
				return err
			}
			if n >= uses {
				denied = true
				return nil
			}
			if err := tx.AddSpend(id); err != nil {
				return err
			}
		}
		return tx.Append(ev)
	})
	if err != nil || denied {
		return nil, denied, err
	}
	return ev, false, nil
}

var errPeek = errors.New("peek: roll back")

// spent reads the local spends of id in an Access that rolls back.
func spent(t *testing.T, s *store.Store, id string) int {
	t.Helper()
	var n int
	err := s.Access(func(tx kiosk.AccessTx) error {
		var err error
		n, err = tx.LocalSpent(id)
		if err != nil {
			return err
		}
		return errPeek
	})
	if !errors.Is(err, errPeek) {
		t.Fatalf("read spends of %s: %v", id, err)
	}
	return n
}

// checkBolt runs bbolt's consistency check on a database file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			t.Errorf("%s is corrupt: %v", filepath.Base(path), cerr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDiskFullStore: with the state directory's file system full, a
// decision transaction (spend and grant event) fails as a whole with an
// error that says so: no spend without its record, no record without its
// spend, no seq taken; Record fails the same way and loses nothing
// already recorded. A full snapshot that runs out of space midway leaves
// the old set serving and no leftover files. When space returns,
// everything works again, and after a reopen every credential, event and
// spend is there and both database files pass bbolt's check.
func TestDiskFullStore(t *testing.T) {
	root := tinyFS(t, "4m")
	dir := filepath.Join(root, "state")
	s := storetest.OpenDir(t, dir)

	const otps = 8
	creds := set("res", 200)
	for i := range otps {
		creds = append(creds, storetest.Cred(fmt.Sprintf("otp-%d", i), storetest.Uses(1)))
	}
	storetest.Load(t, s, "c-1", t0, byDigest(creds))
	var committed []kiosk.Event // every event durably recorded, in order
	base := storetest.Events(t, s)
	committed = append(committed, base...)
	commit := func(ev *kiosk.Event) {
		if ev.Seq == 0 || ev.ID == "" {
			t.Fatalf("recorded event without seq/id: %+v", ev)
		}
		if n := len(committed); n > 0 && ev.Seq != committed[n-1].Seq+1 {
			t.Fatalf("event seq %d after %d: a gap", ev.Seq, committed[n-1].Seq)
		}
		committed = append(committed, *ev)
	}

	liveFiles := dirFiles(t, dir)
	f := fill(t, root)

	// Unlimited grants until the journal needs a page the disk has not
	// got: bbolt first reuses free pages of its file.
	failures := 0
	for i := 0; i < 5000 && failures == 0; i++ {
		ev, _, err := grant(s, "c-res-0", 0)
		if err != nil {
			if !isNoSpace(err) {
				t.Fatalf("grant on a full disk: %v, want ENOSPC", err)
			}
			failures++
			continue
		}
		commit(ev)
	}
	if failures == 0 {
		t.Fatal("5000 grants fitted on a full 4 MiB tmpfs: the disk never filled")
	}
	t.Logf("disk full after %d grant records", len(committed)-len(base))

	// A one-time PIN on the full disk: each attempt either records its
	// grant together with its spend, or does neither.
	otpFailed := 0
	for i := range otps {
		id := fmt.Sprintf("otp-%d", i)
		ev, denied, err := grant(s, id, 1)
		switch {
		case denied:
			t.Fatalf("%s denied before its first use", id)
		case err != nil:
			if !isNoSpace(err) {
				t.Fatalf("%s: %v, want ENOSPC", id, err)
			}
			otpFailed++
			if n := spent(t, s, id); n != 0 {
				t.Errorf("%s: spent %d times without a record", id, n)
			}
		default:
			commit(ev)
			if n := spent(t, s, id); n != 1 {
				t.Errorf("%s: recorded grant, spends = %d", id, n)
			}
		}
	}
	if otpFailed == 0 {
		t.Fatal("no one-time grant failed on the full disk")
	}

	// Record fails cleanly: the events get no seq and the journal is as
	// it was.
	evs := []*kiosk.Event{
		{Time: t0, Type: kiosk.EvDoorOpened, Door: "main"},
		{Time: t0, Type: kiosk.EvDoorClosed, Door: "main"},
	}
	recErr := s.Record(evs...)
	if recErr == nil {
		// The pages freed may have sufficed; then both are recorded.
		commit(evs[0])
		commit(evs[1])
	} else {
		if !isNoSpace(recErr) || !strings.Contains(recErr.Error(), "record events") {
			t.Errorf("Record on a full disk: %v, want a wrapped ENOSPC", recErr)
		}
		for _, ev := range evs {
			if ev.Seq != 0 || ev.ID != "" {
				t.Errorf("failed Record left seq %d id %q on an event", ev.Seq, ev.ID)
			}
		}
	}
	if last, err := s.LastSeq(); err != nil || last != committed[len(committed)-1].Seq {
		t.Errorf("LastSeq = %d, %v; want %d (no seq taken by a failed write)", last, err, committed[len(committed)-1].Seq)
	}

	// A full snapshot on the full disk fails and leaves the old set.
	bigger := set("new", 300)
	if _, err := storetest.LoadErr(s, "c-2", t0.Add(1), byDigest(bigger)); !isNoSpace(err) {
		t.Errorf("full load on a full disk: %v, want ENOSPC", err)
	}
	checkSet(t, s, creds, bigger)
	if files := dirFiles(t, dir); !slices.Equal(files, liveFiles) {
		t.Errorf("state dir holds %v after a full load failed on a full disk, want the live files %v only", files, liveFiles)
	}

	// A full snapshot that runs out midway: 256 KiB free, a set of about
	// 3 MiB. Small batches so that it fails inside the stream.
	f.release()
	f = fill(t, root)
	f.leave(256 << 10)
	restore := store.SetTuning(16<<10, 16<<10, 64)
	huge := set("huge", 20000)
	_, err := storetest.LoadErr(s, "c-3", t0.Add(2), byDigest(huge))
	restore()
	if !isNoSpace(err) {
		t.Fatalf("full load running out of space: %v, want ENOSPC", err)
	}
	t.Logf("full load out of space midway: %v", err)
	if !strings.Contains(err.Error(), "creds-") && !strings.Contains(err.Error(), "full load") && !strings.Contains(err.Error(), "staging") {
		t.Errorf("error %q does not say what was being written", err)
	}
	checkSet(t, s, creds, huge[:50])
	if st, err := s.SyncState(); err != nil || st.Cursor != "c-1" {
		t.Errorf("sync state %+v, %v; want cursor c-1 (old set)", st, err)
	}
	if files := dirFiles(t, dir); !slices.Equal(files, liveFiles) {
		t.Errorf("state dir holds %v after the failed load, want the live files only", files)
	}

	// Space returns: grants, spends and loads work again.
	f.release()
	for i := range otps {
		id := fmt.Sprintf("otp-%d", i)
		before := spent(t, s, id)
		ev, denied, err := grant(s, id, 1)
		if err != nil {
			t.Fatalf("%s after space returned: %v", id, err)
		}
		if denied != (before == 1) {
			t.Errorf("%s: denied = %v with %d spends before", id, denied, before)
		}
		if !denied {
			commit(ev)
		}
		if n := spent(t, s, id); n != 1 {
			t.Errorf("%s: spends = %d after recovery, want exactly 1", id, n)
		}
	}
	ev, _, err := grant(s, "c-res-0", 0)
	if err != nil {
		t.Fatalf("grant after space returned: %v", err)
	}
	commit(ev)
	final := append(set("final", 50), creds[:10]...)
	storetest.Load(t, s, "c-4", t0.Add(3), byDigest(final))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: everything recorded is there, in order, nothing else.
	s = storetest.OpenDir(t, dir)
	checkSet(t, s, final, creds[10:])
	got := storetest.Events(t, s)
	if len(got) != len(committed) {
		t.Fatalf("journal holds %d events after reopen, want %d", len(got), len(committed))
	}
	for i := range got {
		if got[i].ID != committed[i].ID || got[i].Seq != committed[i].Seq || got[i].Type != committed[i].Type || got[i].CredentialID != committed[i].CredentialID {
			t.Errorf("event %d = %s %d %s %s, want %s %d %s %s", i, got[i].ID, got[i].Seq, got[i].Type, got[i].CredentialID,
				committed[i].ID, committed[i].Seq, committed[i].Type, committed[i].CredentialID)
		}
	}
	grants := map[string]int{}
	for _, e := range got {
		if e.Type == kiosk.EvAccessGranted {
			grants[e.CredentialID]++
		}
	}
	for i := range otps {
		id := fmt.Sprintf("otp-%d", i)
		if n := spent(t, s, id); n != 1 || grants[id] != 1 {
			t.Errorf("%s: %d spends and %d grant events after reopen, want 1 and 1", id, n, grants[id])
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkBolt(t, filepath.Join(dir, "kioskd.db"))
	for _, name := range dirFiles(t, dir) {
		if strings.HasPrefix(name, "creds-") {
			checkBolt(t, filepath.Join(dir, name))
		}
	}
}
