package kubenode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stop leaves the machine as Start found it, whatever state the node is in: the kubelet stops the
// pods, then the kubelet, containerd and our shims stop (by PID: never Docker's containerd), what
// they mounted under our directories is unmounted, the kubepods cgroups and the paths the kubelet
// made outside its root are removed, the sysctls it set are restored and our directories removed,
// the logs with them: read them (Log, LogTail) before.
func (n *Node) Stop() error {
	var errs []error
	if n.kubelet != nil && !n.kubelet.exited() {
		n.RemoveAll()
		_ = n.waitFor(noCtx, 60*time.Second, "the kubelet to stop the pods", func() error {
			if procs := kubepodsProcesses(); len(procs) > 0 {
				return fmt.Errorf("processes still in kubepods: %v", procs)
			}
			return nil
		})
	}
	n.kubelet.stop(10 * time.Second)
	for _, pid := range kubepodsProcesses() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	n.containerd.stop(10 * time.Second)
	for _, pid := range n.Shims() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(n.Shims()) > 0 {
		time.Sleep(500 * time.Millisecond)
	}
	errs = append(errs, n.unmountAll(), removeKubepods())
	for k, v := range n.savedSysctls {
		if now, err := os.ReadFile("/proc/sys/" + k); err == nil && string(now) != v {
			errs = append(errs, os.WriteFile("/proc/sys/"+k, []byte(v), 0o644))
		}
	}
	for _, p := range outsidePaths {
		if _, err := os.Lstat(p); err == nil && !n.preexisting[p] {
			errs = append(errs, os.RemoveAll(p))
		}
	}
	errs = append(errs, os.RemoveAll(n.Run), os.RemoveAll(n.lib))
	return errors.Join(errs...)
}

// Shims are the PIDs of the containerd shims serving our containerd: their command line names
// its socket, which no other containerd's shim does.
func (n *Node) Shims() []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, _ := os.ReadFile(d + "/comm")
		if !strings.HasPrefix(string(comm), "containerd-shim") {
			continue
		}
		cmdline, _ := os.ReadFile(d + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		for i := range len(args) - 1 {
			if args[i] == "-address" && args[i+1] == n.Socket {
				pid, _ := strconv.Atoi(filepath.Base(d))
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// unmountAll unmounts every mount under our directories, deepest first.
func (n *Node) unmountAll() error {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, root := range []string{n.Run, n.lib} {
			if f[4] == root || strings.HasPrefix(f[4], root+"/") {
				mounts = append(mounts, f[4])
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	var errs []error
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

// kubepodsProcesses lists the processes left in the kubelet's cgroups.
func kubepodsProcesses() []int {
	var pids []int
	for _, top := range kubepodsCgroups() {
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			text, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(text)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if len(pids) > 0 {
			break
		}
	}
	return pids
}

// removeKubepods removes the kubelet's cgroups, deepest first. Prerequisites made sure none
// existed before Start.
func removeKubepods() error {
	var errs []error
	for _, top := range kubepodsCgroups() {
		var dirs []string
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			// co-mounted hierarchies (cpu,cpuacct) reach one directory by two names
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
