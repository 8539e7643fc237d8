package store_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"kioskd/kiosk"
	"kioskd/store"
)

// Benchmarks of SPEC §8 figures. Run with
//
//	go test ./store -run '^$' -bench . -benchtime 1x        (100k only)
//	KIOSKD_BENCH_LARGE=1 go test ./store -run '^$' -bench .  (with 1M)
//
// BenchmarkLookup and BenchmarkAccessGrant use a 1M-credential store
// (100k with -short). BenchmarkFullApply* run the load in a child process
// so that its peak resident memory (VmHWM) is the load's alone.

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// genCred fills c with the credential of index i of a set of n in
// ascending digest order. Its id is a scramble of i+idOffset, so the ids
// come in random order; two sets with offsets k apart share n-k ids.
func genCred(c *kiosk.Credential, i, n, idOffset int) {
	step := ^uint64(0) / uint64(n)
	binary.BigEndian.PutUint64(c.Digest[0:8], uint64(i)*step)
	for j := 8; j < kiosk.DigestSize; j += 8 {
		binary.BigEndian.PutUint64(c.Digest[j:], splitmix(uint64(i)<<8|uint64(j)))
	}
	c.ID = "c-" + strconv.FormatUint(splitmix(uint64(i+idOffset)), 36)
	c.Kind = kiosk.KindPIN
	c.Rev = int64(i)
	c.Holder = kiosk.Holder{ID: "h-" + strconv.Itoa(i/2), Role: kiosk.RoleResident, Name: "Resident " + strconv.Itoa(i/2)}
	c.Status = kiosk.StatusActive
	c.Uses = 0
	c.Used = nil
	c.ValidFrom = time.Time{}
	c.ValidUntil = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	c.Doors = []string{"main"}
	c.Schedule = nil
	if i%4 == 0 {
		c.Kind = kiosk.KindQR
		c.Holder.Role = kiosk.RoleCourier
		c.Uses = 1
		c.Used = map[string]int{"spr-0001": 0}
		c.Schedule = []kiosk.Window{{Days: []time.Weekday{1, 2, 3, 4, 5}, From: 420, To: 1200}}
	}
}

// loadGenerated streams a generated set of n into s as one full load.
func loadGenerated(s *store.Store, n, idOffset int, cursor string, issued time.Time) (store.ApplyStats, error) {
	l, err := s.BeginFull()
	if err != nil {
		return store.ApplyStats{}, err
	}
	var c kiosk.Credential
	for i := range n {
		genCred(&c, i, n, idOffset)
		if err := l.Put(&c); err != nil {
			l.Abort()
			return store.ApplyStats{}, err
		}
	}
	return l.Commit(store.DocMeta{Cursor: cursor, IssuedAt: issued}, nil)
}

var fixtures struct {
	sync.Mutex
	dirs map[int]string
}

