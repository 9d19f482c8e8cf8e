package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// A report is everything one run of the benchmark found, ready to render.
type report struct {
	date      time.Time
	machine   string // CPU model and count
	goVersion string
	command   string // the benchmark's command line
	commit    string // the probe's source revision
	baseline  string // the baseline probe's command name, "" without one
	embedded  bool   // an application that carries the probe was measured (-embedded)
	load      string // load averages while measuring: "1.20 → 1.50"
	rounds    int
	warmup    int
	rows      []string // certificate rows, in order
	results   []*result
	sizes     []binarySize
	breakdown *breakdown // nil when callgrind was skipped
	notes     []string
}

type binarySize struct {
	name  string
	bytes int64
	extra string // e.g. the shared libraries of a dynamic binary
}

// A breakdown compares where the instructions of a few commands go, by Go package.
type breakdown struct {
	row     string
	columns []string           // command names
	costs   []map[string]int64 // self instructions by package, one map per column
}

// A target is one figure the report prints, with the goal for it when there is one.
type target struct {
	figure   string
	limit    float64 // met when ratio <= limit; 0 means no target
	baseline bool    // printed only when a baseline probe was measured
	ratio    func(r *report, row string) (float64, bool)
}

// targets are the ratios the report prints, probe first in each.
var targets = []target{
	{"instructions, probe / floor (HTTPS)", 0.80, false, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, floorName))
	}},
	{"CPU, probe / floor (HTTPS, median of paired runs)", 0.80, false, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, floorName))
	}},
	{"CPU, probe / curl (HTTPS, median of paired runs)", 0.45, false, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, curlName))
	}},
	{"CPU, probe / grpc-health-probe (gRPC, median of paired runs)", 0.50, false, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkGRPC, probeName), r.find(row, checkGRPC, ghpName))
	}},
	{"peak RSS, probe / floor (HTTPS, medians)", 1.00, false, func(r *report, row string) (float64, bool) {
		return rssRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, floorName))
	}},
	{"wall, probe / floor (HTTPS, median of paired runs)", 0, false, func(r *report, row string) (float64, bool) {
		return wallRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, floorName))
	}},
	{"instructions, probe / curl (HTTPS)", 0, false, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, curlName))
	}},
	{"instructions, probe / grpc-health-probe (gRPC)", 0, false, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkGRPC, probeName), r.find(row, checkGRPC, ghpName))
	}},
	{"instructions, probe / baseline (HTTPS)", 0, true, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, r.baseline))
	}},
	{"CPU, probe / baseline (HTTPS, median of paired runs)", 0, true, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, r.baseline))
	}},
	{"peak RSS, probe / baseline (HTTPS, medians)", 0, true, func(r *report, row string) (float64, bool) {
		return rssRatio(r.find(row, checkHTTPS, probeName), r.find(row, checkHTTPS, r.baseline))
	}},
	{"instructions, probe / baseline (gRPC)", 0, true, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkGRPC, probeName), r.find(row, checkGRPC, r.baseline))
	}},
	{"CPU, probe / baseline (gRPC, median of paired runs)", 0, true, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkGRPC, probeName), r.find(row, checkGRPC, r.baseline))
	}},
}

// embeddedTargets are printed when -embedded measured an application that carries the probe: one
// probe run through it, its package initialisers included, against one run of health-check.
var embeddedTargets = []target{
	{"instructions, app health-check / probe (HTTPS)", 0, false, func(r *report, row string) (float64, bool) {
		return instructionRatio(r.find(row, checkHTTPS, embeddedName), r.find(row, checkHTTPS, probeName))
	}},
	{"CPU, app health-check / probe (HTTPS, median of paired runs)", 0, false, func(r *report, row string) (float64, bool) {
		return cpuRatio(r.find(row, checkHTTPS, embeddedName), r.find(row, checkHTTPS, probeName))
	}},
	{"wall, app health-check / probe (HTTPS, median of paired runs)", 0, false, func(r *report, row string) (float64, bool) {
		return wallRatio(r.find(row, checkHTTPS, embeddedName), r.find(row, checkHTTPS, probeName))
	}},
	{"peak RSS, app health-check / probe (HTTPS, medians)", 0, false, func(r *report, row string) (float64, bool) {
		return rssRatio(r.find(row, checkHTTPS, embeddedName), r.find(row, checkHTTPS, probeName))
	}},
}

