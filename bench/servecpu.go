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
//
// Beside serve, in the same run: (d) the same GET through bench/naive, the sidecar a Go programmer
// would write with net/http (a server, and a client that keeps its mTLS connections), whose own CPU
// per probe is what serve's is measured against; and the memory of both sidecars after
// memoryProbes probes of their two checks.

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
	// memoryProbes is how many probes each sidecar answers, alternating its two checks, before its
	// memory is read: what a pod's sidecar holds after a day of probes is what it holds after these.
	memoryProbes = 10000
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
	groupNaive          // bench/naive: a sidecar written with net/http
	groupBench          // this program and its children
	groupCount
)

var groupNames = [groupCount]string{"container runtime", "app server", "serve", "naive sidecar", "benchmark + children"}

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

// sidecar is a container in the app's network namespace, and the group its process is counted in.
type sidecar struct {
	container string
	group     int
	label     string // for the report: serve, serve at REV, net/http
}

// findInvolved finds dockerd, containerd, and the shim and main process of each container: the app's
// and the sidecars'.
func findInvolved(app string, sidecars ...sidecar) (*involved, error) {
	p := &involved{}
	var ids []string
	for _, c := range append([]sidecar{{app, groupApp, "app"}}, sidecars...) {
		id, n, err := containerPid(c.container)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
		p.pids[c.group] = append(p.pids[c.group], n)
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

// containerPid is a container's ID and the host pid of its main process.
func containerPid(container string) (string, int, error) {
	out, err := exec.Command("docker", "inspect", "-f", "{{.Id}} {{.State.Pid}}", container).Output()
	if err != nil {
		return "", 0, fmt.Errorf("docker inspect %s: %w", container, err)
	}
	id, pid, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	n, err := strconv.Atoi(pid)
	if err != nil {
		return "", 0, fmt.Errorf("docker inspect %s: pid %q", container, pid)
	}
	return id, n, nil
}

// runServeCPU measures and writes the section. baseline, when not "", is a git revision whose serve is
// measured too, beside the current one: another container in the app's network namespace.
func runServeCPU(out, baseline string) error {
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	setup, err := startServeBench(moduleDir, baseline)
	if setup != nil {
		defer setup.cleanup()
	}
	if err != nil {
		return err
	}
	memory, err := setup.measureMemory()
	if err != nil {
		return err
	}
	modes, err := setup.measureCPU()
	if err != nil {
		return err
	}
	var md bytes.Buffer
	renderServeCPU(&md, modes, memory, setup.idleRate, setup.load, commit(moduleDir))
	os.Stdout.Write(md.Bytes())
	return replaceSection(out, serveCPUHeading, md.Bytes())
}

// serveBench is a run's containers: the app, serve beside it, the naive sidecar, and serve built
// from -baseline when asked, each in the app's network namespace; and the probe built on the host.
type serveBench struct {
	work, image, runID, arch, baseline string
	app, appIP, probe                  string
	files                              *testutil.MTLSFiles
	sidecars                           []sidecar
	// ports: where each sidecar answers, by container.
	ports   map[string]string
	kubelet *http.Client

	idleRate float64 // jiffies per second of the idle machine, from measureCPU
	load     string
}

// Ports of the sidecars, in the app's network namespace.
const (
	servePort    = "8086"
	baselinePort = "8087"
	naivePort    = "8088"
)

func (b *serveBench) cleanup() {
	args := []string{"rm", "-f", b.app}
	for _, s := range b.sidecars {
		args = append(args, s.container)
	}
	exec.Command("docker", args...).Run()
	exec.Command("docker", "rmi", "-f", b.image).Run()
	os.RemoveAll(b.work)
}

// startServeBench builds the binaries and the app image, and starts the containers; each sidecar
// has answered one probe when it returns. What it started is in the result, to be cleaned up, even
// when it fails.
func startServeBench(moduleDir, baseline string) (*serveBench, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, errors.New("-serve-cpu needs docker")
	}
	archOut, err := exec.Command("docker", "version", "--format", "{{.Server.Arch}}").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers: %s", bytes.TrimSpace(archOut))
	}
	b := &serveBench{baseline: baseline, ports: map[string]string{},
		kubelet: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}}
	b.arch = map[string]string{"x86_64": "amd64", "aarch64": "arm64"}[strings.TrimSpace(string(archOut))]
	if b.arch == "" {
		b.arch = strings.TrimSpace(string(archOut))
	}
	if b.work, err = os.MkdirTemp("", "health-check-bench-serve-"); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	b.runID = hex.EncodeToString(id)
	b.image, b.app = "health-check-bench-app:"+b.runID, "health-check-bench-app-"+b.runID

	progress("building the probe, the naive sidecar and the test app, and the app image")
	certs := filepath.Join(b.work, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		return b, err
	}
	if b.files, err = testutil.WriteMTLSFiles(certs, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, true); err != nil {
		return b, err
	}
	if b.probe, err = buildAppImage(moduleDir, b.work, b.arch, b.image, baseline); err != nil {
		return b, err
	}
	return b, b.startContainers(certs)
}

