package sync

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"kioskd/store"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"kioskd/kiosk"
)

// writeBigDoc writes a full document of n credentials with typical fields
// to a file in dir and returns its path and size.
func writeBigDoc(tb testing.TB, dir string, n int) (string, int64) {
	tb.Helper()
	path := filepath.Join(dir, fmt.Sprintf("full-%d.json", n))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w, err := NewDocWriter(f, &Header{DeviceID: testDevice, IssuedAt: time.Now(), Full: true, Cursor: "c-1"})
	if err != nil {
		tb.Fatal(err)
	}
	until := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		c := testCred(fmt.Sprintf("cred-%07d", i), fmt.Sprintf("%06d", i))
		c.Holder.Role = kiosk.RoleCourier
		c.Used = map[string]int{testDevice: 0}
		c.ValidUntil = until
		c.Doors = []string{"main"}
		c.Schedule = []kiosk.Window{{Days: []time.Weekday{1, 2, 3, 4, 5}, From: 420, To: 1200}}
		if err := w.Write(NewWireCredential(c)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	fi, _ := f.Stat()
	return path, fi.Size()
}

// cpuTime returns the CPU time (user and system) the process has used:
// on a shared machine a steadier measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDocReader measures both passes over a document of 100 000
// credentials (the time per op is per document).
func BenchmarkDocReader(b *testing.B) {
	const n = 100_000
	path, size := writeBigDoc(b, b.TempDir(), n)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(size)
	b.ResetTimer()
	var p1, p2 time.Duration
	for range b.N {
		t0 := cpuTime()
		r, err := NewDocReader(f, size)
		if err != nil {
			b.Fatal(err)
		}
		t1 := cpuTime()
		count := 0
		if err := r.Credentials(func(*kiosk.Credential) error { count++; return nil }); err != nil || count != n {
			b.Fatal(err, count)
		}
		p1 += t1 - t0
		p2 += cpuTime() - t1
	}
	b.ReportMetric(float64(p1.Milliseconds())/float64(b.N), "pass1-cpu-ms")
	b.ReportMetric(float64(p2.Milliseconds())/float64(b.N), "pass2-cpu-ms")
}

// BenchmarkVerify measures streaming verification of the same document.
func BenchmarkVerify(b *testing.B) {
	path, size := writeBigDoc(b, b.TempDir(), 100_000)
	priv := testPriv()
	data, _ := os.ReadFile(path)
	sig, _ := ParseSignature(Sign(priv, data))
	pub := priv.Public().(ed25519.PublicKey)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		f, _ := os.Open(path)
		if _, err := VerifyReader(pub, sig, f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkDocWriter measures writing a document of 100 000 credentials.
func BenchmarkDocWriter(b *testing.B) {
	dir := b.TempDir()
	for range b.N {
		writeBigDoc(b, dir, 100_000)
	}
}

// BenchmarkApplyFileFull measures the whole file path of a full document
// of 100 000 credentials into a fresh real store: verify, both passes and
// the full load. It reports CPU time and the process's peak resident
// memory (which includes the benchmark's own setup).
func BenchmarkApplyFileFull(b *testing.B) {
	dir := b.TempDir()
	path, size := writeBigDoc(b, dir, 100_000)
	priv := testPriv()
	if err := SignFile(path, priv); err != nil {
		b.Fatal(err)
	}
	opts := FileOptions{DeviceID: testDevice, PublicKey: priv.Public().(ed25519.PublicKey), Now: testNow}
	b.SetBytes(size)
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		st, err := store.Open(store.Options{Dir: filepath.Join(dir, fmt.Sprint("state-", i))})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0 := cpuTime()
		res, err := ApplyFile(context.Background(), StoreApplier(st), opts, path)
		cpu += cpuTime() - c0
		if err != nil || res.Stats.Upserted != 100_000 {
			b.Fatal(res, err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
}
