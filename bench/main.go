// Command bench measures what one health check costs per exec — CPU, wall time, peak memory,
// instructions — for our probe and for its peers, all in the same run, and prints the ratios the
// project's targets are set on.
//
// Run it from the repository root:
//
//	go run ./bench [flags]
//
// It builds the probe as shipped (CGO_ENABLED=0, -trimpath, -ldflags "-s -w -buildid=") from
// ./cmd/health-check, two reference programs built the same way — bench/floor, the least a Go
// program can do for one mutual-TLS HTTPS check with Go's default TLS configuration, and
// bench/noop, an empty Go program (process start-up alone) — installs grpc-health-probe with
// go install the same way, and takes curl from PATH. It starts on 127.0.0.1 an HTTPS server and a
// grpc-go health server, both requiring client certificates, once with ECDSA P-256 and once with
// RSA-2048 certificates generated at run time. Every command runs -warmup times (each must exit 0),
// then -n rounds that run each command once in turn; CPU (user+sys) and wall time come from the
// harness's wait4, peak RSS from /usr/bin/time, instruction counts from one run each under
// valgrind --tool=callgrind. Ratios of CPU and wall time are medians of per-round ratios.
//
// The Markdown report goes to stdout and to -out; callgrind's files go to a callgrind directory
// beside it (for callgrind_annotate).
//
// Flags:
//
//	-n N               measured rounds (default 30)
//	-warmup N          warm-up rounds, not measured (default 3)
//	-out FILE          where to write the report (default bench/results/latest.md)
//	-probe-args ARGS   extra flags for the probe, space-separated, for experiments
//	-probe-env VARS    extra environment for the probe, e.g. "GOGC=off GOMAXPROCS=1"
//	-certs LIST        certificate rows: ecdsa, rsa or both (default "ecdsa,rsa")
//	-baseline REV      also measure the probe built from git revision REV (e.g. HEAD~1), for
//	                   before/after figures from one run; -probe-args and -probe-env do not apply to it
//	-peers=false       leave out curl and grpc-health-probe, for quicker experiments
//	-skip-callgrind    no instruction counts (they need valgrind)
//	-embedded          also an application that carries the probe (bench/embedded, net/http and
//	                   crypto/tls; -tags embedprobe adds the healthcheck package): its size with and
//	                   without the probe, and `embedded health-check ...` measured beside health-check
//	                   for the HTTPS check of every row
//	-serve-cpu         instead of the above: machine CPU per health check, from /proc/stat, for an
//	                   exec probe through Docker, the probe process alone, and a kubelet-style GET
//	                   through health-check serve, and the same GET through bench/naive, a sidecar
//	                   written with net/http; before that, both sidecars' memory after 10,000 probes
//	                   (see servecpu.go); its section replaces the same section of -out, or is added
//	                   at its end; with -baseline, also serve built from REV, in phases that
//	                   alternate with the current one's. Needs Docker.
//
// Needs Go, curl, GNU time (/usr/bin/time) and valgrind: apt-get install -y curl time valgrind.
// Without time the peak RSS column is left empty; without valgrind, the instruction counts.
package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// certRowSpecs are the certificate rows -certs can pick.
var certRowSpecs = []struct {
	flag, name string
	keyType    testutil.KeyType
}{
	{"ecdsa", "ECDSA P-256", testutil.ECDSAP256},
	{"rsa", "RSA-2048", testutil.RSA2048},
}

type options struct {
	rounds, warmup int
	out            string
	probeArgs      []string
	probeEnv       []string
	certs          []string
	baseline       string
	peers          bool
	skipCallgrind  bool
	embedded       bool
}

