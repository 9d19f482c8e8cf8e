package bazelcheck

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The release path: .github/workflows/release.yml builds the source archive, and publish-to-bcr
// (the reusable workflow the release calls, pinned to v1.4.2) makes a registry entry of it from
// .bcr/'s templates. These tests hold the two to each other without GitHub.

// workflowStep returns the run: script of the step called name in job of .github/workflows/file.
func workflowStep(t *testing.T, file, job, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", file))
	require.NoError(t, err)
	var workflow struct {
		Jobs map[string]struct {
			Steps []struct {
				Name string `yaml:"name"`
				Run  string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &workflow), file)
	for _, step := range workflow.Jobs[job].Steps {
		if step.Name == name {
			require.NotEmpty(t, step.Run, "step %q of job %s in %s runs nothing", name, job, file)
			return step.Run
		}
	}
	require.FailNow(t, "no step "+name+" in job "+job+" of "+file)
	return ""
}

// runStep runs a step's script as GitHub's `shell: bash` does (bash -e -o pipefail) in dir, with
// env added to the environment. What the step appends to $GITHUB_ENV is returned.
func runStep(t *testing.T, dir, script string, env ...string) map[string]string {
	t.Helper()
	githubEnv := filepath.Join(t.TempDir(), "github_env")
	require.NoError(t, os.WriteFile(githubEnv, nil, 0o644))
	githubOutput := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.Command("bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "GITHUB_ENV="+githubEnv, "GITHUB_OUTPUT="+githubOutput)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", script, out)
	data, err := os.ReadFile(githubEnv)
	require.NoError(t, err)
	set := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			set[k] = v
		}
	}
	return set
}

// git runs git in dir with a fixed identity, so that commits work on a machine without one.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Release Test", "-c", "user.email=release@test.invalid"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
}

// substituteTemplate does what publish-to-bcr's substituteVars does (src/domain/substitution.ts):
// replace every {OWNER}, {REPO}, {TAG} and {VERSION}.
func substituteTemplate(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

// TestSourceArchiveIsWhereTheBCRTemplateSays runs release.yml's own steps for a tag in a scratch
// repository holding our MODULE.bazel: the step that derives VERSION from the tag, then the one that
// writes the source archive. The substituted .bcr/source.template.json must name that archive, and
// its strip_prefix must be the directory that holds MODULE.bazel, which is where publish-to-bcr
// looks for it (src/domain/release-archive.ts) before it makes the registry entry.
func TestSourceArchiveIsWhereTheBCRTemplateSays(t *testing.T) {
	for _, tool := range []string{"git", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	moduleFile, err := os.ReadFile(filepath.Join(repoRoot(t), "MODULE.bazel"))
	require.NoError(t, err)
	const tag = "v1.2.3"

	repo := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(repo, "MODULE.bazel"), moduleFile, 0o644))
	git(t, repo, "init", "-q")
	git(t, repo, "add", "MODULE.bazel")
	git(t, repo, "commit", "-q", "-m", "release test")
	git(t, repo, "tag", "-a", "-m", "release test", tag)
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "dist", "release"), 0o755))

	set := runStep(t, repo, workflowStep(t, "release.yml", "build", "Version and SOURCE_DATE_EPOCH from the tag"), "TAG="+tag)
	assert.Equal(t, "1.2.3", set["VERSION"], "the tag without its v, as publish-to-bcr's tag_prefix makes it")
	assert.Regexp(t, `^[0-9]+$`, set["SOURCE_DATE_EPOCH"])
	runStep(t, repo, workflowStep(t, "release.yml", "build", "Source archive"), "TAG="+tag, "VERSION="+set["VERSION"])

	raw, err := os.ReadFile(filepath.Join(repoRoot(t), ".bcr", "source.template.json"))
	require.NoError(t, err)
	var source struct {
		URL         string `json:"url"`
		StripPrefix string `json:"strip_prefix"`
	}
	require.NoError(t, json.Unmarshal(raw, &source))
	vars := map[string]string{"OWNER": "some-owner", "REPO": "some-repo", "TAG": tag, "VERSION": set["VERSION"]}
	url, stripPrefix := substituteTemplate(source.URL, vars), substituteTemplate(source.StripPrefix, vars)
	assert.NotRegexp(t, `\{[A-Z]+\}`, url+stripPrefix, "every template variable is one publish-to-bcr fills in")

	releaseFiles := "https://github.com/some-owner/some-repo/releases/download/" + tag + "/"
	require.True(t, strings.HasPrefix(url, releaseFiles), "url %s is a file of the tag's GitHub release", url)
	archive := filepath.Join(repo, "dist", "release", path.Base(url))
	require.FileExists(t, archive, "the release step uploads dist/release/*, so the url's file must be there")

	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		names = append(names, hdr.Name)
		if hdr.Name == stripPrefix+"/MODULE.bazel" {
			content, err := io.ReadAll(tr)
			require.NoError(t, err)
			assert.Equal(t, string(moduleFile), string(content))
		}
	}
	assert.Contains(t, names, stripPrefix+"/MODULE.bazel", "strip_prefix %q names the archive's directory", stripPrefix)
}

