package bazelcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The jobs that run real Bazel: .github/workflows/bazel.yml on GitHub's runners, and
// .bcr/presubmit.yml on the registry's CI before it accepts a release. Neither runs here; these
// tests hold what they run to the module: the Bazel majors to the graph's floor and .bazelversion,
// the load targets and image tags to the BUILD files.

// testedBazelMajors are the Bazel releases CI must test, as bazelisk names them: the major of the
// root graph's floor (the oldest Bazel our bazel_compatibility admits) and that of .bazelversion.
func testedBazelMajors(t *testing.T) []string {
	t.Helper()
	g, ok := loadRegistryGraph(t).Roots[rootModuleName]
	require.True(t, ok, "%s: no graph for %s", registryGraphPath, rootModuleName)
	require.NotNil(t, g.BazelFloor, "%s: %s has no bazel_floor", registryGraphPath, rootModuleName)
	floor := lowerBound([]string{g.BazelFloor.Requires})
	require.NotEmpty(t, floor.version, "%s: bazel_floor %q", registryGraphPath, g.BazelFloor.Requires)
	majors := map[string]bool{}
	for _, v := range []string{floor.version, bazelVersionOf(t, repoRoot(t))} {
		major, _, _ := strings.Cut(v, ".")
		majors[major+".x"] = true
	}
	list := sortedKeys(majors)
	sort.Slice(list, func(i, j int) bool { return compareVersions(list[i], list[j]) < 0 })
	return list
}

