package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// -serve-cpu measures what the node pays for one health check in three ways, in one run on one
// machine: (a) an exec probe through the container runtime (docker exec APP /health-check ...), (b)
// the probe process alone, started on the host, and (c) one kubelet-style GET (a new connection, no
// keep-alive) through `health-check serve`, running as a second container in the app's network
// namespace with its upstream connection kept alive. All three check the same mTLS endpoint of the
// same app container. Two figures per check: machine CPU — every CPU's busy jiffies from /proc/stat
// over a phase, minus what the machine used while idle over the same time, divided by the checks
// made — and, because a machine that others keep busy leaves no idle time to measure that against,
// the CPU of the processes involved: dockerd, containerd, the containers' shims with the children
// they reaped (runc, the exec'd probe), the app's server, serve, and this program with its children
// (the docker CLI, the probe on the host, the kubelet-like client).

const (
	// servePhase is how long each mode, and each idle measurement, runs: long enough for hundreds of
	// jiffies of work in each busy phase, short enough for a run of about a minute.
	servePhase = 8 * time.Second
	// userHZ is the unit of /proc/stat: USER_HZ, 100 on every Linux architecture Go supports.
	userHZ = 100
	// nodeChecksPerSecond is the node the issue sizes for: 110 pods, 3 probes each, every 10 s.
	nodeChecksPerSecond = 110 * 3 / 10.0
	// serveCPUHeading starts the report's section, which a later -serve-cpu run replaces.
	serveCPUHeading = "## Machine CPU per health check: exec probe vs serve"
	// benchLabel marks the containers of a run: docker rm -f $(docker ps -aq --filter label=health-check-proxy-bench)
	benchLabel = "health-check-proxy-bench"
)

// serveMode is one way of checking, with what it made.
type serveMode struct {
	name   string
	check  func() error
	checks int
	busy   float64             // machine jiffies over the phase
	own    [groupCount]float64 // jiffies of the processes involved over the phase, by group
	wall   time.Duration
}

// Groups of the processes involved, for the breakdown.
const (
	groupRuntime = iota // dockerd, containerd, the shims and what they reaped
	groupApp            // the app's server
	groupServe          // health-check serve
	groupBench          // this program and its children
	groupCount
)

var groupNames = [groupCount]string{"container runtime", "app server", "serve", "benchmark + children"}

func (m *serveMode) ownTotal() float64 {
	var total float64
	for _, j := range m.own {
		total += j
	}
	return total
}

// involved are the processes whose CPU the second figure counts, besides this program's.
type involved struct {
	pids [groupCount][]int
}

// jiffies is the CPU of the involved processes by group, this program's with its reaped children.
func (p *involved) jiffies() [groupCount]float64 {
	var total [groupCount]float64
	for group, pids := range p.pids {
		for _, pid := range pids {
			total[group] += processJiffies(pid)
		}
	}
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	for _, r := range []syscall.Rusage{self, children} {
		total[groupBench] += (time.Duration(r.Utime.Nano()) + time.Duration(r.Stime.Nano())).Seconds() * userHZ
	}
	return total
}

// processJiffies is a process's utime, stime, cutime and cstime from /proc/PID/stat: its own CPU and
// that of the children it waited for.
func processJiffies(pid int) float64 {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(stat, []byte(") ")) // after the command name, which may hold spaces
	fields := strings.Fields(string(rest))
	var total float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime: fields 14-17, counted from the state (3)
		if i < len(fields) {
			n, _ := strconv.ParseFloat(fields[i], 64)
			total += n
		}
	}
	return total
}

