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
	// bench/embedded built plainly, and with the probe in it (-tags embedprobe); the command that
	// runs the probe through it.
	appAloneName = "app alone"
	appName      = "app + health-check"
	embeddedName = "app health-check"
)

// embedTags is the build tag that puts the healthcheck package into bench/embedded.
const embedTags = "-tags=embedprobe"

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

// String is the command line as the report shows it: binary base name (the baseline's name for
// the baseline probe) and arguments.
func (c *command) String() string {
	bin := filepath.Base(c.path)
	if strings.HasPrefix(c.name, bin+"@") {
		bin = c.name
	}
	parts := append([]string{bin}, c.args...)
	if len(c.env) > 0 {
		parts = append(append([]string{}, c.env...), parts...)
	}
	return strings.Join(parts, " ")
}

// binaries are the programs under test; a path is "" when its program is not measured.
type binaries struct {
	probe, floor, noop, curl, grpcHealthProbe string
	// A probe built from another revision, measured beside the current one (-baseline).
	baseline, baselineName string
	// bench/embedded without and with the probe (-embedded).
	appAlone, app string
	// Unstripped builds, same code, with symbols for callgrind's per-package costs (-symbols
	// builds only when callgrind runs).
	probeSymbols, floorSymbols, baselineSymbols, appSymbols string
}

// A buildPlan says which programs to build or find.
type buildPlan struct {
	moduleDir string // the repository root
	binDir    string
	srcDir    string // where a baseline's source is unpacked
	symbols   bool   // also build unstripped copies for callgrind
	peers     bool   // install grpc-health-probe and find curl
	baseline  string // a git revision, or ""
	embedded  bool   // build bench/embedded with and without the probe
}

// withSymbolsFlags build the same code as shipFlags, keeping the symbol table and DWARF.
var withSymbolsFlags = []string{"-trimpath", "-ldflags=-buildid="}

// buildBinaries builds the probe, the floor and noop as shipped, the baseline probe when asked,
// installs grpc-health-probe the same way and finds curl.
func buildBinaries(plan buildPlan) (*binaries, error) {
	b := &binaries{
		probe: filepath.Join(plan.binDir, probeName),
		floor: filepath.Join(plan.binDir, floorName),
		noop:  filepath.Join(plan.binDir, noopName),
	}
	type build struct {
		dir, out, pkg string
		tags          []string // extra build flags: embedTags
	}
	builds := []build{
		{plan.moduleDir, b.probe, "./cmd/health-check", nil},
		{plan.moduleDir, b.floor, "./bench/floor", nil},
		{plan.moduleDir, b.noop, "./bench/noop", nil},
	}
	var symbolBuilds []build
	if plan.symbols {
		b.probeSymbols = filepath.Join(plan.binDir, "symbols", probeName)
		b.floorSymbols = filepath.Join(plan.binDir, "symbols", floorName)
		symbolBuilds = append(symbolBuilds,
			build{plan.moduleDir, b.probeSymbols, "./cmd/health-check", nil},
			build{plan.moduleDir, b.floorSymbols, "./bench/floor", nil})
	}
	if plan.embedded {
		b.appAlone, b.app = filepath.Join(plan.binDir, "app-alone", "app"), filepath.Join(plan.binDir, "app")
		builds = append(builds,
			build{plan.moduleDir, b.appAlone, "./bench/embedded", nil},
			build{plan.moduleDir, b.app, "./bench/embedded", []string{embedTags}})
		if plan.symbols {
			b.appSymbols = filepath.Join(plan.binDir, "symbols", "app")
			symbolBuilds = append(symbolBuilds, build{plan.moduleDir, b.appSymbols, "./bench/embedded", []string{embedTags}})
		}
	}
	if plan.baseline != "" {
		if err := unpackRevision(plan.moduleDir, plan.baseline, plan.srcDir); err != nil {
			return nil, err
		}
		b.baselineName = probeName + "@" + plan.baseline
		b.baseline = filepath.Join(plan.binDir, "baseline", probeName)
		builds = append(builds, build{plan.srcDir, b.baseline, "./cmd/health-check", nil})
		if plan.symbols {
			b.baselineSymbols = filepath.Join(plan.binDir, "baseline-symbols", probeName)
			symbolBuilds = append(symbolBuilds, build{plan.srcDir, b.baselineSymbols, "./cmd/health-check", nil})
		}
	}
	for _, bd := range builds {
		if err := goBuild(bd.dir, bd.out, bd.pkg, append(bd.tags, shipFlags...)); err != nil {
			return nil, err
		}
	}
	for _, bd := range symbolBuilds {
		if err := goBuild(bd.dir, bd.out, bd.pkg, append(bd.tags, withSymbolsFlags...)); err != nil {
			return nil, err
		}
	}
	if !plan.peers {
		return b, nil
	}
	return b, findPeers(plan.binDir, b)
}

