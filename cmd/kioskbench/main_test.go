package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseBenchJSON(t *testing.T) {
	for _, tc := range []struct {
		file    string
		wantErr string // "" = no error
		want    []BenchResult
	}{
		{file: "bench.json", want: []BenchResult{
			{Name: "BenchmarkDecision", N: 1, Metrics: map[string]float64{"ns/op": 1843112207, "credentials": 100000, "max-µs": 4012, "p50-µs": 812, "p99-µs": 2210}},
			{Name: "BenchmarkDecisionDuringFull", N: 1, Metrics: map[string]float64{"p99-ms": 3.8, "decisions": 32}},
			{Name: "BenchmarkPushFlood", N: 1, Metrics: map[string]float64{"flood-p99-ms": 278.8, "quiet-p99-ms": 29.48, "rejected/s": 20.17}},
			{Name: "BenchmarkPullFull/devportal", N: 1, Metrics: map[string]float64{"s": 1.1, "peak-MiB": 30.5, "credentials": 100000}},
		}},
		{file: "fail.json", wantErr: "ran out of credentials"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseBenchJSON(f)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBenchFailed) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrBenchFailed with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d results, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Name != w.Name || g.N != w.N || g.Package != "kioskd/cmd/kioskd" {
					t.Errorf("result %d: %s ×%d in %s, want %s ×%d", i, g.Name, g.N, g.Package, w.Name, w.N)
				}
				for unit, v := range w.Metrics {
					if g.Metrics[unit] != v {
						t.Errorf("%s %s = %v, want %v", g.Name, unit, g.Metrics[unit], v)
					}
				}
			}
		})
	}
}

func FuzzParseBenchJSON(f *testing.F) {
	for _, name := range []string{"bench.json", "fail.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Action":"output","Package":"p","Output":"BenchmarkX-2 1 2 ns/op 3\n"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ParseBenchJSON(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrBenchFailed) && res != nil {
			t.Fatalf("results %v with a decoding error %v", res, err)
		}
		for _, r := range res {
			if !strings.HasPrefix(r.Name, "Benchmark") || r.Metrics == nil {
				t.Fatalf("result %+v", r)
			}
		}
	})
}

// TestBenchRows: the table judges each figure against its target.
func TestBenchRows(t *testing.T) {
	f, err := os.Open("testdata/bench.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ParseBenchJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	rows := benchRows(res)
	want := map[string]string{ // figure → result
		"last key → relay on, grant durable, p99":               "MISS", // 2.21 ms ≥ 1 ms
		"grant p99 while a full snapshot is pulled and applied": "pass", // 3.8 ms < 5 ms
		"grant p99 while pushes are rejected":                   "MISS", // 278.8 ms > 2 × 29.48 ms
		"pulled from devportal and applied":                     "pass", // 1.1 s < 1.5 s at 100k
		"kiosk peak RSS (VmHWM)":                                "pass", // 30.5 MiB < 64 MiB
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		if w, ok := want[r.Figure]; !ok || r.Result != w {
			t.Errorf("row %q: %s (%s), want %s", r.Figure, r.Result, r.Measured, w)
		}
	}
	var out bytes.Buffer
	printTable(&out, rows)
	if !strings.Contains(out.String(), "| decision | last key → relay on, grant durable, p99 | < 1 ms | 2.21 ms | MISS |") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestProcessScenarios runs the process scenarios at a small size on the
// real kioskd binary (built static): every start serves the provisioned
// set and says READY=1, the idle run reads the process's CPU and memory,
// and the table has their rows. It asserts what was measured is sane,
// not how fast it was.
func TestProcessScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kioskd; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the process scenarios read /proc")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go tool to build kioskd with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kioskd")
	if err := buildKioskd("../..", bin); err != nil {
		t.Fatal(err)
	}

	t.Run("ready", func(t *testing.T) {
		r, err := MeasureReady(bin, t.TempDir(), 2_000, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Runs) != 2 || r.Credentials != 2_000 {
			t.Fatalf("%+v, want two starts of a 2 000 set", r)
		}
		for _, d := range r.Runs {
			if d <= 0 {
				t.Errorf("start to ready %v", d)
			}
		}
	})
	t.Run("idle", func(t *testing.T) {
		r, err := MeasureIdle(bin, t.TempDir(), 2_000, 100*time.Millisecond, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Window < time.Second || r.CPU < 0 || r.CtxSwitches < 0 {
			t.Errorf("window %v, CPU %v, context switches %d", r.Window, r.CPU, r.CtxSwitches)
		}
		if r.VmRSSKiB <= 1024 || r.VmHWMKiB < r.VmRSSKiB {
			t.Errorf("VmRSS %d KiB, VmHWM %d KiB: want a resident set over 1 MiB and a peak at least as large", r.VmRSSKiB, r.VmHWMKiB)
		}
	})
	t.Run("table", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := run([]string{"-go=false", "-kioskd", bin, "-ready-creds", "1000", "-ready-runs", "1",
			"-idle-creds", "1000", "-idle-window", "500ms", "-settle", "0s"}, &out, &errOut)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut.String())
		}
		for _, want := range []string{"| start to ready | exec → READY=1, 1k credentials, median of 1 | < 300 ms |",
			"| idle | CPU, 1k credentials", "| idle | resident memory (VmRSS), 1k credentials | — |"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, out.String())
			}
		}
	})
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"quick", []string{"-quick"}, true},
		{"unknown flag", []string{"-nope"}, false},
		{"stray argument", []string{"extra"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, &bytes.Buffer{})
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.name == "quick" && (o.readyCreds != 10_000 || o.idleCreds != 10_000 || o.runs != 3) {
				t.Errorf("-quick: %+v", o)
			}
		})
	}
}