// publish-to-bcr's reading and stamping of module(version = ...), from src/domain/module-file.ts
// at v1.4.2 (ModuleFile.version and ModuleFile.stampVersion), translated from JavaScript's
// /.../s regular expressions to Go's (?s). The registry entry gets a patch that replaces what
// bcrModuleVersion finds with the tag's version; when it finds nothing, stampVersion inserts a
// version before the first ")" after "module(" instead, which a comment with a parenthesis turns
// into a broken MODULE.bazel.
var (
	bcrModuleVersion = regexp.MustCompile(`(?s)module\([^)]*?version\s*=\s*"(.+?)"`)
	bcrStampVersion  = regexp.MustCompile(`(?s)(^.*?module\(.*?version\s*=\s*")[\w.]*(".*$)`)
)

// TestPublishToBCRStampsTheTagVersionIntoMODULEbazel: publish-to-bcr finds MODULE.bazel's version,
// 0.0.0, and its stamped copy is a valid MODULE.bazel whose module() has the tag's version and that
// differs from ours in that string only.
func TestPublishToBCRStampsTheTagVersionIntoMODULEbazel(t *testing.T) {
	moduleFile, err := os.ReadFile(filepath.Join(repoRoot(t), "MODULE.bazel"))
	require.NoError(t, err)
	found := bcrModuleVersion.FindSubmatch(moduleFile)
	require.NotNil(t, found, "publish-to-bcr finds no version in MODULE.bazel's module(...): "+
		"does a comment inside module(...) contain a ')'?")
	assert.Equal(t, "0.0.0", string(found[1]), "the source keeps 0.0.0; the registry entry gets the tag's")

	const version = "1.2.3"
	stamped := bcrStampVersion.ReplaceAll(moduleFile, []byte("${1}"+version+"${2}"))
	assert.Equal(t, strings.Replace(string(moduleFile), `version = "0.0.0"`, `version = "`+version+`"`, 1), string(stamped))
	f, err := build.ParseModule("MODULE.bazel", stamped)
	require.NoError(t, err, "the stamped MODULE.bazel parses")
	var moduleVersion string
	for _, stmt := range f.Stmt {
		if call, _ := callOf(stmt); call != nil && calleeName(call) == "module" {
			if s, ok := kwarg(call, "version").(*build.StringExpr); ok {
				moduleVersion = s.Value
			}
		}
	}
	assert.Equal(t, version, moduleVersion)
}

