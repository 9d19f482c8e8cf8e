package bazelcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	gazellelabel "github.com/bazel-contrib/bazel-gazelle/v2/label"
	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

// goRuleModules are the Bazel modules that are also Go modules: go.mod requires them at the same
// version MODULE.bazel pins, and their .bzl files are read from the Go module cache.
var goRuleModules = map[string]string{
	"rules_go": "github.com/bazelbuild/rules_go",
	"gazelle":  "github.com/bazelbuild/bazel-gazelle",
}

// goRuleSources names the file that declares the attributes of each rules_go / gazelle symbol we
// call (the public .bzl re-exports it).
var goRuleSources = map[string]map[string][]string{
	"rules_go": {
		"go_binary":  {"go/private/rules/binary.bzl"},
		"go_library": {"go/private/rules/library.bzl"},
		"go_test":    {"go/private/rules/test.bzl"},
	},
	"gazelle": {
		"gazelle": {"def.bzl"},
	},
}

// commonAttrs are Bazel's attributes of every rule, executable rule and test rule
// (https://bazel.build/reference/be/common-definitions).
var commonAttrs = map[string]bool{
	"name": true, "visibility": true, "tags": true, "testonly": true, "deprecation": true,
	"features": true, "compatible_with": true, "target_compatible_with": true,
	"exec_compatible_with": true, "exec_properties": true, "restricted_to": true,
	"toolchains": true, "licenses": true, "package_metadata": true, "applicable_licenses": true,
	"aspect_hints": true, "exec_group_compatible_with": true,
	// executable and test rules
	"args": true, "env": true, "output_licenses": true,
	"size": true, "timeout": true, "flaky": true, "shard_count": true, "local": true, "env_inherit": true,
}

