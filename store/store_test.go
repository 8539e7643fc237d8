package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	"kioskd/store/storetest"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// set builds n credentials c-<prefix>-<i>.
func set(prefix string, n int, opts ...storetest.Option) []*kiosk.Credential {
	out := make([]*kiosk.Credential, n)
	for i := range out {
		out[i] = storetest.Cred(fmt.Sprintf("c-%s-%d", prefix, i), opts...)
	}
	return out
}

// byDigest sorts credentials as the portal sends a snapshot.
func byDigest(cs []*kiosk.Credential) []*kiosk.Credential {
	cs = slices.Clone(cs)
	sort.Slice(cs, func(i, j int) bool {
		if c := strings.Compare(string(cs[i].Digest[:]), string(cs[j].Digest[:])); c != 0 {
			return c < 0
		}
		return cs[i].ID < cs[j].ID
	})
	return cs
}

func mustLookup(t *testing.T, s *store.Store, d [kiosk.DigestSize]byte) *kiosk.Credential {
	t.Helper()
	c, err := s.Lookup(d)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	return c
}

// checkSet asserts that exactly want is live (by lookups and count) and
// that none of gone is.
func checkSet(t *testing.T, s *store.Store, want, gone []*kiosk.Credential) {
	t.Helper()
	if got := s.Count(); got != len(want) {
		t.Errorf("Count = %d, want %d", got, len(want))
	}
	checkLookups(t, s, want, gone)
}

// checkLookups asserts that every credential of want is found by its
// digest and none of gone.
func checkLookups(t *testing.T, s *store.Store, want, gone []*kiosk.Credential) {
	t.Helper()
	for _, c := range want {
		got := mustLookup(t, s, c.Digest)
		if got == nil || got.ID != c.ID {
			t.Fatalf("lookup %s: got %v", c.ID, got)
		}
	}
	for _, c := range gone {
		if got := mustLookup(t, s, c.Digest); got != nil && got.ID == c.ID {
			t.Fatalf("lookup %s: still live", c.ID)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    *kiosk.Credential
	}{
		{"minimal", storetest.Cred("min")},
		{"zero everything", &kiosk.Credential{ID: "z"}},
		{"all fields", storetest.Cred("all",
			storetest.Secret(kiosk.KindQR, "qr text"),
			storetest.Rev(42),
			storetest.Holder("h-9", kiosk.RoleCourier, "UPS — Nord"),
			storetest.Uses(3),
			storetest.Used(map[string]int{"spr-0001": 1, "spr-0002": 2, "": 0}),
			storetest.Valid(t0.Add(-time.Hour), t0.Add(24*time.Hour+time.Nanosecond)),
			storetest.Doors("main", "locker-3"),
			storetest.Schedule(
				kiosk.Window{Days: []time.Weekday{time.Monday, time.Friday}, From: 7 * 60, To: 20 * 60},
				kiosk.Window{Days: []time.Weekday{time.Saturday}, From: 22 * 60, To: 2 * 60},
				kiosk.Window{From: 0, To: 0},
			),
		)},
		{"empty not nil", storetest.Cred("empty", storetest.Used(map[string]int{}), storetest.Doors(), storetest.Schedule(kiosk.Window{Days: []time.Weekday{}}))},
		{"deactivated card", storetest.Cred("card", storetest.Secret(kiosk.KindCard, "12345"), storetest.Deactivated())},
		{"only valid_until", storetest.Cred("until", storetest.Valid(time.Time{}, t0))},
		{"pre-1970 and far future", storetest.Cred("far", storetest.Valid(time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)))},
		{"negative numbers", storetest.Cred("neg", storetest.Rev(-1), storetest.Uses(-2), storetest.Schedule(kiosk.Window{From: -5, To: 99999}))},
	}
	s := storetest.Open(t)
	var all []*kiosk.Credential
	for _, tt := range tests {
		all = append(all, tt.c)
	}
	// A credential with a time in another zone comes back equal, in UTC.
	zoned := storetest.Cred("zoned", storetest.Valid(time.Date(2026, 3, 8, 1, 30, 0, 5, ny), time.Time{}))
	all = append(all, zoned)
	storetest.Load(t, s, "c-1", t0, byDigest(all))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLookup(t, s, tt.c.Digest)
			if !reflect.DeepEqual(got, tt.c) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.c)
			}
		})
	}
	t.Run("zoned", func(t *testing.T) {
		got := mustLookup(t, s, zoned.Digest)
		if !got.ValidFrom.Equal(zoned.ValidFrom) || got.ValidFrom.Location() != time.UTC {
			t.Errorf("ValidFrom = %v, want %v in UTC", got.ValidFrom, zoned.ValidFrom)
		}
	})
	t.Run("through a delta", func(t *testing.T) {
		c := tests[2].c
		if _, err := s.ApplyDelta("c-1", store.DocMeta{Cursor: "c-2", IssuedAt: t0}, []*kiosk.Credential{c}, nil, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := mustLookup(t, s, c.Digest); !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %#v\nwant %#v", got, c)
		}
	})
}

