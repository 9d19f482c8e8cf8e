package healthcheck

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

// The examples people copy must keep working: every /health-check command in the Kubernetes
// manifests and in the README parses with today's flags, and its -timeout fits the probe's
// timeoutSeconds.

type probeExample struct {
	where          string
	command        []string
	env            map[string]string
	timeoutSeconds int
}

func TestKubernetesExamplesParse(t *testing.T) {
	testutil.NeedsGoTree(t)
	paths, err := filepath.Glob("../../../examples/kubernetes/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var examples []probeExample
	var sidecars []serveSidecar
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		decoder := yaml.NewDecoder(strings.NewReader(string(data)))
		for {
			var doc any
			if err := decoder.Decode(&doc); err != nil {
				break
			}
			examples = append(examples, findExecProbes(filepath.Base(path), doc, nil)...)
			sidecars = append(sidecars, findServeSidecars(filepath.Base(path), doc)...)
		}
	}
	require.NotEmpty(t, examples, "the manifests hold exec probes")
	require.NotEmpty(t, sidecars, "the manifests hold a serve sidecar")
	for _, sidecar := range sidecars {
		t.Run(sidecar.where, func(t *testing.T) {
			assert.Equal(t, "Always", sidecar.restartPolicy, "a native sidecar: an init container with restartPolicy: Always")
			opts, err := parseServeOptions(sidecar.args[1:], func(string) string { return "" })
			require.NoError(t, err)
			_, port, err := net.SplitHostPort(opts.listen)
			require.NoError(t, err)
			timeouts := map[string]time.Duration{}
			for _, c := range opts.server.Checks {
				timeouts["/"+c.Name] = c.Timeout
			}
			probed := 0
			for _, p := range sidecar.probes {
				if p.port != port {
					continue
				}
				probed++
				timeout, ok := timeouts[p.path]
				require.True(t, ok, "%s: %s names no -check", p.where, p.path)
				require.NotZero(t, p.timeoutSeconds, "%s: set timeoutSeconds beside the check's -timeout", p.where)
				assert.Less(t, timeout, time.Duration(p.timeoutSeconds)*time.Second,
					"%s: the check's -timeout must answer before the kubelet's timeoutSeconds", p.where)
			}
			assert.NotZero(t, probed, "the application's httpGet probes ask the sidecar's port %s", port)
		})
	}
	for _, ex := range examples {
		t.Run(ex.where, func(t *testing.T) {
			require.Equal(t, "/health-check", ex.command[0])
			opts, err := parseOptions(ex.command[1:], func(name string) string { return ex.env[name] })
			require.NoError(t, err)
			require.NotZero(t, ex.timeoutSeconds, "set timeoutSeconds beside the probe's -timeout")
			assert.Less(t, opts.config.Timeout, time.Duration(ex.timeoutSeconds)*time.Second,
				"-timeout must end the probe before the kubelet's timeoutSeconds")
		})
	}
}

// findExecProbes walks a decoded manifest for containers' exec probes, with the container's env.
func findExecProbes(where string, node any, env map[string]string) []probeExample {
	var found []probeExample
	switch node := node.(type) {
	case map[string]any:
		if vars, ok := node["env"].([]any); ok {
			env = map[string]string{}
			for _, v := range vars {
				if pair, ok := v.(map[string]any); ok {
					name, _ := pair["name"].(string)
					value, _ := pair["value"].(string)
					env[name] = value
				}
			}
		}
		for key, value := range node {
			probe, ok := value.(map[string]any)
			if !ok || !strings.HasSuffix(key, "Probe") {
				found = append(found, findExecProbes(where, value, env)...)
				continue
			}
			exec, _ := probe["exec"].(map[string]any)
			command, _ := exec["command"].([]any)
			if len(command) == 0 {
				continue
			}
			ex := probeExample{where: where + " " + key, env: env}
			for _, arg := range command {
				ex.command = append(ex.command, toString(arg))
			}
			ex.timeoutSeconds, _ = probe["timeoutSeconds"].(int)
			found = append(found, ex)
		}
	case []any:
		for _, item := range node {
			found = append(found, findExecProbes(where, item, env)...)
		}
	}
	return found
}

// serveSidecar is a container that runs `serve` (args: ["serve", ...] on our image's entrypoint), with
// the httpGet probes of its manifest.
type serveSidecar struct {
	where         string
	args          []string
	restartPolicy string
	probes        []httpGetProbe
}

type httpGetProbe struct {
	where, path, port string
	timeoutSeconds    int
}