// TestReleaseTagsFollowTheVersion runs the release job's step that picks the image tags: a release
// moves vX.Y, vX and latest; a prerelease pushes its own tag only and is marked as one.
func TestReleaseTagsFollowTheVersion(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o755))
	const index = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dist", "digests.txt"),
		[]byte("index "+index+"\nlinux/amd64 sha256:aa\n"), 0o644))
	script := workflowStep(t, "release.yml", "release", "Tags and index digest")
	for _, tc := range []struct {
		tag, tags, prerelease string
	}{
		{"v1.2.3", "v1.2.3 v1.2 v1 latest", "false"},
		{"v10.20.30", "v10.20.30 v10.20 v10 latest", "false"},
		{"v1.3.0-rc.1", "v1.3.0-rc.1", "true"},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			set := runStep(t, dir, script, "TAG="+tc.tag, "OWNER=Some-Owner")
			assert.Equal(t, tc.tags, set["TAGS"])
			assert.Equal(t, tc.prerelease, set["PRERELEASE"])
			assert.Equal(t, "ghcr.io/some-owner/health-check", set["IMAGE"], "image names are lower case")
			assert.Equal(t, index, set["INDEX_DIGEST"])
		})
	}
}

// TestReleaseWorkflowProvesWhatItPublishes: nothing is pushed or published before `rebuild` has
// reproduced the build from the source archive; the publishing job attests provenance for the
// files and the index, attests the SBOM, signs the index by digest, and each job has only the
// permissions it uses.
func TestReleaseWorkflowProvesWhatItPublishes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "release.yml"))
	require.NoError(t, err)
	type step struct {
		Name string            `yaml:"name"`
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		With map[string]string `yaml:"with"`
	}
	var workflow struct {
		Jobs map[string]struct {
			Needs       any               `yaml:"needs"`
			Permissions map[string]string `yaml:"permissions"`
			Steps       []step            `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &workflow))

	assert.Equal(t, map[string]string{"contents": "read"}, workflow.Jobs["build"].Permissions)
	assert.Equal(t, map[string]string{"contents": "read"}, workflow.Jobs["rebuild"].Permissions)
	assert.Equal(t, "build", workflow.Jobs["rebuild"].Needs)
	assert.ElementsMatch(t, []any{"build", "rebuild"}, workflow.Jobs["release"].Needs)
	assert.Equal(t, map[string]string{
		"contents": "write", "packages": "write", "id-token": "write", "attestations": "write",
	}, workflow.Jobs["release"].Permissions)

	var rebuildRuns string
	for _, s := range workflow.Jobs["rebuild"].Steps {
		rebuildRuns += s.Run + "\n"
	}
	assert.Contains(t, rebuildRuns, `tar -xzf "first/release/health-check-proxy-${TAG}.tar.gz"`, "rebuild builds from the source archive")
	assert.Contains(t, rebuildRuns, ".github/release/build.sh", "with the same script as build")
	assert.Contains(t, rebuildRuns, "diff -u first/digests.txt second/digests.txt")
	assert.Contains(t, rebuildRuns, "diff -u first/release/SHA256SUMS second/release/SHA256SUMS")

	uses := func(s step) string { action, _, _ := strings.Cut(s.Uses, "@"); return action }
	var provenance, sbomAttestations []map[string]string
	var cosignInstalled, signed bool
	for _, s := range workflow.Jobs["release"].Steps {
		switch uses(s) {
		case "actions/attest-build-provenance":
			provenance = append(provenance, s.With)
		case "actions/attest-sbom":
			sbomAttestations = append(sbomAttestations, s.With)
		case "sigstore/cosign-installer":
			cosignInstalled = true
		}
		if strings.Contains(s.Run, `cosign sign --yes "${IMAGE}@${INDEX_DIGEST}"`) {
			signed = cosignInstalled
		}
	}
	assert.Contains(t, provenance, map[string]string{"subject-checksums": "dist/release/SHA256SUMS"})
	assert.Contains(t, provenance, map[string]string{
		"subject-name": "${{ env.IMAGE }}", "subject-digest": "${{ env.INDEX_DIGEST }}",
		"push-to-registry": "true", "create-storage-record": "false",
	})
	assert.Equal(t, []map[string]string{{
		"subject-name": "${{ env.IMAGE }}", "subject-digest": "${{ env.INDEX_DIGEST }}",
		"sbom-path": "dist/release/health-check.spdx.json", "push-to-registry": "true",
	}}, sbomAttestations)
	assert.True(t, signed, "the index is signed by digest with cosign, installed by an earlier step")
}
