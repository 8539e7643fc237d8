package sync

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"kioskd/store"
)

// BenchmarkPullFull measures one pull of a full document of 100 000
// credentials over loopback HTTP into a fresh real store: spool and
// verify, both passes, the full load and its commit (SPEC §8: under
// 1.5 s). It reports CPU time and the process's peak resident memory
// (which includes the benchmark's own setup).
func BenchmarkPullFull(b *testing.B) {
	dir := b.TempDir()
	path, size := writeBigDoc(b, dir, 100_000)
	priv := testPriv()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sig, err := SignReader(priv, f)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(SignatureHeader, sig)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.Copy(w, io.NewSectionReader(f, 0, size))
	}))
	defer srv.Close()
	b.SetBytes(size)
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		stateDir := filepath.Join(dir, fmt.Sprint("state-", i))
		st, err := store.Open(store.Options{Dir: stateDir})
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewSyncer(Config{URL: srv.URL, DeviceID: testDevice, Token: "t",
			PublicKey: priv.Public().(ed25519.PublicKey), SpoolDir: filepath.Join(stateDir, "spool"), Now: testNow}, StoreSyncer(st))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0 := cpuTime()
		res, err := s.pullDocument(context.Background(), false)
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