// fixture returns a store directory holding a generated set of n,
// built once per process and copied for each caller.
func fixture(b *testing.B, n int) *store.Store {
	b.Helper()
	fixtures.Lock()
	defer fixtures.Unlock()
	if fixtures.dirs == nil {
		fixtures.dirs = map[int]string{}
	}
	src, ok := fixtures.dirs[n]
	if !ok {
		var err error
		src, err = os.MkdirTemp("", "kioskd-bench-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := store.Open(store.Options{Dir: src})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := loadGenerated(s, n, 0, "c-1", t0); err != nil {
			b.Fatal(err)
		}
		s.Close()
		fixtures.dirs[n] = src
	}
	dst := b.TempDir()
	for _, e := range dirFilesB(b, src) {
		data, err := os.ReadFile(filepath.Join(src, e))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s, err := store.Open(store.Options{Dir: dst})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func dirFilesB(b *testing.B, dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range fixtures.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func lookupSize() int {
	if testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// reportLatency reports p50 and p99 of the samples in µs.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	p := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
	b.ReportMetric(float64(samples[len(samples)-1].Nanoseconds())/1e3, "max-µs")
}

func BenchmarkLookup(b *testing.B) {
	n := lookupSize()
	s := fixture(b, n)
	var c kiosk.Credential
	digests := make([][kiosk.DigestSize]byte, 4096)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range digests {
		genCred(&c, r.IntN(n), n, 0)
		digests[i] = c.Digest
	}
	// Warm up: fault the pages of these credentials in, as a running
	// kiosk has them (the first touch of a page costs a page fault).
	for _, d := range digests {
		if _, err := s.Lookup(d); err != nil {
			b.Fatal(err)
		}
	}
	samples := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		got, err := s.Lookup(digests[i%len(digests)])
		samples = append(samples, time.Since(start))
		if err != nil || got == nil {
			b.Fatalf("lookup: %v %v", got, err)
		}
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkAccessGrant is one durable grant: lockout read and reset,
// lookup, spend, access.granted and door.unlocked events, committed with
// fsync, against a 1M-credential set. As with a working uploader, the
// events are acked every few grants (outside the measured time), so the
// journal stays short.
func BenchmarkAccessGrant(b *testing.B) {
	n := lookupSize()
	s := fixture(b, n)
	var c kiosk.Credential
	r := rand.New(rand.NewPCG(2, 2))
	samples := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		if i%10 == 9 {
			b.StopTimer()
			evs, err := s.Pending(0, 100)
			if err != nil {
				b.Fatal(err)
			}
			var ids []string
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			if err := s.Ack(ids); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		genCred(&c, r.IntN(n), n, 0)
		d := c.Digest
		start := time.Now()
		err := s.Access(func(tx kiosk.AccessTx) error {
			lo, err := tx.Lockout("keypad")
			if err != nil {
				return err
			}
			cr, err := tx.Lookup(d)
			if err != nil || cr == nil {
				return fmt.Errorf("lookup: %v %v", cr, err)
			}
			if _, err := tx.LocalSpent(cr.ID); err != nil {
				return err
			}
			if err := tx.AddSpend(cr.ID); err != nil {
				return err
			}
			if len(lo.Failures) > 0 || lo.Level == 0 {
				lo.Failures, lo.Level = nil, 1
				if err := tx.PutLockout("keypad", lo); err != nil {
					return err
				}
			}
			now := time.Now()
			if err := tx.Append(&kiosk.Event{Time: now, ClockSynced: true, Type: kiosk.EvAccessGranted, Input: "keypad", CredentialID: cr.ID, HolderID: cr.Holder.ID, Role: cr.Holder.Role, Reason: kiosk.Granted}); err != nil {
				return err
			}
			return tx.Append(&kiosk.Event{Time: now, ClockSynced: true, Type: kiosk.EvDoorUnlocked, Door: "main", Source: kiosk.SourceCredential, Detail: map[string]any{"pulse_ms": 3000}})
		})
		samples = append(samples, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkOpen opens and closes a store holding 1M credentials (100k
// with -short): the store's share of start-to-ready.
func BenchmarkOpen(b *testing.B) {
	s := fixture(b, lookupSize())
	dir := s.Dir()
	s.Close()
	for b.Loop() {
		s, err := store.Open(store.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkCommitBaseline is the floor under BenchmarkAccessGrant: a bare
// bbolt write transaction of one small key, committed with fsync, on the
// same disk.
func BenchmarkCommitBaseline(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "x.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	samples := make([]time.Duration, 0, b.N)
	var key [8]byte
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		start := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return bk.Put(key[:], []byte("value"))
		})
		samples = append(samples, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkDelta100 applies deltas of 100 changes (50 changed, 30 new, 20
// removed) to a 100k set.
func BenchmarkDelta100(b *testing.B) {
	const n = 100_000
	s := fixture(b, n)
	cursor := "c-1"
	r := rand.New(rand.NewPCG(3, 3))
	next := 0
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		var ups []*kiosk.Credential
		var removed []string
		picked := map[int]bool{}
		pick := func() int {
			for {
				if k := r.IntN(n); !picked[k] {
					picked[k] = true
					return k
				}
			}
		}
		for j := range 80 {
			c := new(kiosk.Credential)
			genCred(c, pick(), n, 0)
			if j >= 50 {
				c.ID = fmt.Sprintf("new-%d", next)
				binary.BigEndian.PutUint64(c.Digest[8:], uint64(next))
				c.Digest[31] ^= 0x5a
				next++
			}
			c.Rev += int64(i + 1)
			ups = append(ups, c)
		}
		for range 20 {
			var c kiosk.Credential
			genCred(&c, pick(), n, 0)
			removed = append(removed, c.ID)
		}
		nc := fmt.Sprintf("c-1-%d", i)
		b.StartTimer()
		start := time.Now()
		_, err := s.ApplyDelta(cursor, store.DocMeta{Cursor: nc, IssuedAt: t0}, ups, removed, nil, func(st store.ApplyStats) []*kiosk.Event {
			return []*kiosk.Event{{Type: kiosk.EvSyncApplied, Time: t0, Detail: map[string]any{"cursor": nc, "full": false, "upserted": st.Upserted, "removed": st.Removed}}}
		})
		samples = append(samples, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		cursor = nc
	}
	b.StopTimer()
	reportLatency(b, samples)
}

func BenchmarkFullApply100k(b *testing.B) { benchFullApply(b, 100_000) }

func BenchmarkFullApply1M(b *testing.B) {
	if testing.Short() || os.Getenv("KIOSKD_BENCH_LARGE") != "1" {
		b.Skip("set KIOSKD_BENCH_LARGE=1 (and no -short) to run")
	}
	benchFullApply(b, 1_000_000)
}

// benchFullApply replaces a set of n with another set of n sharing half
// of its ids, in a child process, and reports the time of the load (from
// BeginFull to the end of Commit) as ns/op and the child's peak resident
// memory.
func benchFullApply(b *testing.B, n int) {
	var total, cpu, hwm, hwmFirst float64
	for range b.N {
		// The timer keeps running (the child's start and first load are
		// counted) so that the framework sees the real cost of an
		// iteration; ns/op is then replaced by the load's own time.
		res := runChild(b, n)
		total += res["elapsed_ns"]
		cpu += res["cpu_ns"]
		hwm = max(hwm, res["hwm_kib"])
		hwmFirst = max(hwmFirst, res["hwm_first_kib"])
	}
	b.ReportMetric(total/float64(b.N), "ns/op")
	b.ReportMetric(cpu/float64(b.N)/1e9, "cpu-s/op")
	b.ReportMetric(hwm/1024, "peakRSS-MiB")
	b.ReportMetric(hwmFirst/1024, "peakRSS-first-MiB")
}

func runChild(b *testing.B, n int) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchFullApplyChild$", "-test.v")
	cmd.Env = append(os.Environ(), "KIOSKD_BENCH_CHILD="+strconv.Itoa(n), "KIOSKD_BENCH_DIR="+b.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
	}
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "RESULT ")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			x, _ := strconv.ParseFloat(v, 64)
			res[k] = x
		}
	}
	if _, ok := res["elapsed_ns"]; !ok {
		b.Fatalf("child printed no result:\n%s\n%s", out, stderr.String())
	}
	return res
}

// TestBenchFullApplyChild is the child of benchFullApply; it does nothing
// in a normal test run.
func TestBenchFullApplyChild(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KIOSKD_BENCH_CHILD"))
	if n == 0 {
		t.Skip("benchmark child only")
	}
	if v := os.Getenv("KIOSKD_BENCH_TUNING"); v != "" {
		var b, so, d int
		fmt.Sscanf(v, "%d,%d,%d", &b, &so, &d)
		defer store.SetTuning(b, so, d)()
	}
	s, err := store.Open(store.Options{Dir: os.Getenv("KIOSKD_BENCH_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := loadGenerated(s, n, 0, "c-1", t0); err != nil {
		t.Fatal(err)
	}
	hwmFirst := vmHWM(t)
	// Reset the peak so the second figure is the replacement's alone
	// (the first load's is reported too).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset VmHWM: %v", err)
	}
	cpu0 := cpuTime()
	start := time.Now()
	st, err := loadGenerated(s, n, n/2, "c-2", t0.Add(time.Minute))
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if err != nil {
		t.Fatal(err)
	}
	if st.Upserted != n || st.Removed != n/2 {
		t.Fatalf("stats %+v, want %d upserted, %d removed", st, n, n/2)
	}
	fmt.Printf("RESULT elapsed_ns=%d cpu_ns=%d hwm_kib=%.0f hwm_first_kib=%.0f\n", elapsed.Nanoseconds(), cpu.Nanoseconds(), vmHWM(t), hwmFirst)
	if os.Getenv("KIOSKD_BENCH_VERBOSE") != "" {
		data, _ := os.ReadFile("/proc/self/status")
		os.Stderr.Write(data)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "HeapSys %d MiB, Sys %d MiB, NumGC %d\n", ms.HeapSys>>20, ms.Sys>>20, ms.NumGC)
	}
}