func TestFreshStore(t *testing.T) {
	s := storetest.Open(t)
	st, err := s.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.SyncState{}) {
		t.Errorf("SyncState of a new store = %+v, want zero", st)
	}
	if c := mustLookup(t, s, storetest.Cred("x").Digest); c != nil {
		t.Errorf("lookup in empty store = %v", c)
	}
	if len(s.ID()) != 16 {
		t.Errorf("store id %q: want 16 hex chars", s.ID())
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := storetest.OpenDir(t, dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi, err)
	}
	s.Close()
}

func TestErrLocked(t *testing.T) {
	dir := t.TempDir()
	storetest.OpenDir(t, dir)
	start := time.Now()
	_, err := store.Open(store.Options{Dir: dir, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "kioskd.db") {
		t.Errorf("error does not name the file: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestFullReplacesSet(t *testing.T) {
	s := storetest.Open(t)
	a := set("a", 50)
	shared := set("s", 20)
	b := set("b", 30)
	st := storetest.Load(t, s, "c-1", t0, byDigest(append(slices.Clone(a), shared...)))
	if st != (store.ApplyStats{Upserted: 70}) {
		t.Errorf("first load stats = %+v", st)
	}
	var evs []*kiosk.Event
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range byDigest(append(slices.Clone(b), shared...)) {
		if err := l.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Revoke("tok-1"); err != nil {
		t.Fatal(err)
	}
	st, err = l.Commit(store.DocMeta{Cursor: "c-2", IssuedAt: t0.Add(time.Minute)}, func(st store.ApplyStats) []*kiosk.Event {
		evs = []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: t0, Detail: map[string]any{"upserted": st.Upserted, "removed": st.Removed}}}
		return evs
	})
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.ApplyStats{Upserted: 50, Removed: 50}) {
		t.Errorf("stats = %+v, want 50 upserted, 50 removed", st)
	}
	checkSet(t, s, append(slices.Clone(b), shared...), a)
	if evs[0].Seq != 1 || evs[0].ID != s.ID()+"-1" {
		t.Errorf("event got seq %d id %q", evs[0].Seq, evs[0].ID)
	}
	got := storetest.Events(t, s)
	if len(got) != 1 || got[0].Detail["removed"] != float64(50) {
		t.Errorf("journal = %+v", got)
	}
	state, err := s.SyncState()
	if err != nil {
		t.Fatal(err)
	}
	want := store.SyncState{Cursor: "c-2", IssuedAt: t0.Add(time.Minute), Newest: t0.Add(time.Minute), Credentials: 50}
	if state != want {
		t.Errorf("SyncState = %+v, want %+v", state, want)
	}
	if r, _ := s.Revoked("tok-1"); !r {
		t.Error("tok-1 not revoked")
	}
	if floor, _ := s.ClockFloor(); !floor.Equal(t0.Add(time.Minute)) {
		t.Errorf("clock floor = %v, want issued_at", floor)
	}
	// Only the live file and kioskd.db are left.
	files := dirFiles(t, s.Dir())
	if len(files) != 2 {
		t.Errorf("state dir holds %v", files)
	}
	// And all of it survives a reopen.
	dir := s.Dir()
	s.Close()
	s = storetest.OpenDir(t, dir)
	checkSet(t, s, append(slices.Clone(b), shared...), a)
	// An empty snapshot empties the set.
	st = storetest.Load(t, s, "c-3", t0.Add(2*time.Minute), nil)
	if st != (store.ApplyStats{Removed: 50}) {
		t.Errorf("empty load stats = %+v", st)
	}
	checkSet(t, s, nil, b)
	if r, _ := s.Revoked("tok-1"); r {
		t.Error("tok-1 still revoked after a full without it")
	}
}

// dirFiles lists the state directory but for decisions.log, which is
// always there (declog.go), so tests count the database files and any
// leftovers.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Name() != "decisions.log" {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestFullAbortKeepsOldSet(t *testing.T) {
	s := storetest.Open(t)
	a, b := set("a", 10), set("b", 10)
	storetest.Load(t, s, "c-1", t0, byDigest(a))
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range byDigest(b) {
		if err := l.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.BeginFull(); !errors.Is(err, store.ErrBusy) {
		t.Errorf("second BeginFull: %v, want ErrBusy", err)
	}
	checkSet(t, s, a, b) // the old set serves during the load
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	checkSet(t, s, a, b)
	if st, _ := s.SyncState(); st.Cursor != "c-1" {
		t.Errorf("cursor = %q after abort", st.Cursor)
	}
	if err := l.Put(b[0]); !errors.Is(err, store.ErrLoadDone) {
		t.Errorf("Put after Abort: %v", err)
	}
	if _, err := l.Commit(store.DocMeta{}, nil); !errors.Is(err, store.ErrLoadDone) {
		t.Errorf("Commit after Abort: %v", err)
	}
	if files := dirFiles(t, s.Dir()); len(files) != 2 {
		t.Errorf("state dir holds %v after abort", files)
	}
	// A new load may start now.
	storetest.Load(t, s, "c-2", t0, byDigest(b))
	checkSet(t, s, b, a)
}

// copyDir copies a directory tree: the image of the disk at this moment,
// as a kill -9 would leave it (nothing is buffered in the process).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFullCrashMidwayKeepsOldSet(t *testing.T) {
	defer store.SetTuning(4<<10, 4<<10, 64)()
	s := storetest.Open(t)
	a, b := set("a", 100), set("b", 400)
	storetest.Load(t, s, "c-1", t0, byDigest(a))
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range byDigest(b)[:300] {
		if err := l.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	// Crash image mid-load: batches written, runs spilled.
	img := t.TempDir()
	copyDir(t, s.Dir(), img)
	if len(dirFiles(t, img)) < 4 {
		t.Fatalf("crash image holds only %v; want a staging file and dir", dirFiles(t, img))
	}
	s2 := storetest.OpenDir(t, img)
	checkSet(t, s2, a, b)
	if files := dirFiles(t, img); len(files) != 2 {
		t.Errorf("leftovers not cleaned up on Open: %v", files)
	}
	// The store opened on the image works: a new full load succeeds.
	storetest.Load(t, s2, "c-2", t0, byDigest(b))
	checkSet(t, s2, b, a)

	// Abandoning the load (no Abort) and closing the store also keeps
	// the old set and leaves nothing behind.
	s.Close()
	s3 := storetest.OpenDir(t, s.Dir())
	checkSet(t, s3, a, b)
	if files := dirFiles(t, s.Dir()); len(files) != 2 {
		t.Errorf("leftovers not cleaned up on Open: %v", files)
	}
}

func TestFullOutOfOrder(t *testing.T) {
	defer store.SetTuning(8<<10, 8<<10, 64)()
	for _, order := range []string{"shuffled", "reversed", "two sorted halves swapped"} {
		t.Run(order, func(t *testing.T) {
			s := storetest.Open(t)
			old := set("old", 100)
			storetest.Load(t, s, "c-1", t0, byDigest(old))
			b := append(set("b", 500), old[:50]...)
			// one active and one deactivated with the same digest
			twin := storetest.Cred("twin", storetest.WithDigest(b[7].Digest), storetest.Deactivated())
			b = append(b, twin)
			switch order {
			case "shuffled":
				rand.New(rand.NewPCG(1, 2)).Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
			case "reversed":
				b = byDigest(b)
				slices.Reverse(b)
			default:
				b = byDigest(b)
				b = append(slices.Clone(b[300:]), b[:300]...)
			}
			st := storetest.Load(t, s, "c-2", t0, b)
			if st != (store.ApplyStats{Upserted: 551, Removed: 50}) {
				t.Errorf("stats = %+v", st)
			}
			live := slices.DeleteFunc(slices.Clone(b), func(c *kiosk.Credential) bool { return c == twin })
			checkLookups(t, s, live, old[50:])
			if s.Count() != 551 {
				t.Errorf("Count = %d", s.Count())
			}
			// The id index is complete: every id can be removed by a delta.
			var ids []string
			for _, c := range b {
				ids = append(ids, c.ID)
			}
			st, err := s.ApplyDelta("c-2", store.DocMeta{Cursor: "c-3", IssuedAt: t0}, nil, ids, nil, nil)
			if err != nil || st.Removed != 551 {
				t.Fatalf("remove all by id: %+v %v", st, err)
			}
			checkSet(t, s, nil, b)
		})
	}
}

func TestFullDuplicates(t *testing.T) {
	defer store.SetTuning(2<<10, 2<<10, 64)()
	d := storetest.Cred("shared").Digest
	tests := []struct {
		name    string
		creds   func() []*kiosk.Credential
		wantErr error
	}{
		{"two active, in order", func() []*kiosk.Credential {
			return byDigest(append(set("x", 50), storetest.Cred("d1", storetest.WithDigest(d)), storetest.Cred("d2", storetest.WithDigest(d))))
		}, store.ErrDuplicateDigest},
		{"two active far apart, shuffled", func() []*kiosk.Credential {
			cs := append(set("x", 200), storetest.Cred("d1", storetest.WithDigest(d)), storetest.Cred("d2", storetest.WithDigest(d)))
			rand.New(rand.NewPCG(3, 4)).Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
			return cs
		}, store.ErrDuplicateDigest},
		{"active after deactivated, shuffled", func() []*kiosk.Credential {
			cs := append(set("x", 200), storetest.Cred("d1", storetest.WithDigest(d), storetest.Deactivated()), storetest.Cred("d2", storetest.WithDigest(d)), storetest.Cred("d3", storetest.WithDigest(d), storetest.Deactivated()))
			rand.New(rand.NewPCG(5, 6)).Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
			return cs
		}, nil},
		{"same id twice, same digest", func() []*kiosk.Credential {
			return byDigest(append(set("x", 20), storetest.Cred("x-dup", storetest.WithDigest(d)), storetest.Cred("x-dup", storetest.WithDigest(d), storetest.Deactivated())))
		}, store.ErrDuplicateID},
		{"same id twice, other digest", func() []*kiosk.Credential {
			return byDigest(append(set("x", 20), storetest.Cred("x-dup"), storetest.Cred("x-dup", storetest.WithDigest(d))))
		}, store.ErrDuplicateID},
		{"same id twice, shuffled", func() []*kiosk.Credential {
			cs := append(set("x", 300), storetest.Cred("c-x-5", storetest.Deactivated()))
			rand.New(rand.NewPCG(7, 8)).Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
			return cs
		}, store.ErrDuplicateID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.Open(t)
			old := set("old", 10)
			storetest.Load(t, s, "c-1", t0, byDigest(old))
			cs := tt.creds()
			_, err := storetest.LoadErr(s, "c-2", t0.Add(time.Second), cs)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("load: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				checkSet(t, s, old, nil)
				if st, _ := s.SyncState(); st.Cursor != "c-1" || !st.Newest.Equal(t0) {
					t.Errorf("sync state changed by a rejected load: %+v", st)
				}
				if files := dirFiles(t, s.Dir()); len(files) != 2 {
					t.Errorf("state dir holds %v after a failed load", files)
				}
				return
			}
			c := mustLookup(t, s, d)
			if c == nil || c.ID != "d2" {
				t.Errorf("lookup of the shared digest = %v, want the active d2", c)
			}
		})
	}
}

