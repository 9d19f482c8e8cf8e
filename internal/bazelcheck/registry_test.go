package bazelcheck

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// centralRegistry is the repository of the Bazel Central Registry: its modules/ folder is what
// Bazel downloads from https://bcr.bazel.build when it resolves a module graph.
const centralRegistry = "github.com/bazelbuild/bazel-central-registry"

// registry is where module resolution reads a registry's files (modules/NAME/metadata.json,
// modules/NAME/VERSION/MODULE.bazel): the registry's own git repository at one commit, or a folder
// laid out the same way (the planted-defect tests build one).
type registry interface {
	// read returns the file at a slash-separated path below the registry's root; an error that
	// matches fs.ErrNotExist when there is none.
	read(path string) ([]byte, error)
	// revision is the git commit read, "" for a folder.
	revision() string
}

// folderRegistry is a registry laid out in a folder.
type folderRegistry string

func (r folderRegistry) read(path string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(r), filepath.FromSlash(path)))
}

func (folderRegistry) revision() string { return "" }

// gitRegistry reads a registry's files from its git repository at one commit, through one
// `git cat-file --batch` process: a resolution reads a few hundred files, and a git process per
// file would take seconds.
type gitRegistry struct {
	commit string
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
}

// openGitRegistry reads the registry at the HEAD commit of gitDir (a bare mirror).
func openGitRegistry(gitDir string) (*gitRegistry, error) {
	out, err := exec.Command("git", "--git-dir", gitDir, "rev-parse", "--verify", "HEAD^{commit}").Output()
	if err != nil {
		return nil, fmt.Errorf("git rev-parse HEAD in %s: %w", gitDir, err)
	}
	r := &gitRegistry{commit: strings.TrimSpace(string(out))}
	r.cmd = exec.Command("git", "--git-dir", gitDir, "cat-file", "--batch")
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.out = bufio.NewReader(stdout)
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("git cat-file --batch in %s: %w", gitDir, err)
	}
	return r, nil
}

func (r *gitRegistry) revision() string { return r.commit }

func (r *gitRegistry) read(path string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := fmt.Fprintf(r.in, "%s:%s\n", r.commit, path); err != nil {
		return nil, fmt.Errorf("git cat-file %s: %w", path, err)
	}
	header, err := r.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("git cat-file %s: %w", path, err)
	}
	fields := strings.Fields(header)
	if len(fields) == 2 && fields[1] == "missing" {
		return nil, fmt.Errorf("%s at %.12s: %w", path, r.commit, fs.ErrNotExist)
	}
	if len(fields) != 3 {
		return nil, fmt.Errorf("git cat-file %s: unexpected answer %q", path, header)
	}
	size, err := strconv.Atoi(fields[2])
	if err != nil {
		return nil, fmt.Errorf("git cat-file %s: unexpected answer %q", path, header)
	}
	body := make([]byte, size+1) // the content and git's closing newline
	if _, err := io.ReadFull(r.out, body); err != nil {
		return nil, fmt.Errorf("git cat-file %s: %w", path, err)
	}
	if fields[1] != "blob" {
		return nil, fmt.Errorf("%s is a %s, not a file: %w", path, fields[1], fs.ErrNotExist)
	}
	return body[:size], nil
}

func (r *gitRegistry) Close() error {
	r.in.Close()
	return r.cmd.Wait()
}

// mirrorGitDir is the bare git mirror of a repository ("github.com/OWNER/NAME"), kept under
// BZLCHECK_MIRRORS as OWNER+NAME/repo; "" when the variable is unset or the mirror absent.
func mirrorGitDir(repository string) string {
	mirrors := os.Getenv("BZLCHECK_MIRRORS")
	if mirrors == "" {
		return ""
	}
	dir := filepath.Join(mirrors, strings.ReplaceAll(strings.TrimPrefix(repository, "github.com/"), "/", "+"), "repo")
	if !dirExists(dir) {
		return ""
	}
	return dir
}

// centralRegistryMirror opens the mirror of the Bazel Central Registry, or skips the test.
func centralRegistryMirror(t *testing.T) *gitRegistry {
	t.Helper()
	dir := mirrorGitDir(centralRegistry)
	if dir == "" {
		t.Skipf("no mirror of %s under BZLCHECK_MIRRORS", centralRegistry)
	}
	r, err := openGitRegistry(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// registryMetadata is a module's modules/NAME/metadata.json: the versions the registry publishes
// and the ones it has yanked, with the reason.
type registryMetadata struct {
	Versions       []string          `json:"versions"`
	YankedVersions map[string]string `json:"yanked_versions"`
}

// registryReader reads one resolution's registry files, remembering the sha256 of each.
type registryReader struct {
	registry registry
	sha256   map[string]string            // registry path -> hex sha256 of what was read
	metadata map[string]*registryMetadata // by module name; nil when the module has none
}

func newRegistryReader(r registry) *registryReader {
	return &registryReader{registry: r, sha256: map[string]string{}, metadata: map[string]*registryMetadata{}}
}

func (r *registryReader) read(path string) ([]byte, error) {
	data, err := r.registry.read(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	r.sha256[path] = hex.EncodeToString(sum[:])
	return data, nil
}

// moduleMetadata is modules/NAME/metadata.json, nil when the registry has no such module.
func (r *registryReader) moduleMetadata(name string) (*registryMetadata, error) {
	if m, ok := r.metadata[name]; ok {
		return m, nil
	}
	path := "modules/" + name + "/metadata.json"
	data, err := r.read(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.metadata[name] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m registryMetadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("registry %s: %w", path, err)
	}
	r.metadata[name] = &m
	return &m, nil
}

// moduleFilePath is where a registry keeps the MODULE.bazel of one version of a module.
func moduleFilePath(name, version string) string {
	return "modules/" + name + "/" + version + "/MODULE.bazel"
}