// findInvolved finds dockerd, containerd, and the shim and main process of each container: the app's
// and those of serve (the current one, and the baseline's when measured).
func findInvolved(app string, serves ...string) (*involved, error) {
	p := &involved{}
	var ids []string
	for i, c := range append([]string{app}, serves...) {
		out, err := exec.Command("docker", "inspect", "-f", "{{.Id}} {{.State.Pid}}", c).Output()
		if err != nil {
			return nil, fmt.Errorf("docker inspect %s: %w", c, err)
		}
		id, pid, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			return nil, fmt.Errorf("docker inspect %s: pid %q", c, pid)
		}
		ids = append(ids, id)
		group := groupApp
		if i > 0 {
			group = groupServe
		}
		p.pids[group] = append(p.pids[group], n)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, proc := range procs {
		pid, err := strconv.Atoi(proc.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + proc.Name() + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		name := filepath.Base(args[0])
		switch {
		case name == "dockerd" || name == "containerd":
			p.pids[groupRuntime] = append(p.pids[groupRuntime], pid)
		case strings.HasPrefix(name, "containerd-shim"):
			for _, id := range ids {
				if strings.Contains(string(cmdline), id) {
					p.pids[groupRuntime] = append(p.pids[groupRuntime], pid)
				}
			}
		}
	}
	return p, nil
}

// runServeCPU measures and writes the section. baseline, when not "", is a git revision whose serve is
// measured too, beside the current one: a third container in the app's network namespace.
func runServeCPU(out, baseline string) error {
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("-serve-cpu needs docker")
	}
	archOut, err := exec.Command("docker", "version", "--format", "{{.Server.Arch}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("no Docker engine answers: %s", bytes.TrimSpace(archOut))
	}
	arch := map[string]string{"x86_64": "amd64", "aarch64": "arm64"}[strings.TrimSpace(string(archOut))]
	if arch == "" {
		arch = strings.TrimSpace(string(archOut))
	}
	work, err := os.MkdirTemp("", "health-check-bench-serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	runID := hex.EncodeToString(id)

	progress("building the probe and the test app, and the app image")
	certs := filepath.Join(work, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		return err
	}
	files, err := testutil.WriteMTLSFiles(certs, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, true)
	if err != nil {
		return err
	}
	image := "health-check-bench-app:" + runID
	probe, err := buildAppImage(moduleDir, work, arch, image, baseline)
	if err != nil {
		return err
	}
	defer exec.Command("docker", "rmi", "-f", image).Run()

	app, serveContainer, baselineContainer := "health-check-bench-app-"+runID, "health-check-bench-serve-"+runID, "health-check-bench-baseline-"+runID
	defer exec.Command("docker", "rm", "-f", app, serveContainer, baselineContainer).Run()
	common := []string{"--label", benchLabel + "=" + runID, "--user", "65532", "--read-only", "--cap-drop", "ALL", "-v", certs + ":/certs:ro"}
	if err := docker(append(append([]string{"run", "-d", "--name", app}, common...), image)...); err != nil {
		return err
	}
	// serve shares the app's network namespace, as a native sidecar shares the pod's.
	startServe := func(name, entrypoint, port string) error {
		return docker(append(append([]string{"run", "-d", "--name", name, "--network", "container:" + app, "--entrypoint", entrypoint}, common...),
			image, "serve", "-listen", ":"+port, "-cacert", "/certs/ca.crt", "-cert", "/certs/client.crt", "-key", "/certs/client.key",
			"-check", "live=https://localhost:8443/healthz")...)
	}
	if err := startServe(serveContainer, "/health-check", "8086"); err != nil {
		return err
	}
	if baseline != "" {
		if err := startServe(baselineContainer, baselineProbePath, "8087"); err != nil {
			return err
		}
	}
	ipOut, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", app).Output()
	if err != nil {
		return fmt.Errorf("docker inspect %s: %w", app, err)
	}
	// The pod's address, as the kubelet reaches it: no published port, so no docker-proxy in the way.
	appIP := strings.TrimSpace(string(ipOut))
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	kubeletGET := func(port string) error {
		serveURL := "http://" + net.JoinHostPort(appIP, port) + "/live"
		req, _ := http.NewRequest("GET", serveURL, nil)
		req.Header.Set("User-Agent", "kube-probe/1.34")
		resp, err := kubelet.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", serveURL, resp.Status)
		}
		return nil
	}
	getServe := func() error { return kubeletGET("8086") }
	getBaseline := func() error { return kubeletGET("8087") }
	if err := waitUntil(30*time.Second, getServe); err != nil {
		return fmt.Errorf("serve did not answer 200: %w", err)
	}
	if baseline != "" {
		if err := waitUntil(30*time.Second, getBaseline); err != nil {
			return fmt.Errorf("serve at %s did not answer 200: %w", baseline, err)
		}
	}

	modes := []*serveMode{
		{name: "(a) `docker exec APP /health-check ...`", check: func() error {
			return runCheck(exec.Command("docker", "exec", app, "/health-check", "-cacert", "/certs/ca.crt", "-cert", "/certs/client.crt",
				"-key", "/certs/client.key", "https://localhost:8443/healthz"))
		}},
		{name: "(b) the probe process alone, on the host", check: func() error {
			return runCheck(exec.Command(probe, "-cacert", files.CACert, "-cert", files.ClientCert, "-key", files.ClientKey,
				"-server-name", "localhost", "https://"+net.JoinHostPort(appIP, "8443")+"/healthz"))
		}},
		{name: "(c) one kubelet-style GET through `serve`", check: getServe},
	}
	// The phases: each mode for servePhase; with a baseline, the two serves in alternating phases of
	// half that, twice each, so that neither gets the quieter moments of the machine.
	phases := []phase{{modes[0], servePhase}, {modes[1], servePhase}, {modes[2], servePhase}}
	if baseline != "" {
		before := &serveMode{name: "(c) at " + baseline + ", the same GET", check: getBaseline}
		modes = append(modes, before)
		phases = append(phases[:2], phase{modes[2], servePhase / 2}, phase{before, servePhase / 2},
			phase{before, servePhase / 2}, phase{modes[2], servePhase / 2})
	}
	for _, m := range modes { // one of each first: every mode works before anything is measured
		if err := m.check(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	serves := []string{serveContainer}
	if baseline != "" {
		serves = append(serves, baselineContainer)
	}
	procs, err := findInvolved(app, serves...)
	if err != nil {
		return err
	}
	loadBefore := loadAverage()
	progress("measuring the idle machine for %s", servePhase)
	idleBefore, idleWall, err := idlePhase()
	if err != nil {
		return err
	}
	for _, p := range phases {
		progress("measuring %s for %s", p.mode.name, p.length)
		if err := p.mode.measure(procs, p.length); err != nil {
			return fmt.Errorf("%s: %w", p.mode.name, err)
		}
	}
	progress("measuring the idle machine again for %s", servePhase)
	idleAfter, idleWall2, err := idlePhase()
	if err != nil {
		return err
	}
	idleRate := (idleBefore + idleAfter) / (idleWall + idleWall2).Seconds() // jiffies per second

	var md bytes.Buffer
	renderServeCPU(&md, modes, idleRate, loadBefore+" → "+loadAverage(), commit(moduleDir))
	os.Stdout.Write(md.Bytes())
	return replaceSection(out, serveCPUHeading, md.Bytes())
}

// baselineProbePath is where the app image holds the probe built from -baseline.
const baselineProbePath = "/health-check-baseline"

// buildAppImage builds the probe and the e2e test server for arch (and the probe at baseline, unless
// that is ""), loads an image of them (entrypoint: the test server) as tag, and returns the probe
// binary's path.
func buildAppImage(moduleDir, work, arch, tag, baseline string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	probe, server := filepath.Join(work, "health-check"), filepath.Join(work, "testserver")
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: moduleDir, Arch: arch, Version: "bench"}, probe); err != nil {
		return "", err
	}
	files := []struct{ path, file string }{{"/health-check", probe}, {"/testserver", server}}
	if baseline != "" {
		src, before := filepath.Join(work, "baseline-src"), filepath.Join(work, "health-check-baseline")
		if err := unpackRevision(moduleDir, baseline, src); err != nil {
			return "", err
		}
		if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: src, Arch: arch, Version: "bench@" + baseline}, before); err != nil {
			return "", fmt.Errorf("building the probe at %s: %w", baseline, err)
		}
		files = append(files, struct{ path, file string }{baselineProbePath, before})
	}
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: moduleDir, Arch: arch,
		Package: "github.com/health-check-proxy/health-check-proxy/e2e/testserver"}, server); err != nil {
		return "", err
	}
	epoch, err := imagebuild.EpochFromEnv("")
	if err != nil {
		return "", err
	}
	var layers []v1.Layer
	for _, f := range files {
		content, err := os.ReadFile(f.file)
		if err != nil {
			return "", err
		}
		layer, err := imagebuild.Layer([]imagebuild.File{{Path: f.path, Mode: 0o755, Content: content}}, epoch)
		if err != nil {
			return "", err
		}
		layers = append(layers, layer)
	}
	img, err := imagebuild.Image(arch, epoch, layers, func(c *v1.Config) { c.Entrypoint = []string{"/testserver"} })
	if err != nil {
		return "", err
	}
	archive := filepath.Join(work, "app.tar")
	if err := imagebuild.WriteDockerArchive(archive, img, tag); err != nil {
		return "", err
	}
	return probe, docker("load", "-i", archive)
}