// bazelWorkflow is what these tests read of .github/workflows/bazel.yml.
type bazelWorkflow struct {
	Jobs map[string]struct {
		RunsOn   string `yaml:"runs-on"`
		Strategy struct {
			Matrix struct {
				Bazel []string `yaml:"bazel"`
			} `yaml:"matrix"`
		} `yaml:"strategy"`
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name             string `yaml:"name"`
			Run              string `yaml:"run"`
			WorkingDirectory string `yaml:"working-directory"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func loadBazelWorkflow(t *testing.T) *bazelWorkflow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "bazel.yml"))
	require.NoError(t, err)
	var w bazelWorkflow
	require.NoError(t, yaml.Unmarshal(data, &w), "bazel.yml")
	return &w
}

// TestBazelWorkflowTestsTheFloorAndBazelversion: both jobs of bazel.yml run every tested major,
// through bazelisk's USE_BAZEL_VERSION.
func TestBazelWorkflowTestsTheFloorAndBazelversion(t *testing.T) {
	want := testedBazelMajors(t)
	w := loadBazelWorkflow(t)
	for _, name := range []string{"linux", "macos"} {
		job, ok := w.Jobs[name]
		require.True(t, ok, "bazel.yml has no job %s", name)
		assert.Equal(t, want, job.Strategy.Matrix.Bazel,
			"bazel.yml job %s: the Bazel majors must be the floor's and .bazelversion's (%s)", name, strings.Join(want, ", "))
		assert.Equal(t, "${{ matrix.bazel }}", job.Env["USE_BAZEL_VERSION"], "bazel.yml job %s: bazelisk picks the release from USE_BAZEL_VERSION", name)
	}
	assert.Contains(t, w.Jobs["macos"].RunsOn, "macos")
}

// TestBazelWorkflowLoadsWhatTheBuildFilesTag: the Linux job runs each module's oci_load target
// and then the image by the tag that target's repo_tags gives it, so a renamed target or tag fails
// here rather than on GitHub.
func TestBazelWorkflowLoadsWhatTheBuildFilesTag(t *testing.T) {
	mods := loadModules(t)
	linux := loadBazelWorkflow(t).Jobs["linux"]
	scripts := map[string]string{} // working directory -> its steps' scripts
	for _, step := range linux.Steps {
		scripts[step.WorkingDirectory] += step.Run + "\n"
	}
	for _, c := range []struct {
		module, workingDirectory, pkg, target string
	}{
		{rootModuleName, "", "images", "load"},
		{"downstream_example", "examples/downstream", "", "load"},
	} {
		m, ok := mods[c.module]
		require.True(t, ok, c.module)
		p, ok := m.packages[c.pkg]
		require.True(t, ok, "%s: package //%s", c.module, c.pkg)
		tags := ociLoadTags(t, p.file, c.target)
		require.NotEmpty(t, tags, "%s: //%s:%s has no repo_tags", c.module, c.pkg, c.target)
		script := scripts[c.workingDirectory]
		label := fmt.Sprintf("//%s:%s", c.pkg, c.target)
		assert.Contains(t, script, "bazel run "+label, "bazel.yml linux job, in %q", c.workingDirectory)
		assert.Regexp(t, `docker (run|exec)[^\n]* `+regexp.QuoteMeta(tags[0]), script,
			"bazel.yml linux job, in %q: run the image %s loads as %s", c.workingDirectory, label, tags[0])
	}
	for _, cmd := range []string{"bazel build //...", "bazel test //..."} {
		assert.Contains(t, scripts[""], cmd, "bazel.yml linux job, in the root")
		assert.Contains(t, scripts["examples/downstream"], cmd, "bazel.yml linux job, in examples/downstream")
	}
}

// ociLoadTags is the repo_tags list of the load target called name in a BUILD file: an oci_load,
// or the linux_load macro (images/defs.bzl) that wraps one to load on any host.
func ociLoadTags(t *testing.T, f *build.File, name string) []string {
	t.Helper()
	for _, call := range ruleCalls(f) {
		if callee := calleeName(call); (callee == "oci_load" || callee == "linux_load") && stringArg(call, "name") == name {
			return stringList(kwarg(call, "repo_tags"))
		}
	}
	require.Fail(t, fmt.Sprintf("%s: no oci_load or linux_load(name = %q)", f.Path, name))
	return nil
}

// bcrPresubmit is .bcr/presubmit.yml in the registry's presubmit format (the registry's
// docs/README.md, "Presubmit"): tasks in Bazel CI's syntax, each naming its platform and Bazel,
// under bcr_test_module for a test module in a folder of the source archive.
type bcrPresubmit struct {
	// The anonymous module test, and flags to test: fields of the format this file does not use.
	Matrix            map[string][]string `yaml:"matrix"`
	Tasks             map[string]bcrTask  `yaml:"tasks"`
	IncompatibleFlags map[string][]string `yaml:"incompatible_flags"`
	BCRTestModule     struct {
		ModulePath string `yaml:"module_path"`
		Matrix     struct {
			Platform []string `yaml:"platform"`
			Bazel    []string `yaml:"bazel"`
		} `yaml:"matrix"`
		Tasks map[string]bcrTask `yaml:"tasks"`
	} `yaml:"bcr_test_module"`
}

// bcrTask is one task in Bazel CI's syntax (bazelbuild/continuous-integration's buildkite
// README), with the fields a registry presubmit uses.
type bcrTask struct {
	Name          string            `yaml:"name"`
	Platform      string            `yaml:"platform"`
	Bazel         string            `yaml:"bazel"`
	BuildFlags    []string          `yaml:"build_flags"`
	BuildTargets  []string          `yaml:"build_targets"`
	TestFlags     []string          `yaml:"test_flags"`
	TestTargets   []string          `yaml:"test_targets"`
	RunTargets    []string          `yaml:"run_targets"`
	ShellCommands []string          `yaml:"shell_commands"`
	Environment   map[string]string `yaml:"environment"`
}

// TestBCRPresubmitTestsTheFloorAndBazelversion: .bcr/presubmit.yml is valid YAML in the registry's
// presubmit format, names only fields that format has, its test module is examples/downstream
// (a module that depends on ours), and it tests the same Bazel majors as bazel.yml.
func TestBCRPresubmitTestsTheFloorAndBazelversion(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".bcr", "presubmit.yml"))
	require.NoError(t, err)
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true) // a misspelled field fails here, as it would be ignored there
	var p bcrPresubmit
	require.NoError(t, dec.Decode(&p), ".bcr/presubmit.yml")
	m := p.BCRTestModule
	require.NotEmpty(t, m.ModulePath, "bcr_test_module.module_path")
	downstream, ok := loadModules(t)["downstream_example"]
	require.True(t, ok)
	assert.Equal(t, filepath.Join(repoRoot(t), filepath.FromSlash(m.ModulePath)), downstream.dir, "bcr_test_module.module_path")
	assert.Equal(t, testedBazelMajors(t), m.Matrix.Bazel, "bcr_test_module.matrix.bazel: the floor's and .bazelversion's majors")
	assert.NotEmpty(t, m.Matrix.Platform, "bcr_test_module.matrix.platform")
	require.NotEmpty(t, m.Tasks, "bcr_test_module.tasks")
	for name, task := range m.Tasks {
		// The registry requires every task to name its Bazel; the matrix fills both in.
		assert.Equal(t, "${{ bazel }}", task.Bazel, "task %s: bazel", name)
		assert.Equal(t, "${{ platform }}", task.Platform, "task %s: platform", name)
		assert.NotEmpty(t, append(task.BuildTargets, task.TestTargets...), "task %s: no targets", name)
	}
}
