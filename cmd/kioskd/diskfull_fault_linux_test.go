package main

// Disk full through the whole daemon (issue 6): kioskd's state directory
// on a tiny tmpfs whose free space a filler file takes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"kioskd/internal/hwtest"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// mountTiny mounts a tmpfs of size on dir (hiding what dir held). When
// the test ends, before is called (stop the daemon using it), then dir
// is unmounted. Without the right to mount, the test skips with a
// message; inside the hardware VM it fails.
func mountTiny(t *testing.T, dir, size string, before func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		hwtest.Unavailable(t, "a tmpfs mount for the disk-full tests (needs root or CAP_SYS_ADMIN)", err)
	}
	t.Cleanup(func() {
		before()
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
}

// fillFS writes the file path until its file system is full, then gives
// back free bytes, and returns a function that deletes it.
func fillFS(t *testing.T, path string, free int64) (release func()) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	defer fd.Close()
	for _, size := range []int{64 << 10, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := fd.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filler: %v", err)
				}
				break
			}
		}
	}
	if free > 0 {
		fi, err := fd.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := fd.Truncate(max(fi.Size()-free, 0)); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// attempt types pin on the keypad and waits for the engine's outcome:
// the decision it logs, or its "decision not recorded" error line
// (failed). It then checks the relay: one pulse for a grant, no change
// at all for anything else.
func (h *harness) attempt(pin string) (reason string, failed bool) {
	h.t.Helper()
	const notRecorded = "decision not recorded; denied"
	before := strings.Count(h.logBuf.String(), notRecorded)
	relay := h.relay("main")
	typeKeys(h.t, h.keypad, pin)
	deadline := time.After(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for reason == "" && !failed {
		select {
		case d := <-h.decisions:
			if d.Input == "keypad" {
				reason = d.Reason
			}
		case <-tick.C:
			failed = strings.Count(h.logBuf.String(), notRecorded) > before
		case <-deadline:
			h.t.Fatalf("no outcome for a PIN within %v\n%s", wait, h.logBuf)
		}
	}
	if reason == string(kiosk.Granted) {
		waitLine(h.t, relay, true)
		waitLine(h.t, relay, false)
		return reason, false
	}
	// The engine pulses before it reports a grant; nothing else moves the
	// relay in this test.
	select {
	case v := <-relay.Changes():
		h.t.Fatalf("relay changed to %v on an outcome that is not a recorded grant (reason %q, failed %v)", v, reason, failed)
	default:
	}
	return reason, failed
}

// isNoSpace reports whether err says the disk is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || (err != nil && strings.Contains(err.Error(), "no space left"))
}

// applyBig applies, through the file path of SPEC §6.5, a signed full
// snapshot of n generated PIN credentials, and returns its error.
func (h *harness) applyBig(cursor string, n int) (portalsync.Result, error) {
	h.t.Helper()
	doc := &portalsync.Document{Header: portalsync.Header{DeviceID: "spr-test", IssuedAt: testNow, Full: true, Cursor: cursor}}
	for i := range n {
		c := pinCred(fmt.Sprintf("big-%d", i), fmt.Sprintf("%06d", i), nil).Credential
		c.Digest = kiosk.Digest(h.siteKey, c.Kind, []byte(fmt.Sprintf("%06d", i)))
		doc.Credentials = append(doc.Credentials, *portalsync.NewWireCredential(&c))
	}
	body, err := doc.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.dir, cursor+".json") // on the real disk
	if err := portalsync.WriteFile(path, body, h.priv); err != nil {
		h.t.Fatal(err)
	}
	return portalsync.ApplyFile(context.Background(), portalsync.StoreApplier(h.d.Store),
		portalsync.FileOptions{DeviceID: "spr-test", PublicKey: h.pub, Now: h.d.Clock.Now}, path)
}