// phase is one stretch of measuring a mode.
type phase struct {
	mode   *serveMode
	length time.Duration
}

// measure runs the mode's check back to back for length and adds the checks, the time, and the
// machine's and the processes' busy jiffies to the mode's.
func (m *serveMode) measure(procs *involved, length time.Duration) error {
	before, err := busyJiffies()
	if err != nil {
		return err
	}
	ownBefore := procs.jiffies()
	start := time.Now()
	for time.Since(start) < length {
		if err := m.check(); err != nil {
			return err
		}
		m.checks++
	}
	m.wall += time.Since(start)
	ownAfter := procs.jiffies()
	for g := range m.own {
		m.own[g] += ownAfter[g] - ownBefore[g]
	}
	after, err := busyJiffies()
	m.busy += after - before
	return err
}

// idlePhase is the machine's busy jiffies over servePhase while the benchmark does nothing.
func idlePhase() (float64, time.Duration, error) {
	before, err := busyJiffies()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	time.Sleep(servePhase)
	after, err := busyJiffies()
	return after - before, time.Since(start), err
}

// busyJiffies is the time all CPUs spent on anything but idling and waiting for I/O, from the first
// line of /proc/stat: user, nice, system, irq, softirq and steal.
func busyJiffies() (float64, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return busy, nil
}