// tlsFileNames are the client's TLS files in the containers, relative to their working directory
// /certs, the files' bind mount, rather than /certs/ca.crt and so on. On the machines this runs on,
// Docker's storage driver is fuse-overlayfs (as rootless Docker's and Podman's often are): the
// containers' root is a FUSE filesystem, and a path walk from / by a user other than its owner
// asks the FUSE daemon for the root directory's ACL at every lookup (perf: fuse_permission →
// __get_acl → fuse_getxattr → request_wait_answer). Three stats as user 65532 cost 90–100 µs of CPU
// that way, 5 µs from the working directory, and 6 µs from a kernel overlayfs root such as
// containerd's snapshotter gives a node's pods (bench/README.md). serve looks at its TLS files at
// every check, so absolute names charged it a FUSE round trip per file and probe that no node with
// the kernel's overlayfs makes.
var tlsFileNames = []string{"ca.crt", "client.crt", "client.key"}

// startContainers starts the app and the sidecars, and waits until each sidecar answers 200.
func (b *serveBench) startContainers(certs string) error {
	common := []string{"--label", benchLabel + "=" + b.runID, "--user", "65532", "--read-only", "--cap-drop", "ALL",
		"-v", certs + ":/certs:ro", "-w", "/certs"}
	if err := docker(append(append([]string{"run", "-d", "--name", b.app}, common...), b.image)...); err != nil {
		return err
	}
	// Two checks of the same endpoint: two kept-alive mTLS connections, as for a pod's live and ready.
	checks := []string{"live=https://localhost:8443/healthz", "ready=https://localhost:8443/healthz"}
	tlsFiles := tlsFileNames
	start := func(role, label string, group int, port, entrypoint string, args ...string) error {
		name := "health-check-bench-" + role + "-" + b.runID
		b.sidecars = append(b.sidecars, sidecar{name, group, label})
		b.ports[name] = port
		return docker(append(append([]string{"run", "-d", "--name", name, "--network", "container:" + b.app, "--entrypoint", entrypoint},
			common...), append([]string{b.image}, args...)...)...)
	}
	serveArgs := func(port string) []string {
		args := []string{"serve", "-listen", ":" + port, "-cacert", tlsFiles[0], "-cert", tlsFiles[1], "-key", tlsFiles[2]}
		for _, c := range checks {
			args = append(args, "-check", c)
		}
		return args
	}
	if err := start("serve", "serve", groupServe, servePort, "/health-check", serveArgs(servePort)...); err != nil {
		return err
	}
	if b.baseline != "" {
		if err := start("baseline", "serve at "+b.baseline, groupServe, baselinePort, baselineProbePath, serveArgs(baselinePort)...); err != nil {
			return err
		}
	}
	if err := start("naive", "net/http sidecar", groupNaive, naivePort, naivePath,
		append(append([]string{":" + naivePort}, tlsFiles...), checks...)...); err != nil {
		return err
	}
	ipOut, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", b.app).Output()
	if err != nil {
		return fmt.Errorf("docker inspect %s: %w", b.app, err)
	}
	// The pod's address, as the kubelet reaches it: no published port, so no docker-proxy in the way.
	b.appIP = strings.TrimSpace(string(ipOut))
	for _, s := range b.sidecars {
		if err := waitUntil(30*time.Second, func() error { return b.get(s.container, "/live") }); err != nil {
			return fmt.Errorf("%s did not answer 200: %w", s.container, err)
		}
	}
	return nil
}

