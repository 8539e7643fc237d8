package main

import (
	"fmt"
	"io"
	"strings"
)

// Row is one line of the table kioskbench prints: a scenario, the figure
// measured, its target (empty when the figure is for information) and
// whether it was reached.
type Row struct {
	Scenario string
	Figure   string
	Target   string
	Measured string
	// Result is "pass", "MISS" (target not reached), "FAIL" (the scenario
	// did not run to the end) or "" (no target).
	Result string
	Note   string
}

// verdict returns "pass" or "MISS".
func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

// benchCheck turns one metric of one benchmark into a row.
type benchCheck struct {
	pkg, bench string // package path suffix and result name
	metric     string // the unit the metric was reported with
	scenario   string
	figure     string
	// show formats the value; nil = "%.3g".
	show func(v float64) string
	// target describes the target and pass judges the value against it;
	// both nil for a figure without a target.
	target func(m map[string]float64) string
	pass   func(v float64, m map[string]float64) bool
	note   func(m map[string]float64) string
}

func ms(v float64) string   { return fmt.Sprintf("%.2f ms", v) }
func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }
func mib(v float64) string  { return fmt.Sprintf("%.1f MiB", v) }
func fixed(s string) func(map[string]float64) string {
	return func(map[string]float64) string { return s }
}

// creds formats a credential count: 100k, 1M.
func creds(n float64) string {
	switch {
	case n >= 1e6 && int(n)%1_000_000 == 0:
		return fmt.Sprintf("%dM", int(n)/1_000_000)
	case n >= 1e3 && int(n)%1_000 == 0:
		return fmt.Sprintf("%dk", int(n)/1_000)
	}
	return fmt.Sprint(int(n))
}

// fullTarget is SPEC §8's full snapshot time for the set size.
func fullTarget(n float64) float64 {
	if n > 100_000 {
		return 15
	}
	return 1.5
}

