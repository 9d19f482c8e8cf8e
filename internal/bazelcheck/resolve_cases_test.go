package bazelcheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestModuleVersionOrder(t *testing.T) {
	ascending := [][2]string{
		{"1.0", "1.1"},
		{"1.9", "1.10"},           // numerically, not as text
		{"1.0-rc1", "1.0"},        // a prerelease is below its release
		{"1.0-rc1", "1.0-rc2"},    //
		{"1.0-rc10", "1.0-rc2"},   // "rc10" and "rc2" are text, so rc10 sorts first, as in SemVer
		{"1.0-rc.2", "1.0-rc.10"}, // dot-separated numbers compare as numbers
		{"1", "1.0"},              // a prefix is lower
		{"1.2.3", "1.2.3.bcr.1"},  // the registry's patched re-releases
		{"1.2.3.bcr.1", "1.2.3.bcr.2"},
		{"1.2.3.bcr.9", "1.2.4"},
		{"29.0-rc2.bcr.1", "29.0"},
		{"1.0.1", "1.0.a"}, // numeric identifiers are below alphanumeric ones
		{"2023-09-01", "2024-02-01"},
		{"20240116.1", "20240722.0"},
		{"99.0", ""}, // the empty version (a non-registry override) is above all
	}
	for _, pair := range ascending {
		assert.Negative(t, compareVersions(pair[0], pair[1]), "%s < %s", pair[0], pair[1])
		assert.Positive(t, compareVersions(pair[1], pair[0]), "%s > %s", pair[1], pair[0])
	}
	assert.Zero(t, compareVersions("1.0+build.1", "1.0+build.2"), "the build part is ignored")
	v, err := parseModuleVersion("1.0-rc1+linux")
	require.NoError(t, err)
	assert.Equal(t, "1.0-rc1", v.normalized)
	for _, bad := range []string{"1..0", "-rc1", "1.0_1", "1.0-", "v1.0 "} {
		_, err := parseModuleVersion(bad)
		assert.Error(t, err, bad)
	}
}

func TestBazelCompatibility(t *testing.T) {
	for _, c := range []struct {
		constraint string
		admits     bool
	}{
		{">=7.2.1", true},
		{">=8.4.2", true},
		{">=8.10.0", false}, // numerically
		{">8.4.2", false},
		{"<9.0.0", true},
		{"<8.4.2", false},
		{"<=8.4.2", true},
		{"-7.0.0", true},
		{"-8.4.2", false},
	} {
		admits, err := bazelAdmits("8.4.2", c.constraint)
		require.NoError(t, err, c.constraint)
		assert.Equal(t, c.admits, admits, "Bazel 8.4.2 and %s", c.constraint)
	}
	for _, bad := range []string{"8.4.2", ">=8.4", "=>8.0.0", "~8.0.0"} {
		_, err := bazelAdmits("8.4.2", bad)
		assert.Error(t, err, bad)
	}
}

// testRegistry writes a registry folder: modules maps "name@version" to the MODULE.bazel text
// after its module() line (written here from the key), yanked maps "name@version" to a reason.
func testRegistry(t *testing.T, modules map[string]string, yanked map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	metadata := map[string]*registryMetadata{}
	for key, body := range modules {
		name, version, _ := strings.Cut(key, "@")
		header := "module(name = \"" + name + "\", version = \"" + version + "\")\n"
		if strings.HasPrefix(body, "module(") {
			header = ""
		}
		path := filepath.Join(dir, filepath.FromSlash(moduleFilePath(name, version)))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(header+body), 0o644))
		if metadata[name] == nil {
			metadata[name] = &registryMetadata{YankedVersions: map[string]string{}}
		}
		metadata[name].Versions = append(metadata[name].Versions, version)
		if reason, ok := yanked[key]; ok {
			metadata[name].YankedVersions[version] = reason
		}
	}
	for name, m := range metadata {
		data, err := json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "modules", name, "metadata.json"), data, 0o644))
	}
	return dir
}