// get is one kubelet-style GET of path from a sidecar: a new connection, the kubelet's User-Agent.
func (b *serveBench) get(container, path string) error {
	serveURL := "http://" + net.JoinHostPort(b.appIP, b.ports[container]) + path
	req, _ := http.NewRequest("GET", serveURL, nil)
	req.Header.Set("User-Agent", "kube-probe/1.34")
	resp, err := b.kubelet.Do(req)
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

// sidecarMemory is what a sidecar's process holds after memoryProbes probes, in KiB, from
// /proc/PID/smaps_rollup: Anonymous is its own memory (heap, stacks, runtime), which the binary's
// file pages are not; Rss counts both.
type sidecarMemory struct {
	sidecar                         string
	anonAfterOneGET, rssAfterOneGET int
	anonymous, rss                  int
}

// measureMemory sends each sidecar memoryProbes probes, alternating its two checks, and reads its
// memory before and after. The sidecars are fresh: this runs before the CPU phases.
func (b *serveBench) measureMemory() ([]sidecarMemory, error) {
	var memory []sidecarMemory
	for _, s := range b.sidecars {
		progress("sending %d probes to %s for its memory", memoryProbes, s.container)
		_, pid, err := containerPid(s.container)
		if err != nil {
			return nil, err
		}
		m := sidecarMemory{sidecar: s.label}
		first, err := smapsRollup(pid)
		if err != nil {
			return nil, err
		}
		m.anonAfterOneGET, m.rssAfterOneGET = first["Anonymous"], first["Rss"]
		for i := range memoryProbes {
			path := []string{"/live", "/ready"}[i%2]
			if err := b.get(s.container, path); err != nil {
				return nil, err
			}
		}
		time.Sleep(time.Second) // what a kubelet's pause between probes lets the process give back
		after, err := smapsRollup(pid)
		if err != nil {
			return nil, err
		}
		m.anonymous, m.rss = after["Anonymous"], after["Rss"]
		memory = append(memory, m)
	}
	return memory, nil
}

// smapsRollup reads the kB fields of /proc/PID/smaps_rollup.
func smapsRollup(pid int) (map[string]int, error) {
	text, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return nil, err
	}
	fields := map[string]int{}
	for _, line := range strings.Split(string(text), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB")); err == nil {
			fields[name] = kib
		}
	}
	return fields, nil
}