func main() {
	var opts options
	var probeArgs, probeEnv, certs string
	flag.IntVar(&opts.rounds, "n", 30, "measured rounds")
	flag.IntVar(&opts.warmup, "warmup", 3, "warm-up rounds, not measured")
	flag.StringVar(&opts.out, "out", filepath.Join("bench", "results", "latest.md"), "where to write the Markdown report")
	flag.StringVar(&probeArgs, "probe-args", "", "extra flags for the probe, space-separated")
	flag.StringVar(&probeEnv, "probe-env", "", "extra environment for the probe, space-separated NAME=value")
	flag.StringVar(&certs, "certs", "ecdsa,rsa", "certificate rows: ecdsa, rsa or both, comma-separated")
	flag.StringVar(&opts.baseline, "baseline", "", "also measure the probe built from this git revision")
	flag.BoolVar(&opts.peers, "peers", true, "measure curl and grpc-health-probe")
	flag.BoolVar(&opts.skipCallgrind, "skip-callgrind", false, "skip the instruction counts")
	flag.BoolVar(&opts.embedded, "embedded", false, "also measure an application that carries the probe (bench/embedded)")
	serveCPU := flag.Bool("serve-cpu", false, "measure CPU per check: docker exec, the probe process, a GET through serve and through a net/http sidecar; and the sidecars' memory (needs Docker)")
	kubelet := flag.Bool("kubelet", false, "with -serve-cpu: measure CPU per probe through a real kubelet instead (needs root, containerd, runc)")
	flag.Parse()
	opts.probeArgs, opts.probeEnv = strings.Fields(probeArgs), strings.Fields(probeEnv)
	opts.certs = strings.Split(certs, ",")
	if flag.NArg() > 0 || *kubelet && (!*serveCPU || opts.baseline != "") || opts.rounds < 1 || opts.warmup < 1 || strings.HasPrefix(opts.baseline, "-") {
		fmt.Fprintln(os.Stderr, "bench: usage: go run ./bench [-n N >= 1] [-warmup N >= 1] [-out FILE] [-probe-args ARGS] [-probe-env VARS]"+
			" [-certs LIST] [-baseline REV] [-peers=false] [-skip-callgrind] [-embedded] [-serve-cpu [-kubelet]]")
		os.Exit(64)
	}
	if *serveCPU {
		measure := func() error { return runServeCPU(opts.out, opts.baseline) }
		if *kubelet {
			measure = func() error { return runServeCPUKubelet(opts.out) }
		}
		if err := measure(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		progress("done; section written to %s", opts.out)
		return
	}

	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	progress("done; report in %s", opts.out)
}

func run(opts options) error {
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "health-check-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	rep := newReport(opts, moduleDir)
	timePath, valgrind := findTools(rep, opts.skipCallgrind)
	bins, err := buildInto(rep, opts, moduleDir, work, valgrind != "")
	if err != nil {
		return err
	}

	commands, stop, err := startRows(rep, opts, bins, work)
	defer stop()
	if err != nil {
		return err
	}

	progress("measuring %d commands: %d warm-up + %d rounds", len(commands), opts.warmup, opts.rounds)
	loadBefore := loadAverage()
	if rep.results, err = measure(commands, opts.rounds, opts.warmup, timePath, work, os.Stderr); err != nil {
		return err
	}
	rep.load = loadBefore + " → " + loadAverage()
	rep.notes = append(rep.notes, "Each command runs with PATH as its only environment variable, in a directory that holds ca.crt, client.crt and client.key."+
		" CPU and wall time come from the harness's wait4, peak RSS from GNU time: Go starts children with vfork, and Linux then counts"+
		" the harness's own RSS in the child's peak.")

	if valgrind != "" {
		if err := countInstructionsInto(rep, bins, valgrind, opts.out); err != nil {
			return err
		}
	}
	return writeReport(rep, opts.out)
}

// newReport is a report with what is known before anything is measured: when, where, and how.
func newReport(opts options, moduleDir string) *report {
	return &report{
		date:      time.Now(),
		machine:   machine(),
		goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		command:   benchCommand(),
		commit:    commit(moduleDir),
		rounds:    opts.rounds,
		warmup:    opts.warmup,
	}
}

// buildInto builds every binary the run measures under work, and records in rep which baseline and
// application were built and every binary's size. symbols asks for the builds callgrind attributes.
func buildInto(rep *report, opts options, moduleDir, work string, symbols bool) (*binaries, error) {
	progress("building the probe, floor and noop (and the baseline and peers, when asked)")
	bins, err := buildBinaries(buildPlan{
		moduleDir: moduleDir,
		binDir:    filepath.Join(work, "bin"),
		srcDir:    filepath.Join(work, "baseline-src"),
		symbols:   symbols,
		peers:     opts.peers,
		baseline:  opts.baseline,
		embedded:  opts.embedded,
	})
	if err != nil {
		return bins, err
	}
	rep.baseline = bins.baselineName
	rep.embedded = bins.app != ""
	rep.sizes, err = binarySizes(bins)
	return bins, err
}

// findTools looks up GNU time and, unless skipped, valgrind; a missing one is a note in the report and
// an empty column, not a failure.
func findTools(rep *report, skipCallgrind bool) (timePath, valgrind string) {
	timePath, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		timePath = ""
		rep.notes = append(rep.notes, "Peak RSS not measured: GNU time is missing (apt-get install -y time).")
	}
	if !skipCallgrind {
		if valgrind, err = exec.LookPath("valgrind"); err != nil {
			valgrind = ""
			rep.notes = append(rep.notes, "Instructions not counted: valgrind is missing (apt-get install -y valgrind).")
		}
	}
	return timePath, valgrind
}