// committed turns a registry folder into a git repository with one commit and opens it the way
// the real registry's mirror is opened.
func committed(t *testing.T, dir string) *gitRegistry {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git on PATH")
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "."},
		{"-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "--allow-empty", "-m", "registry"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	r, err := openGitRegistry(filepath.Join(dir, ".git"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// resolveTestRoot resolves a root MODULE.bazel (text; a module() line is added unless it starts
// with one) against reg; local holds the MODULE.bazel of local_path_override modules, by path;
// bazelTools, when not empty, is the MODULE.bazel text of the built-in bazel_tools module.
func resolveTestRoot(t *testing.T, reg registry, root string, local map[string]string, bazelTools string) *resolution {
	t.Helper()
	dir := t.TempDir()
	for path, text := range local {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, path), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, path, "MODULE.bazel"), []byte(text), 0o644))
	}
	path := filepath.Join(dir, "MODULE.bazel")
	if !strings.HasPrefix(root, "module(") {
		root = "module(name = \"root\")\n" + root
	}
	require.NoError(t, os.WriteFile(path, []byte(root), 0o644))
	f, err := parseFile(path)
	require.NoError(t, err)
	m, err := parseModuleFile(f, true)
	require.NoError(t, err)
	var builtin *moduleFile
	if bazelTools != "" {
		bf, err := build.ParseModule("MODULE.tools", []byte(`module(name = "bazel_tools")`+"\n"+bazelTools))
		require.NoError(t, err)
		builtin, err = parseModuleFile(bf, false)
		require.NoError(t, err)
	}
	res, err := resolveModuleGraph(reg, m, dir, "8.4.2", builtin)
	require.NoError(t, err)
	return res
}