// measureCPU runs the modes' phases between two idle phases.
func (b *serveBench) measureCPU() ([]*serveMode, error) {
	tlsArgs := []string{"-cacert", tlsFileNames[0], "-cert", tlsFileNames[1], "-key", tlsFileNames[2]}
	modes := []*serveMode{
		{name: "(a) `docker exec APP /health-check ...`", check: func() error {
			return runCheck(exec.Command("docker", append(append([]string{"exec", "-w", "/certs", b.app, "/health-check"}, tlsArgs...),
				"https://localhost:8443/healthz")...))
		}},
		{name: "(b) the probe process alone, on the host", check: func() error {
			return runCheck(exec.Command(b.probe, "-cacert", b.files.CACert, "-cert", b.files.ClientCert, "-key", b.files.ClientKey,
				"-server-name", "localhost", "https://"+net.JoinHostPort(b.appIP, "8443")+"/healthz"))
		}},
		{name: "(c) one kubelet-style GET through `serve`", check: func() error { return b.get(b.sidecars[0].container, "/live") }},
		{name: "(d) the same GET through a net/http sidecar (bench/naive)", check: func() error {
			return b.get(b.sidecars[len(b.sidecars)-1].container, "/live")
		}},
	}
	// The phases: (a) and (b) for servePhase each; then the sidecars — serve, serve at the baseline
	// when there is one, bench/naive — each for half that, in order and then in reverse (ABBA, or
	// ABCCBA), so that none of them gets the quieter moments of the machine, and a moment that slows
	// one phase weighs on half of one sidecar's figure rather than on all of it.
	sidecarModes := []*serveMode{modes[2]}
	if b.baseline != "" {
		before := &serveMode{name: "(c) at " + b.baseline + ", the same GET", check: func() error { return b.get(b.sidecars[1].container, "/live") }}
		modes = append(modes, before)
		sidecarModes = append(sidecarModes, before)
	}
	sidecarModes = append(sidecarModes, modes[3])
	phases := []phase{{modes[0], servePhase}, {modes[1], servePhase}}
	for _, m := range sidecarModes {
		phases = append(phases, phase{m, servePhase / 2})
	}
	for i := len(sidecarModes) - 1; i >= 0; i-- {
		phases = append(phases, phase{sidecarModes[i], servePhase / 2})
	}
	for _, m := range modes { // one of each first: every mode works before anything is measured
		if err := m.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	procs, err := findInvolved(b.app, b.sidecars...)
	if err != nil {
		return nil, err
	}
	loadBefore := loadAverage()
	progress("measuring the idle machine for %s", servePhase)
	idleBefore, idleWall, err := idlePhase()
	if err != nil {
		return nil, err
	}
	for _, p := range phases {
		progress("measuring %s for %s", p.mode.name, p.length)
		if err := p.mode.measure(procs, p.length); err != nil {
			return nil, fmt.Errorf("%s: %w", p.mode.name, err)
		}
	}
	progress("measuring the idle machine again for %s", servePhase)
	idleAfter, idleWall2, err := idlePhase()
	if err != nil {
		return nil, err
	}
	b.idleRate = (idleBefore + idleAfter) / (idleWall + idleWall2).Seconds() // jiffies per second
	b.load = loadBefore + " → " + loadAverage()
	return modes, nil
}

// baselineProbePath is where the app image holds the probe built from -baseline; naivePath, bench/naive.
const (
	baselineProbePath = "/health-check-baseline"
	naivePath         = "/naive"
)

// buildAppImage builds the probe and the e2e test server for arch (and the probe at baseline, unless
// that is ""), loads an image of them (entrypoint: the test server) as tag, and returns the probe
// binary's path.
func buildAppImage(moduleDir, work, arch, tag, baseline string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	probe, server, naive := filepath.Join(work, "health-check"), filepath.Join(work, "testserver"), filepath.Join(work, "naive")
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: moduleDir, Arch: arch, Version: "bench"}, probe); err != nil {
		return "", err
	}
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: moduleDir, Arch: arch,
		Package: "github.com/health-check-proxy/health-check-proxy/bench/naive"}, naive); err != nil {
		return "", err
	}
	files := []struct{ path, file string }{{"/health-check", probe}, {"/testserver", server}, {naivePath, naive}}
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
// mean for a node, and the sidecars' memory. modes are (a), (b), (c), (d), then (c) at the baseline
// when measured.
func renderServeCPU(w io.Writer, modes []*serveMode, memory []sidecarMemory, idleRate float64, load, revision string) {
	machinePerCheck := make([]float64, len(modes)) // CPU milliseconds
	ownPerCheck := make([]float64, len(modes))
	for i, m := range modes {
		machinePerCheck[i] = (m.busy - idleRate*m.wall.Seconds()) / userHZ * 1000 / float64(m.checks)
		ownPerCheck[i] = m.ownTotal() / userHZ * 1000 / float64(m.checks)
	}
	capacity := float64(runtime.NumCPU()) * userHZ
	fmt.Fprintf(w, "%s\n\n", serveCPUHeading)
	fmt.Fprintf(w, "`%s`, %s, %s, probe %s, load average %s.\n\n", benchCommand(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), revision, load)
	fmt.Fprintf(w, "Each mode runs for %s against the app container's mTLS endpoint (ECDSA P-256), the sidecars in half"+
		" phases, in order and then in reverse; (c) runs"+
		" `health-check serve` in a second container in the app's network namespace, (d) bench/naive (net/http's server and"+
		" client, connections kept alive) in a third, and their client, like the kubelet's, opens a new"+
		" connection per probe. *Machine*: busy jiffies of all CPUs from /proc/stat, minus the idle machine's %.0f CPU-ms/s (of %.0f)"+
		" over the same time. *Processes*: the CPU of dockerd, containerd, the containers' shims with what they reaped (runc, the"+
		" exec'd probe), the app's server, the sidecars, and the benchmark with its children (docker CLI, probe, client).\n\n",
		servePhase, idleRate/userHZ*1000, capacity/userHZ*1000)
	if idleRate > capacity/2 {
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
	renderServeRatios(w, modes, machinePerCheck, ownPerCheck)
	renderMemory(w, memory)
}

// renderServeRatios writes the ratios against the targets, and before/after with -baseline.
func renderServeRatios(w io.Writer, modes []*serveMode, machinePerCheck, ownPerCheck []float64) {
	ratio := func(c, of float64) string {
		if c <= 0 || of <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("1/%.0f", of/c)
	}
	times := func(c, of float64) string {
		if c <= 0 || of <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", c/of)
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
	own := func(m *serveMode, group int) float64 { return m.own[group] / float64(m.checks) }
	serveOwn, naiveOwn := own(modes[2], groupServe), own(modes[3], groupNaive)
	fmt.Fprintln(w, "| serve vs the net/http sidecar, same run | machine | processes | the sidecar's own CPU | target (own) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| (c) / (d) | %s | %s | %s | ≤ 0.50× %s |\n\n", times(machinePerCheck[2], machinePerCheck[3]),
		times(ownPerCheck[2], ownPerCheck[3]), times(serveOwn, naiveOwn), mark(naiveOwn > 0 && serveOwn/naiveOwn <= 0.5))
	if len(modes) > 4 { // -baseline: the current serve against the one built from REV
		fmt.Fprintln(w, "| before/after, same run | machine | processes | serve's own |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		fmt.Fprintf(w, "| %s vs %s | %s | %s | %s |\n\n", modes[2].name, modes[4].name, times(machinePerCheck[2], machinePerCheck[4]),
			times(ownPerCheck[2], ownPerCheck[4]), times(serveOwn, own(modes[4], groupServe)))
	}
}

// renderMemory writes the sidecars' memory after their probes.
func renderMemory(w io.Writer, memory []sidecarMemory) {
	if len(memory) == 0 {
		return
	}
	mib := func(kib int) string { return fmt.Sprintf("%.2f MiB", float64(kib)/1024) }
	fmt.Fprintf(w, "Memory of each sidecar, fresh, after its first GET and after %d kubelet-style GETs alternating its two"+
		" checks (two kept-alive mTLS connections), from /proc/PID/smaps_rollup; *anonymous* is the process's own memory"+
		" (heap, stacks, the runtime's), resident adds the binary's pages.\n\n", memoryProbes)
	fmt.Fprintln(w, "| sidecar | anonymous, first GET | anonymous, after | resident, first GET | resident, after |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, m := range memory {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", m.sidecar, mib(m.anonAfterOneGET), mib(m.anonymous), mib(m.rssAfterOneGET), mib(m.rss))
	}
	fmt.Fprintln(w)
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
