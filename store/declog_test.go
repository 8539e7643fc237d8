package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// grantOnce is a decision on a one-time credential: it spends the use
// and appends the grant, or is denied when the use is gone.
func grantOnce(t *testing.T, s *store.Store, c *kiosk.Credential) (granted bool, ev *kiosk.Event) {
	t.Helper()
	err := s.Access(func(tx kiosk.AccessTx) error {
		got, err := tx.Lookup(c.Digest)
		if err != nil || got == nil {
			t.Fatalf("lookup %s: %v, %v", c.ID, got, err)
		}
		n, err := tx.LocalSpent(c.ID)
		if err != nil {
			return err
		}
		ev = &kiosk.Event{Type: kiosk.EvAccessDenied, Reason: kiosk.UsedUp, Time: t0, Input: "keypad", CredentialID: c.ID}
		if n < c.Uses {
			if err := tx.AddSpend(c.ID); err != nil {
				return err
			}
			ev.Type, ev.Reason, granted = kiosk.EvAccessGranted, kiosk.Granted, true
		}
		if err := tx.PutLockout("keypad", kiosk.LockoutState{Level: 1, LastStart: t0}); err != nil {
			return err
		}
		return tx.Append(ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	return granted, ev
}

// A decision is durable once Access returns, before it has committed to
// kioskd.db: a crash then finds it in the decision log and Open commits
// it — the use stays spent, the event keeps its seq, the lockout state
// is there. A torn record is ignored and the store opens as before it.
func TestDecisionLogReplay(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	otp := storetest.Cred("otp", storetest.Uses(1))
	storetest.Load(t, s, "c-1", t0, []*kiosk.Credential{otp})
	if err := s.Record(&kiosk.Event{Type: kiosk.EvDeviceStarted, Time: t0}); err != nil {
		t.Fatal(err)
	}

	release := s.HoldCommits()
	granted, ev := grantOnce(t, s, otp)
	if !granted || ev.Seq != 2 {
		t.Fatalf("first use: granted %v, seq %d; want a grant with seq 2", granted, ev.Seq)
	}
	// Two crash images taken now: kioskd.db has not got the decision,
	// the log has. In the second, the record is torn (a byte of its
	// payload changed).
	crash := copyState(t, dir)
	torn := copyState(t, dir)
	release()
	tearRecord(t, filepath.Join(torn, "decisions.log"), 1)

	c := storetest.OpenDir(t, crash)
	evs := storetest.Events(t, c)
	if len(evs) != 2 || evs[1].ID != ev.ID || evs[1].Type != kiosk.EvAccessGranted {
		t.Fatalf("after a crash behind the decision, journal = %+v; want device.started and the grant %s", evs, ev.ID)
	}
	if n, _ := c.LastSeq(); n != 2 {
		t.Errorf("LastSeq after replay = %d, want 2", n)
	}
	if lo, err := c.Lockouts(); err != nil || lo["keypad"].Level != 1 {
		t.Errorf("lockout state after replay = %+v, %v", lo, err)
	}
	if again, _ := grantOnce(t, c, otp); again {
		t.Fatal("a one-time credential granted twice across a crash behind its decision")
	}
	// Replayed once: a reopen does not apply the record again.
	c.Close()
	c = storetest.OpenDir(t, crash)
	if evs := storetest.Events(t, c); len(evs) != 3 || evs[2].Seq != 3 || evs[2].Reason != kiosk.UsedUp {
		t.Fatalf("after a second open, journal = %+v; want the used_up denial at seq 3 and nothing replayed again", evs)
	}
	c.Close()

	// The torn record is ignored: its decision had not been acknowledged
	// to anyone, so the use is still there.
	c = storetest.OpenDir(t, torn)
	if evs := storetest.Events(t, c); len(evs) != 1 {
		t.Fatalf("a torn record was replayed: journal = %+v", evs)
	}
	if granted, ev := grantOnce(t, c, otp); !granted || ev.Seq != 2 {
		t.Fatalf("after a torn record: granted %v, seq %d; want the use granted with seq 2", granted, ev.Seq)
	}
	c.Close()

	// The original store committed the decision once the applier ran.
	if evs := storetest.Events(t, s); len(evs) != 2 || evs[1].ID != ev.ID {
		t.Fatalf("journal after the applier committed = %+v", evs)
	}
}

// tearRecord changes one payload byte of the record with this LSN.
func tearRecord(t *testing.T, path string, lsn byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off+64 < len(data); off += 4096 {
		if string(data[off:off+4]) == "KDL1" && data[off+11] == lsn {
			data[off+40] ^= 0xff
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no record of LSN %d in %s", lsn, path)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