// TestResolution plants module graphs in a registry folder (and the same registry as a git
// repository) and checks what Bzlmod would select, or why it would refuse.
func TestResolution(t *testing.T) {
	for _, c := range []struct {
		name     string
		registry map[string]string
		yanked   map[string]string
		local    map[string]string
		// bazelTools is the built-in bazel_tools module's MODULE.bazel, after its module() line.
		bazelTools string
		root       string
		selected   map[string]string // module -> versions, comma-separated
		problem    string            // a substring of the one problem, "" for none
		note       string
		floor      string // the graph's floor, "" for none
	}{
		{
			name: "the highest requested version wins",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.1")`,
				"b@1.0": `bazel_dep(name = "c", version = "1.2")`,
				"c@1.1": ``, "c@1.2": ``, "c@1.3": ``,
			},
			root:     `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.0", "b": "1.0", "c": "1.2"},
		},
		{
			name: "versions compare the way Bazel orders them",
			registry: map[string]string{
				"a@1.0":       `bazel_dep(name = "c", version = "1.10")` + "\n" + `bazel_dep(name = "d", version = "2.0-rc1")`,
				"b@1.0":       `bazel_dep(name = "c", version = "1.9.bcr.2")` + "\n" + `bazel_dep(name = "d", version = "1.9.bcr.1")`,
				"c@1.9.bcr.2": ``,
				"c@1.10":      ``,
				"d@1.9.bcr.1": ``,
				"d@2.0-rc1":   ``,
			},
			root:     `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.0", "b": "1.0", "c": "1.10", "d": "2.0-rc1"},
		},
		{
			name: "dev dependencies count for the root only",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "9.9", dev_dependency = True)` + "\n" +
					`bazel_dep(name = "d", version = "2.0", dev_dependency = True)`,
				"d@1.0": ``, "d@2.0": ``,
			},
			root:     `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "d", version = "1.0", dev_dependency = True)`,
			selected: map[string]string{"a": "1.0", "d": "1.0"},
		},
		{
			name: "single_version_override pins every request",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.2")`, // 1.2 is not even read
				"c@1.1": ``,
			},
			root: `bazel_dep(name = "a", version = "1.0")` + "\n" +
				`single_version_override(module_name = "c", version = "1.1")`,
			selected: map[string]string{"a": "1.0", "c": "1.1"},
		},
		{
			name:     "a bazel_dep without a version takes the single_version_override's",
			registry: map[string]string{"c@1.1": ``},
			root: `bazel_dep(name = "c")` + "\n" +
				`single_version_override(module_name = "c", version = "1.1")`,
			selected: map[string]string{"c": "1.1"},
		},
		{
			name: "modules only an unselected version asked for are dropped",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "b", version = "2.0")`,
				"b@1.0": `bazel_dep(name = "x", version = "1.0")`,
				"b@2.0": ``,
				"x@1.0": ``,
			},
			root:     `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.0", "b": "2.0"},
		},
		{
			name:     "local_path_override reads the module's own MODULE.bazel, without its dev dependencies",
			registry: map[string]string{"c@1.0": ``},
			local: map[string]string{"vendor/a": `module(name = "a", version = "0.0.0")` + "\n" +
				`bazel_dep(name = "c", version = "1.0")` + "\n" +
				`bazel_dep(name = "missing", version = "1.0", dev_dependency = True)`},
			root: `bazel_dep(name = "a", version = "0.0.0")` + "\n" +
				`local_path_override(module_name = "a", path = "vendor/a")`,
			selected: map[string]string{"a": "", "c": "1.0"},
		},
		{
			name: "git_override: a leaf this check cannot read",
			root: `bazel_dep(name = "g")` + "\n" +
				`git_override(module_name = "g", remote = "https://example.com/g.git", commit = "abc")`,
			selected: map[string]string{"g": ""},
			note:     "g comes from git_override",
		},
		{
			name: "multiple_version_override keeps both versions",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.0")`,
				"b@1.0": `bazel_dep(name = "c", version = "1.5")`,
				"c@1.0": ``, "c@1.5": ``,
			},
			root: `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")` + "\n" +
				`multiple_version_override(module_name = "c", versions = ["1.0", "1.5"])`,
			selected: map[string]string{"a": "1.0", "b": "1.0", "c": "1.0, 1.5"},
		},
		{
			name: "max_compatibility_level lets a dependency take the next level",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.0", max_compatibility_level = 2)`,
				"b@1.0": `bazel_dep(name = "c", version = "2.0")`,
				"c@1.0": `module(name = "c", version = "1.0", compatibility_level = 1)`,
				"c@2.0": `module(name = "c", version = "2.0", compatibility_level = 2)`,
			},
			root:     `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.0", "b": "1.0", "c": "2.0"},
		},
		{
			name: "a yanked version that is not selected is harmless",
			registry: map[string]string{
				"a@1.0": ``, "a@1.1": ``,
				"b@1.0": `bazel_dep(name = "a", version = "1.0")`,
			},
			yanked:   map[string]string{"a@1.0": "CVE-0000-0000"},
			root:     `bazel_dep(name = "a", version = "1.1")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.1", "b": "1.0"},
		},
		{
			name: "bazel_tools' dependencies take part in selection",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.0")`,
				"c@1.0": ``, "c@2.0": ``, "t@1.0": ``,
			},
			bazelTools: `bazel_dep(name = "c", version = "2.0")` + "\n" + `bazel_dep(name = "t", version = "1.0")`,
			root:       `bazel_dep(name = "a", version = "1.0")`,
			selected:   map[string]string{"a": "1.0", "bazel_tools": "", "c": "2.0", "t": "1.0"},
		},
		{
			name: "a nodep dependency raises the version of a module the graph holds",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.0")`,
				"c@1.0": ``,
				"c@1.5": `bazel_dep(name = "d", version = "1.0")`,
				"d@1.0": ``,
			},
			bazelTools: `bazel_dep(name = "c", version = "1.5", repo_name = None)`,
			root:       `bazel_dep(name = "a", version = "1.0")`,
			selected:   map[string]string{"a": "1.0", "bazel_tools": "", "c": "1.5", "d": "1.0"},
		},
		{
			name:       "a nodep dependency brings in nothing by itself",
			registry:   map[string]string{"a@1.0": ``}, // apple_support@9.9 is not even read
			bazelTools: `bazel_dep(name = "apple_support", version = "9.9", repo_name = None)`,
			root:       `bazel_dep(name = "a", version = "1.0")`,
			selected:   map[string]string{"a": "1.0", "bazel_tools": ""},
		},
		{
			name: "the floor is the highest lower bound among selected modules",
			registry: map[string]string{
				"a@1.0": `module(name = "a", version = "1.0", bazel_compatibility = [">=7.0.0", "<9.0.0"])` + "\n" +
					`bazel_dep(name = "b", version = "1.0")`,
				"b@1.0": `module(name = "b", version = "1.0", bazel_compatibility = [">=7.2.1", "-7.3.0"])`,
			},
			root:     `module(name = "root", bazel_compatibility = [">=7.2.1"])` + "\n" + `bazel_dep(name = "a", version = "1.0")`,
			selected: map[string]string{"a": "1.0", "b": "1.0"},
			floor:    ">=7.2.1",
		},
		{
			name:     "a root without bazel_compatibility promises nothing to hold",
			registry: map[string]string{"b@1.0": `module(name = "b", version = "1.0", bazel_compatibility = [">=7.2.1"])`},
			root:     `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"b": "1.0"},
			floor:    ">=7.2.1",
		},
		{
			name: "bazel_compatibility of an unselected version does not matter",
			registry: map[string]string{
				"a@1.0": `module(name = "a", version = "1.0", bazel_compatibility = [">=9.0.0"])`,
				"a@1.1": `module(name = "a", version = "1.1", bazel_compatibility = [">=7.2.1", "<9.0.0", "-7.0.0"])`,
				"b@1.0": `bazel_dep(name = "a", version = "1.0")`,
			},
			root:     `bazel_dep(name = "a", version = "1.1")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			selected: map[string]string{"a": "1.1", "b": "1.0"},
		},

		// What Bazel refuses.
		{
			name: "a version the registry does not publish",
			registry: map[string]string{
				"a@1.0":   `bazel_dep(name = "c", version = "2.3.2")`,
				"c@2.3.0": ``, "c@2.2.7": ``,
			},
			root:    `bazel_dep(name = "a", version = "1.0")`,
			problem: "root -> a@1.0 -> c@2.3.2: c 2.3.2 is not in the registry (modules/c/metadata.json's newest version is 2.3.0)",
		},
		{
			name:    "a module the registry does not have",
			root:    `bazel_dep(name = "nowhere", version = "1.0")`,
			problem: "root -> nowhere@1.0: module nowhere is not in the registry (no modules/nowhere/metadata.json)",
		},
		{
			name:    "no version and no override",
			root:    `bazel_dep(name = "a")`,
			problem: `root -> a@_: bazel_dep(name = "a") asks for no version, and the root module has no override that supplies one`,
		},
		{
			name:     "a yanked version is selected",
			registry: map[string]string{"a@1.0": ``},
			yanked:   map[string]string{"a@1.0": "CVE-0000-0000"},
			root:     `bazel_dep(name = "a", version = "1.0")`,
			problem:  `a@1.0 is selected, but the registry has yanked it: "CVE-0000-0000"`,
		},
		{
			name: "one module at two compatibility levels",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "c", version = "1.0")`,
				"b@1.0": `bazel_dep(name = "c", version = "2.0")`,
				"c@1.0": `module(name = "c", version = "1.0", compatibility_level = 1)`,
				"c@2.0": `module(name = "c", version = "2.0", compatibility_level = 2)`,
			},
			root:    `bazel_dep(name = "a", version = "1.0")` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			problem: "b@1.0 depends on c@2.0 at compatibility level 2, but a@1.0 depends on c@1.0 at compatibility level 1",
		},
		{
			name: "bazel_compatibility excludes .bazelversion",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "b", version = "1.0")`,
				"b@1.0": `module(name = "b", version = "1.0", bazel_compatibility = [">=7.2.1", "-8.4.2"])`,
			},
			root:    `bazel_dep(name = "a", version = "1.0")`,
			problem: `Bazel 8.4.2 (.bazelversion) is not compatible with b@1.0: bazel_compatibility = [">=7.2.1", "-8.4.2"]`,
		},
		{
			name: "the root promises a Bazel that a selected module refuses",
			registry: map[string]string{
				"a@1.0": `bazel_dep(name = "b", version = "1.0")` + "\n" + `bazel_dep(name = "c", version = "1.0")`,
				"b@1.0": `module(name = "b", version = "1.0", bazel_compatibility = [">=7.2.1"])`,
				"c@1.0": `module(name = "c", version = "1.0", bazel_compatibility = [">=7.0.0"])`,
			},
			root:    `module(name = "root", bazel_compatibility = [">=6.5.0"])` + "\n" + `bazel_dep(name = "a", version = "1.0")`,
			problem: `root: bazel_compatibility = [">=6.5.0"] admits Bazel >=6.5.0, but the resolved graph needs Bazel >=7.2.1: root -> a@1.0 -> b@1.0; raise its lower bound to ">=7.2.1"`,
		},
		{
			name:     "the root's bound equals the floor but admits its release, which the module excludes",
			registry: map[string]string{"b@1.0": `module(name = "b", version = "1.0", bazel_compatibility = [">7.2.1"])`},
			root:     `module(name = "root", bazel_compatibility = [">=7.2.1"])` + "\n" + `bazel_dep(name = "b", version = "1.0")`,
			problem:  `the resolved graph needs Bazel >7.2.1: root -> b@1.0`,
		},
		{
			name: "a floor only bazel_tools' dependencies set still counts",
			registry: map[string]string{
				"a@1.0": ``,
				"j@8.0": `module(name = "j", version = "8.0", bazel_compatibility = [">=7.3.2"])`,
			},
			bazelTools: `bazel_dep(name = "j", version = "8.0")`,
			root:       `module(name = "root", bazel_compatibility = [">=7.2.1"])` + "\n" + `bazel_dep(name = "a", version = "1.0")`,
			problem:    `the resolved graph needs Bazel >=7.3.2: root -> bazel_tools@_ -> j@8.0`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // git init and commit take a few tens of milliseconds per case
			dir := testRegistry(t, c.registry, c.yanked)
			readers := map[string]func() registry{
				"folder": func() registry { return folderRegistry(dir) },
				"git":    func() registry { return committed(t, dir) },
			}
			for _, kind := range []string{"folder", "git"} {
				res := resolveTestRoot(t, readers[kind](), c.root, c.local, c.bazelTools)
				if c.problem == "" {
					assert.Empty(t, res.problems, kind)
					got := map[string]string{}
					for name, versions := range res.selected {
						got[name] = strings.Join(versions, ", ")
					}
					assert.Equal(t, c.selected, got, kind)
				} else if assert.Len(t, res.problems, 1, kind) {
					assert.Contains(t, res.problems[0], c.problem, kind)
				}
				if c.note != "" {
					assert.Contains(t, strings.Join(res.notes, "\n"), c.note, kind)
				}
				if c.floor != "" && assert.NotNil(t, res.floor, kind) {
					assert.Equal(t, c.floor, res.floor.bound.String(), kind)
				}
			}
		})
	}
}

