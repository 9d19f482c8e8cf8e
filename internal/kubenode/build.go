// Package kubenode runs a real kubelet on this machine for the project's tests and benchmarks:
// standalone (static pods, no API server), against a private containerd with its CRI plugin, with
// every pod on the host's network and every probe on loopback. docs/kubernetes.md says what it
// takes and what it leaves out. Docker's own containerd is never touched.
package kubenode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// KubeletVersion is the kubelet the tests and the benchmark build and run by default; it is the
// newest release the Go module proxy served when this was written. KUBELET_VERSION picks another.
const KubeletVersion = "v1.37.2"

// Version is the kubelet release to use: KUBELET_VERSION, or KubeletVersion.
func Version() string {
	if v := os.Getenv("KUBELET_VERSION"); v != "" {
		return v
	}
	return KubeletVersion
}

var versionPattern = regexp.MustCompile(`^v1\.(\d+)\.(\d+)$`)

// CacheDir is where built kubelets are kept, one directory per release: KUBELET_CACHE, or
// health-check-proxy/kubelet under the user's cache directory (~/.cache on Linux).
func CacheDir() (string, error) {
	if d := os.Getenv("KUBELET_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "health-check-proxy", "kubelet"), nil
}

// Build returns the path of the kubelet of release version, building it first when the cache
// lacks it: from k8s.io/kubernetes@version through the Go module proxy, ~6 minutes on 2 cores
// cold, under a minute with Go's build cache warm. Concurrent callers (.ci/run's early build and
// the test) wait on one lock, so the kubelet is built once. Build output goes to log.
func Build(ctx context.Context, version string, log io.Writer) (string, error) {
	m := versionPattern.FindStringSubmatch(version)
	if m == nil {
		return "", fmt.Errorf("kubelet version %q: want v1.MINOR.PATCH", version)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, version)
	bin := filepath.Join(dir, "kubelet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(log, "kubenode: building kubelet %s into %s (~6 min on 2 cores cold)\n", version, dir)
	if err := buildKubelet(ctx, version, m[1], m[2], dir, log); err != nil {
		return "", fmt.Errorf("building kubelet %s: %w", version, err)
	}
	return bin, nil
}

// buildKubelet builds ./cmd/kubelet of k8s.io/kubernetes@version into dir/kubelet. The module zip
// has no staging/ tree (nested modules are cut out of it), so the replace directives that point
// there are pointed at the published k8s.io/* v0.MINOR.PATCH modules of the same release.
func buildKubelet(ctx context.Context, version, minor, patch, dir string, log io.Writer) error {
	var out bytes.Buffer
	download := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+version)
	download.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	download.Stdout, download.Stderr, download.Dir = &out, log, os.TempDir()
	if err := download.Run(); err != nil {
		return fmt.Errorf("go mod download: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download: no module directory in %q", out.String())
	}
	src := filepath.Join(dir, "src")
	_ = os.RemoveAll(src)
	if err := run(ctx, log, "", nil, "cp", "-r", mod.Dir, src); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := run(ctx, log, "", nil, "chmod", "-R", "u+w", src); err != nil {
		return err
	}
	gomod := filepath.Join(src, "go.mod")
	text, err := os.ReadFile(gomod)
	if err != nil {
		return err
	}
	staging := regexp.MustCompile(`(?m)=> \./staging/src/(k8s\.io/[a-z0-9-]+)$`)
	text = staging.ReplaceAll(text, []byte("=> $1 v0."+minor+"."+patch))
	if err := os.WriteFile(gomod, text, 0o644); err != nil {
		return err
	}
	for _, f := range []string{"go.work", "go.work.sum"} {
		_ = os.Remove(filepath.Join(src, f))
	}
	ldflags := "-s -w -X k8s.io/component-base/version.gitVersion=" + version +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=" + minor
	// -s -w drop the symbols and the debug information from the binary; -dwarf=false spares the
	// compiler making the debug information in the first place, for each of the kubelet's ~1,800
	// packages: a cold build is the longest step of CI. Neither changes the code compiled.
	gcflags := "all=-dwarf=false"
	tmp := filepath.Join(dir, "kubelet.tmp")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	if err := run(ctx, log, src, env, "go", "build", "-trimpath", "-gcflags", gcflags, "-ldflags", ldflags, "-o", tmp, "./cmd/kubelet"); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "kubelet"))
}

// run runs a command with its output to log; env nil keeps the environment.
func run(ctx context.Context, log io.Writer, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
