package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// commandEnv is the whole environment of a measured command, so that nothing from the caller's
// environment (GODEBUG, GOMAXPROCS, HEALTH_CHECK_*, a curlrc in HOME) changes what is measured.
var commandEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

// A result holds every measured run of one command; run i of every command belongs to the same
// round, so per-round ratios pair runs made at nearly the same moment.
type result struct {
	cmd          *command
	cpu, wall    []time.Duration // user+sys CPU time and wall time, one per round
	sys          []time.Duration // the sys part of cpu
	faults       []int64         // minor page faults: memory touched, a large part of sys time
	rssKiB       []int64         // peak resident set size, one per round
	instructions int64           // from callgrind, 0 when not measured
	callgrindOut string          // callgrind's output file, "" when not measured
}

// measure runs every command warmup times, then n rounds that run each command once in turn
// (A B C A B C …). Each run is made twice: directly, for CPU and wall time, and under
// /usr/bin/time, for the peak RSS (see peakRSS for why). Any run that does not exit 0 is an error.
func measure(commands []*command, n, warmup int, timePath, tmpDir string, progress io.Writer) ([]*result, error) {
	results := make([]*result, len(commands))
	for i, c := range commands {
		results[i] = &result{cmd: c}
	}
	for round := -warmup; round < n; round++ {
		for _, r := range results {
			cpu, sys, wall, faults, err := runTimed(r.cmd)
			if err != nil {
				return nil, err
			}
			var rss int64
			if timePath != "" {
				if rss, err = peakRSS(r.cmd, timePath, tmpDir); err != nil {
					return nil, err
				}
			}
			if round >= 0 {
				r.cpu, r.sys, r.wall = append(r.cpu, cpu), append(r.sys, sys), append(r.wall, wall)
				r.faults = append(r.faults, faults)
				if timePath != "" {
					r.rssKiB = append(r.rssKiB, rss)
				}
			}
		}
		fmt.Fprint(progress, ".")
	}
	fmt.Fprintln(progress)
	return results, nil
}

// runTimed runs c once and returns the CPU time (user+sys, and sys alone) and minor page faults the
// kernel accounted to it, and the wall time from fork to reaping, as the harness sees it.
func runTimed(c *command) (cpu, sys, wall time.Duration, faults int64, err error) {
	cmd := c.exec(c.path, c.args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("%s (in %s): %w\n%s", c, c.dir, err, out.Bytes())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	sys = time.Duration(syscall.TimevalToNsec(ru.Stime))
	cpu = time.Duration(syscall.TimevalToNsec(ru.Utime)) + sys
	return cpu, sys, wall, ru.Minflt, nil
}

// peakRSS runs c under GNU time and returns its peak RSS in KiB.
//
// The harness cannot take ru_maxrss from its own wait4: Go starts children with
// clone(CLONE_VM|CLONE_VFORK), and at execve Linux folds the high-water RSS of the mm the child
// leaves — the harness's own — into the child's maxrss, so every child would report at least the
// harness's RSS. GNU time is small and forks, so what it reports is the command's own.
func peakRSS(c *command, timePath, tmpDir string) (int64, error) {
	outFile := filepath.Join(tmpDir, "rss")
	cmd := c.exec(timePath, append([]string{"-f", "%M", "-o", outFile, c.path}, c.args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s (under time, in %s): %w\n%s", c, c.dir, err, out.Bytes())
	}
	text, err := os.ReadFile(outFile)
	if err != nil {
		return 0, err
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(text)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %s: read %q from time: %w", c, text, err)
	}
	return kib, nil
}

var collectedRE = regexp.MustCompile(`(?m)Collected : (\d+)`)

// callgrindRuns is how many runs under callgrind the instruction count of our own programs (probe,
// floor, noop) takes the median of. Counts of a Go program vary by some 0.1 M from run to run (how
// often its idle threads spin depends on timing), about 1.5 % of a check. The peers, tens of
// millions of instructions and several seconds under callgrind each, run once.
const callgrindRuns = 3

const valgrindGODEBUG = "asyncpreemptoff=1,cpu.rdtscp=off"

// countInstructions runs c's arguments with the binary at path under callgrind, runs times, and
// returns the median number of instructions executed (all threads). The last run's callgrind file
// is left at outFile.
//
// Two GODEBUG settings keep Go programs alive under valgrind 3.19 without changing what they do:
// asyncpreemptoff=1, because callgrind aborts on the runtime's preemption signals (threads.c
// "sigNum == vgCallgrind_current_state.sig") — signals that only come because valgrind makes every
// goroutine run tens of times longer than it would — and cpu.rdtscp=off, because valgrind cannot
// decode RDTSCP, which runtime.cputicks prefers to LFENCE+RDTSC.
func countInstructions(c *command, path, valgrind, outFile string, runs int) (int64, error) {
	env := append([]string{}, c.env...)
	if i := slices.IndexFunc(env, func(v string) bool { return strings.HasPrefix(v, "GODEBUG=") }); i >= 0 {
		env[i] += "," + valgrindGODEBUG
	} else {
		env = append(env, "GODEBUG="+valgrindGODEBUG)
	}
	args := append([]string{"--tool=callgrind", "--callgrind-out-file=" + outFile, path}, c.args...)
	counts := make([]int64, runs)
	for i := range counts {
		cmd := c.exec(valgrind, args...)
		cmd.Env = append(append([]string{}, commandEnv...), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("%s (under callgrind, in %s): %w\n%s", c, c.dir, err, out.Bytes())
		}
		m := collectedRE.FindSubmatch(out.Bytes())
		if m == nil {
			return 0, fmt.Errorf("%s: no instruction count in callgrind's output:\n%s", c, out.Bytes())
		}
		n, err := strconv.ParseInt(string(m[1]), 10, 64)
		if err != nil {
			return 0, err
		}
		counts[i] = n
	}
	return median(counts), nil
}

// exec prepares name args to run in c's directory with c's environment.
func (c *command) exec(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	cmd.Env = append(append([]string{}, commandEnv...), c.env...)
	return cmd
}