// TestResolutionRecordsRegistryFiles: each file the resolution read is listed with its sha256.
func TestResolutionRecordsRegistryFiles(t *testing.T) {
	dir := testRegistry(t, map[string]string{"a@1.0": ``}, nil)
	res := resolveTestRoot(t, folderRegistry(dir), `bazel_dep(name = "a", version = "1.0")`, nil, "")
	require.Empty(t, res.problems)
	assert.Equal(t, []string{"modules/a/1.0/MODULE.bazel", "modules/a/metadata.json"}, sortedKeys(res.files))
	// sha256 of `module(name = "a", version = "1.0")` and a newline
	assert.Equal(t, "5bf819c8c49e0749854fda13f85f5b124a1a070a65e841d8f8053049f7074408", res.files["modules/a/1.0/MODULE.bazel"])
}

// resolvePlanted resolves our MODULE.bazel, with old replaced by planted, against the real
// registry, with the bazel_tools of .bazelversion, as TestRegistryGraph resolves it.
func resolvePlanted(t *testing.T, reg registry, old, planted string) *resolution {
	t.Helper()
	m := loadModules(t)[rootModuleName]
	data, err := os.ReadFile(filepath.Join(m.dir, "MODULE.bazel"))
	require.NoError(t, err)
	require.Contains(t, string(data), old)
	dir := t.TempDir()
	path := filepath.Join(dir, "MODULE.bazel")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(data), old, planted, 1)), 0o644))
	f, err := parseFile(path)
	require.NoError(t, err)
	root, err := parseModuleFile(f, true)
	require.NoError(t, err)
	bazel := bazelVersionOf(t, m.dir)
	res, err := resolveModuleGraph(reg, root, dir, bazel, bazelTools(t, bazel))
	require.NoError(t, err)
	return res
}

