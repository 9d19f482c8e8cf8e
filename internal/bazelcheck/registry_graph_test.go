package bazelcheck

import (
	"bytes"
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
	// BazelToolsDeps are the bazel_deps of Bazel's built-in bazel_tools module at BazelVersion
	// (testdata/bazel_tools.json): every graph holds them.
	BazelToolsDeps map[string]recordedDep `json:"bazel_tools_deps"`
	// Resolved maps each module of the resolved graph, the root excluded, to its selected version
	// ("" for a non-registry override, as in Bazel; several versions, comma-separated, under a
	// multiple_version_override).
	Resolved map[string]string `json:"resolved"`
	// RegistryFiles maps each registry file the resolution read to its sha256.
	RegistryFiles map[string]string `json:"registry_files"`
	Notes         []string          `json:"notes,omitempty"`
	// BazelFloor is the lowest Bazel that every module of the resolved graph admits, and the
	// chains to the modules that say so; absent when none states a lower bound.
	BazelFloor *recordedFloor `json:"bazel_floor,omitempty"`
}

type recordedFloor struct {
	Requires string   `json:"requires"` // ">=X.Y.Z" or ">X.Y.Z"
	SetBy    []string `json:"set_by"`
}

type recordedDep struct {
	Version               string `json:"version"`
	Dev                   bool   `json:"dev"`
	Nodep                 bool   `json:"nodep,omitempty"`
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
	bazelToolsPath    = "internal/bazelcheck/testdata/bazel_tools.json"
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

// bazelToolsFacts is testdata/bazel_tools.json: the bazel_deps of the bazel_tools module built
// into the Bazel release in .bazelversion (its src/MODULE.tools), and where they were read.
type bazelToolsFacts struct {
	BazelVersion string   `json:"bazel_version"`
	File         string   `json:"file"`
	ReadFrom     []string `json:"read_from"`
	BazelDeps    []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Nodep   bool   `json:"nodep"`
	} `json:"bazel_deps"`
}

// bazelTools is the built-in bazel_tools module of Bazel bazelVersion, for resolution; it fails
// the test when testdata/bazel_tools.json was read for another release, since each release's
// src/MODULE.tools asks for other versions.
func bazelTools(t *testing.T, bazelVersion string) *moduleFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(bazelToolsPath)))
	require.NoError(t, err)
	var facts bazelToolsFacts
	require.NoError(t, json.Unmarshal(data, &facts), bazelToolsPath)
	require.Equal(t, bazelVersion, facts.BazelVersion,
		"%s was read from Bazel %s's %s, but .bazelversion is %s: re-read that file at the tag %s and record its bazel_deps", bazelToolsPath, facts.BazelVersion, facts.File, bazelVersion, bazelVersion)
	m := &moduleFile{path: bazelToolsPath, name: "bazel_tools", overrides: map[string]moduleOverride{}}
	for _, d := range facts.BazelDeps {
		_, err := parseModuleVersion(d.Version)
		require.NoError(t, err, "%s: %s", bazelToolsPath, d.Name)
		m.deps = append(m.deps, depSpec{name: d.Name, version: d.Version, maxCompatibilityLevel: -1, nodep: d.Nodep})
	}
	require.NotEmpty(t, m.deps, bazelToolsPath)
	return m
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
		DirectDeps:   recordedDeps(f.deps),
		Overrides:    map[string]recordedOverride{},
	}
	for name, o := range f.overrides {
		g.Overrides[name] = recordedOverride{Kind: o.kind, Version: o.version, Versions: o.versions, Path: o.path}
	}
	g.BazelToolsDeps = recordedDeps(bazelTools(t, g.BazelVersion).deps)
	return g
}

func recordedDeps(deps []depSpec) map[string]recordedDep {
	recorded := map[string]recordedDep{}
	for _, d := range deps {
		rd := recordedDep{Version: d.version, Dev: d.dev, Nodep: d.nodep}
		if d.maxCompatibilityLevel >= 0 {
			level := d.maxCompatibilityLevel
			rd.MaxCompatibilityLevel = &level
		}
		recorded[d.name] = rd
	}
	return recorded
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
			recordedInputs.Resolved, recordedInputs.RegistryFiles, recordedInputs.Notes, recordedInputs.BazelFloor = nil, nil, nil, nil
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
		res, err := resolveModuleGraph(reg, rootModuleFile(t, m), m.dir, g.BazelVersion, bazelTools(t, g.BazelVersion))
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
		if res.floor != nil {
			g.BazelFloor = &recordedFloor{Requires: res.floor.bound.String(), SetBy: res.floor.setBy}
		}
		derived.Roots[name] = g
	}
	if t.Failed() {
		return // a graph Bazel refuses is not worth recording
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // ">=7.2.1" reads better than "\u003e=7.2.1"
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(derived))
	data := buf.Bytes()
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

// TestBazelCompatibilityHoldsTheGraphFloor: without the registry at hand (CI), MODULE.bazel's
// bazel_compatibility is held to the floor recorded with the graph: the lowest Bazel that every
// selected module admits, bazel_tools' dependencies included. The published module must state
// one; a root that states one must not promise a Bazel below the floor. (With the registry,
// TestRegistryGraph re-derives the floor and fails on the same promise.)
func TestBazelCompatibilityHoldsTheGraphFloor(t *testing.T) {
	mods := loadModules(t)
	recorded := loadRegistryGraph(t)
	require.NotEmpty(t, rootModuleFile(t, mods[rootModuleName]).bazelCompatibility,
		"MODULE.bazel: module(bazel_compatibility = ...) is what a user's older Bazel is refused with; state the graph's floor")
	for _, name := range sortedKeys(mods) {
		g, ok := recorded.Roots[name]
		if !ok || g.BazelFloor == nil {
			continue
		}
		ours := rootModuleFile(t, mods[name]).bazelCompatibility
		if len(ours) == 0 {
			continue // promises nothing, so there is nothing to hold
		}
		floor := lowerBound([]string{g.BazelFloor.Requires})
		require.NotEmpty(t, floor.version, "%s: bazel_floor %q", registryGraphPath, g.BazelFloor.Requires)
		promised := lowerBound(ours)
		assert.GreaterOrEqual(t, promised.compare(floor), 0,
			"%s: bazel_compatibility = [%s] promises less than the resolved graph needs, Bazel %s (%s): raise its lower bound to %q",
			g.ModuleFile, quoteAll(ours), g.BazelFloor.Requires, strings.Join(g.BazelFloor.SetBy, ", "), g.BazelFloor.Requires)
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