// shownTargets are the figures this report has the measurements for.
func (r *report) shownTargets() []target {
	var shown []target
	for _, t := range targets {
		if !t.baseline || r.baseline != "" {
			shown = append(shown, t)
		}
	}
	if r.embedded {
		shown = append(shown, embeddedTargets...)
	}
	return shown
}

// maxProbeBytes is the target for the stripped linux/amd64 probe: 6.5 MB (10⁶ bytes).
const maxProbeBytes = 6_500_000

func (r *report) find(row, check, name string) *result {
	for _, res := range r.results {
		if (res.cmd.row == row || check == checkStartup) && res.cmd.check == check && res.cmd.name == name {
			return res
		}
	}
	return nil
}

// render writes the report as Markdown: a header, then a table each of the measurements, the ratios
// against their targets, the binaries' sizes and where the instructions go, then the command lines.
func (r *report) render(w io.Writer) {
	fmt.Fprintf(w, "### Per-exec cost of one health check\n\n")
	fmt.Fprintf(w, "%s · %s · %s · health-check at %s · load average %s  \n",
		r.date.UTC().Format("2006-01-02 15:04 MST"), r.machine, r.goVersion, r.commit, r.load)
	if r.baseline != "" {
		fmt.Fprintf(w, "baseline: %s, the probe built from that revision  \n", r.baseline)
	}
	fmt.Fprintf(w, "`%s` — medians of %d interleaved rounds after %d warm-up rounds; instructions under callgrind (median of %d runs for our programs, one for the peers)\n\n",
		r.command, r.rounds, r.warmup, callgrindRuns)
	r.renderResults(w)
	r.renderTargets(w)
	r.renderSizes(w)
	if b := r.breakdown; b != nil {
		r.renderBreakdown(w, b)
	}
	fmt.Fprint(w, "\n<details><summary>Measured command lines</summary>\n\n```\n")
	for _, res := range r.results {
		fmt.Fprintln(w, res.cmd)
	}
	fmt.Fprint(w, "```\n</details>\n")
	for _, note := range r.notes {
		fmt.Fprintf(w, "\n%s\n", note)
	}
}

// renderResults writes the medians of every command measured.
func (r *report) renderResults(w io.Writer) {
	fmt.Fprintln(w, "| certificates | check | command | CPU user+sys | of which sys | wall | peak RSS | page faults | instructions |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, res := range r.results {
		row := res.cmd.row
		if row == "" {
			row = "—"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row, res.cmd.check, res.cmd.name,
			formatMillis(median(res.cpu)), formatMillis(median(res.sys)), formatMillis(median(res.wall)),
			formatKiB(res.rssKiB), formatCount(res.faults), formatInstructions(res.instructions))
	}
}