// startRows starts the servers of every certificate row -certs asks for and returns the commands to
// measure: noop once, then each row's. stop stops the servers; it is never nil.
func startRows(rep *report, opts options, bins *binaries, work string) (commands []*command, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	commands = []*command{noopCommand(bins, work)}
	for _, spec := range certRowSpecs {
		if !contains(opts.certs, spec.flag) {
			continue
		}
		progress("starting the %s servers", spec.name)
		row, err := startCertRow(work, spec.name, fileSlug(spec.name), spec.keyType)
		if err != nil {
			return nil, stop, fmt.Errorf("%s servers: %w", spec.name, err)
		}
		stops = append(stops, row.stop)
		rep.rows = append(rep.rows, spec.name)
		commands = append(commands, commandsFor(row, bins, opts.probeArgs, opts.probeEnv)...)
	}
	if len(rep.rows) == 0 {
		return nil, stop, errors.New("-certs names no known row (ecdsa, rsa)")
	}
	return commands, stop, nil
}

// countInstructionsInto counts instructions under callgrind, with its files in a callgrind directory
// beside the report.
func countInstructionsInto(rep *report, bins *binaries, valgrind, out string) error {
	// Absolute: callgrind runs in each command's directory.
	callgrindDir, err := filepath.Abs(filepath.Join(filepath.Dir(out), "callgrind"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(callgrindDir, 0o755); err != nil {
		return err
	}
	if err := countAll(rep, bins, valgrind, callgrindDir); err != nil {
		return err
	}
	rep.notes = append(rep.notes, "Under callgrind, Go programs run with GODEBUG="+valgrindGODEBUG+
		" (valgrind 3.19 aborts on Go's preemption signals and cannot decode RDTSCP). Self costs, as in the table above, are reliable;"+
		" callgrind's inclusive costs are not, for Go (they do not add up: goroutine stack switches confuse its call tracking)."+
		" Files: "+callgrindDir+" (callgrind_annotate FILE).")
	return nil
}

// writeReport renders the report to stdout and to out.
func writeReport(rep *report, out string) error {
	var md bytes.Buffer
	rep.render(&md)
	os.Stdout.Write(md.Bytes())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	// A -serve-cpu section from an earlier run stays: it is measured on its own.
	if old, err := os.ReadFile(out); err == nil {
		if i := bytes.Index(old, []byte(serveCPUHeading+"\n")); i >= 0 {
			md.WriteString("\n")
			md.Write(old[i:])
		}
	}
	return os.WriteFile(out, md.Bytes(), 0o644)
}

// countAll counts every command's instructions under callgrind, then breaks the probe's and the
// floor's down by package on the first certificate row, with builds that keep their symbols.
func countAll(rep *report, bins *binaries, valgrind, dir string) error {
	for _, res := range rep.results {
		c := res.cmd
		progress("callgrind: %s %s %s", cmp.Or(c.row, "—"), c.check, c.name)
		res.callgrindOut = filepath.Join(dir, fileSlug(cmp.Or(c.row, "any")+"-"+c.check+"-"+c.name)+".out")
		runs := 1 // the peers'
		if c.path == bins.probe || c.path == bins.baseline || c.path == bins.floor || c.path == bins.noop || c.path == bins.app {
			runs = callgrindRuns
		}
		n, err := countInstructions(c, c.path, valgrind, res.callgrindOut, runs)
		if err != nil {
			return err
		}
		res.instructions = n
	}

	row := rep.rows[0]
	type symbolRun struct {
		res  *result
		path string
	}
	runs := []symbolRun{{rep.find(row, checkHTTPS, probeName), bins.probeSymbols}}
	if rep.baseline != "" {
		runs = append(runs, symbolRun{rep.find(row, checkHTTPS, rep.baseline), bins.baselineSymbols})
	}
	if rep.embedded {
		runs = append(runs, symbolRun{rep.find(row, checkHTTPS, embeddedName), bins.appSymbols})
	}
	runs = append(runs, symbolRun{rep.find(row, checkHTTPS, floorName), bins.floorSymbols})
	var files, columns []string
	for _, run := range runs {
		out := strings.TrimSuffix(run.res.callgrindOut, ".out") + "-symbols.out"
		progress("callgrind: %s with symbols", run.res.cmd.name)
		if _, err := countInstructions(run.res.cmd, run.path, valgrind, out, 1); err != nil {
			return err
		}
		files, columns = append(files, out), append(columns, run.res.cmd.name)
	}
	costs, err := packageCosts(files...)
	if err != nil {
		return err
	}
	rep.breakdown = &breakdown{row: row + ", HTTPS", columns: columns, costs: costs}
	return nil
}

func binarySizes(b *binaries) ([]binarySize, error) {
	var sizes []binarySize
	for _, bin := range []struct{ name, path string }{
		{probeName, b.probe}, {b.baselineName, b.baseline}, {floorName, b.floor}, {noopName, b.noop},
		{appAloneName, b.appAlone}, {appName, b.app}, {ghpName, b.grpcHealthProbe}, {curlName, b.curl},
	} {
		if bin.path == "" {
			continue
		}
		info, err := os.Stat(bin.path)
		if err != nil {
			return nil, err
		}
		size := binarySize{name: bin.name, bytes: info.Size()}
		if bin.name == curlName {
			libs, n := sharedLibraries(bin.path)
			size.extra = fmt.Sprintf("%.2f MB in %d shared libraries", float64(libs)/1e6, n)
		}
		sizes = append(sizes, size)
	}
	return withProbeAdded(sizes), nil
}

// withProbeAdded adds, after the application that carries the probe, a row for what the probe added
// to the application alone, and how that compares with health-check's own size.
func withProbeAdded(sizes []binarySize) []binarySize {
	byName := map[string]int64{}
	for _, s := range sizes {
		byName[s.name] = s.bytes
	}
	alone, withProbe, probe := byName[appAloneName], byName[appName], byName[probeName]
	if alone == 0 || withProbe == 0 || probe == 0 {
		return sizes
	}
	added := withProbe - alone
	return append(sizes, binarySize{
		name:  fmt.Sprintf("what the probe adds to the app (%.2f × health-check)", float64(added)/float64(probe)),
		bytes: added,
	})
}

// sharedLibraries returns the total size and number of the shared libraries a dynamic binary loads,
// as ldd lists them: what an image must hold besides the binary.
func sharedLibraries(path string) (bytes int64, count int) {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		for _, f := range fields {
			if !strings.HasPrefix(f, "/") {
				continue
			}
			if info, err := os.Stat(f); err == nil {
				bytes += info.Size()
				count++
			}
			break
		}
	}
	return bytes, count
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run from inside the module (go env GOMOD: %q, %v)", gomod, err)
	}
	return filepath.Dir(gomod), nil
}

