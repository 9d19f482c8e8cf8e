package bazelcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// registryGraph is testdata/registry_graph.json: for each root module of this repository, what
// resolving it against the Bazel Central Registry gave, and the inputs it came from. With the
// registry's mirror at hand TestRegistryGraph re-derives it; without (CI) it holds MODULE.bazel
// to the recorded inputs, and the other checks read the recorded selection.
type registryGraph struct {
	Registry struct {
		Repository string `json:"repository"`
		Commit     string `json:"commit"`
	} `json:"registry"`
	Roots map[string]*rootGraph `json:"roots"` // by root module name
}

type rootGraph struct {
	ModuleFile   string                      `json:"module_file"` // relative to the repository root
	BazelVersion string                      `json:"bazel_version"`
	DirectDeps   map[string]recordedDep      `json:"direct_deps"`
	Overrides    map[string]recordedOverride `json:"overrides"`
	// Resolved maps each module of the resolved graph, the root excluded, to its selected version
	// ("" for a non-registry override, as in Bazel; several versions, comma-separated, under a
	// multiple_version_override).
	Resolved map[string]string `json:"resolved"`
	// RegistryFiles maps each registry file the resolution read to its sha256.
	RegistryFiles map[string]string `json:"registry_files"`
	Notes         []string          `json:"notes,omitempty"`
}

type recordedDep struct {
	Version               string `json:"version"`
	Dev                   bool   `json:"dev"`
	MaxCompatibilityLevel *int   `json:"max_compatibility_level,omitempty"`
}

type recordedOverride struct {
	Kind     string   `json:"kind"`
	Version  string   `json:"version,omitempty"`
	Versions []string `json:"versions,omitempty"`
	Path     string   `json:"path,omitempty"`
}

const (
	registryGraphPath = "internal/bazelcheck/testdata/registry_graph.json"
	updateGraphHint   = "UPDATE_REGISTRY_GRAPH=1 BZLCHECK_MIRRORS=DIR go test ./internal/bazelcheck -run TestRegistryGraph"
)

func loadRegistryGraph(t *testing.T) *registryGraph {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(registryGraphPath)))
	require.NoError(t, err, "the recorded registry graph: write it with %s", updateGraphHint)
	var g registryGraph
	require.NoError(t, json.Unmarshal(data, &g), registryGraphPath)
	require.NotEmpty(t, g.Roots, registryGraphPath)
	return &g
}

// rootModuleFile reads a root module's MODULE.bazel for resolution.
func rootModuleFile(t *testing.T, m *bazelModule) *moduleFile {
	t.Helper()
	f, err := parseModuleFile(m.file, true)
	require.NoError(t, err)
	if f.name == "" {
		f.name = m.name
	}
	return f
}

func bazelVersionOf(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".bazelversion"))
	require.NoError(t, err)
	return strings.TrimSpace(string(data))
}

// rootInputs are the recorded inputs of one root module as its files say today.
func rootInputs(t *testing.T, m *bazelModule) *rootGraph {
	t.Helper()
	f := rootModuleFile(t, m)
	rel, err := filepath.Rel(repoRoot(t), filepath.Join(m.dir, "MODULE.bazel"))
	require.NoError(t, err)
	g := &rootGraph{
		ModuleFile:   filepath.ToSlash(rel),
		BazelVersion: bazelVersionOf(t, m.dir),
		DirectDeps:   map[string]recordedDep{},
		Overrides:    map[string]recordedOverride{},
	}
	for _, d := range f.deps {
		rd := recordedDep{Version: d.version, Dev: d.dev}
		if d.maxCompatibilityLevel >= 0 {
			level := d.maxCompatibilityLevel
			rd.MaxCompatibilityLevel = &level
		}
		g.DirectDeps[d.name] = rd
	}
	for name, o := range f.overrides {
		g.Overrides[name] = recordedOverride{Kind: o.kind, Version: o.version, Versions: o.versions, Path: o.path}
	}
	return g
}