// TestDiskFullDaemon: kioskd on a full disk. A grant whose record cannot
// be written does not pulse the relay, a one-time PIN is not spent by it,
// door events that cannot be recorded are logged, a technician's unlock
// fails safe while the exit button still opens, and the daemon stays up
// and stops cleanly. A full snapshot that runs out of space midway leaves the
// old set serving. When space returns, the PINs that failed open (once),
// and after a restart the journal holds every recorded decision without
// a gap, the credentials are all there, and bbolt's check passes.
func TestDiskFullDaemon(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	state := filepath.Join(h.dir, "state")
	h.stop()
	mountTiny(t, state, "4m", h.stop)
	h.seen, h.events = 0, nil // a fresh store on the tmpfs
	h.start()

	const otps = 6
	creds := []cred{pinCred("res", "246810", nil)}
	for i := range otps {
		creds = append(creds, pinCred(fmt.Sprintf("otp-%d", i), fmt.Sprintf("5%05d", 13579*(i+1)%100000), func(c *kiosk.Credential) { c.Uses = 1 }))
	}
	h.applyFull("c-1", testNow.Add(-time.Minute), nil, creds...)

	release := fillFS(t, filepath.Join(state, "filler"), 0)

	// Grants of an unlimited PIN until one cannot be recorded: bbolt
	// first reuses the free pages of its files, and the decision log
	// (preallocated) holds up to half its 1 MiB of decisions that
	// kioskd.db has no room for yet, a page each.
	grants := map[string]int{}
	failed := 0
	for i := 0; i < 1000 && failed == 0; i++ {
		reason, f := h.attempt("246810")
		switch {
		case f:
			failed++
		case reason == string(kiosk.Granted):
			grants["res"]++
		default:
			t.Fatalf("reason %q on a full disk, want granted or not recorded", reason)
		}
	}
	if failed == 0 {
		t.Fatal("1000 grants fitted on a full 4 MiB tmpfs: the disk never filled")
	}
	t.Logf("disk full after %d recorded grants", grants["res"])

	// One-time PINs on the full disk: each either opens (recorded and
	// spent) or fails without a pulse and without a spend.
	otpFailed := map[string]bool{}
	for _, c := range creds[1:] {
		reason, f := h.attempt(c.secret)
		switch {
		case f:
			otpFailed[c.ID] = true
		case reason == string(kiosk.Granted):
			grants[c.ID]++
		default:
			t.Fatalf("%s: reason %q on a full disk", c.ID, reason)
		}
	}
	if len(otpFailed) == 0 {
		t.Fatal("no one-time PIN failed on the full disk")
	}
	t.Logf("%d of %d one-time PINs failed safe on the full disk", len(otpFailed), otps)

	// Door events that cannot be recorded are logged: the door contact
	// moves until a record fails (small events may still fit in pages
	// bbolt freed).
	contact, err := h.bank.FindInput("gpiochip0", 27)
	if err != nil {
		t.Fatal(err)
	}
	doorFails := func() int { return strings.Count(h.logBuf.String(), "record door event") }
	for i := 0; doorFails() == 0; i++ {
		if i == 200 {
			t.Fatal("200 door openings recorded on the full disk")
		}
		last, _ := h.d.Store.LastSeq()
		contact.Set(true)
		contact.Set(false)
		waitFor(t, "the door events recorded or their failure logged", h.appended, func() bool {
			l, _ := h.d.Store.LastSeq()
			return doorFails() > 0 || l >= last+3 // opened, forced, closed
		})
	}
	// A technician's unlock fails safe; the exit button opens whatever
	// happens to its record (people must be able to leave).
	relay := h.relay("main")
	unlockFails := strings.Count(h.logBuf.String(), "record unlock")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.d.Engine.Unlock(ctx, "main", kiosk.SourceTechnician, nil); err != nil {
		if !isNoSpace(err) {
			t.Errorf("technician unlock on a full disk: %v, want ENOSPC", err)
		}
		select {
		case v := <-relay.Changes():
			t.Fatalf("relay changed to %v on an unrecorded technician unlock", v)
		default:
		}
	} else {
		waitLine(t, relay, true)
		waitLine(t, relay, false)
	}
	exit, err := h.bank.FindInput("gpiochip0", 22)
	if err != nil {
		t.Fatal(err)
	}
	exit.Set(true)
	exit.Set(false)
	waitLine(t, relay, true)
	waitLine(t, relay, false)
	t.Logf("unlock records that failed: %d (technician and exit button)", strings.Count(h.logBuf.String(), "record unlock")-unlockFails)

	// The decision loop answers.
	if err := h.d.Engine.Do(ctx, func() {}); err != nil {
		t.Fatalf("decision loop does not answer on a full disk: %v", err)
	}
	h.stop() // fails the test if run returns an error
	if !strings.Contains(h.logBuf.String(), "record stop") {
		t.Error("the failed device.stopping record was not logged")
	}

	// Some space returns, not enough for a full snapshot of 2000: it
	// fails midway and the old set serves on.
	release()
	h.start()
	release = fillFS(t, filepath.Join(state, "filler"), 256<<10)
	files, _ := os.ReadDir(state)
	if _, err := h.applyBig("c-2", 2000); !isNoSpace(err) {
		t.Errorf("full snapshot out of space: %v, want ENOSPC", err)
	} else {
		t.Logf("full snapshot out of space midway: %v", err)
	}
	if st, err := h.d.Store.SyncState(); err != nil || st.Cursor != "c-1" || st.Credentials != len(creds) {
		t.Errorf("after the failed snapshot: %+v, %v; want the old set (c-1, %d)", st, err, len(creds))
	}
	if after, _ := os.ReadDir(state); len(after) != len(files) {
		t.Errorf("state dir holds %d files after the failed snapshot, %d before", len(after), len(files))
	}

	// Space returns.
	release()
	for _, c := range creds[1:] {
		reason, f := h.attempt(c.secret)
		want := string(kiosk.UsedUp)
		if otpFailed[c.ID] {
			want = string(kiosk.Granted)
			grants[c.ID]++
		}
		if f || reason != want {
			t.Errorf("%s after space returned: reason %q (failed %v), want %s", c.ID, reason, f, want)
		}
	}
	if reason, f := h.attempt("246810"); f || reason != string(kiosk.Granted) {
		t.Fatalf("unlimited PIN after space returned: %q (failed %v)", reason, f)
	}
	grants["res"]++
	h.restart()

	// The journal: every seq from 1 without a gap, and one access.granted
	// and one door.unlocked for each grant seen, none for the failures.
	all, err := h.d.Store.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	unlocked, total := 0, 0
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap", i, e.Seq)
		}
		switch e.Type {
		case kiosk.EvAccessGranted:
			got[e.CredentialID]++
		case kiosk.EvDoorUnlocked:
			unlocked++
		}
	}
	for id, n := range grants {
		total += n
		if got[id] != n {
			t.Errorf("%s: %d access.granted in the journal, %d grants opened the door", id, got[id], n)
		}
	}
	if unlocked != total {
		t.Errorf("%d door.unlocked in the journal for %d grants", unlocked, total)
	}
	if n := h.d.Store.Count(); n != len(creds) {
		t.Errorf("%d credentials after the restart, want %d", n, len(creds))
	}
	for _, c := range creds {
		if got, err := h.d.Store.Lookup(kiosk.Digest(h.siteKey, kiosk.KindPIN, []byte(c.secret))); err != nil || got == nil || got.ID != c.ID {
			t.Errorf("lookup %s after the restart: %v, %v", c.ID, got, err)
		}
	}
	h.stop()
	for _, name := range []string{"kioskd.db", "creds-2.db"} {
		db, err := bolt.Open(filepath.Join(state, name), 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		db.View(func(tx *bolt.Tx) error {
			for cerr := range tx.Check() {
				t.Errorf("%s is corrupt: %v", name, cerr)
			}
			return nil
		})
		db.Close()
	}
}
