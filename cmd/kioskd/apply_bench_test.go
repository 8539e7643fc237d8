package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"kioskd/kiosk"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// afChildEnv makes TestApplyFileChild run: it holds the JSON afSpec.
const afChildEnv = "KIOSKD_APPLYFILE_CHILD"

type afSpec struct {
	Doc, Dir, Result string
	Pub              []byte
	Want             int
}

type afResult struct {
	Seconds  float64
	VmHWMKiB int64
}

// writeFullDoc writes a signed full document of n PIN credentials (every
// tenth with a schedule, every seventh with a use limit), listed in digest
// order as the portal lists them, streaming it to path.
func writeFullDoc(b *testing.B, path string, n int, priv ed25519.PrivateKey) {
	b.Helper()
	key := []byte("bench-site-key-0123456789abcdef!")
	type kd struct {
		d [kiosk.DigestSize]byte
		i int32
	}
	all := make([]kd, n)
	for i := range all {
		all[i] = kd{kiosk.Digest(key, kiosk.KindPIN, fmt.Appendf(nil, "%07d", i)), int32(i)}
	}
	sort.Slice(all, func(x, y int) bool { return bytes.Compare(all[x].d[:], all[y].d[:]) < 0 })
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w, err := portalsync.NewDocWriter(f, &portalsync.Header{DeviceID: "bench", IssuedAt: time.Now().UTC(), Full: true, Cursor: "c-bench"})
	if err != nil {
		b.Fatal(err)
	}
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range all {
		c := &kiosk.Credential{ID: fmt.Sprintf("c-%d", e.i), Kind: kiosk.KindPIN, Digest: e.d, Rev: int64(e.i) + 1,
			Status: kiosk.StatusActive, ValidUntil: until, Doors: []string{"main"},
			Holder: kiosk.Holder{ID: fmt.Sprintf("h-%d", e.i), Role: kiosk.RoleResident, Name: fmt.Sprintf("Resident %d", e.i)}}
		if e.i%10 == 0 {
			c.Holder.Role = kiosk.RoleCourier
			c.Schedule = []kiosk.Window{{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}, From: 7 * 60, To: 20 * 60}}
		}
		if e.i%7 == 0 {
			c.Uses = 10
			c.Used = map[string]int{"bench": 1}
		}
		if err := w.Write(portalsync.NewWireCredential(c)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := portalsync.SignFile(path, priv); err != nil {
		b.Fatal(err)
	}
}

// benchApplyFile measures SPEC §8's full snapshot figure on the file path
// of SPEC §6.5 (what `kioskctl apply` does): a signed full document of n
// credentials verified and applied into a fresh store, in a child process
// so that its peak resident memory (VmHWM) is the apply's alone. The
// document is one page, so max_document_bytes is raised to its size.
func benchApplyFile(b *testing.B, n int) {
	dir := b.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	doc := filepath.Join(dir, "full.json")
	writeFullDoc(b, doc, n, priv)
	fi, _ := os.Stat(doc)
	var secs, hwm float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		spec := afSpec{Doc: doc, Pub: pub, Dir: filepath.Join(dir, fmt.Sprint("state-", i)),
			Result: filepath.Join(dir, fmt.Sprint("result-", i)), Want: n}
		raw, _ := json.Marshal(spec)
		cmd := exec.Command(os.Args[0], "-test.run=^TestApplyFileChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), afChildEnv+"="+string(raw))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var res afResult
		rb, err := os.ReadFile(spec.Result)
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(rb, &res); err != nil {
			b.Fatal(err)
		}
		secs += res.Seconds
		hwm = max(hwm, float64(res.VmHWMKiB)/1024)
	}
	b.ReportMetric(secs/float64(b.N), "s")
	b.ReportMetric(hwm, "peak-RSS-MiB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "doc-MiB")
}

func BenchmarkApplyFile100k(b *testing.B) { benchApplyFile(b, 100_000) }

func BenchmarkApplyFile1M(b *testing.B) {
	if os.Getenv("KIOSKD_BENCH_LARGE") == "" {
		b.Skip("set KIOSKD_BENCH_LARGE=1 to run")
	}
	benchApplyFile(b, 1_000_000)
}

// TestApplyFileChild is the child side of BenchmarkApplyFile*; without
// the environment variable afChildEnv it does nothing.
func TestApplyFileChild(t *testing.T) {
	raw := os.Getenv(afChildEnv)
	if raw == "" {
		t.Skip("run by BenchmarkApplyFile only")
	}
	var spec afSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(spec.Doc)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	st, err := store.Open(store.Options{Dir: spec.Dir})
	if err != nil {
		t.Fatal(err)
	}
	res, err := portalsync.ApplyFile(context.Background(), portalsync.StoreApplier(st), portalsync.FileOptions{
		DeviceID: "bench", PublicKey: ed25519.PublicKey(spec.Pub), MaxBytes: fi.Size(),
	}, spec.Doc)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0)
	if res.Stats.Upserted != spec.Want || st.Count() != spec.Want {
		t.Fatalf("applied %d, store holds %d, want %d", res.Stats.Upserted, st.Count(), spec.Want)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(afResult{Seconds: elapsed.Seconds(), VmHWMKiB: sbVmHWM(t)})
	if err := os.WriteFile(spec.Result, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