// machine describes the CPU: model name and the number of CPUs this process may use (as nproc).
func machine() string {
	model := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				model = strings.TrimSpace(value)
				break
			}
		}
	}
	return fmt.Sprintf("%s, nproc %d", model, runtime.NumCPU())
}

// loadAverage is the 1-minute load average: other work on the machine shows in the timings.
func loadAverage() string {
	text, err := os.ReadFile("/proc/loadavg")
	if fields := strings.Fields(string(text)); err == nil && len(fields) > 0 {
		return fields[0]
	}
	return "?"
}

// commit names the probe's source: the short commit, marked when the probe's files differ from it.
func commit(moduleDir string) string {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = moduleDir
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown commit"
	}
	if changes, err := git("status", "--porcelain", "--", "cmd/health-check", "probe", "go.mod", "go.sum"); err == nil && changes != "" {
		head += " + uncommitted changes"
	}
	return head
}

// benchCommand is how this run was started, as a user would type it.
func benchCommand() string {
	parts := []string{"go", "run", "./bench"}
	for _, arg := range os.Args[1:] {
		if strings.ContainsAny(arg, " \t'\"$") {
			arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
		}
		parts = append(parts, arg)
	}
	return strings.Join(parts, " ")
}

func fileSlug(s string) string {
	return strings.ToLower(strings.NewReplacer(" ", "-", "—", "", "/", "-").Replace(s))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

var start = time.Now()

// progress tells the user on stderr what the benchmark is doing and how long it has taken so far.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench [%s]: "+format+"\n", append([]any{time.Since(start).Round(time.Second)}, args...)...)
}
