package kubenode

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Ctr runs ctr against our containerd in the CRI's namespace.
func (n *Node) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"-a", n.Socket, "-n", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Import loads a docker-archive image tarball into containerd, where the kubelet finds it with
// imagePullPolicy: Never (there is no registry).
func (n *Node) Import(ctx context.Context, tarball string) error {
	_, err := n.Ctr(ctx, "images", "import", tarball)
	return err
}

// Place writes a static pod manifest; the kubelet watches the directory. The write is atomic so
// that the kubelet never reads half a manifest.
func (n *Node) Place(name, manifest string) error {
	tmp := filepath.Join(n.Run, "."+name+".yaml")
	if err := os.WriteFile(tmp, []byte(manifest), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(n.Run, "manifests", name+".yaml"))
}

// Remove deletes a static pod manifest: the kubelet stops the pod (SIGTERM, then the grace period).
func (n *Node) Remove(name string) error {
	return os.Remove(filepath.Join(n.Run, "manifests", name+".yaml"))
}

// RemoveAll deletes every static pod manifest.
func (n *Node) RemoveAll() {
	files, _ := filepath.Glob(filepath.Join(n.Run, "manifests", "*.yaml"))
	for _, f := range files {
		_ = os.Remove(f)
	}
}

// Pod is a pod's status as the kubelet reports it on /pods.
type Pod struct {
	UID   string
	Phase string
	Ready bool
	// Containers are the init (sidecar) and app containers by name.
	Containers map[string]Container
}

// Container is one container's status.
type Container struct {
	Ready        bool
	RestartCount int
	// ID is containerd's container ID (without the containerd:// scheme).
	ID      string
	Running bool
}

type podList struct {
	Items []struct {
		Metadata struct{ Name, UID string }
		Status   struct {
			Phase      string
			Conditions []struct{ Type, Status string }
			Init       []containerJSON `json:"initContainerStatuses"`
			Containers []containerJSON `json:"containerStatuses"`
		}
	}
}

type containerJSON struct {
	Name         string
	Ready        bool
	RestartCount int
	ContainerID  string
	State        struct{ Running *struct{} }
}

// Pod returns the status of the static pod name, or nil when the kubelet does not know it.
func (n *Node) Pod(name string) (*Pod, error) {
	body, err := n.get("/pods")
	if err != nil {
		return nil, err
	}
	var list podList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("/pods: %w", err)
	}
	for _, item := range list.Items {
		if item.Metadata.Name != name+"-"+NodeName {
			continue
		}
		p := &Pod{UID: item.Metadata.UID, Phase: item.Status.Phase, Containers: map[string]Container{}}
		for _, c := range item.Status.Conditions {
			p.Ready = p.Ready || c.Type == "Ready" && c.Status == "True"
		}
		for _, c := range append(item.Status.Init, item.Status.Containers...) {
			p.Containers[c.Name] = Container{Ready: c.Ready, RestartCount: c.RestartCount,
				ID: strings.TrimPrefix(c.ContainerID, "containerd://"), Running: c.State.Running != nil}
		}
		return p, nil
	}
	return nil, nil
}

// String is a pod's status in one line, for test failures.
func (p *Pod) String() string {
	if p == nil {
		return "no such pod"
	}
	s := fmt.Sprintf("%s ready=%v", p.Phase, p.Ready)
	for name, c := range p.Containers {
		s += fmt.Sprintf(" %s:running=%v,ready=%v,restarts=%d", name, c.Running, c.Ready, c.RestartCount)
	}
	return s
}

// ProbeCount is the number of probes the kubelet has run for the static pod name, by its
// /metrics/probes (prober_probe_total, every result and probe type).
func (n *Node) ProbeCount(name string) (int, error) {
	body, err := n.get("/metrics/probes")
	if err != nil {
		return 0, err
	}
	total := 0
	pod := `pod="` + name + "-" + NodeName + `"`
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "prober_probe_total{") && strings.Contains(line, pod) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, fmt.Errorf("/metrics/probes: %q: %w", line, err)
			}
			total += int(v)
		}
	}
	return total, nil
}

func (n *Node) get(path string) ([]byte, error) {
	resp, err := n.client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", n.KubeletPort, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

// insecureTransport talks to the kubelet's own self-signed HTTPS port on loopback.
func insecureTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // #nosec: our own kubelet on 127.0.0.1
}

// Signal sends a signal (e.g. SIGUSR1) to a container's main process.
func (n *Node) Signal(ctx context.Context, containerID, signal string) error {
	_, err := n.Ctr(ctx, "tasks", "kill", "--signal", signal, containerID)
	return err
}

// ContainerLog opens the log the kubelet keeps of a container's current run of a static pod.
// It stays readable after the pod is gone.
func (n *Node) ContainerLog(pod *Pod, name, container string) (*os.File, error) {
	pattern := filepath.Join(n.lib, "kubelet", "pod-logs", "default_"+name+"-"+NodeName+"_"+pod.UID, container, "*.log")
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		return nil, fmt.Errorf("no log matches %s", pattern)
	}
	return os.Open(files[len(files)-1])
}

// Log is the whole log of "kubelet" or "containerd".
func (n *Node) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(n.Run, "logs", name+".log"))
	return string(b)
}

// LogTail is the last lines of a daemon's log.
func (n *Node) LogTail(name string, lines int) string {
	var all []string
	f, err := os.Open(filepath.Join(n.Run, "logs", name+".log"))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		all = append(all, s.Text())
	}
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
