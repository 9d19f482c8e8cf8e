package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/health-check-proxy/health-check-proxy/internal/kubenode"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// -serve-cpu -kubelet makes the same comparison as -serve-cpu through the real path: a kubelet
// (kubenode.KubeletVersion, built from Kubernetes' source) with containerd's CRI and runc, running
// static pods. One pod holds kubeletApps app containers and a `health-check serve` native sidecar;
// three phases run it with no probe (the baseline), with an exec liveness and readiness probe
// `/health-check` over mTLS in every app container, and with the same two probes as httpGet →
// serve → mTLS. Every probe runs every second. Per probe, minus the baseline: the machine's busy
// CPU (/proc/stat, steal excluded) and the CPU of the processes on the path — the kubelet,
// containerd, the shims with what they reaped (runc exec), and the pod's cgroups (the app, serve,
// the exec'd probe processes). The kubelet counts its own probes (/metrics/probes).

const (
	// kubeletHeading starts this mode's section of the report, replaced by a later run.
	kubeletHeading = "## CPU per probe through a real kubelet: exec probe vs httpGet → serve"
	// kubeletApps app containers, two probes each at periodSeconds 1: 8 probes a second, so that a
	// phase of kubeletPhase counts hundreds.
	kubeletApps  = 4
	kubeletPhase = 45 * time.Second
	// kubeletSettle is the wait after the pod is ready, before measuring.
	kubeletSettle = 10 * time.Second
)

// kubeletPhaseResult is what one phase cost, in jiffies (pods: cgroup nanoseconds as jiffies).
type kubeletPhaseResult struct {
	name                                      string
	probes                                    int
	secs                                      float64
	machine, kubelet, containerd, shims, pods float64
}

// runServeCPUKubelet starts a node, measures the three phases and writes the section.
func runServeCPUKubelet(out string) error {
	if err := kubenode.Prerequisites(); err != nil {
		return fmt.Errorf("-serve-cpu -kubelet: %w", err)
	}
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	kubelet, err := kubenode.Build(ctx, kubenode.Version(), os.Stderr)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "health-check-bench-kubelet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	progress("building the images")
	images, err := kubenode.BuildImages(ctx, moduleDir, work)
	if err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(work, "certs"), 0o755); err != nil {
		return err
	}
	certs, err := testutil.WriteMTLSFiles(filepath.Join(work, "certs"), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, true)
	if err != nil {
		return err
	}
	progress("starting containerd and the kubelet %s", kubenode.Version())
	node, err := kubenode.Start(ctx, kubelet)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Stop(); err != nil {
			progress("stopping the node: %v", err)
		}
	}()
	for _, tarball := range images {
		if err := node.Import(ctx, tarball); err != nil {
			return err
		}
	}
	var results []*kubeletPhaseResult
	for _, probe := range []string{"none", "exec", "serve"} {
		r, err := measureKubeletPhase(node, probe, certs.Dir)
		if err != nil {
			return fmt.Errorf("phase %s: %w", probe, err)
		}
		results = append(results, r)
	}
	var md strings.Builder
	renderKubelet(&md, results, versions(node), commit(moduleDir))
	fmt.Print(md.String())
	return replaceSection(out, kubeletHeading, []byte(md.String()))
}