// benchChecks are the rows made from the Go benchmarks (SPEC §8 and issue
// 6), in table order.
var benchChecks = []benchCheck{
	{pkg: "cmd/kioskd", bench: "BenchmarkDecision", metric: "p99-µs", scenario: "decision", figure: "last key → relay on, grant durable, p99",
		show:   func(v float64) string { return ms(v / 1000) },
		target: fixed("< 1 ms"), pass: func(v float64, _ map[string]float64) bool { return v < 1000 },
		note: func(m map[string]float64) string {
			return fmt.Sprintf("p50 %.2f ms, max %.2f ms, %s credentials", m["p50-µs"]/1000, m["max-µs"]/1000, creds(m["credentials"]))
		}},
	{pkg: "cmd/kioskd", bench: "BenchmarkDecisionDuringFull", metric: "p99-ms", scenario: "decision during full snapshot", figure: "grant p99 while a full snapshot is pulled and applied",
		show: ms, target: fixed("< 5 ms"), pass: func(v float64, _ map[string]float64) bool { return v < 5 },
		note: func(m map[string]float64) string {
			return fmt.Sprintf("p50 %.2f ms, max %.1f ms; %.0f snapshots of %s, %.0f decisions each (one every %.0f ms), applied in %.2f s each; same pace without a snapshot: p99 %.2f ms",
				m["p50-ms"], m["max-ms"], m["rounds"], creds(m["credentials"]), m["decisions"], m["gap-ms"], m["apply-s"], m["quiet-p99-ms"])
		}},
	{pkg: "cmd/kioskd", bench: "BenchmarkPushFlood", metric: "flood-p99-ms", scenario: "push flood (unsigned)", figure: "grant p99 while pushes are rejected",
		show: ms,
		target: func(m map[string]float64) string {
			return fmt.Sprintf("≤ 2 × quiet p99 (%.2f ms)", 2*m["quiet-p99-ms"])
		},
		pass: func(v float64, m map[string]float64) bool { return v <= 2*m["quiet-p99-ms"] },
		note: func(m map[string]float64) string {
			return fmt.Sprintf("quiet p50 %.2f / p99 %.2f ms, flood p50 %.2f ms; the flood's process flooding a sink of its own instead (control): p99 %.2f ms; %.0f rejected/s (counted in push.rejected events), %.0f busy/s (503 unread), journal +%.0f events/s",
				m["quiet-p50-ms"], m["quiet-p99-ms"], m["flood-p50-ms"], m["control-p99-ms"], m["rejected/s"], m["busy/s"], m["journal-events/s"])
		}},
	{pkg: "cmd/kioskd", bench: "BenchmarkPullFull/devportal", metric: "s", scenario: "full snapshot, pulled", figure: "pulled from devportal and applied",
		show: secs,
		target: func(m map[string]float64) string {
			return fmt.Sprintf("< %g s (%s)", fullTarget(m["credentials"]), creds(m["credentials"]))
		},
		pass: func(v float64, m map[string]float64) bool { return v < fullTarget(m["credentials"]) },
		note: func(m map[string]float64) string {
			return fmt.Sprintf("portal %.2f s of it, store %.2f s, kiosk CPU %.2f s", m["portal-s"], m["store-s"], m["kiosk-cpu-s"])
		}},
	{pkg: "cmd/kioskd", bench: "BenchmarkPullFull/devportal", metric: "peak-MiB", scenario: "full snapshot, pulled", figure: "kiosk peak RSS (VmHWM)",
		show: mib, target: fixed("< 64 MiB"), pass: func(v float64, _ map[string]float64) bool { return v < 64 }},
	{pkg: "cmd/kioskd", bench: "BenchmarkPullFull/pages", metric: "s", scenario: "full snapshot, pulled", figure: "kiosk side only (pages from files)",
		show: secs, note: func(m map[string]float64) string { return fmt.Sprintf("peak %.1f MiB", m["peak-MiB"]) }},
	{pkg: "cmd/kioskd", bench: "BenchmarkApplyFile100k", metric: "s", scenario: "full snapshot, file 100k", figure: "kioskctl apply path",
		show: secs, target: fixed("< 1.5 s"), pass: func(v float64, _ map[string]float64) bool { return v < 1.5 },
		note: func(m map[string]float64) string { return fmt.Sprintf("peak %.1f MiB (< 64)", m["peak-RSS-MiB"]) }},
	{pkg: "cmd/kioskd", bench: "BenchmarkApplyFile1M", metric: "s", scenario: "full snapshot, file 1M", figure: "kioskctl apply path",
		show: secs, target: fixed("< 15 s"), pass: func(v float64, _ map[string]float64) bool { return v < 15 },
		note: func(m map[string]float64) string { return fmt.Sprintf("peak %.1f MiB (< 64)", m["peak-RSS-MiB"]) }},
	{pkg: "cmd/kioskd", bench: "BenchmarkDelta100", metric: "p50-ms", scenario: "delta of 100", figure: "pulled and applied, p50",
		show: ms, target: fixed("< 50 ms"), pass: func(v float64, _ map[string]float64) bool { return v < 50 },
		note: func(m map[string]float64) string {
			return fmt.Sprintf("max %.1f ms, store transaction %.1f ms", m["max-ms"], m["apply-ms"])
		}},
	{pkg: "cmd/kioskd", bench: "BenchmarkUpload", metric: "events/s", scenario: "event upload", figure: "20 000 events to devportal",
		show: func(v float64) string { return fmt.Sprintf("%.0f events/s", v) }},
	{pkg: "store", bench: "BenchmarkOpen", metric: "ns/op", scenario: "store open", figure: "the store's share of start-to-ready",
		show: func(v float64) string { return ms(v / 1e6) }},
}

// benchRows makes the rows of the results: a row per check whose
// benchmark ran (a missing metric is a FAIL row).
func benchRows(results []BenchResult) []Row {
	var rows []Row
	for _, c := range benchChecks {
		for _, r := range results {
			if r.Name != c.bench || !strings.HasSuffix(r.Package, c.pkg) {
				continue
			}
			v, ok := r.Metrics[c.metric]
			row := Row{Scenario: c.scenario, Figure: c.figure}
			if c.target != nil {
				row.Target = c.target(r.Metrics)
			}
			switch {
			case !ok:
				row.Result, row.Note = "FAIL", fmt.Sprintf("%s reported no %s", c.bench, c.metric)
			default:
				row.Measured = fmt.Sprintf("%.3g", v)
				if c.show != nil {
					row.Measured = c.show(v)
				}
				if c.pass != nil {
					row.Result = verdict(c.pass(v, r.Metrics))
				}
				if c.note != nil {
					row.Note = c.note(r.Metrics)
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// printTable writes the rows as a Markdown table.
func printTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| scenario | figure | target | measured | result | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		res := r.Result
		if res == "" {
			res = "—"
		}
		target := r.Target
		if target == "" {
			target = "—"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Figure, target, r.Measured, res, r.Note)
	}
}