// findPeers installs grpc-health-probe as the probe is built and finds curl.
func findPeers(binDir string, b *binaries) error {
	// go install with a version ignores the current module; run it outside anyway.
	install := exec.Command("go", "install", shipFlags[0], shipFlags[1], grpcHealthProbeModule)
	install.Dir = binDir
	install.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+binDir)
	if err := runQuiet(install); err != nil {
		return err
	}
	b.grpcHealthProbe = filepath.Join(binDir, ghpName)

	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl is needed as a peer (apt-get install -y curl, or -peers=false): %w", err)
	}
	b.curl = curl
	return nil
}

// unpackRevision writes the tree of a git revision into dir (git archive | tar -x), leaving the
// repository, its index and its work tree alone.
func unpackRevision(moduleDir, rev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.Command("git", "archive", "--format=tar", rev)
	archive.Dir = moduleDir
	var archiveErr bytes.Buffer
	archive.Stderr = &archiveErr
	extract := exec.Command("tar", "-x", "-C", dir)
	var err error
	if extract.Stdin, err = archive.StdoutPipe(); err != nil {
		return err
	}
	if err := extract.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		extract.Wait()
		return fmt.Errorf("git archive %s: %w\n%s", rev, err, archiveErr.Bytes())
	}
	if err := extract.Wait(); err != nil {
		return fmt.Errorf("unpack %s: %w", rev, err)
	}
	return nil
}

func goBuild(dir, out, pkg string, flags []string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	build := exec.Command("go", args...)
	build.Dir = dir
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
// interleaved; the peers' when b has them. probeArgs and probeEnv come from the command line, for
// experiments, and apply to the current probe only, not to the baseline.
func commandsFor(row *certRow, b *binaries, probeArgs, probeEnv []string) []*command {
	// -timeout raised so that the run under callgrind (tens of times slower) passes too.
	tlsFlags := []string{"-cacert", caFile, "-cert", clientCertFile, "-key", clientKeyFile, "-timeout", "30s"}
	withURL := func(extra []string, url string) []string {
		return append(append(append([]string{}, tlsFlags...), extra...), url)
	}
	httpsURL, grpcURL := "https://"+row.httpsAddr+"/healthz", "grpcs://"+row.grpcAddr

	var commands []*command
	add := func(c *command) {
		if c.path != "" {
			c.row, c.dir = row.name, row.dir
			commands = append(commands, c)
		}
	}
	add(&command{name: probeName, check: checkHTTPS, path: b.probe, env: probeEnv, args: withURL(probeArgs, httpsURL)})
	add(&command{name: b.baselineName, check: checkHTTPS, path: b.baseline, args: withURL(nil, httpsURL)})
	add(&command{name: embeddedName, check: checkHTTPS, path: b.app, args: append([]string{"health-check"}, withURL(nil, httpsURL)...)})
	add(&command{name: floorName, check: checkHTTPS, path: b.floor,
		args: []string{caFile, clientCertFile, clientKeyFile, row.httpsAddr}})
	// How curl is written in a health check: fail on HTTP errors, quiet but for errors, body
	// discarded; -q first so that no ~/.curlrc applies.
	add(&command{name: curlName, check: checkHTTPS, path: b.curl,
		args: []string{"-q", "-fsS", "-o", "/dev/null", "--cacert", caFile, "--cert", clientCertFile, "--key", clientKeyFile, httpsURL}})
	add(&command{name: probeName, check: checkGRPC, path: b.probe, env: probeEnv, args: withURL(probeArgs, grpcURL)})
	add(&command{name: b.baselineName, check: checkGRPC, path: b.baseline, args: withURL(nil, grpcURL)})
	// Timeouts raised from 1s, as the probe's.
	add(&command{name: ghpName, check: checkGRPC, path: b.grpcHealthProbe,
		args: []string{"-addr", row.grpcAddr, "-tls", "-tls-ca-cert", caFile, "-tls-client-cert", clientCertFile,
			"-tls-client-key", clientKeyFile, "-connect-timeout", "30s", "-rpc-timeout", "30s"}})
	return commands
}

// noopCommand measures process start-up alone.
func noopCommand(b *binaries, dir string) *command {
	return &command{name: noopName, check: checkStartup, path: b.noop, dir: dir}
}