// TestRegistryGraph resolves the module graph of the root module and of examples/downstream
// against the Bazel Central Registry, as a user's Bazel will, where a mirror of the registry's
// repository is at hand (BZLCHECK_MIRRORS), and compares it with testdata/registry_graph.json;
// without the mirror, it holds both MODULE.bazel files to the inputs the graph was recorded from.
func TestRegistryGraph(t *testing.T) {
	mods := loadModules(t)
	recorded := loadRegistryGraph(t)
	gitDir := mirrorGitDir(centralRegistry)
	if gitDir == "" {
		t.Logf("no mirror of %s under BZLCHECK_MIRRORS: holding MODULE.bazel to the graph recorded at commit %.12s", centralRegistry, recorded.Registry.Commit)
		assert.Equal(t, sortedKeys(recorded.Roots), sortedKeys(mods), "root modules of %s", registryGraphPath)
		for _, name := range sortedKeys(mods) {
			rec, ok := recorded.Roots[name]
			if !ok {
				continue
			}
			now := rootInputs(t, mods[name])
			recordedInputs := *rec
			recordedInputs.Resolved, recordedInputs.RegistryFiles, recordedInputs.Notes = nil, nil, nil
			assert.Equal(t, &recordedInputs, now,
				"%s (%s): MODULE.bazel changed since the registry graph was recorded: re-run with the registry mirror (%s)", name, now.ModuleFile, updateGraphHint)
		}
		return
	}

	reg, err := openGitRegistry(gitDir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })
	derived := &registryGraph{Roots: map[string]*rootGraph{}}
	derived.Registry.Repository = centralRegistry
	derived.Registry.Commit = reg.revision()
	for _, name := range sortedKeys(mods) {
		m := mods[name]
		g := rootInputs(t, m)
		res, err := resolveModuleGraph(reg, rootModuleFile(t, m), m.dir, g.BazelVersion)
		require.NoError(t, err, g.ModuleFile)
		for _, p := range res.problems {
			t.Errorf("%s: %s", g.ModuleFile, p)
		}
		g.Resolved = map[string]string{}
		for module, versions := range res.selected {
			g.Resolved[module] = strings.Join(versions, ", ")
		}
		g.RegistryFiles = res.files
		g.Notes = res.notes
		derived.Roots[name] = g
	}
	if t.Failed() {
		return // a graph Bazel refuses is not worth recording
	}
	data, err := json.MarshalIndent(derived, "", "  ")
	require.NoError(t, err)
	data = append(data, '\n')
	path := filepath.Join(repoRoot(t), filepath.FromSlash(registryGraphPath))
	if os.Getenv("UPDATE_REGISTRY_GRAPH") == "1" {
		require.NoError(t, os.WriteFile(path, data, 0o644))
		t.Logf("wrote %s from registry commit %s", registryGraphPath, derived.Registry.Commit)
		return
	}
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(old), string(data),
		"%s differs from the graph resolved against registry commit %s: if the change is meant, re-record it with %s", registryGraphPath, derived.Registry.Commit, updateGraphHint)
}

// TestRegistryGraphSelectsWhatRootsAskFor: every bazel_dep of a root module is the version the
// recorded resolution selects. Otherwise Bazel warns on every build (check_direct_dependencies)
// and the root's own files name a version that is not the one in use.
func TestRegistryGraphSelectsWhatRootsAskFor(t *testing.T) {
	for name, g := range loadRegistryGraph(t).Roots {
		for dep, d := range g.DirectDeps {
			if _, overridden := g.Overrides[dep]; overridden {
				continue
			}
			assert.Equal(t, d.Version, g.Resolved[dep], "%s (%s): bazel_dep(name = %q) asks for %s, resolution selects %s", name, g.ModuleFile, dep, d.Version, g.Resolved[dep])
		}
	}
}

// selectedVersions is the version each recorded root graph selects for a module, by root.
func selectedVersions(t *testing.T, module string) map[string]string {
	t.Helper()
	versions := map[string]string{}
	for root, g := range loadRegistryGraph(t).Roots {
		if v, ok := g.Resolved[module]; ok {
			versions[root] = v
		}
	}
	return versions
}

func describeRoots(versions map[string]string) string {
	var parts []string
	for _, root := range sortedKeys(versions) {
		parts = append(parts, fmt.Sprintf("%s selects %s", root, versions[root]))
	}
	return strings.Join(parts, ", ")
}