func TestStaleFull(t *testing.T) {
	s := storetest.Open(t)
	a := set("a", 5)
	storetest.Load(t, s, "c-2", t0, byDigest(a))
	_, err := storetest.LoadErr(s, "c-1", t0.Add(-time.Second), set("old", 3))
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("older full: %v, want ErrStale", err)
	}
	checkSet(t, s, a, nil)
	// The same issued_at again is not stale (a re-sent snapshot).
	storetest.Load(t, s, "c-2", t0, byDigest(a))
	// A delta raises the watermark: a full older than it is stale.
	if _, err := s.ApplyDelta("c-2", store.DocMeta{Cursor: "c-3", IssuedAt: t0.Add(time.Hour)}, nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.LoadErr(s, "c-x", t0.Add(30*time.Minute), nil); !errors.Is(err, store.ErrStale) {
		t.Fatalf("full older than a delta: %v, want ErrStale", err)
	}
	// So does a pushed hint.
	if err := s.RaiseWatermark(t0.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.LoadErr(s, "c-x", t0.Add(90*time.Minute), nil); !errors.Is(err, store.ErrStale) {
		t.Fatalf("full older than a hint: %v, want ErrStale", err)
	}
	// A stale load appends none of its events.
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Commit(store.DocMeta{Cursor: "c-x", IssuedAt: t0}, func(store.ApplyStats) []*kiosk.Event {
		return []*kiosk.Event{{Type: kiosk.EvSyncApplied}}
	})
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("stale commit: %v", err)
	}
	if evs := storetest.Events(t, s); len(evs) != 0 {
		t.Errorf("a stale load appended %v", evs)
	}
	checkSet(t, s, a, nil)
	if files := dirFiles(t, s.Dir()); len(files) != 2 {
		t.Errorf("state dir holds %v after stale loads", files)
	}
}

