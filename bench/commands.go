package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// grpcHealthProbeModule is the peer for gRPC checks, installed at run time so it never becomes a
// dependency of this module.
const grpcHealthProbeModule = "github.com/grpc-ecosystem/grpc-health-probe@v0.4.61"

// shipFlags build a Go binary the way the probe ships: pure Go, static, stripped, no paths, no build ID.
var shipFlags = []string{"-trimpath", "-ldflags=-s -w -buildid="}

// Names of the measured programs, as they appear in the report.
const (
	probeName = "health-check"
	floorName = "floor"
	noopName  = "noop"
	curlName  = "curl"
	ghpName   = "grpc-health-probe"
)

// Kinds of check, as they appear in the report.
const (
	checkHTTPS   = "HTTPS"
	checkGRPC    = "gRPC"
	checkStartup = "start-up"
)

// A command is one measured command line.
type command struct {
	row   string // certRow.name; "" for noop
	check string // checkHTTPS, checkGRPC or checkStartup
	name  string // probeName, floorName, ...
	path  string // the binary
	args  []string
	env   []string
	dir   string // working directory: the certRow's dir, where the certificate files are
}

// String is the command line as the report shows it: binary base name and arguments.
func (c *command) String() string {
	parts := append([]string{filepath.Base(c.path)}, c.args...)
	if len(c.env) > 0 {
		parts = append(append([]string{}, c.env...), parts...)
	}
	return strings.Join(parts, " ")
}

// binaries are the programs under test.
type binaries struct {
	probe, floor, noop, curl, grpcHealthProbe string
	// Unstripped builds of the probe and the floor, same code, with symbols for callgrind's
	// per-function costs; nil when callgrind is skipped.
	probeSymbols, floorSymbols string
}

// buildBinaries builds the probe, the floor and noop as shipped into binDir, installs
// grpc-health-probe the same way and finds curl.
func buildBinaries(moduleDir, binDir string, withSymbols bool) (*binaries, error) {
	b := &binaries{
		probe: filepath.Join(binDir, probeName),
		floor: filepath.Join(binDir, floorName),
		noop:  filepath.Join(binDir, noopName),
	}
	builds := []struct{ out, pkg string }{
		{b.probe, "./cmd/health-check"},
		{b.floor, "./bench/floor"},
		{b.noop, "./bench/noop"},
	}
	for _, build := range builds {
		if err := goBuild(moduleDir, build.out, build.pkg, shipFlags); err != nil {
			return nil, err
		}
	}
	if withSymbols {
		b.probeSymbols = filepath.Join(binDir, "symbols", probeName)
		b.floorSymbols = filepath.Join(binDir, "symbols", floorName)
		for _, build := range []struct{ out, pkg string }{{b.probeSymbols, "./cmd/health-check"}, {b.floorSymbols, "./bench/floor"}} {
			if err := goBuild(moduleDir, build.out, build.pkg, []string{"-trimpath", "-ldflags=-buildid="}); err != nil {
				return nil, err
			}
		}
	}

	// go install with a version ignores the current module; run it outside anyway.
	install := exec.Command("go", "install", shipFlags[0], shipFlags[1], grpcHealthProbeModule)
	install.Dir = binDir
	install.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+binDir)
	if err := runQuiet(install); err != nil {
		return nil, err
	}
	b.grpcHealthProbe = filepath.Join(binDir, ghpName)

	curl, err := exec.LookPath("curl")
	if err != nil {
		return nil, fmt.Errorf("curl is needed as a peer (apt-get install -y curl): %w", err)
	}
	b.curl = curl
	return b, nil
}

func goBuild(moduleDir, out, pkg string, flags []string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	build := exec.Command("go", args...)
	build.Dir = moduleDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	return runQuiet(build)
}

// runQuiet runs cmd and returns its output in the error when it fails.
func runQuiet(cmd *exec.Cmd) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.Bytes())
	}
	return nil
}

// commandsFor returns the commands measured for one certificate row, in the order they are
// interleaved. probeArgs and probeEnv come from the command line, for experiments.
func commandsFor(row *certRow, b *binaries, probeArgs, probeEnv []string) []*command {
	// -timeout raised so that the run under callgrind (tens of times slower) passes too.
	tlsFlags := []string{"-cacert", caFile, "-cert", clientCertFile, "-key", clientKeyFile, "-timeout", "30s"}
	probe := func(url string) []string {
		return append(append(append([]string{}, tlsFlags...), probeArgs...), url)
	}
	commands := []*command{
		{name: probeName, check: checkHTTPS, path: b.probe, env: probeEnv,
			args: probe("https://" + row.httpsAddr + "/healthz")},
		{name: floorName, check: checkHTTPS, path: b.floor,
			args: []string{caFile, clientCertFile, clientKeyFile, row.httpsAddr}},
		// How curl is written in a health check: fail on HTTP errors, quiet but for errors,
		// body discarded; -q first so that no ~/.curlrc applies.
		{name: curlName, check: checkHTTPS, path: b.curl,
			args: []string{"-q", "-fsS", "-o", "/dev/null", "--cacert", caFile, "--cert", clientCertFile, "--key", clientKeyFile,
				"https://" + row.httpsAddr + "/healthz"}},
		{name: probeName, check: checkGRPC, path: b.probe, env: probeEnv,
			args: probe("grpcs://" + row.grpcAddr)},
		// Timeouts raised from 1s, as the probe's.
		{name: ghpName, check: checkGRPC, path: b.grpcHealthProbe,
			args: []string{"-addr", row.grpcAddr, "-tls", "-tls-ca-cert", caFile, "-tls-client-cert", clientCertFile,
				"-tls-client-key", clientKeyFile, "-connect-timeout", "30s", "-rpc-timeout", "30s"}},
	}
	for _, c := range commands {
		c.row, c.dir = row.name, row.dir
	}
	return commands
}

// noopCommand measures process start-up alone.
func noopCommand(b *binaries, dir string) *command {
	return &command{name: noopName, check: checkStartup, path: b.noop, dir: dir}
}
