package kubenode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PauseImage is the sandbox image containerd's CRI starts for every pod; the caller imports it.
const PauseImage = "kubenode.local/pause:1"

// NodeName is the kubelet's node name: a static pod NAME is known to it as NAME-kubenode.
const NodeName = "kubenode"

// Node is a running private containerd and standalone kubelet.
type Node struct {
	// Run holds the containerd state and socket, the manifests, the CNI config and the logs;
	// lib holds containerd's and the kubelet's roots.
	Run, lib    string
	Socket      string
	KubeletPort int
	KubeletPID  int
	// ContainerdPID is our containerd's; its shims are found by Shims.
	ContainerdPID int

	containerd, kubelet *daemon
	savedSysctls        map[string]string
	preexisting         map[string]bool
	client              *http.Client
}

// Prerequisites says why this machine cannot run a node, or returns nil: MachineCanRun, the
// packages a node needs, and no other kubelet running.
func Prerequisites() error {
	if err := MachineCanRun(); err != nil {
		return err
	}
	for _, p := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not installed: apt-get install containerd runc containernetworking-plugins", p)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/loopback"); err != nil {
		return errors.New("/usr/lib/cni/loopback is missing: apt-get install containernetworking-plugins")
	}
	for _, c := range kubepodsCgroups() {
		return fmt.Errorf("another kubelet runs on this machine (%s exists); stop it first", c)
	}
	return nil
}

// MachineCanRun says why this machine cannot run a node whatever is installed on it — not root, no
// CAP_SYS_ADMIN, cgroups or /proc/sys read-only, as in a container that is not privileged — or
// returns nil. CI asks it (`buildkubelet -check`) before it installs containerd and requires the
// kubelet e2e.
func MachineCanRun() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the kubelet and containerd need root (this runs as uid %d)", os.Geteuid())
	}
	if err := hasSysAdmin(); err != nil {
		return err
	}
	cg := "/sys/fs/cgroup"
	if _, err := os.Stat(cg + "/cpu"); err == nil {
		cg += "/cpu"
	}
	if err := syscall.Access(cg, 2 /* W_OK */); err != nil {
		return fmt.Errorf("the kubelet needs to create cgroups, but %s is not writable (%v): "+
			"in a container, cgroups are mounted read-only unless it is privileged", cg, err)
	}
	// The kubelet sets kernel flags at start (vm/overcommit_memory, kernel/panic, ...) and will not
	// start without them; a container that is not privileged has /proc/sys read-only.
	if err := syscall.Access("/proc/sys/vm/overcommit_memory", 2 /* W_OK */); err != nil {
		return fmt.Errorf("the kubelet needs to set kernel flags, but /proc/sys is not writable (%v): "+
			"in a container, it is read-only unless the container is privileged", err)
	}
	return nil
}

// hasSysAdmin checks CAP_SYS_ADMIN in the effective set: containerd mounts every container's root
// filesystem and runc joins and creates namespaces.
func hasSysAdmin() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err == nil && caps&(1<<21) != 0 {
				return nil
			}
			return fmt.Errorf("containerd needs CAP_SYS_ADMIN to mount the containers' filesystems; "+
				"this process lacks it (CapEff %s): an unprivileged container cannot run a kubelet", strings.TrimSpace(hex))
		}
	}
	return errors.New("no CapEff line in /proc/self/status")
}

// kubepodsCgroups lists the kubelet's top cgroup in every hierarchy where it exists.
func kubepodsCgroups() []string {
	found, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		found = append(found, "/sys/fs/cgroup/kubepods")
	}
	return found
}

// Start starts containerd and the kubelet (binary kubelet) on fresh directories and ports, and
// waits for the kubelet's healthz. On error it has undone what it did.
func Start(ctx context.Context, kubelet string) (*Node, error) {
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	name := "hcp-kubenode-" + hex.EncodeToString(id)
	n := &Node{Run: "/run/" + name, lib: "/var/lib/" + name, savedSysctls: map[string]string{}, preexisting: map[string]bool{}}
	n.Socket = n.Run + "/containerd/containerd.sock"
	for _, k := range sysctls {
		if v, err := os.ReadFile("/proc/sys/" + k); err == nil {
			n.savedSysctls[k] = string(v)
		}
	}
	for _, p := range outsidePaths {
		if _, err := os.Lstat(p); err == nil {
			n.preexisting[p] = true
		}
	}
	if err := n.start(ctx, kubelet); err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	return n, nil
}

func (n *Node) start(ctx context.Context, kubelet string) error {
	for _, d := range []string{"manifests", "logs", "cni", "containerd", "state"} {
		if err := os.MkdirAll(filepath.Join(n.Run, d), 0o755); err != nil {
			return err
		}
	}
	runc, _ := exec.LookPath("runc")
	files := map[string]string{
		"containerd.toml":          fmt.Sprintf(containerdConfig, n.lib+"/containerd", n.Run+"/containerd", n.Run+"/cni", runc),
		"cni/10-kubenode.conflist": cniConfig,
	}
	for f, text := range files {
		if err := os.WriteFile(filepath.Join(n.Run, f), []byte(text), 0o644); err != nil {
			return err
		}
	}
	var err error
	if n.containerd, err = n.daemon("containerd", "containerd", "--config", n.Run+"/containerd.toml"); err != nil {
		return err
	}
	n.ContainerdPID = n.containerd.cmd.Process.Pid
	if err := n.waitFor(ctx, 20*time.Second, "containerd", func() error {
		_, err := n.Ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	n.KubeletPort = ports[0]
	config := fmt.Sprintf(kubeletConfig, ports[0], ports[1], n.Socket, n.Run+"/manifests", n.lib+"/kubelet")
	if err := os.WriteFile(n.Run+"/kubelet.yaml", []byte(config), 0o644); err != nil {
		return err
	}
	if n.kubelet, err = n.daemon("kubelet", kubelet, "--config", n.Run+"/kubelet.yaml", "--root-dir", n.lib+"/kubelet",
		"--hostname-override", NodeName, "--v=2"); err != nil {
		return err
	}
	n.KubeletPID = n.kubelet.cmd.Process.Pid
	n.client = &http.Client{Timeout: 5 * time.Second, Transport: insecureTransport()}
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[1])
	return n.waitFor(ctx, 60*time.Second, "the kubelet's healthz", func() error {
		resp, err := http.Get(healthz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}

// daemon is a started containerd or kubelet.
type daemon struct {
	name string
	cmd  *exec.Cmd
	// done is closed when the process has exited and been waited for.
	done chan struct{}
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (d *daemon) stop(grace time.Duration) {
	if d == nil || d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// daemon starts a program in its own session with its output in logs/NAME.log.
func (n *Node) daemon(name, path string, args ...string) (*daemon, error) {
	log, err := os.Create(filepath.Join(n.Run, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d, nil
}

// waitFor polls check until it succeeds, a daemon dies or timeout passes.
func (n *Node) waitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		for _, d := range []*daemon{n.containerd, n.kubelet} {
			if d != nil && d.exited() {
				return fmt.Errorf("waiting for %s: %s exited (%s); the end of its log:\n%s", what, d.name,
					d.cmd.ProcessState, n.LogTail(d.name, 20))
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// noCtx is for the waits of Stop, which must finish whatever the caller's context says.
var noCtx = context.Background()

// freePorts returns count loopback ports that were free a moment ago.
func freePorts(count int) ([]int, error) {
	var ports []int
	for range count {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePorts returns count loopback ports for the pods' listeners (all pods share the host's
// network).
func FreePorts(count int) ([]int, error) { return freePorts(count) }