func TestDelta(t *testing.T) {
	base := func() []*kiosk.Credential { return set("a", 5) }
	newDigest := storetest.Cred("new secret").Digest
	tests := []struct {
		name      string
		base      string
		upserts   func(a []*kiosk.Credential) []*kiosk.Credential
		removed   []string
		revoked   []string
		wantErr   error
		wantStats store.ApplyStats
		check     func(t *testing.T, s *store.Store, a []*kiosk.Credential)
	}{
		{
			name:      "upsert new",
			upserts:   func([]*kiosk.Credential) []*kiosk.Credential { return []*kiosk.Credential{storetest.Cred("n1")} },
			wantStats: store.ApplyStats{Upserted: 1},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				checkSet(t, s, append(a, storetest.Cred("n1")), nil)
			},
		},
		{
			name: "upsert with digest change",
			upserts: func(a []*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred(a[0].ID, storetest.WithDigest(newDigest), storetest.Rev(2))}
			},
			wantStats: store.ApplyStats{Upserted: 1},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				if c := mustLookup(t, s, a[0].Digest); c != nil {
					t.Errorf("old digest still finds %v", c.ID)
				}
				if c := mustLookup(t, s, newDigest); c == nil || c.ID != a[0].ID || c.Rev != 2 {
					t.Errorf("new digest finds %v", c)
				}
				if s.Count() != 5 {
					t.Errorf("Count = %d", s.Count())
				}
			},
		},
		{
			name: "deactivate",
			upserts: func(a []*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred(a[1].ID, storetest.Deactivated())}
			},
			wantStats: store.ApplyStats{Upserted: 1},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				if c := mustLookup(t, s, a[1].Digest); c == nil || c.Status != kiosk.StatusDeactivated {
					t.Errorf("lookup = %v", c)
				}
			},
		},
		{
			name:      "remove, unknown ignored",
			removed:   []string{"c-a-2", "c-a-3", "nope"},
			wantStats: store.ApplyStats{Removed: 2},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				checkSet(t, s, []*kiosk.Credential{a[0], a[1], a[4]}, a[2:4])
			},
		},
		{
			name:    "revoke",
			revoked: []string{"tok-1", "tok-2"},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				for _, cid := range []string{"tok-1", "tok-2"} {
					if r, err := s.Revoked(cid); !r || err != nil {
						t.Errorf("Revoked(%s) = %v, %v", cid, r, err)
					}
				}
			},
		},
		{
			name:    "base mismatch",
			base:    "c-0",
			upserts: func([]*kiosk.Credential) []*kiosk.Credential { return []*kiosk.Credential{storetest.Cred("n1")} },
			revoked: []string{"tok-1"},
			removed: []string{"c-a-1"},
			wantErr: store.ErrBaseMismatch,
		},
		{
			name: "duplicate active digest",
			upserts: func(a []*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred("n1"), storetest.Cred("n2", storetest.WithDigest(a[3].Digest))}
			},
			removed: []string{"c-a-1"},
			revoked: []string{"tok-1"},
			wantErr: store.ErrDuplicateDigest,
		},
		{
			name: "deactivated twin is fine",
			upserts: func(a []*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred("n2", storetest.WithDigest(a[3].Digest), storetest.Deactivated())}
			},
			wantStats: store.ApplyStats{Upserted: 1},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				if c := mustLookup(t, s, a[3].Digest); c == nil || c.ID != a[3].ID {
					t.Errorf("lookup = %v, want the active one", c)
				}
			},
		},
		{
			name: "duplicate digest resolved in the same delta",
			upserts: func(a []*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred("n2", storetest.WithDigest(a[3].Digest)), storetest.Cred(a[3].ID, storetest.WithDigest(newDigest))}
			},
			wantStats: store.ApplyStats{Upserted: 2},
			check: func(t *testing.T, s *store.Store, a []*kiosk.Credential) {
				if c := mustLookup(t, s, a[3].Digest); c == nil || c.ID != "n2" {
					t.Errorf("lookup = %v, want n2", c)
				}
			},
		},
		{
			name: "duplicate id",
			upserts: func([]*kiosk.Credential) []*kiosk.Credential {
				return []*kiosk.Credential{storetest.Cred("n1"), storetest.Cred("n1", storetest.Deactivated())}
			},
			wantErr: store.ErrDuplicateID,
		},
		{
			name:    "empty delta",
			wantErr: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.Open(t)
			a := base()
			storetest.Load(t, s, "c-1", t0, byDigest(a), "tok-0")
			b := "c-1"
			if tt.base != "" {
				b = tt.base
			}
			var ups []*kiosk.Credential
			if tt.upserts != nil {
				ups = tt.upserts(a)
			}
			issued := t0.Add(time.Minute)
			st, err := s.ApplyDelta(b, store.DocMeta{Cursor: "c-2", IssuedAt: issued}, ups, tt.removed, tt.revoked, func(st store.ApplyStats) []*kiosk.Event {
				return []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: issued, Detail: map[string]any{"upserted": st.Upserted, "removed": st.Removed}}}
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ApplyDelta: %v, want %v", err, tt.wantErr)
			}
			state, serr := s.SyncState()
			if serr != nil {
				t.Fatal(serr)
			}
			evs := storetest.Events(t, s)
			if tt.wantErr != nil {
				checkSet(t, s, a, nil)
				if r, _ := s.Revoked("tok-1"); r {
					t.Error("tok-1 revoked by a rejected delta")
				}
				if state.Cursor != "c-1" || !state.Newest.Equal(t0) || len(evs) != 0 {
					t.Errorf("rejected delta changed state %+v, events %v", state, evs)
				}
				return
			}
			if st != tt.wantStats {
				t.Errorf("stats = %+v, want %+v", st, tt.wantStats)
			}
			if state.Cursor != "c-2" || !state.IssuedAt.Equal(issued) || !state.Newest.Equal(issued) || state.Credentials != s.Count() {
				t.Errorf("sync state = %+v", state)
			}
			if floor, _ := s.ClockFloor(); !floor.Equal(issued) {
				t.Errorf("clock floor = %v, want %v", floor, issued)
			}
			if len(evs) != 1 || evs[0].Detail["upserted"] != float64(tt.wantStats.Upserted) || evs[0].Seq != 1 {
				t.Errorf("events = %+v", evs)
			}
			if r, _ := s.Revoked("tok-0"); !r {
				t.Error("a delta dropped the revoked list")
			}
			if tt.check != nil {
				tt.check(t, s, a)
			}
			// Everything survives a reopen, without duplicated events.
			dir := s.Dir()
			s.Close()
			s = storetest.OpenDir(t, dir)
			if got := storetest.Events(t, s); len(got) != 1 {
				t.Errorf("events after reopen = %+v", got)
			}
			if tt.check != nil {
				tt.check(t, s, a)
			}
		})
	}
}