type ruleFacts struct {
	Modules map[string]struct {
		Version    string `json:"version"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		// Files: .bzl file in the module -> symbol -> facts.
		Files map[string]map[string]symbolFacts `json:"files"`
	} `json:"modules"`
}

type symbolFacts struct {
	Read       []string             `json:"read"`
	Executable bool                 `json:"executable"`
	Attrs      map[string]attrFacts `json:"attrs"`
}

type attrFacts struct {
	Mandatory bool     `json:"mandatory"`
	Values    []string `json:"values"`
}

func loadRuleFacts(t *testing.T) ruleFacts {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "bazelcheck", "testdata", "rule_facts.json"))
	require.NoError(t, err)
	var facts ruleFacts
	require.NoError(t, json.Unmarshal(data, &facts))
	require.NotEmpty(t, facts.Modules)
	return facts
}

// bazelDeps maps each bazel_dep of a MODULE.bazel to its version.
func bazelDeps(m *bazelModule) map[string]string {
	deps := map[string]string{}
	for _, stmt := range m.file.Stmt {
		if call, _ := callOf(stmt); call != nil && calleeName(call) == "bazel_dep" {
			deps[stringArg(call, "name")] = stringArg(call, "version")
		}
	}
	return deps
}

func goModFile(t *testing.T) *modfile.File {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	require.NoError(t, err)
	mf, err := modfile.Parse("go.mod", data, nil)
	require.NoError(t, err)
	return mf
}

func goModRequirements(t *testing.T) map[string]string {
	t.Helper()
	reqs := map[string]string{}
	for _, r := range goModFile(t).Require {
		reqs[r.Mod.Path] = r.Mod.Version
	}
	return reqs
}

// TestVersionsAgree: the rules_go and gazelle versions in MODULE.bazel are the ones go.mod
// requires (gazelle's go_deps also insists on it); the rule sources the other checks read (the Go
// module cache at go.mod's versions, the facts table) are at the versions module resolution
// selects for both root modules (testdata/registry_graph.json), which may be above the pinned
// ones; and the downstream example uses the same versions as we do.
func TestVersionsAgree(t *testing.T) {
	mods := loadModules(t)
	root := mods[rootModuleName]
	deps := bazelDeps(root)
	reqs := goModRequirements(t)
	for bazelName, goPath := range goRuleModules {
		require.Contains(t, deps, bazelName, "MODULE.bazel bazel_dep")
		require.Contains(t, reqs, goPath, "go.mod require")
		assert.Equal(t, "v"+deps[bazelName], reqs[goPath], "%s: MODULE.bazel and go.mod (%s) disagree", bazelName, goPath)
		selected := selectedVersions(t, bazelName)
		require.Contains(t, selected, rootModuleName, "%s: not in the resolved graph of %s", bazelName, rootModuleName)
		for _, v := range selected {
			assert.Equal(t, "v"+v, reqs[goPath], "%s: go.mod requires %s %s, but resolution selects %s (%s)", bazelName, goPath, reqs[goPath], v, describeRoots(selected))
		}
	}
	for name, m := range loadRuleFacts(t).Modules {
		selected := selectedVersions(t, name)
		require.Contains(t, selected, rootModuleName, "%s: not in the resolved graph of %s", name, rootModuleName)
		for _, v := range selected {
			assert.Equal(t, m.Version, v, "rule_facts.json was read at %s %s, but resolution selects %s (%s)", name, m.Tag, v, describeRoots(selected))
		}
	}
	for name, version := range bazelDeps(mods["downstream_example"]) {
		if v, ok := deps[name]; ok {
			assert.Equal(t, v, version, "examples/downstream/MODULE.bazel %s", name)
		}
	}
	assert.Contains(t, bazelDeps(mods["downstream_example"]), rootModuleName)

	ours, err := os.ReadFile(filepath.Join(root.dir, ".bazelversion"))
	require.NoError(t, err)
	theirs, err := os.ReadFile(filepath.Join(mods["downstream_example"].dir, ".bazelversion"))
	require.NoError(t, err)
	assert.Equal(t, string(ours), string(theirs), "examples/downstream/.bazelversion")
}

// TestWorkspaceOnlyMarksTheRoot: Bzlmod declares every dependency; WORKSPACE has comments only
// (Bazel 8 ignores it by default, Bazel 9 drops it).
func TestWorkspaceOnlyMarksTheRoot(t *testing.T) {
	path := filepath.Join(repoRoot(t), "WORKSPACE")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := build.ParseWorkspace(path, data)
	require.NoError(t, err)
	for _, stmt := range f.Stmt {
		_, comment := stmt.(*build.CommentBlock)
		assert.True(t, comment, "WORKSPACE declares nothing: %s", build.FormatString(stmt))
	}
	assert.Contains(t, string(data), "Bzlmod", "WORKSPACE says why it is empty")
}

// origin is where a loaded symbol comes from.
type origin struct {
	module string // Bazel module name
	file   string // path of the .bzl file in that module
	symbol string // name in that file
}

// loadsOf maps every name a file loads to its origin, checking each load on the way: the
// repository is visible from the module, the file exists, ends in .bzl, and defines the public
// symbol at the pinned version.
func loadsOf(t *testing.T, mods map[string]*bazelModule, m *bazelModule, rel string, f *build.File) map[string]origin {
	t.Helper()
	facts := loadRuleFacts(t)
	loaded := map[string]origin{}
	pkg := path.Dir(rel)
	if pkg == "." {
		pkg = ""
	}
	for _, stmt := range f.Stmt {
		load, ok := stmt.(*build.LoadStmt)
		if !ok {
			continue
		}
		where := fmt.Sprintf("%s:%d: load(%q)", f.Path, load.Load.Line, load.Module.Value)
		l, err := parseLabel(load.Module.Value, pkg)
		if !assert.NoError(t, err, where) {
			continue
		}
		if !assert.True(t, strings.HasSuffix(l.name, ".bzl"), "%s: not a .bzl file", where) {
			continue
		}
		moduleName := m.name
		if l.repo != "" {
			var visible bool
			moduleName, visible = m.repos[l.repo]
			if !assert.True(t, visible, "%s: @%s is not visible from module %s", where, l.repo, m.name) {
				continue
			}
		}
		file := path.Join(l.pkg, l.name)
		for i, from := range load.From {
			o := origin{module: moduleName, file: file, symbol: from.Name}
			loaded[load.To[i].Name] = o
			assert.False(t, strings.HasPrefix(from.Name, "_"), "%s: %s is private", where, from.Name)
			switch target, ours := mods[moduleName]; {
			case ours:
				p, ok := target.packages[l.pkg]
				if assert.True(t, ok, "%s: no package //%s", where, l.pkg) {
					_ = p
					assert.True(t, topLevelNames(t, filepath.Join(target.dir, file))[from.Name], "%s: %s is not defined there", where, from.Name)
				}
			case goRuleModules[moduleName] != "":
				dir, _ := goModuleDir(t, goRuleModules[moduleName])
				assert.True(t, topLevelNames(t, filepath.Join(dir, file))[from.Name],
					"%s: %s is not defined in %s at the version go.mod requires", where, from.Name, goRuleModules[moduleName])
			default:
				mf, ok := facts.Modules[moduleName]
				if !assert.True(t, ok, "%s: no source to check loads from module %s: add it to testdata/rule_facts.json", where, moduleName) {
					continue
				}
				assert.Contains(t, mf.Files[file], from.Name, "%s: %s is not in rule_facts.json for %s", where, from.Name, file)
			}
		}
	}
	return loaded
}

// topLevelNames are the names a .bzl file defines: functions and assignments (loaded names are not
// re-exported by Bazel).
func topLevelNames(t *testing.T, file string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	if !assert.FileExists(t, file) {
		return names
	}
	f, err := parseFile(file)
	require.NoError(t, err)
	for _, stmt := range f.Stmt {
		switch s := stmt.(type) {
		case *build.DefStmt:
			names[s.Name] = true
		case *build.AssignExpr:
			if id, ok := s.LHS.(*build.Ident); ok {
				names[id.Name] = true
			}
		}
	}
	return names
}

// TestLoadsNameExistingSymbols checks every load() of every Bazel file in both modules.
func TestLoadsNameExistingSymbols(t *testing.T) {
	mods := loadModules(t)
	n := 0
	for _, m := range mods {
		for rel, f := range m.bzlFiles(t) {
			n += len(loadsOf(t, mods, m, rel, f))
		}
	}
	assert.Greater(t, n, 10)
}

var attrDeclRE = regexp.MustCompile(`"([a-z_][a-z0-9_]*)"\s*:\s*attr\.`)

// allowedAttrs is what a call of the symbol may pass, with the facts of each.
func allowedAttrs(t *testing.T, mods map[string]*bazelModule, o origin) (map[string]attrFacts, bool) {
	t.Helper()
	if files, ok := goRuleSources[o.module]; ok {
		srcs, ok := files[o.symbol]
		if !ok {
			return nil, false
		}
		dir, _ := goModuleDir(t, goRuleModules[o.module])
		attrs := map[string]attrFacts{}
		for _, src := range srcs {
			data, err := os.ReadFile(filepath.Join(dir, src))
			require.NoError(t, err)
			for _, m := range attrDeclRE.FindAllStringSubmatch(string(data), -1) {
				if !strings.HasPrefix(m[1], "_") {
					attrs[m[1]] = attrFacts{}
				}
			}
		}
		return attrs, true
	}
	if m, ok := mods[o.module]; ok {
		return ourMacroAttrs(t, mods, m, o)
	}
	facts := loadRuleFacts(t).Modules[o.module]
	sf, ok := facts.Files[o.file][o.symbol]
	return sf.Attrs, ok
}

// ourMacroAttrs derives a macro's accepted arguments from its def: its parameters, and when it
// forwards **kwargs to a rule or macro, that callee's attributes minus the ones it sets itself.
func ourMacroAttrs(t *testing.T, mods map[string]*bazelModule, m *bazelModule, o origin) (map[string]attrFacts, bool) {
	t.Helper()
	file := filepath.Join(m.dir, o.file)
	f, err := parseFile(file)
	require.NoError(t, err)
	loads := loadsOf(t, mods, m, o.file, f)
	for _, stmt := range f.Stmt {
		def, ok := stmt.(*build.DefStmt)
		if !ok || def.Name != o.symbol {
			continue
		}
		attrs := map[string]attrFacts{}
		kwargsName := ""
		for _, p := range def.Params {
			switch x := p.(type) {
			case *build.Ident:
				attrs[x.Name] = attrFacts{Mandatory: x.Name != "name"}
			case *build.AssignExpr:
				attrs[x.LHS.(*build.Ident).Name] = attrFacts{}
			case *build.UnaryExpr:
				if x.Op == "**" {
					kwargsName = x.X.(*build.Ident).Name
				}
			}
		}
		if kwargsName == "" {
			return attrs, true
		}
		build.Walk(def, func(x build.Expr, _ []build.Expr) {
			call, ok := x.(*build.CallExpr)
			if !ok {
				return
			}
			forwards := false
			for _, arg := range call.List {
				if u, ok := arg.(*build.UnaryExpr); ok && u.Op == "**" && literal(u.X) == kwargsName {
					forwards = true
				}
			}
			callee, known := loads[calleeName(call)]
			if !forwards || !known {
				return
			}
			inner, ok := allowedAttrs(t, mods, callee)
			require.True(t, ok, "%s: %s forwards to %s, which has no facts", file, o.symbol, calleeName(call))
			set := map[string]bool{}
			for _, k := range kwargNames(call) {
				set[k] = true
			}
			for k, v := range inner {
				if _, own := attrs[k]; !set[k] && !own {
					attrs[k] = v
				}
			}
		})
		return attrs, true
	}
	return nil, false
}

// TestRuleCallsUseKnownAttributes holds every call of a loaded rule or macro, in BUILD and .bzl
// files, to the attributes the pinned source declares: no unknown or private attribute, every
// mandatory one given, and literal values among the accepted ones.
func TestRuleCallsUseKnownAttributes(t *testing.T) {
	mods := loadModules(t)
	calls := 0
	for _, m := range mods {
		for rel, f := range m.bzlFiles(t) {
			loads := loadsOf(t, mods, m, rel, f)
			build.Walk(f, func(x build.Expr, _ []build.Expr) {
				call, ok := x.(*build.CallExpr)
				if !ok {
					return
				}
				o, ok := loads[calleeName(call)]
				if !ok {
					return
				}
				attrs, ok := allowedAttrs(t, mods, o)
				if !ok {
					return // a function, not a rule (e.g. mutate, select helpers)
				}
				calls++
				where := fmt.Sprintf("%s:%d: %s(name = %q)", f.Path, call.Pos.Line, calleeName(call), stringArg(call, "name"))
				given := map[string]bool{}
				for _, key := range kwargNames(call) {
					given[key] = true
					af, known := attrs[key]
					if !assert.True(t, known || commonAttrs[key], "%s: %s is not an attribute of %s (%s)", where, key, o.symbol, o.file) {
						continue
					}
					if len(af.Values) > 0 {
						if v := kwarg(call, key); isLiteral(v) {
							assert.Contains(t, af.Values, literal(v), "%s: %s", where, key)
						}
					}
				}
				hasKwargs := false
				for _, arg := range call.List {
					if u, ok := arg.(*build.UnaryExpr); ok && u.Op == "**" {
						hasKwargs = true
					}
				}
				for _, key := range sortedKeys(attrs) {
					if attrs[key].Mandatory && !hasKwargs {
						assert.True(t, given[key], "%s: mandatory attribute %s missing", where, key)
					}
				}
			})
		}
	}
	assert.Greater(t, calls, 10)
}

func isLiteral(x build.Expr) bool {
	switch x.(type) {
	case *build.StringExpr, *build.LiteralExpr, *build.UnaryExpr:
		return true
	}
	return false
}

// goDepsExtension is gazelle's go_deps module extension, as use_extension names it.
const goDepsExtension = "@gazelle//:extensions.bzl%go_deps"

// TestGoDepsRepositories: MODULE.bazel's go_deps usages are what `bazel mod tidy` leaves as they
// are, and other modules get from us exactly the Go modules the probe needs.
//
// What tidy writes follows from gazelle's go_deps (internal/bzlmod/go_deps.bzl at the pinned
// version), which reports the root module's direct dependencies: the repository of every
// go_deps.module tag and of every go.mod requirement that is direct (no `// indirect`) or
// provides a `tool`, as a dev dependency when its tag (from_file's included) sits on a
// dev_dependency usage and no regular tag names it too; never the Go modules that Bazel modules
// in the graph provide themselves (rules_go and gazelle declare their own go.mod). tidy puts
// exactly those names into the use_repo of the usage of each kind.
//
// The layout: the Go modules the probe needs (everything reachable from //images:layer) are
// go_deps.module tags on the regular usage, at go.mod's version and go.sum's hash; from_file
// sits on the dev usage, so that downstream modules never see our test and tool requirements.
func TestGoDepsRepositories(t *testing.T) {
	m := loadModules(t)[rootModuleName]
	mf := goModFile(t)
	requires := goModRequirements(t)
	sums := goSumHashes(t)

	var fromFile []extensionTag
	regularModules := map[string]bool{} // repository names of the regular go_deps.module tags
	for _, tag := range m.tags {
		if tag.extension != goDepsExtension {
			continue
		}
		switch tag.class {
		case "from_file":
			fromFile = append(fromFile, tag)
		case "module":
			path, version := stringArg(tag.call, "path"), stringArg(tag.call, "version")
			assert.False(t, tag.dev, "go_deps.module(path = %q) on a dev usage: the probe's modules belong on the regular one", path)
			assert.Equal(t, requires[path], version, "go_deps.module(path = %q): the version go.mod requires", path)
			assert.Equal(t, sums[path+"@"+version], stringArg(tag.call, "sum"), "go_deps.module(path = %q): the hash go.sum holds", path)
			regularModules[goRepoName(path)] = true
		default:
			t.Errorf("go_deps.%s in MODULE.bazel: only from_file and module are expected", tag.class)
		}
	}
	require.Len(t, fromFile, 1, "one go_deps.from_file")
	assert.True(t, fromFile[0].dev, "go_deps.from_file sits on the dev_dependency usage")
	assert.Equal(t, "//:go.mod", stringArg(fromFile[0].call, "go_mod"))

	needed := reposReachableFrom(t, m, label{pkg: "images", name: "layer"})
	assert.Equal(t, sortedKeys(needed), sortedKeys(regularModules),
		"go_deps.module tags on the regular usage: the Go modules the probe needs, no more")

	provided := map[string]bool{}
	for _, goPaths := range goModulesProvidedByBazelModules(t) {
		for _, goPath := range goPaths {
			provided[goRepoName(goPath)] = true
		}
	}
	var tools []string
	for _, tool := range mf.Tool {
		tools = append(tools, tool.Path)
	}
	wantRegular, wantDev := map[string]bool{}, map[string]bool{}
	for repo := range regularModules {
		wantRegular[repo] = true
	}
	for _, r := range mf.Require {
		repo := goRepoName(r.Mod.Path)
		if (!r.Indirect || providesTool(r.Mod.Path, tools)) && !provided[repo] && !wantRegular[repo] {
			wantDev[repo] = true
		}
	}
	gotRegular, gotDev := map[string]bool{}, map[string]bool{}
	for proxy, repos := range m.useRepos {
		if m.extensions[proxy] != goDepsExtension {
			continue
		}
		for _, repo := range repos {
			if m.devRepos[repo] {
				gotDev[repo] = true
			} else {
				gotRegular[repo] = true
			}
		}
	}
	assert.Equal(t, sortedKeys(wantRegular), sortedKeys(gotRegular), "use_repo(go_deps, ...): what `bazel mod tidy` writes")
	assert.Equal(t, sortedKeys(wantDev), sortedKeys(gotDev), "use_repo(go_deps_dev, ...): what `bazel mod tidy` writes")

	// Every repository a BUILD file names must be visible, that is, in one of the lists.
	for _, p := range m.packages {
		build.Walk(p.file, func(x build.Expr, _ []build.Expr) {
			if s, ok := x.(*build.StringExpr); ok && strings.HasPrefix(s.Value, "@") {
				if l, err := parseLabel(s.Value, p.path); err == nil && l.repo != "" && m.repos[l.repo] == "" {
					assert.True(t, gotRegular[l.repo] || gotDev[l.repo], "%s names @%s, which no use_repo lists", p.path, l.repo)
				}
			}
		})
	}
}

// goModulesProvidedBy names, for each Bazel module in our graph that declares Go modules of its
// own through go_deps.from_file, the Go modules it declares: go_deps resolves those to the Bazel
// module and makes no repository for them, so they are never the root's direct dependencies.
// gazelle's go.work also uses ./v2, a Go module of its own that the Go module zip leaves out, so
// its path is written here; the test checks that the source still says what this table says.
var goModulesProvidedBy = map[string]struct {
	fromFile string   // the from_file attribute MODULE.bazel uses: go_mod or go_work
	uses     []string // go.work's use directories
	paths    []string
}{
	"rules_go": {fromFile: "go_mod", paths: []string{"github.com/bazelbuild/rules_go"}},
	"gazelle": {fromFile: "go_work", uses: []string{".", "./v2"},
		paths: []string{"github.com/bazelbuild/bazel-gazelle", "github.com/bazel-contrib/bazel-gazelle/v2"}},
}

// goModulesProvidedByBazelModules returns goModulesProvidedBy's paths after checking it against
// each Bazel module's MODULE.bazel (and go.work) in the Go module cache at the version go.mod
// requires.
func goModulesProvidedByBazelModules(t *testing.T) map[string][]string {
	t.Helper()
	provided := map[string][]string{}
	for bazelName, want := range goModulesProvidedBy {
		dir, _ := goModuleDir(t, goRuleModules[bazelName])
		f, err := parseFile(filepath.Join(dir, "MODULE.bazel"))
		require.NoError(t, err)
		// go_deps tags of regular usages only: Bazel drops a dependency's dev_dependency usages.
		goDeps := map[string]bool{}
		var attrs []string
		for _, stmt := range f.Stmt {
			call, assignedTo := callOf(stmt)
			switch {
			case call == nil:
			case calleeName(call) == "use_extension":
				goDeps[assignedTo] = len(call.List) >= 2 && literal(call.List[1]) == "go_deps" &&
					literal(kwarg(call, "dev_dependency")) != "True"
			case strings.HasSuffix(calleeName(call), ".from_file") && goDeps[strings.TrimSuffix(calleeName(call), ".from_file")]:
				attrs = append(attrs, kwargNames(call)...)
			}
		}
		require.Equal(t, []string{want.fromFile}, attrs, "%s's MODULE.bazel: go_deps.from_file", bazelName)
		if want.uses != nil {
			data, err := os.ReadFile(filepath.Join(dir, "go.work"))
			require.NoError(t, err)
			work, err := modfile.ParseWork("go.work", data, nil)
			require.NoError(t, err)
			var uses []string
			for _, u := range work.Use {
				uses = append(uses, u.Path)
			}
			require.Equal(t, want.uses, uses, "%s's go.work: use", bazelName)
		}
		provided[bazelName] = want.paths
	}
	return provided
}

// goRepoName is the repository go_deps makes for a Go module (get_repo_name in go_deps.bzl, with
// no module_override).
func goRepoName(modulePath string) string {
	return gazellelabel.ImportPathToBazelRepoName(modulePath)
}

// providesTool: go_deps treats a requirement as direct, `// indirect` or not, when a tool
// package of go.mod lies in it (the module path is the tool's path or a prefix of it).
func providesTool(modulePath string, tools []string) bool {
	for _, tool := range tools {
		if tool == modulePath || strings.HasPrefix(tool, modulePath+"/") {
			return true
		}
	}
	return false
}

// goSumHashes maps "path@version" to go.sum's h1 hash of the module's content.
func goSumHashes(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "go.sum"))
	require.NoError(t, err)
	hashes := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && !strings.HasSuffix(f[1], "/go.mod") {
			hashes[f[0]+"@"+f[1]] = f[2]
		}
	}
	return hashes
}