// renderTargets writes the ratios the targets are set on, one column per row of certificates.
func (r *report) renderTargets(w io.Writer) {
	fmt.Fprintf(w, "\n| figure | target | %s |\n", strings.Join(r.rows, " | "))
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---:|", len(r.rows)))
	for _, t := range r.shownTargets() {
		limit := "—"
		if t.limit > 0 {
			limit = fmt.Sprintf("≤ %.2f", t.limit)
		}
		cells := []string{t.figure, limit}
		for _, row := range r.rows {
			ratio, ok := t.ratio(r, row)
			cells = append(cells, formatRatio(ratio, ok, t.limit))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

// renderSizes writes the binaries' sizes, the probe's against its target.
func (r *report) renderSizes(w io.Writer) {
	fmt.Fprintln(w, "\n| binary | size | target |")
	fmt.Fprintln(w, "|---|---:|---|")
	for _, s := range r.sizes {
		size, limit := fmt.Sprintf("%.2f MB", float64(s.bytes)/1e6), ""
		if s.extra != "" {
			size += " + " + s.extra
		}
		if s.name == probeName {
			limit = fmt.Sprintf("≤ %.1f MB %s", float64(maxProbeBytes)/1e6, mark(s.bytes <= maxProbeBytes))
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", s.name, size, limit)
	}
}

// breakdownRows is how many packages the breakdown lists before "other".
const breakdownRows = 12

func (r *report) renderBreakdown(w io.Writer, b *breakdown) {
	totals := map[string]int64{} // by package, over all columns, to order the rows
	for _, costs := range b.costs {
		for pkg, ir := range costs {
			totals[pkg] += ir
		}
	}
	pkgs := slices.SortedFunc(maps.Keys(totals), func(a, b string) int {
		return cmp.Or(cmp.Compare(totals[b], totals[a]), cmp.Compare(a, b))
	})
	fmt.Fprintf(w, "\nWhere the instructions go (%s, self cost by Go package; builds with symbols, same code):\n\n", b.row)
	fmt.Fprintf(w, "| package | %s |\n", strings.Join(b.columns, " | "))
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(b.columns)))
	for i, pkg := range pkgs {
		if i == breakdownRows {
			break
		}
		cells := []string{pkg}
		for _, costs := range b.costs {
			cells = append(cells, formatInstructions(costs[pkg]))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	other, total := []string{"other"}, []string{"total"}
	for _, costs := range b.costs {
		var rest, all int64
		for i, pkg := range pkgs {
			all += costs[pkg]
			if i >= breakdownRows {
				rest += costs[pkg]
			}
		}
		other, total = append(other, formatInstructions(rest)), append(total, formatInstructions(all))
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(other, " | "), strings.Join(total, " | "))
}

// median returns the middle value of xs (the mean of the two middle values for an even count),
// 0 for none.
func median[T ~int64 | ~float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(xs))
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

// pairedRatio returns the median over rounds of a[i]/b[i]: runs of the same round were made
// moments apart, so drifts of the machine cancel out in each ratio.
func pairedRatio(a, b []time.Duration) (float64, bool) {
	if len(a) == 0 || len(a) != len(b) {
		return 0, false
	}
	ratios := make([]float64, len(a))
	for i := range a {
		if b[i] <= 0 {
			return 0, false
		}
		ratios[i] = float64(a[i]) / float64(b[i])
	}
	return median(ratios), true
}

func cpuRatio(a, b *result) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	return pairedRatio(a.cpu, b.cpu)
}

func wallRatio(a, b *result) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	return pairedRatio(a.wall, b.wall)
}

func rssRatio(a, b *result) (float64, bool) {
	if a == nil || b == nil || len(a.rssKiB) == 0 || len(b.rssKiB) == 0 {
		return 0, false
	}
	return float64(median(a.rssKiB)) / float64(median(b.rssKiB)), true
}

func instructionRatio(a, b *result) (float64, bool) {
	if a == nil || b == nil || a.instructions == 0 || b.instructions == 0 {
		return 0, false
	}
	return float64(a.instructions) / float64(b.instructions), true
}

func formatMillis(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func formatKiB(samples []int64) string {
	if len(samples) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(median(samples))/1024)
}

func formatCount(samples []int64) string {
	if len(samples) == 0 {
		return "—"
	}
	return fmt.Sprint(median(samples))
}

func formatInstructions(n int64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f M", float64(n)/1e6)
}

func formatRatio(ratio float64, ok bool, limit float64) string {
	if !ok {
		return "—"
	}
	if limit == 0 {
		return fmt.Sprintf("%.2f", ratio)
	}
	return fmt.Sprintf("%.2f %s", ratio, mark(ratio <= limit))
}

func mark(met bool) string {
	if met {
		return "✓"
	}
	return "✗"
}