func TestDeltaWatermarkIsMax(t *testing.T) {
	s := storetest.Open(t)
	storetest.Load(t, s, "c-1", t0, nil)
	if _, err := s.ApplyDelta("c-1", store.DocMeta{Cursor: "c-2", IssuedAt: t0.Add(-time.Hour)}, nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := s.SyncState()
	if !st.Newest.Equal(t0) || !st.IssuedAt.Equal(t0.Add(-time.Hour)) || st.Cursor != "c-2" {
		t.Errorf("sync state = %+v", st)
	}
}

func TestPendingSyncEventsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	storetest.Load(t, s, "c-1", t0, set("a", 3))
	mk := func(n int) func(store.ApplyStats) []*kiosk.Event {
		return func(store.ApplyStats) []*kiosk.Event {
			return []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: t0, Detail: map[string]any{"n": n}}}
		}
	}
	// Crash right after the delta's commit: its event is only pending.
	if _, err := s.ApplyDeltaNoFlush("c-1", store.DocMeta{Cursor: "c-2", IssuedAt: t0.Add(time.Hour)}, set("b", 1), nil, nil, mk(1)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Backlog(); n != 0 {
		t.Fatalf("backlog %d before the move", n)
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	evs := storetest.Events(t, s)
	if len(evs) != 1 || evs[0].Detail["n"] != float64(1) || evs[0].Seq != 1 {
		t.Fatalf("events after reopen = %+v", evs)
	}
	if st, _ := s.SyncState(); !st.Newest.Equal(t0.Add(time.Hour)) {
		t.Errorf("watermark not raised by the pending delta: %+v", st)
	}
	// Moved once: another reopen and another delta add no duplicate.
	s.Close()
	s = storetest.OpenDir(t, dir)
	if _, err := s.ApplyDelta("c-2", store.DocMeta{Cursor: "c-3", IssuedAt: t0.Add(time.Hour)}, nil, []string{"c-a-0"}, nil, mk(2)); err != nil {
		t.Fatal(err)
	}
	// Pending again, then a full load flips the file: the pending events
	// of the old file go into the journal with the flip.
	if _, err := s.ApplyDeltaNoFlush("c-3", store.DocMeta{Cursor: "c-4", IssuedAt: t0.Add(time.Hour)}, nil, nil, []string{"tok"}, mk(3)); err != nil {
		t.Fatal(err)
	}
	l, err := s.BeginFull()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(store.DocMeta{Cursor: "c-5", IssuedAt: t0.Add(2 * time.Hour)}, mk(4)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	var got []any
	for i, ev := range storetest.Events(t, s) {
		got = append(got, ev.Detail["n"])
		if ev.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d", i, ev.Seq)
		}
	}
	if want := []any{1.0, 2.0, 3.0, 4.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestSeqAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	id := s.ID()
	record := func(s *store.Store, n int) []*kiosk.Event {
		var evs []*kiosk.Event
		for range n {
			evs = append(evs, &kiosk.Event{Type: kiosk.EvDoorOpened, Time: time.Now(), Door: "main"})
		}
		if err := s.Record(evs...); err != nil {
			t.Fatal(err)
		}
		return evs
	}
	first := record(s, 3)
	// A failed Access gives its seqs back: no gap, the event is void.
	failed := &kiosk.Event{Type: kiosk.EvAccessDenied}
	boom := errors.New("boom")
	err := s.Access(func(tx kiosk.AccessTx) error {
		if err := tx.Append(failed); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Access: %v", err)
	}
	if failed.Seq != 0 || failed.ID != "" {
		t.Errorf("failed event kept seq %d id %q", failed.Seq, failed.ID)
	}
	if err := s.Ack([]string{first[0].ID, first[1].ID, first[2].ID}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	if s.ID() != id {
		t.Errorf("store id changed across reopen: %s → %s", id, s.ID())
	}
	second := record(s, 2)
	var seqs []uint64
	for _, ev := range append(first, second...) {
		seqs = append(seqs, ev.Seq)
		if want := fmt.Sprintf("%s-%d", id, ev.Seq); ev.ID != want {
			t.Errorf("id %q, want %q", ev.ID, want)
		}
	}
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(seqs, want) {
		t.Errorf("seqs = %v, want %v (never reused after ack)", seqs, want)
	}
	if n, _ := s.LastSeq(); n != 5 {
		t.Errorf("LastSeq = %d", n)
	}
	// A wiped store gets a new id, so its event ids never collide.
	other := storetest.Open(t)
	if other.ID() == id {
		t.Error("two stores share an id")
	}
}

func TestPendingAck(t *testing.T) {
	s := storetest.Open(t)
	select {
	case <-s.Appended():
		t.Fatal("notification before any event")
	default:
	}
	var evs []*kiosk.Event
	for i := range 10 {
		evs = append(evs, &kiosk.Event{Type: kiosk.EvAccessGranted, Time: t0.Add(time.Duration(i) * time.Millisecond), Input: "keypad", CredentialID: "c-1", HolderID: "h-1", Role: kiosk.RoleStaff, Reason: kiosk.Granted})
	}
	if err := s.Record(evs[:5]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Access(func(tx kiosk.AccessTx) error {
		for _, ev := range evs[5:] {
			if err := tx.Append(ev); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Appended():
	case <-time.After(5 * time.Second):
		t.Fatal("no Appended notification")
	}
	got, err := s.Pending(0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Seq != 1 || got[3].Seq != 4 {
		t.Fatalf("Pending(0,4) = %v", got)
	}
	if !reflect.DeepEqual(got[0], *evs[0]) {
		t.Errorf("stored event\n got %#v\nwant %#v", got[0], *evs[0])
	}
	got, _ = s.Pending(8, 100)
	if len(got) != 2 || got[0].Seq != 9 {
		t.Fatalf("Pending(8,100) = %v", got)
	}
	if err := s.Ack([]string{evs[0].ID, evs[4].ID, "0123456789abcdef-2", "garbage", evs[9].ID + "x"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Backlog(); n != 8 {
		t.Errorf("Backlog = %d, want 8", n)
	}
	got, _ = s.Pending(0, 100)
	var seqs []uint64
	for _, ev := range got {
		seqs = append(seqs, ev.Seq)
	}
	if want := []uint64{2, 3, 4, 6, 7, 8, 9, 10}; !slices.Equal(seqs, want) {
		t.Errorf("pending seqs = %v, want %v", seqs, want)
	}
	if got, _ := s.Pending(10, 5); len(got) != 0 {
		t.Errorf("Pending past the end = %v", got)
	}
}

func TestConcurrentOneTimeCredential(t *testing.T) {
	s := storetest.Open(t)
	c := storetest.Cred("otp", storetest.Uses(1))
	storetest.Load(t, s, "c-1", t0, []*kiosk.Credential{c})
	const n = 32
	var wg sync.WaitGroup
	granted := make(chan int, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Access(func(tx kiosk.AccessTx) error {
				cr, err := tx.Lookup(c.Digest)
				if err != nil || cr == nil {
					return fmt.Errorf("lookup: %v %v", cr, err)
				}
				spent, err := tx.LocalSpent(cr.ID)
				if err != nil {
					return err
				}
				ev := &kiosk.Event{Type: kiosk.EvAccessDenied, Reason: kiosk.UsedUp, CredentialID: cr.ID, Input: fmt.Sprint("in-", i)}
				if spent < cr.Uses {
					if err := tx.AddSpend(cr.ID); err != nil {
						return err
					}
					ev.Type, ev.Reason = kiosk.EvAccessGranted, kiosk.Granted
					granted <- i
				}
				return tx.Append(ev)
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(granted)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(granted); got != 1 {
		t.Fatalf("%d grants of a one-time credential, want exactly 1", got)
	}
	evs := storetest.Events(t, s)
	grants := 0
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Errorf("seq %d at %d", ev.Seq, i)
		}
		if ev.Type == kiosk.EvAccessGranted {
			grants++
		}
	}
	if len(evs) != n || grants != 1 {
		t.Errorf("%d events, %d grants", len(evs), grants)
	}
	// The spend is durable.
	dir := s.Dir()
	s.Close()
	s = storetest.OpenDir(t, dir)
	s.Access(func(tx kiosk.AccessTx) error {
		if n, _ := tx.LocalSpent("otp"); n != 1 {
			t.Errorf("LocalSpent after reopen = %d", n)
		}
		return nil
	})
}

func TestAccessDuringFullLoads(t *testing.T) {
	defer store.SetTuning(4<<10, 4<<10, 16)()
	s := storetest.Open(t)
	a, b := set("a", 200), set("b", 200)
	keep := storetest.Cred("keep")
	a, b = append(a, keep), append(b, keep)
	storetest.Load(t, s, "c-0", t0, byDigest(a))
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			err := s.Access(func(tx kiosk.AccessTx) error {
				c, err := tx.Lookup(keep.Digest)
				if err != nil {
					return err
				}
				if c == nil {
					return errors.New("credential present in every set not found")
				}
				_, err = tx.Revoked("tok")
				return err
			})
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for i := 1; i <= 6; i++ {
		cs := a
		if i%2 == 1 {
			cs = b
		}
		storetest.Load(t, s, fmt.Sprint("c-", i), t0, byDigest(cs))
		if _, err := s.ApplyDelta(fmt.Sprint("c-", i), store.DocMeta{Cursor: fmt.Sprint("c-", i, "d"), IssuedAt: t0}, []*kiosk.Credential{storetest.Cred("x")}, nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for err := range errs {
		t.Fatal(err)
	}
	checkSet(t, s, append(slices.Clone(a), storetest.Cred("x")), b[:200])
}

func TestLockoutPersists(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	want := kiosk.LockoutState{Failures: []time.Time{t0, t0.Add(time.Second)}, Until: t0.Add(5 * time.Minute), Level: 2, LastStart: t0}
	err := s.Access(func(tx kiosk.AccessTx) error {
		if st, err := tx.Lockout("keypad"); err != nil || !reflect.DeepEqual(st, kiosk.LockoutState{}) {
			return fmt.Errorf("unknown input: %+v %v", st, err)
		}
		if err := tx.PutLockout("keypad", want); err != nil {
			return err
		}
		return tx.PutLockout("scanner", kiosk.LockoutState{Level: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	s.Access(func(tx kiosk.AccessTx) error {
		got, err := tx.Lockout("keypad")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Lockout after reopen = %+v, %v; want %+v", got, err, want)
		}
		return nil
	})
	all, err := s.Lockouts()
	if err != nil || len(all) != 2 || all["scanner"].Level != 1 {
		t.Errorf("Lockouts = %+v, %v", all, err)
	}
}

func TestNonces(t *testing.T) {
	const window = 5 * time.Minute
	tests := []struct {
		name      string
		watermark time.Time
		// after "a" at t0, "b" at t0+10m is used with now = t0+10m
		wantAAgain bool
	}{
		{"pruned by clock and watermark", t0.Add(10 * time.Minute), true},
		{"kept while the watermark is in the window", t0.Add(time.Minute), false},
		{"pruned by clock, no watermark", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.Open(t)
			use := func(n string, issued, now time.Time) bool {
				t.Helper()
				fresh, err := s.UseNonce(n, issued, now, window)
				if err != nil {
					t.Fatal(err)
				}
				return fresh
			}
			if !use("a", t0, t0) {
				t.Fatal("first use not fresh")
			}
			if use("a", t0, t0.Add(time.Minute)) {
				t.Fatal("replay accepted")
			}
			if err := s.RaiseWatermark(tt.watermark); err != nil {
				t.Fatal(err)
			}
			if !use("b", t0.Add(10*time.Minute), t0.Add(10*time.Minute)) {
				t.Fatal("b not fresh")
			}
			if got := use("a", t0, t0.Add(10*time.Minute)); got != tt.wantAAgain {
				t.Errorf("a after pruning: fresh = %v, want %v", got, tt.wantAAgain)
			}
			if use("b", t0.Add(10*time.Minute), t0.Add(11*time.Minute)) {
				t.Error("b replay accepted")
			}
		})
	}
	t.Run("survives reopen", func(t *testing.T) {
		dir := t.TempDir()
		s := storetest.OpenDir(t, dir)
		s.UseNonce("n", t0, t0, window)
		s.Close()
		s = storetest.OpenDir(t, dir)
		if fresh, _ := s.UseNonce("n", t0, t0, window); fresh {
			t.Error("replay after reopen accepted")
		}
	})
	t.Run("empty nonce", func(t *testing.T) {
		if _, err := storetest.Open(t).UseNonce("", t0, t0, window); err == nil {
			t.Error("empty nonce accepted")
		}
	})
}

func TestRunOnce(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	for i, want := range []bool{true, false, false} {
		if first, err := s.RunOnce("cmd-1"); err != nil || first != want {
			t.Errorf("run %d: first = %v, %v; want %v", i, first, err, want)
		}
	}
	if first, _ := s.RunOnce("cmd-2"); !first {
		t.Error("cmd-2 not first")
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	if first, _ := s.RunOnce("cmd-1"); first {
		t.Error("cmd-1 runs again after reopen")
	}
}

func TestClockFloorOnlyRaises(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	steps := []struct {
		raise, want time.Time
	}{
		{t0, t0},
		{t0.Add(-time.Hour), t0},
		{time.Time{}, t0},
		{t0.Add(time.Nanosecond), t0.Add(time.Nanosecond)},
	}
	for i, st := range steps {
		if err := s.RaiseClockFloor(st.raise); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ClockFloor(); !got.Equal(st.want) {
			t.Errorf("step %d: floor = %v, want %v", i, got, st.want)
		}
	}
	// A full document raises it, an older one does not lower it.
	storetest.Load(t, s, "c", t0.Add(time.Hour), nil)
	if err := s.RaiseWatermark(t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = storetest.OpenDir(t, dir)
	if got, _ := s.ClockFloor(); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("floor after reopen = %v", got)
	}
}

func TestMissingLiveFile(t *testing.T) {
	dir := t.TempDir()
	s := storetest.OpenDir(t, dir)
	storetest.Load(t, s, "c-1", t0, set("a", 3))
	s.Record(&kiosk.Event{Type: kiosk.EvDeviceStarted})
	s.Close()
	for _, f := range dirFiles(t, dir) {
		if strings.HasPrefix(f, "creds-") {
			os.Remove(filepath.Join(dir, f))
		}
	}
	s = storetest.OpenDir(t, dir)
	if st, _ := s.SyncState(); st.Cursor != "" || st.Credentials != 0 || !st.Newest.Equal(t0) {
		t.Errorf("sync state after losing the credential file = %+v", st)
	}
	if len(storetest.Events(t, s)) != 1 {
		t.Error("journal lost")
	}
	storetest.Load(t, s, "c-2", t0, set("a", 3))
	checkSet(t, s, set("a", 3), nil)
}
