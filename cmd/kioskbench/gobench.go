package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// BenchResult is one result line of `go test -bench`: the benchmark's
// name without the GOMAXPROCS suffix, its iterations and every metric by
// unit (ns/op and those reported with b.ReportMetric, such as p99-ms).
type BenchResult struct {
	Package string
	Name    string
	N       int
	Metrics map[string]float64
}

// testEvent is one line of `go test -json` (cmd/test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// benchLine matches a benchmark result line: name, optional -procs,
// iterations, then value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// ErrBenchFailed is returned (wrapped) by ParseBenchJSON when a package or
// a benchmark reported a failure; the results parsed are returned with it.
var ErrBenchFailed = errors.New("benchmark failed")

// ParseBenchJSON reads the output of `go test -bench … -json` and returns
// the result of every benchmark, in order. The output of each package is
// joined before it is split into lines, since test2json may cut a result
// line into several events. A failed benchmark or package makes the error
// wrap ErrBenchFailed and carry the failure's output.
func ParseBenchJSON(r io.Reader) ([]BenchResult, error) {
	outputs := map[string]*bytes.Buffer{}
	var order []string
	var failures []string
	dec := json.NewDecoder(r)
	for {
		var ev testEvent
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go test -json output: %w", err)
		}
		buf, ok := outputs[ev.Package]
		if !ok {
			buf = &bytes.Buffer{}
			outputs[ev.Package] = buf
			order = append(order, ev.Package)
		}
		switch ev.Action {
		case "output":
			buf.WriteString(ev.Output)
		case "fail":
			name := ev.Package
			if ev.Test != "" {
				name += " " + ev.Test
			}
			failures = append(failures, name)
		}
	}
	var res []BenchResult
	for _, pkg := range order {
		sc := bufio.NewScanner(bytes.NewReader(outputs[pkg].Bytes()))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
			if m == nil {
				continue
			}
			n, _ := strconv.Atoi(m[2])
			br := BenchResult{Package: pkg, Name: m[1], N: n, Metrics: map[string]float64{}}
			f := strings.Fields(m[3])
			for i := 0; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					break
				}
				br.Metrics[f[i+1]] = v
			}
			res = append(res, br)
		}
	}
	if len(failures) > 0 {
		var detail strings.Builder
		for _, pkg := range order {
			for line := range strings.SplitSeq(outputs[pkg].String(), "\n") {
				if strings.Contains(line, "FAIL") || strings.Contains(line, "_test.go:") || strings.Contains(line, "panic") {
					detail.WriteString(line + "\n")
				}
			}
		}
		return res, fmt.Errorf("%w: %s\n%s", ErrBenchFailed, strings.Join(failures, ", "), detail.String())
	}
	return res, nil
}

// runGoBench runs `go test -run ^$ -bench pattern -benchtime 1x -json` on
// the packages in dir with the extra environment, streaming the raw JSON
// to raw (if not nil), and parses the results.
func runGoBench(dir, pattern string, pkgs, env []string, raw io.Writer) ([]BenchResult, error) {
	args := append([]string{"test", "-run", "^$", "-bench", pattern, "-benchtime", "1x", "-count", "1", "-timeout", "90m", "-json"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	var w io.Writer = &out
	if raw != nil {
		w = io.MultiWriter(&out, raw)
	}
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	res, err := ParseBenchJSON(&out)
	if err != nil {
		return res, err
	}
	if runErr != nil {
		return res, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), runErr, stderr.String())
	}
	return res, nil
}