// TestRegistryRefusesUnpublishedVersion plants the version that broke a user's resolution
// (rules_oci 2.3.2: tagged upstream, never published to the registry) into our MODULE.bazel and
// resolves it against the real registry.
func TestRegistryRefusesUnpublishedVersion(t *testing.T) {
	reg := centralRegistryMirror(t)
	pinned := `bazel_dep(name = "rules_oci", version = "` + bazelDeps(loadModules(t)[rootModuleName])["rules_oci"] + `")`
	res := resolvePlanted(t, reg, pinned, `bazel_dep(name = "rules_oci", version = "2.3.2")`)
	require.Len(t, res.problems, 1)
	assert.Contains(t, res.problems[0], "health_check_proxy -> rules_oci@2.3.2: rules_oci 2.3.2 is not in the registry")
}

// TestRegistryRefusesAFloorBelowTheGraph plants the promise MODULE.bazel made before its floor
// was derived from the graph (Bazel 6.5.0, rules_go's MINIMUM_BAZEL_VERSION, which only
// WORKSPACE mode checks) and resolves it against the real registry: the graph's modules need more.
func TestRegistryRefusesAFloorBelowTheGraph(t *testing.T) {
	reg := centralRegistryMirror(t)
	m := loadModules(t)[rootModuleName]
	ours := rootModuleFile(t, m).bazelCompatibility
	require.Len(t, ours, 1, "MODULE.bazel's bazel_compatibility")
	res := resolvePlanted(t, reg, `bazel_compatibility = [`+quoteAll(ours)+`]`, `bazel_compatibility = [">=6.5.0"]`)
	require.Len(t, res.problems, 1)
	assert.Contains(t, res.problems[0], `health_check_proxy: bazel_compatibility = [">=6.5.0"] admits Bazel >=6.5.0, but the resolved graph needs Bazel >=7.2.1: health_check_proxy -> tar.bzl@0.10.5 -> gawk@5.3.2.bcr.3`)
}
