package bazelcheck

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/require"
)

// rootModuleName is module(name = ...) in MODULE.bazel: what other modules call us.
const rootModuleName = "health_check_proxy"

// bazelModule is one Bazel module of this repository, read the way Bazel's loading phase would
// see it: its MODULE.bazel, its packages (folders with a BUILD file, minus .bazelignore'd and
// nested modules) and the .bzl files they load.
type bazelModule struct {
	name string
	dir  string // absolute
	file *build.File
	// repos maps an apparent repository name visible from this module to the module it names;
	// extension repositories (use_repo) map to "".
	repos map[string]string
	// devRepos are the use_repo names made through a dev_dependency extension proxy.
	devRepos map[string]bool
	// useRepos are the use_repo names of each extension proxy variable.
	useRepos map[string][]string
	// extensions maps each extension proxy variable to use_extension's file and name,
	// "@gazelle//:extensions.bzl%go_deps".
	extensions map[string]string
	// tags are the extension tags (`go_deps.module(...)`) in file order.
	tags     []extensionTag
	packages map[string]*bazelPackage // by package path ("" is the root package)
}

// extensionTag is one tag of a module extension usage: `proxy.class(attrs...)`.
type extensionTag struct {
	proxy string // the variable use_extension was assigned to
	// extension is use_extension's file and name, "@gazelle//:extensions.bzl%go_deps".
	extension string
	dev       bool // the usage is a dev_dependency
	class     string
	call      *build.CallExpr
}

type bazelPackage struct {
	path string // "images", "" for the root
	file *build.File
}

// repoRoot is the repository's root: the folder with go.mod and MODULE.bazel above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if fileExists(filepath.Join(dir, "MODULE.bazel")) && fileExists(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "no folder with MODULE.bazel and go.mod above the test")
		dir = parent
	}
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

func dirExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// buildFileIn returns the BUILD file of dir, or "" when dir is not a package.
func buildFileIn(dir string) string {
	for _, name := range []string{"BUILD.bazel", "BUILD"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	return ""
}

var (
	modulesOnce sync.Once
	modules     map[string]*bazelModule // by module name
	modulesErr  error
)

// loadModules reads the root module and every nested module (examples/downstream) once per run.
func loadModules(t *testing.T) map[string]*bazelModule {
	t.Helper()
	root := repoRoot(t)
	modulesOnce.Do(func() { modules, modulesErr = readModules(root) })
	require.NoError(t, modulesErr)
	return modules
}

func readModules(root string) (map[string]*bazelModule, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && skippedDir(d.Name()) {
			return filepath.SkipDir // not the root itself: a checkout may be called bazel-something
		}
		if !d.IsDir() && d.Name() == "MODULE.bazel" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	byName := map[string]*bazelModule{}
	for _, dir := range dirs {
		m, err := readModule(dir)
		if err != nil {
			return nil, err
		}
		byName[m.name] = m
	}
	return byName, nil
}

// skippedDir are folders no Bazel module here has packages in: VCS data, Bazel's output symlinks,
// and output folders.
func skippedDir(name string) bool {
	return name == ".git" || strings.HasPrefix(name, "bazel-") || name == "node_modules"
}

func readModule(dir string) (*bazelModule, error) {
	f, err := parseFile(filepath.Join(dir, "MODULE.bazel"))
	if err != nil {
		return nil, err
	}
	m := &bazelModule{
		dir:      dir,
		file:     f,
		repos:    map[string]string{"bazel_tools": "bazel_tools"},
		devRepos: map[string]bool{},
		useRepos: map[string][]string{},
		packages: map[string]*bazelPackage{},
	}
	devProxies := map[string]bool{}
	extensions := map[string]string{}
	m.extensions = extensions
	for _, stmt := range f.Stmt {
		call, assignedTo := callOf(stmt)
		if call == nil {
			continue
		}
		if dot, ok := call.X.(*build.DotExpr); ok {
			if proxy, ok := dot.X.(*build.Ident); ok && extensions[proxy.Name] != "" {
				m.tags = append(m.tags, extensionTag{
					proxy: proxy.Name, extension: extensions[proxy.Name], dev: devProxies[proxy.Name],
					class: dot.Name, call: call,
				})
				continue
			}
		}
		switch calleeName(call) {
		case "module":
			m.name = stringArg(call, "name")
		case "bazel_dep":
			name := stringArg(call, "name")
			repo := name
			if r := stringArg(call, "repo_name"); r != "" {
				repo = r
			}
			m.repos[repo] = name
		case "use_extension":
			if len(call.List) >= 2 {
				extensions[assignedTo] = literal(call.List[0]) + "%" + literal(call.List[1])
			}
			if literal(kwarg(call, "dev_dependency")) == "True" {
				devProxies[assignedTo] = true
			}
		case "use_repo":
			proxy := ""
			if len(call.List) > 0 {
				if id, ok := call.List[0].(*build.Ident); ok {
					proxy = id.Name
				}
			}
			for _, arg := range call.List[1:] {
				if s, ok := arg.(*build.StringExpr); ok {
					m.repos[s.Value] = ""
					m.useRepos[proxy] = append(m.useRepos[proxy], s.Value)
					if devProxies[proxy] {
						m.devRepos[s.Value] = true
					}
				}
			}
		}
	}
	if m.name == "" {
		m.name = "_" + filepath.Base(dir) // Bazel allows a nameless root module
	}
	m.repos[m.name] = m.name
	ignored := readBazelignore(dir)
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		if (rel != "" && skippedDir(d.Name())) || ignored[rel] {
			return filepath.SkipDir
		}
		if rel != "" && fileExists(filepath.Join(path, "MODULE.bazel")) {
			return filepath.SkipDir // another module
		}
		if bf := buildFileIn(path); bf != "" {
			pf, err := parseFile(bf)
			if err != nil {
				return err
			}
			m.packages[rel] = &bazelPackage{path: rel, file: pf}
		}
		return nil
	})
	return m, err
}