// renderServeCPU writes the section: CPU per check of each mode, both ways, the ratios and what they
// mean for a node.
func renderServeCPU(w io.Writer, modes []*serveMode, idleRate float64, load, revision string) {
	machinePerCheck := make([]float64, len(modes)) // CPU milliseconds
	ownPerCheck := make([]float64, len(modes))
	for i, m := range modes {
		machinePerCheck[i] = (m.busy - idleRate*m.wall.Seconds()) / userHZ * 1000 / float64(m.checks)
		ownPerCheck[i] = m.ownTotal() / userHZ * 1000 / float64(m.checks)
	}
	capacity := float64(runtime.NumCPU()) * userHZ
	saturated := idleRate > capacity/2
	fmt.Fprintf(w, "%s\n\n", serveCPUHeading)
	fmt.Fprintf(w, "`%s`, %s, %s, probe %s, load average %s.\n\n", benchCommand(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), revision, load)
	fmt.Fprintf(w, "Each mode runs back to back for %s against the app container's mTLS endpoint (ECDSA P-256); (c) runs"+
		" `health-check serve` in a second container in the app's network namespace, and its client, like the kubelet's, opens a new"+
		" connection per probe. *Machine*: busy jiffies of all CPUs from /proc/stat, minus the idle machine's %.0f CPU-ms/s (of %.0f)"+
		" over the same time. *Processes*: the CPU of dockerd, containerd, the containers' shims with what they reaped (runc, the"+
		" exec'd probe), the app's server, serve, and the benchmark with its children (docker CLI, probe, client).\n\n",
		servePhase, idleRate/userHZ*1000, capacity/userHZ*1000)
	if saturated {
		fmt.Fprintln(w, "**The machine was busy with other work while idle (over half its CPU): the machine figures are not meaningful in this run; read the process figures.**")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "| mode | checks | CPU per check, machine | CPU per check, processes | node: 110 pods × 3 probes / 10 s (processes) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for i, m := range modes {
		fmt.Fprintf(w, "| %s | %d | %.3f ms | %.3f ms | %.1f CPU-ms/s (%.2f %% of a core) |\n", m.name, m.checks, machinePerCheck[i], ownPerCheck[i],
			ownPerCheck[i]*nodeChecksPerSecond, ownPerCheck[i]*nodeChecksPerSecond/10)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | "+strings.Join(groupNames[:], " | ")+" |")
	fmt.Fprintln(w, "|---"+strings.Repeat("|---:", groupCount)+"|")
	for _, m := range modes {
		fmt.Fprintf(w, "| %s per check", m.name)
		for _, j := range m.own {
			fmt.Fprintf(w, " | %.3f ms", j/userHZ*1000/float64(m.checks))
		}
		fmt.Fprintln(w, " |")
	}
	fmt.Fprintln(w)
	ratio := func(c, of float64) string {
		if c <= 0 || of <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("1/%.0f", of/c)
	}
	row := func(name string, i int, target float64) {
		fmt.Fprintf(w, "| %s | %s | %s | ≤ 1/%.0f %s |\n", name, ratio(machinePerCheck[2], machinePerCheck[i]), ratio(ownPerCheck[2], ownPerCheck[i]),
			1/target, mark(ownPerCheck[2] > 0 && ownPerCheck[2]/ownPerCheck[i] <= target))
	}
	fmt.Fprintln(w, "| ratio | machine | processes | target (processes) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	row("(c) / (a): serve vs exec probe", 0, 0.01)
	row("(c) / (b): serve vs the probe process", 1, 0.1)
	fmt.Fprintln(w)
	if len(modes) > 3 { // -baseline: the current serve against the one built from REV
		times := func(c, of float64) string {
			if c <= 0 || of <= 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2f×", c/of)
		}
		fmt.Fprintln(w, "| before/after, same run | machine | processes | serve's own |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		fmt.Fprintf(w, "| %s vs %s | %s | %s | %s |\n\n", modes[2].name, modes[3].name, times(machinePerCheck[2], machinePerCheck[3]),
			times(ownPerCheck[2], ownPerCheck[3]), times(modes[2].own[groupServe]/float64(modes[2].checks), modes[3].own[groupServe]/float64(modes[3].checks)))
	}
}

// replaceSection writes section into the report file out, in place of an earlier section with the
// same heading (up to the next "## " heading), or at its end.
func replaceSection(out, heading string, section []byte) error {
	old, err := os.ReadFile(out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	if i := strings.Index(text, heading+"\n"); i >= 0 {
		rest := text[i+len(heading):]
		end := len(text)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(heading) + j + 1
		}
		text = text[:i] + text[end:]
	}
	if text != "" && !strings.HasSuffix(text, "\n\n") {
		text = strings.TrimRight(text, "\n") + "\n\n"
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(text+string(section)), 0o644)
}

func runCheck(cmd *exec.Cmd) error {
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func docker(args ...string) error {
	return runCheck(exec.Command("docker", args...))
}

// waitUntil retries f every 200 ms until it succeeds or timeout passes.
func waitUntil(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