// reposReachableFrom follows the label attributes from start through the packages of m and
// returns the external repositories it reaches.
func reposReachableFrom(t *testing.T, m *bazelModule, start label) map[string]bool {
	t.Helper()
	repos := map[string]bool{}
	seen := map[label]bool{}
	queue := []label{start}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		if seen[l] {
			continue
		}
		seen[l] = true
		if l.repo != "" {
			if m.repos[l.repo] == "" {
				repos[l.repo] = true
			}
			continue
		}
		p, ok := m.packages[l.pkg]
		if !ok {
			continue
		}
		for _, call := range ruleCalls(p.file) {
			if stringArg(call, "name") != l.name {
				continue
			}
			for _, key := range kwargNames(call) {
				if !labelAttrs[key] {
					continue
				}
				build.Walk(kwarg(call, key), func(x build.Expr, _ []build.Expr) {
					if s, ok := x.(*build.StringExpr); ok {
						if next, err := parseLabel(s.Value, l.pkg); err == nil {
							queue = append(queue, next)
						}
					}
				})
			}
		}
	}
	require.True(t, seen[label{pkg: "cmd/health-check", name: "health-check"}], "the walk from %s reaches the probe", start)
	return repos
}

// TestRuleFactsMatchMirrors re-reads rule_facts.json's claims from the rules' own repositories
// where bare git mirrors of them exist (BZLCHECK_MIRRORS, as the search tool's fetch leaves
// them); without mirrors it skips: CI holds the BUILD files to the table, and this test holds the
// table to the source when someone updates it.
func TestRuleFactsMatchMirrors(t *testing.T) {
	mirrors := os.Getenv("BZLCHECK_MIRRORS")
	if mirrors == "" {
		t.Skip("BZLCHECK_MIRRORS is not set: no rule sources to re-read the facts from")
	}
	for name, mf := range loadRuleFacts(t).Modules {
		gitDir := mirrorGitDir(mf.Repository)
		if gitDir == "" {
			t.Logf("%s: no mirror of %s in %s", name, mf.Repository, mirrors)
			continue
		}
		show := func(file string) string {
			out, err := exec.Command("git", "--git-dir", gitDir, "show", mf.Tag+":"+file).Output()
			require.NoError(t, err, "git show %s:%s in %s", mf.Tag, file, gitDir)
			return string(out)
		}
		for file, symbols := range mf.Files {
			public := show(file)
			for symbol, sf := range symbols {
				assert.Regexp(t, `(?m)^(def `+regexp.QuoteMeta(symbol)+`\(|`+regexp.QuoteMeta(symbol)+` = )`, public, "%s %s: %s", name, file, symbol)
				var sources strings.Builder
				for _, r := range sf.Read {
					sources.WriteString(show(r))
				}
				for attr, af := range sf.Attrs {
					re := `("` + attr + `"\s*:\s*attr\.|\b` + attr + `\s*=)`
					assert.Regexp(t, re, sources.String(), "%s@%s %s: attribute %s not declared in %v", name, mf.Tag, symbol, attr, sf.Read)
					for _, v := range af.Values {
						if _, err := strconv.Atoi(v); err == nil {
							v = `[\[ ,]` + regexp.QuoteMeta(v) + `[\],]` // an attr.int's values are bare, in a list
						} else {
							v = regexp.QuoteMeta(strconv.Quote(v))
						}
						assert.Regexp(t, v, sources.String(), "%s %s.%s: value %s", name, symbol, attr, v)
					}
				}
			}
		}
	}
}