func readBazelignore(dir string) map[string]bool {
	ignored := map[string]bool{}
	f, err := os.Open(filepath.Join(dir, ".bazelignore"))
	if err != nil {
		return ignored
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			ignored[strings.TrimSuffix(line, "/")] = true
		}
	}
	return ignored
}

var (
	parsed       sync.Map // path -> *build.File
	goModuleDirs sync.Map // Go module path -> [dir, version]
)

// parseFile parses a Bazel file with the parser buildifier uses, picking the dialect by name.
func parseFile(path string) (*build.File, error) {
	if f, ok := parsed.Load(path); ok {
		return f.(*build.File), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f *build.File
	switch base := filepath.Base(path); {
	case base == "MODULE.bazel":
		f, err = build.ParseModule(path, data)
	case strings.HasSuffix(base, ".bzl"):
		f, err = build.ParseBzl(path, data)
	default:
		f, err = build.ParseBuild(path, data)
	}
	if err != nil {
		return nil, err
	}
	parsed.Store(path, f)
	return f, nil
}

// callOf returns the call of an expression statement `f(...)` or assignment `x = f(...)`.
func callOf(stmt build.Expr) (call *build.CallExpr, assignedTo string) {
	switch s := stmt.(type) {
	case *build.CallExpr:
		return s, ""
	case *build.AssignExpr:
		c, ok := s.RHS.(*build.CallExpr)
		if !ok {
			return nil, ""
		}
		if id, ok := s.LHS.(*build.Ident); ok {
			return c, id.Name
		}
		return c, ""
	}
	return nil, ""
}

func calleeName(call *build.CallExpr) string {
	switch x := call.X.(type) {
	case *build.Ident:
		return x.Name
	case *build.DotExpr:
		if id, ok := x.X.(*build.Ident); ok {
			return id.Name + "." + x.Name
		}
	}
	return ""
}

func kwarg(call *build.CallExpr, key string) build.Expr {
	for _, arg := range call.List {
		if a, ok := arg.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok && id.Name == key {
				return a.RHS
			}
		}
	}
	return nil
}

func kwargNames(call *build.CallExpr) []string {
	var names []string
	for _, arg := range call.List {
		if a, ok := arg.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok {
				names = append(names, id.Name)
			}
		}
	}
	return names
}

func stringArg(call *build.CallExpr, key string) string {
	if s, ok := kwarg(call, key).(*build.StringExpr); ok {
		return s.Value
	}
	return ""
}

// stringList is the value of a list of string literals, or nil when it is something else.
func stringList(x build.Expr) []string {
	l, ok := x.(*build.ListExpr)
	if !ok {
		return nil
	}
	out := []string{}
	for _, e := range l.List {
		s, ok := e.(*build.StringExpr)
		if !ok {
			return nil
		}
		out = append(out, s.Value)
	}
	return out
}

func literal(x build.Expr) string {
	switch v := x.(type) {
	case *build.Ident:
		return v.Name
	case *build.LiteralExpr:
		return v.Token
	case *build.StringExpr:
		return v.Value
	case *build.UnaryExpr:
		return v.Op + literal(v.X)
	}
	return ""
}

// ruleCalls are the top-level calls of a BUILD file that name a target.
func ruleCalls(f *build.File) []*build.CallExpr {
	var calls []*build.CallExpr
	for _, stmt := range f.Stmt {
		if call, _ := callOf(stmt); call != nil && stringArg(call, "name") != "" {
			calls = append(calls, call)
		}
	}
	return calls
}

// goModuleDir is the module cache folder of a Go module at the version go.mod requires,
// downloading it when a fresh machine does not have it yet.
func goModuleDir(t *testing.T, path string) (dir, version string) {
	t.Helper()
	if cached, ok := goModuleDirs.Load(path); ok {
		info := cached.([2]string)
		return info[0], info[1]
	}
	cmd := exec.Command("go", "mod", "download", "-json", path)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	require.NoError(t, err, "go mod download -json %s: %s", path, out)
	var info struct{ Dir, Version, Error string }
	require.NoError(t, json.Unmarshal(out, &info))
	require.Empty(t, info.Error, "go mod download %s", path)
	require.DirExists(t, info.Dir)
	goModuleDirs.Store(path, [2]string{info.Dir, info.Version})
	return info.Dir, info.Version
}

// bazelFiles are the Bazel files of the module: BUILD files, .bzl files, MODULE.bazel.
func (m *bazelModule) bzlFiles(t *testing.T) map[string]*build.File {
	t.Helper()
	files := map[string]*build.File{}
	for path, p := range m.packages {
		entries, err := os.ReadDir(filepath.Join(m.dir, path))
		require.NoError(t, err)
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".bzl") {
				f, err := parseFile(filepath.Join(m.dir, path, e.Name()))
				require.NoError(t, err)
				files[filepath.ToSlash(filepath.Join(path, e.Name()))] = f
			}
		}
		files[filepath.ToSlash(filepath.Join(path, filepath.Base(p.file.Path)))] = p.file
	}
	return files
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