// findServeSidecars walks a decoded manifest for containers whose args start with "serve".
func findServeSidecars(where string, doc any) []serveSidecar {
	var sidecars []serveSidecar
	var probes []httpGetProbe
	var walk func(node any)
	walk = func(node any) {
		switch node := node.(type) {
		case map[string]any:
			if args, ok := node["args"].([]any); ok && len(args) > 0 && toString(args[0]) == "serve" {
				sidecar := serveSidecar{where: where + " " + toString(node["name"])}
				sidecar.restartPolicy, _ = node["restartPolicy"].(string)
				for _, arg := range args {
					sidecar.args = append(sidecar.args, toString(arg))
				}
				sidecars = append(sidecars, sidecar)
			}
			for key, value := range node {
				probe, _ := value.(map[string]any)
				if get, ok := probe["httpGet"].(map[string]any); ok && strings.HasSuffix(key, "Probe") {
					p := httpGetProbe{where: where + " " + toString(node["name"]) + " " + key, path: toString(get["path"]), port: toString(get["port"])}
					p.timeoutSeconds, _ = probe["timeoutSeconds"].(int)
					probes = append(probes, p)
				}
				walk(value)
			}
		case []any:
			for _, item := range node {
				walk(item)
			}
		}
	}
	walk(doc)
	for i := range sidecars {
		sidecars[i].probes = probes
	}
	return sidecars
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	data, _ := json.Marshal(v)
	return string(data)
}

// execArrays are the exec-form commands in the README and docs/: Docker's CMD [...] and Kubernetes'
// command: [...].
var execArrays = regexp.MustCompile(`\["/health-check"[^\]]*\]`)

// shellLines are the health-check command lines in the shell examples of the README and docs/.
var shellLines = regexp.MustCompile(`(?m)^health-check (.*)$`)

// TestReadmeExamplesParse: the README's examples, and those of the docs/ pages the details moved
// to, parse with today's flags.
func TestReadmeExamplesParse(t *testing.T) {
	testutil.NeedsGoTree(t)
	docs, err := filepath.Glob("../../../docs/*.md")
	require.NoError(t, err)
	for _, path := range append([]string{"../../../README.md"}, docs...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			commands := markdownCommands(t, path)
			serveCommands := 0
			for _, args := range commands {
				if len(args) > 0 && args[0] == "serve" {
					serveCommands++
					_, err := parseServeOptions(args[1:], env(nil))
					assert.NoError(t, err, "%q", args)
					continue
				}
				_, err := parseOptions(args, env(nil))
				assert.NoError(t, err, "%q", args)
			}
			switch filepath.Base(path) {
			case "README.md":
				assert.GreaterOrEqual(t, len(commands), 4, "the README shows exec and shell examples")
				assert.NotZero(t, serveCommands, "the README shows serve")
			case "serve.md":
				assert.NotZero(t, serveCommands, "docs/serve.md shows serve")
			case "spiffe.md":
				assert.NotEmpty(t, commands, "docs/spiffe.md shows commands")
			}
		})
	}
}

// markdownCommands returns the arguments of every exec-form and shell health-check command in the
// Markdown file at path.
func markdownCommands(t *testing.T, path string) [][]string {
	t.Helper()
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	var commands [][]string
	for _, match := range execArrays.FindAllString(string(text), -1) {
		var command []string
		require.NoError(t, json.Unmarshal([]byte(match), &command), match)
		if len(command) > 1 { // not the bare entrypoint
			commands = append(commands, command[1:])
		}
	}
	for _, match := range shellLines.FindAllStringSubmatch(string(text), -1) {
		commands = append(commands, strings.Fields(match[1]))
	}
	return commands
}

// TestReadmeFlagsTable: the README's Flags table has a row for every flag, with its variable, as -h does.
func TestReadmeFlagsTable(t *testing.T) {
	testutil.NeedsGoTree(t)
	readme, err := os.ReadFile("../../../README.md")
	require.NoError(t, err)
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if m := regexp.MustCompile("^\\| `-([A-Za-z-]+)[ `]").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	newFlagSet().VisitAll(func(fl *flag.Flag) {
		row, ok := rows[fl.Name]
		if !assert.True(t, ok, "the README's Flags table has no row for -%s", fl.Name) || noEnv[fl.Name] {
			return
		}
		assert.True(t, strings.HasSuffix(row, "| `"+envName(fl.Name)+"` |"), "the row of -%s ends with its variable: %s", fl.Name, row)
	})
}
