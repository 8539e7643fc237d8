package store_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

// waitTimeout bounds every wait of these tests; none is a sleep.
const waitTimeout = 10 * time.Second

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func yieldHook(s *store.Store) <-chan struct{} {
	ch := make(chan struct{}, 64)
	s.OnYieldWait(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch
}

// A full load waits while a decision is in progress, and goes on when it
// ends: credentials staged, the file written back and the old one
// removed all let the decision go first.
func TestFullLoadYieldsToDecisions(t *testing.T) {
	defer store.SetWritebackChunk(4096)()
	s := storetest.Open(t)
	var creds []*kiosk.Credential
	for i := range 300 {
		creds = append(creds, storetest.Cred(fmt.Sprintf("c-%d", i), storetest.Secret(kiosk.KindPIN, fmt.Sprintf("%06d", i))))
	}
	storetest.Load(t, s, "c-1", t0, creds)
	waiting := yieldHook(s)

	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	duringDecision(t, s, waiting, "the load", func() error {
		for _, c := range creds {
			if err := l.Put(c); err != nil {
				return err
			}
		}
		return nil
	})
	// The commit writes the new file back and removes the old one a
	// step at a time, each step after the decisions in progress.
	duringDecision(t, s, waiting, "the commit", func() error {
		_, err := l.Commit(store.DocMeta{Cursor: "c-2", IssuedAt: t0.Add(time.Minute)}, nil)
		return err
	})
	if got := s.Count(); got != len(creds) {
		t.Fatalf("%d credentials after the load, want %d", got, len(creds))
	}
	files, _ := filepath.Glob(filepath.Join(s.Dir(), "creds-*"))
	if len(files) != 1 {
		t.Fatalf("credential files after the load: %v, want the new one only", files)
	}
	st := storetest.Lookup(t, s, storetest.Digest(storetest.TestSiteKey, kiosk.KindPIN, "000299"))
	if st == nil || st.ID != "c-299" {
		t.Fatalf("lookup after the load: %+v", st)
	}
}

// duringDecision starts work from inside a decision (Access) and checks
// that it waits for the decision (the hook on waiting fires and work has
// not finished when the decision ends), then that it finishes after.
func duringDecision(t *testing.T, s *store.Store, waiting <-chan struct{}, what string, work func() error) {
	t.Helper()
	done := make(chan error, 1)
	err := s.Access(func(tx kiosk.AccessTx) error {
		go func() { done <- work() }()
		recv(t, waiting, what+" to wait for the decision")
		select {
		case err := <-done:
			t.Errorf("%s finished during a decision (err %v)", what, err)
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done, what+" to finish after the decision"); err != nil {
		t.Fatal(err)
	}
}

// copyState copies the state directory as a crash at this moment would
// leave it on disk (every commit of the store and every record of the
// decision log is synced, so the files hold exactly what was made
// durable).
func copyState(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".db") && e.Name() != "decisions.log" {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

func pendingSeqs(t *testing.T, s *store.Store) []uint64 {
	t.Helper()
	evs, err := s.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ev := range evs {
		seqs = append(seqs, ev.Seq)
	}
	return seqs
}

// Accepted events leave Pending and Backlog at once; their deletion from
// the file is committed in batches, at Close, or when a batch is full. A
// crash before that commit sends them again (at least once), never
// loses one.
func TestAckDeletionIsBatched(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	var evs []*kiosk.Event
	for i := range 10 {
		evs = append(evs, &kiosk.Event{Type: kiosk.EvDoorOpened, Door: "main", Time: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := s.Record(evs...); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack([]string{evs[0].ID, evs[1].ID, evs[2].ID}); err != nil {
		t.Fatal(err)
	}
	if got := pendingSeqs(t, s); len(got) != 7 || got[0] != 4 {
		t.Fatalf("pending after ack = %v, want seqs 4…10", got)
	}
	if n, err := s.Backlog(); err != nil || n != 7 {
		t.Fatalf("backlog after ack = %d, %v; want 7", n, err)
	}
	// Acking an id twice, or one already gone, changes nothing.
	if err := s.Ack([]string{evs[0].ID, s.ID() + "-999"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Backlog(); n != 7 {
		t.Fatalf("backlog after a repeated ack = %d, want 7", n)
	}

	crashed := storetest.OpenDir(t, copyState(t, dir))
	if got := pendingSeqs(t, crashed); len(got) != 10 {
		t.Fatalf("after a crash before the deletion commits, pending = %v, want all 10 sent again", got)
	}
	crashed.Close()

	if err := s.FlushAcks(); err != nil {
		t.Fatal(err)
	}
	crashed = storetest.OpenDir(t, copyState(t, dir))
	if got := pendingSeqs(t, crashed); len(got) != 7 {
		t.Fatalf("after the deletion committed, a crash leaves pending = %v, want 7", got)
	}
	crashed.Close()

	if err := s.Ack([]string{evs[3].ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = storetest.OpenDir(t, dir)
	if got := pendingSeqs(t, s); len(got) != 6 || got[0] != 5 {
		t.Fatalf("after Close and reopen, pending = %v, want seqs 5…10", got)
	}

	// A full batch is deleted at once.
	var many []*kiosk.Event
	for i := range 600 {
		many = append(many, &kiosk.Event{Type: kiosk.EvDoorClosed, Door: "main", Time: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	if err := s.Record(many...); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ev := range many[:500] {
		ids = append(ids, ev.ID)
	}
	if err := s.Ack(ids); err != nil {
		t.Fatal(err)
	}
	crashed = storetest.OpenDir(t, copyState(t, dir))
	if got := pendingSeqs(t, crashed); len(got) != 106 {
		t.Fatalf("after a full batch of acks, a crash leaves %d pending, want 106", len(got))
	}
	crashed.Close()
}