// measureKubeletPhase runs the bench pod with the given probes alone and measures it.
func measureKubeletPhase(node *kubenode.Node, probe, certs string) (*kubeletPhaseResult, error) {
	ports, err := kubenode.FreePorts(kubeletApps + 1)
	if err != nil {
		return nil, err
	}
	name := "bench-" + probe
	if err := node.Place(name, benchPod(name, probe, certs, ports)); err != nil {
		return nil, err
	}
	defer node.Remove(name)
	progress("phase %s: waiting for the pod, then %s to settle", probe, kubeletSettle)
	err = waitUntil(2*time.Minute, func() error {
		p, err := node.Pod(name)
		if err == nil && (p == nil || !p.Ready) {
			err = fmt.Errorf("pod %s not ready: %s", name, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	time.Sleep(kubeletSettle)
	progress("phase %s: measuring for %s", probe, kubeletPhase)
	shims := node.Shims()
	sample := func() (*kubeletPhaseResult, error) {
		probes, err := node.ProbeCount(name)
		if err != nil {
			return nil, err
		}
		busy, err := busyJiffies()
		if err != nil {
			return nil, err
		}
		s := &kubeletPhaseResult{probes: probes, machine: busy - stealJiffies(),
			kubelet: processJiffies(node.KubeletPID), containerd: processJiffies(node.ContainerdPID), pods: podsJiffies()}
		for _, pid := range shims {
			s.shims += processJiffies(pid)
		}
		return s, nil
	}
	before, err := sample()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	time.Sleep(kubeletPhase)
	after, err := sample()
	if err != nil {
		return nil, err
	}
	return &kubeletPhaseResult{name: probe, probes: after.probes - before.probes, secs: time.Since(start).Seconds(),
		machine: after.machine - before.machine, kubelet: after.kubelet - before.kubelet,
		containerd: after.containerd - before.containerd, shims: after.shims - before.shims, pods: after.pods - before.pods}, nil
}

// benchPod is the bench pod: kubeletApps app containers on ports[1:] and a serve sidecar on
// ports[0] with one check per app; probe says which probes every app container has.
func benchPod(name, probe, certs string, ports []int) string {
	mtls := `"-cacert", "/certs/ca.crt", "-cert", "/certs/client.crt", "-key", "/certs/client.key"`
	var checks, apps strings.Builder
	for i, port := range ports[1:] {
		url := fmt.Sprintf("https://localhost:%d/healthz", port)
		fmt.Fprintf(&checks, `, "-check", "app%d=%s"`, i, url)
		fmt.Fprintf(&apps, `    - name: app%d
      image: %s
      imagePullPolicy: Never
      args: ["-https", "127.0.0.1:%d", "-http", ""]
      volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
`, i, kubenode.AppImage, port)
		var action string
		switch probe {
		case "exec":
			action = fmt.Sprintf(`exec: {command: ["/health-check", %s, "%s"]}`, mtls, url)
		case "serve":
			action = fmt.Sprintf(`httpGet: {host: 127.0.0.1, port: %d, path: /app%d}`, ports[0], i)
		default:
			continue
		}
		for _, kind := range []string{"livenessProbe", "readinessProbe"} {
			fmt.Fprintf(&apps, "      %s: {%s, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 30}\n", kind, action)
		}
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 5
  volumes: [{name: certs, hostPath: {path: %s, type: Directory}}]
  initContainers:
    - name: serve
      image: %s
      imagePullPolicy: Never
      restartPolicy: Always
      args: ["serve", "-listen", "127.0.0.1:%d", %s%s]
      volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
  containers:
%s`, name, certs, kubenode.ProbeImage, ports[0], mtls, checks.String(), apps.String())
}

// stealJiffies is the hypervisor's steal time from /proc/stat (field 8): busy to the guest's
// counters, but not ours; it comes in bursts on a shared VM.
func stealJiffies() float64 {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	fields := strings.Fields(strings.SplitN(string(stat), "\n", 2)[0])
	if len(fields) < 9 {
		return 0
	}
	steal, _ := strconv.ParseFloat(fields[8], 64)
	return steal
}

// podsJiffies is the CPU of every pod's processes: the kubelet's kubepods cgroup (cgroup v1
// cpuacct, or v2 cpu.stat), in jiffies.
func podsJiffies() float64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage"); err == nil {
		ns, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		return ns / 1e9 * userHZ
	}
	b, _ := os.ReadFile("/sys/fs/cgroup/kubepods/cpu.stat")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, _ := strconv.ParseFloat(v, 64)
			return us / 1e6 * userHZ
		}
	}
	return 0
}

// versions names the kubelet, containerd and runc of the run.
func versions(node *kubenode.Node) string {
	first := func(out []byte, err error) string {
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	ctrd, _ := node.Ctr(context.Background(), "version")
	server := "?"
	if _, after, ok := strings.Cut(string(ctrd), "Server:"); ok {
		if _, v, ok := strings.Cut(after, "Version:"); ok {
			server = strings.TrimSpace(strings.SplitN(v, "\n", 2)[0])
		}
	}
	return fmt.Sprintf("kubelet %s, containerd %s, %s", kubenode.Version(), server, first(exec.Command("runc", "--version").Output()))
}

// renderKubelet writes the section: per probe, minus the no-probe baseline, the machine's CPU and
// the processes', and the ratio of the two probe paths.
func renderKubelet(w io.Writer, results []*kubeletPhaseResult, versions, revision string) {
	base := results[0]
	rate := func(r *kubeletPhaseResult, j float64) float64 { return j / r.secs }
	perProbe := func(r *kubeletPhaseResult, pick func(*kubeletPhaseResult) float64) float64 {
		return (pick(r) - rate(base, pick(base))*r.secs) / userHZ * 1000 / float64(max(1, r.probes))
	}
	cols := []func(*kubeletPhaseResult) float64{
		func(r *kubeletPhaseResult) float64 { return r.machine },
		func(r *kubeletPhaseResult) float64 { return r.kubelet },
		func(r *kubeletPhaseResult) float64 { return r.containerd },
		func(r *kubeletPhaseResult) float64 { return r.shims },
		func(r *kubeletPhaseResult) float64 { return r.pods },
		func(r *kubeletPhaseResult) float64 { return r.kubelet + r.containerd + r.shims + r.pods },
	}
	names := map[string]string{"exec": "exec `/health-check` mTLS, in the app's container", "serve": "`httpGet` → `health-check serve` → mTLS"}
	fmt.Fprintf(w, "%s\n\n", kubeletHeading)
	fmt.Fprintf(w, "`%s`, %s, %s, probe %s; %s, standalone (static pods), cgroupfs, hostNetwork.\n\n",
		benchCommand(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), revision, versions)
	fmt.Fprintf(w, "One pod: %d app containers and a `serve` native sidecar; each app container has a liveness and a readiness"+
		" probe at periodSeconds 1, both exec or both httpGet. Each phase runs for %.0f s after %s of settling; per probe is the"+
		" phase's CPU minus the same pod's without probes (%.0f CPU-ms/s on the machine, %.0f in the kubelet), divided by the"+
		" probes the kubelet counted. *Machine*: /proc/stat busy, steal excluded. *Shims*: the pod's containerd shims with"+
		" what they reaped (`runc exec`). *Pod*: the kubepods cgroup (apps, serve, pause, the exec'd probes).\n\n",
		kubeletApps, kubeletPhase.Seconds(), kubeletSettle, rate(base, base.machine)/userHZ*1000, rate(base, base.kubelet)/userHZ*1000)
	if capacity := float64(runtime.NumCPU()) * userHZ; rate(base, base.machine) > capacity/2 {
		fmt.Fprintln(w, "**Other work kept the machine over half busy during the baseline: the machine column is noise in this run; read the processes.**")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "| per probe, CPU-ms | probes | machine | kubelet | containerd | shims + runc | pod | sum of the four |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	sums := map[string]float64{}
	for _, r := range results[1:] {
		fmt.Fprintf(w, "| %s | %d", names[r.name], r.probes)
		for i, col := range cols {
			v := perProbe(r, col)
			fmt.Fprintf(w, " | %.2f", v)
			if i == len(cols)-1 {
				sums[r.name] = v
			}
		}
		fmt.Fprintln(w, " |")
	}
	fmt.Fprintln(w)
	if sums["serve"] > 0 {
		fmt.Fprintf(w, "exec / httpGet → serve, sum of the four: %.0f×. At 110 pods × 3 probes / 10 s: %.2f cores (exec) vs %.3f (serve).\n\n",
			sums["exec"]/sums["serve"], sums["exec"]*nodeChecksPerSecond/1000, sums["serve"]*nodeChecksPerSecond/1000)
	}
}
