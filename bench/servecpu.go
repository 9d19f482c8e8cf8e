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
	"strconv"
	"strings"
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
// same app container. The figure is machine CPU: every CPU's busy jiffies from /proc/stat over a
// phase, minus what the machine used while idle over the same time, divided by the checks made.

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
	busy   float64 // jiffies over the phase
	wall   time.Duration
}

func runServeCPU(out string) error {
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
	probe, err := buildAppImage(moduleDir, work, arch, image)
	if err != nil {
		return err
	}
	defer exec.Command("docker", "rmi", "-f", image).Run()

	app, serveContainer := "health-check-bench-app-"+runID, "health-check-bench-serve-"+runID
	defer exec.Command("docker", "rm", "-f", app, serveContainer).Run()
	common := []string{"--label", benchLabel + "=" + runID, "--user", "65532", "--read-only", "--cap-drop", "ALL", "-v", certs + ":/certs:ro"}
	if err := docker(append(append([]string{"run", "-d", "--name", app}, common...), image)...); err != nil {
		return err
	}
	// serve shares the app's network namespace, as a native sidecar shares the pod's.
	if err := docker(append(append([]string{"run", "-d", "--name", serveContainer, "--network", "container:" + app, "--entrypoint", "/health-check"}, common...),
		image, "serve", "-listen", ":8086", "-cacert", "/certs/ca.crt", "-cert", "/certs/client.crt", "-key", "/certs/client.key",
		"-check", "live=https://localhost:8443/healthz")...); err != nil {
		return err
	}
	ipOut, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", app).Output()
	if err != nil {
		return fmt.Errorf("docker inspect %s: %w", app, err)
	}
	// The pod's address, as the kubelet reaches it: no published port, so no docker-proxy in the way.
	appIP := strings.TrimSpace(string(ipOut))
	serveURL := "http://" + net.JoinHostPort(appIP, "8086") + "/live"
	kubelet := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	getServe := func() error {
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
	if err := waitUntil(30*time.Second, getServe); err != nil {
		return fmt.Errorf("serve did not answer 200: %w", err)
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
	for _, m := range modes { // one of each first: every mode works before anything is measured
		if err := m.check(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	loadBefore := loadAverage()
	progress("measuring the idle machine for %s", servePhase)
	idleBefore, idleWall, err := idlePhase()
	if err != nil {
		return err
	}
	for _, m := range modes {
		progress("measuring %s for %s", m.name, servePhase)
		if err := m.measure(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
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

// buildAppImage builds the probe and the e2e test server for arch, loads an image of both (entrypoint:
// the test server) as tag, and returns the probe binary's path.
func buildAppImage(moduleDir, work, arch, tag string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	probe, server := filepath.Join(work, "health-check"), filepath.Join(work, "testserver")
	if err := imagebuild.BuildBinary(ctx, imagebuild.BinaryOptions{Dir: moduleDir, Arch: arch, Version: "bench"}, probe); err != nil {
		return "", err
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
	for _, f := range []struct{ path, file string }{{"/health-check", probe}, {"/testserver", server}} {
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

// measure runs the mode's check back to back for servePhase and notes the machine's busy jiffies.
func (m *serveMode) measure() error {
	before, err := busyJiffies()
	if err != nil {
		return err
	}
	start := time.Now()
	for time.Since(start) < servePhase {
		if err := m.check(); err != nil {
			return err
		}
		m.checks++
	}
	m.wall = time.Since(start)
	after, err := busyJiffies()
	m.busy = after - before
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

// renderServeCPU writes the section: CPU per check of each mode, the ratios and what they mean for
// a node.
func renderServeCPU(w io.Writer, modes []*serveMode, idleRate float64, load, revision string) {
	perCheck := make([]float64, len(modes)) // CPU milliseconds
	for i, m := range modes {
		work := m.busy - idleRate*m.wall.Seconds()
		perCheck[i] = work / userHZ * 1000 / float64(m.checks)
	}
	fmt.Fprintf(w, "%s\n\n", serveCPUHeading)
	fmt.Fprintf(w, "`%s`, %s, %s, probe %s, load average %s.\n\n", benchCommand(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), revision, load)
	fmt.Fprintf(w, "Machine CPU from /proc/stat (busy jiffies of all CPUs), minus the idle machine's %.2f CPU-ms/s over the same time;"+
		" each mode runs back to back for %s against the app container's mTLS endpoint (ECDSA P-256)."+
		" (c) runs `health-check serve` in a second container in the app's network namespace; the client, like the kubelet, opens a"+
		" new connection per probe.\n\n", idleRate/userHZ*1000, servePhase)
	fmt.Fprintln(w, "| mode | checks | machine CPU per check | per second on a node (110 pods × 3 probes / 10 s) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for i, m := range modes {
		fmt.Fprintf(w, "| %s | %d | %.3f ms | %.0f CPU-ms/s (%.1f %% of a core) |\n", m.name, m.checks, perCheck[i],
			perCheck[i]*nodeChecksPerSecond, perCheck[i]*nodeChecksPerSecond/10)
	}
	fmt.Fprintln(w)
	ratio := func(name string, c, of float64, target float64) {
		ok := c > 0 && of > 0 && c/of <= target
		value := "n/a (no CPU above the idle baseline)"
		if c > 0 && of > 0 {
			value = fmt.Sprintf("1/%.0f", of/c)
		}
		fmt.Fprintf(w, "| %s | %s | ≤ 1/%.0f %s |\n", name, value, 1/target, mark(ok))
	}
	fmt.Fprintln(w, "| ratio | measured | target |")
	fmt.Fprintln(w, "|---|---:|---:|")
	ratio("(c) / (a): serve vs exec probe", perCheck[2], perCheck[0], 0.01)
	ratio("(c) / (b): serve vs the probe process", perCheck[2], perCheck[1], 0.1)
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
