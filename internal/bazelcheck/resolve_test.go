package bazelcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/bazelbuild/buildtools/build"
)

// This file resolves a Bazel module graph the way Bzlmod does (https://bazel.build/external/module,
// and Bazel's bzlmod Discovery, Selection and BazelModuleResolutionFunction): discovery reads the
// MODULE.bazel of every requested version from the registry, selection keeps the highest version
// of each module per compatibility level (Minimal Version Selection), and the graph the root then
// reaches must hold one compatibility level per module, no yanked version, only modules whose
// bazel_compatibility admits the Bazel in .bazelversion, and a root whose own bazel_compatibility
// promises no Bazel below what a selected module requires (the graph's floor). Bazel's built-in
// bazel_tools module is part of every graph: the root depends on it, and its bazel_deps (Bazel's
// src/MODULE.tools, recorded in testdata/bazel_tools.json) take part in selection like any other.

// moduleVersionRE is Bazel's version syntax: RELEASE[-PRERELEASE][+BUILD], dot-separated
// alphanumeric identifiers; the build part is ignored.
var moduleVersionRE = regexp.MustCompile(`^([a-zA-Z0-9.]+)(?:-([a-zA-Z0-9.-]+))?(?:\+[a-zA-Z0-9.-]+)?$`)

// moduleVersion is a parsed module version; the zero value is Bazel's empty version, which a
// non-registry override gives a module and which sorts above every other.
type moduleVersion struct {
	release, prerelease []versionIdentifier
	normalized          string // without the build part: what the registry's folders are named
}

type versionIdentifier struct {
	digits bool
	number uint64
	text   string
}

func parseModuleVersion(s string) (moduleVersion, error) {
	if s == "" {
		return moduleVersion{}, nil
	}
	m := moduleVersionRE.FindStringSubmatch(s)
	if m == nil {
		return moduleVersion{}, fmt.Errorf("bad module version %q", s)
	}
	v := moduleVersion{normalized: m[1]}
	var err error
	if v.release, err = versionIdentifiers(m[1]); err != nil {
		return moduleVersion{}, fmt.Errorf("bad module version %q: %w", s, err)
	}
	if m[2] != "" {
		v.normalized += "-" + m[2]
		if v.prerelease, err = versionIdentifiers(m[2]); err != nil {
			return moduleVersion{}, fmt.Errorf("bad module version %q: %w", s, err)
		}
	}
	return v, nil
}

func versionIdentifiers(s string) ([]versionIdentifier, error) {
	var ids []versionIdentifier
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return nil, errors.New("empty identifier")
		}
		id := versionIdentifier{text: part, digits: strings.Trim(part, "0123456789") == ""}
		if id.digits {
			n, err := strconv.ParseUint(part, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("numeric identifier %s: %w", part, err)
			}
			id.number = n
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// compareIdentifiers orders identifiers as SemVer does: numeric ones numerically and below
// alphanumeric ones, which compare as text.
func compareIdentifiers(a, b versionIdentifier) int {
	switch {
	case a.digits != b.digits:
		if a.digits {
			return -1
		}
		return 1
	case a.number != b.number:
		if a.number < b.number {
			return -1
		}
		return 1
	}
	return strings.Compare(a.text, b.text)
}

// compareIdentifierLists orders lexicographically: the first differing identifier decides, and
// a list that is a prefix of the other is lower (1.2.3 < 1.2.3.bcr.1).
func compareIdentifierLists(a, b []versionIdentifier) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareIdentifiers(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func (v moduleVersion) empty() bool { return v.normalized == "" }

// compare is Bazel's Version order: the empty version highest, then the release part, then a
// prerelease below its release (1.0-rc1 < 1.0), then the prerelease part.
func (v moduleVersion) compare(o moduleVersion) int {
	switch {
	case v.empty() || o.empty():
		return boolOrder(v.empty()) - boolOrder(o.empty())
	}
	if c := compareIdentifierLists(v.release, o.release); c != 0 {
		return c
	}
	vPre, oPre := len(v.prerelease) > 0, len(o.prerelease) > 0
	if vPre != oPre {
		return boolOrder(oPre) - boolOrder(vPre)
	}
	return compareIdentifierLists(v.prerelease, o.prerelease)
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compareVersions orders two version strings that parseModuleFile has already validated.
func compareVersions(a, b string) int {
	va, errA := parseModuleVersion(a)
	vb, errB := parseModuleVersion(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return va.compare(vb)
}

// bazelCompatibilityRE is the syntax of a module(bazel_compatibility = [...]) entry: an operator
// and a full X.Y.Z Bazel version; "-X.Y.Z" excludes that one version.
var bazelCompatibilityRE = regexp.MustCompile(`^(>=|<=|>|<|-)(\d+\.\d+\.\d+)$`)

// bazelAdmits reports whether the Bazel release bazel (X.Y.Z) satisfies one bazel_compatibility
// entry.
func bazelAdmits(bazel, constraint string) (bool, error) {
	m := bazelCompatibilityRE.FindStringSubmatch(constraint)
	if m == nil {
		return false, fmt.Errorf("bazel_compatibility entry %q: want an operator (>=, <=, >, <, -) and X.Y.Z", constraint)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(bazel) {
		return false, fmt.Errorf("bazel version %q: want X.Y.Z", bazel)
	}
	c := compareVersions(bazel, m[2])
	switch m[1] {
	case ">=":
		return c >= 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case "<":
		return c < 0, nil
	}
	return c != 0, nil // "-"
}

// moduleFile is what resolution reads from a MODULE.bazel: the module() call, the bazel_deps
// (a non-root module's dev dependencies do not exist for its dependents, so they are dropped),
// and the overrides, which only the root's count.
type moduleFile struct {
	path               string // for messages
	name, version      string
	compatibilityLevel int
	bazelCompatibility []string
	deps               []depSpec
	overrides          map[string]moduleOverride
}

// depSpec is one bazel_dep.
type depSpec struct {
	name, version         string // version "" asks for whatever an override supplies
	maxCompatibilityLevel int    // -1 when not given
	dev                   bool
	// nodep is Bazel 8's bazel_dep(..., repo_name = None): it raises the version of a module that
	// the graph holds anyway, and never brings the module in by itself.
	nodep bool
}

// moduleOverride is one *_override call of the root module.
type moduleOverride struct {
	kind     string   // single_version_override, multiple_version_override, local_path_override, archive_override, git_override
	version  string   // single_version_override: the version every request is rewritten to ("" keeps it)
	versions []string // multiple_version_override: the versions allowed to coexist
	path     string   // local_path_override, relative to the root module's folder
}

// nonRegistry reports whether the module comes from outside the registry, with Bazel's empty
// version.
func (o moduleOverride) nonRegistry() bool {
	switch o.kind {
	case "local_path_override", "archive_override", "git_override":
		return true
	}
	return false
}

// parseModuleFile reads f with the MODULE.bazel functions resolution needs; use_extension,
// use_repo, register_toolchains and the like do not take part in it. String and integer
// arguments may be literals or top-level constants.
func parseModuleFile(f *build.File, root bool) (*moduleFile, error) {
	m := &moduleFile{path: f.Path, overrides: map[string]moduleOverride{}}
	consts := map[string]build.Expr{}
	str := func(call *build.CallExpr, key string) (string, error) {
		x := kwarg(call, key)
		if id, ok := x.(*build.Ident); ok && consts[id.Name] != nil {
			x = consts[id.Name]
		}
		switch v := x.(type) {
		case nil:
			return "", nil
		case *build.StringExpr:
			return v.Value, nil
		}
		return "", fmt.Errorf("%s:%d: %s(%s = %s): not a string this check can read", f.Path, call.Pos.Line, calleeName(call), key, build.FormatString(x))
	}
	integer := func(call *build.CallExpr, key string, unset int) (int, error) {
		x := kwarg(call, key)
		if id, ok := x.(*build.Ident); ok && consts[id.Name] != nil {
			x = consts[id.Name]
		}
		if x == nil {
			return unset, nil
		}
		n, err := strconv.Atoi(literal(x))
		if err != nil {
			return 0, fmt.Errorf("%s:%d: %s(%s = %s): not an integer this check can read", f.Path, call.Pos.Line, calleeName(call), key, build.FormatString(x))
		}
		return n, nil
	}
	seen := map[string]bool{}
	for _, stmt := range f.Stmt {
		if a, ok := stmt.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok {
				consts[id.Name] = a.RHS
			}
		}
		call, _ := callOf(stmt)
		if call == nil {
			continue
		}
		var err error
		switch kind := calleeName(call); kind {
		case "module":
			if m.name, err = str(call, "name"); err != nil {
				return nil, err
			}
			if m.version, err = str(call, "version"); err != nil {
				return nil, err
			}
			if m.compatibilityLevel, err = integer(call, "compatibility_level", 0); err != nil {
				return nil, err
			}
			if x := kwarg(call, "bazel_compatibility"); x != nil {
				if m.bazelCompatibility = stringList(x); m.bazelCompatibility == nil {
					return nil, fmt.Errorf("%s:%d: module(bazel_compatibility = %s): not a list of strings", f.Path, call.Pos.Line, build.FormatString(x))
				}
			}
		case "bazel_dep":
			d := depSpec{}
			if d.name, err = str(call, "name"); err != nil {
				return nil, err
			}
			if d.version, err = str(call, "version"); err != nil {
				return nil, err
			}
			if d.maxCompatibilityLevel, err = integer(call, "max_compatibility_level", -1); err != nil {
				return nil, err
			}
			if _, err := parseModuleVersion(d.version); err != nil {
				return nil, fmt.Errorf("%s:%d: bazel_dep(name = %q): %w", f.Path, call.Pos.Line, d.name, err)
			}
			d.nodep = literal(kwarg(call, "repo_name")) == "None"
			if seen[d.name] {
				return nil, fmt.Errorf("%s:%d: a bazel_dep on module %s has already been declared", f.Path, call.Pos.Line, d.name)
			}
			seen[d.name] = true
			d.dev = literal(kwarg(call, "dev_dependency")) == "True"
			if d.dev && !root {
				continue
			}
			m.deps = append(m.deps, d)
		case "single_version_override", "multiple_version_override", "local_path_override", "archive_override", "git_override":
			o := moduleOverride{kind: kind}
			name, err := str(call, "module_name")
			if err != nil {
				return nil, err
			}
			if o.version, err = str(call, "version"); err != nil && kind == "single_version_override" {
				return nil, err
			}
			if _, err := parseModuleVersion(o.version); err != nil && kind == "single_version_override" {
				return nil, fmt.Errorf("%s:%d: single_version_override(%q): %w", f.Path, call.Pos.Line, name, err)
			}
			if o.path, err = str(call, "path"); err != nil && kind == "local_path_override" {
				return nil, err
			}
			if x := kwarg(call, "versions"); kind == "multiple_version_override" {
				if o.versions = stringList(x); len(o.versions) < 2 {
					return nil, fmt.Errorf("%s:%d: multiple_version_override(%q): versions must list at least two versions", f.Path, call.Pos.Line, name)
				}
			}
			if _, dup := m.overrides[name]; dup {
				return nil, fmt.Errorf("%s:%d: multiple overrides for module %s", f.Path, call.Pos.Line, name)
			}
			m.overrides[name] = o
		}
	}
	return m, nil
}

// moduleKey is one version of a module in the graph; rootKey is the root module.
type moduleKey struct{ name, version string }

var rootKey = moduleKey{}

func (k moduleKey) String() string {
	if k.version == "" {
		return k.name + "@_" // Bazel's spelling of the empty version
	}
	return k.name + "@" + k.version
}

// graphNode is one module version discovery found.
type graphNode struct {
	key         moduleKey
	file        *moduleFile // only the name when the MODULE.bazel cannot be read here (archive_override, git_override)
	deps        []depSpec   // the file's deps with the root's overrides applied
	fromOutside string      // the non-registry override it comes from, "" for a registry module
}

// resolution is the outcome of resolving one root module.
type resolution struct {
	root     *moduleFile
	selected map[string][]string // module name -> selected version(s), the root excluded
	// files are the registry files read, with the sha256 of each.
	files map[string]string
	// problems are the reasons Bazel would refuse this graph, one line each.
	problems []string
	// notes say what the check could not read (modules from archive_override or git_override).
	notes []string
	// floor is the lowest Bazel the selected modules' bazel_compatibility admits; nil when none
	// of them states a lower bound.
	floor *bazelFloor
}

// bazelFloor is the graph's lowest admissible Bazel and the modules that set it.
type bazelFloor struct {
	bound bazelBound
	setBy []string // the chain from the root to each module that states the floor
}

// resolver resolves one root module against a registry.
type resolver struct {
	registry *registryReader
	builtin  *moduleFile // bazel_tools: Bazel's src/MODULE.tools at .bazelversion; nil leaves it out
	rootDir  string      // the root module's folder, for local_path_override
	bazel    string      // .bazelversion
	root     *moduleFile
	graph    map[moduleKey]*graphNode
	// order is the discovery order (breadth-first), for deterministic messages and choices.
	order []moduleKey
	// firstAskedBy remembers a module version's first dependent, to print dependency chains.
	firstAskedBy map[moduleKey]moduleKey
	// unavailable are the module versions whose MODULE.bazel does not exist (a problem each).
	unavailable map[moduleKey]bool
	// selectedFrom is, in the selected graph, the module through which the walk first reached
	// each module: the chains that messages print.
	selectedFrom map[moduleKey]moduleKey
	res          *resolution
}

// resolveModuleGraph resolves the module graph of root (its MODULE.bazel parsed with
// parseModuleFile(..., true), its folder rootDir) against reg for the Bazel release bazel, whose
// built-in bazel_tools module is builtin (nil: a graph without it, as in the planted cases).
func resolveModuleGraph(reg registry, root *moduleFile, rootDir, bazel string, builtin *moduleFile) (*resolution, error) {
	r := &resolver{
		registry:     newRegistryReader(reg),
		builtin:      builtin,
		rootDir:      rootDir,
		bazel:        bazel,
		root:         root,
		graph:        map[moduleKey]*graphNode{},
		firstAskedBy: map[moduleKey]moduleKey{},
		unavailable:  map[moduleKey]bool{},
		res:          &resolution{root: root, selected: map[string][]string{}},
	}
	if err := r.discover(); err != nil {
		return nil, err
	}
	pruned := r.selectVersions()
	if pruned != nil {
		if err := r.checkSelected(pruned); err != nil {
			return nil, err
		}
		r.checkFloor(pruned)
		for _, k := range pruned {
			if k != rootKey {
				r.res.selected[k.name] = append(r.res.selected[k.name], k.version)
			}
		}
		for _, versions := range r.res.selected {
			sort.Slice(versions, func(i, j int) bool { return compareVersions(versions[i], versions[j]) < 0 })
		}
	}
	r.res.files = r.registry.sha256
	return r.res, nil
}

func (r *resolver) problemf(format string, args ...any) {
	r.res.problems = append(r.res.problems, fmt.Sprintf(format, args...))
}

// applyOverrides rewrites a dependency the way the root's overrides do: a dependency on the root
// is the root, a non-registry override gives the empty version, a single_version_override with a
// version pins it.
func (r *resolver) applyOverrides(d depSpec) moduleKey {
	if d.name == r.root.name {
		return rootKey
	}
	if r.builtin != nil && d.name == r.builtin.name {
		return moduleKey{d.name, ""} // a built-in module: Bazel gives it the empty version
	}
	o, ok := r.root.overrides[d.name]
	version := d.version
	switch {
	case ok && o.nonRegistry():
		return moduleKey{d.name, ""}
	case ok && o.kind == "single_version_override" && o.version != "":
		version = o.version
	}
	v, _ := parseModuleVersion(version) // parseModuleFile validated both
	return moduleKey{d.name, v.normalized}
}

// chain is the dependency chain from the root to k, as Bazel prints it.
func (r *resolver) chain(k moduleKey) string {
	var keys []string
	for ; k != rootKey; k = r.firstAskedBy[k] {
		keys = append([]string{k.String()}, keys...)
	}
	return strings.Join(append([]string{r.root.name}, keys...), " -> ")
}

func (r *resolver) label(k moduleKey) string {
	if k == rootKey {
		return r.root.name
	}
	return k.String()
}

// discover reads the MODULE.bazel of every module version the root reaches through bazel_deps,
// breadth-first, as Bazel's Discovery does. A nodep dependency is followed only once its module
// is in the graph through other dependencies, and then may raise its version; that can bring in
// further modules, so discovery repeats until nothing changes.
func (r *resolver) discover() error {
	r.graph[rootKey] = &graphNode{key: rootKey, file: r.root}
	r.order = append(r.order, rootKey)
	done := 0
	for {
		for ; done < len(r.order); done++ {
			if err := r.discoverDeps(r.graph[r.order[done]]); err != nil {
				return err
			}
		}
		added, err := r.followNodeps()
		if err != nil || !added {
			return err
		}
	}
}

// fileDeps are the bazel_deps of a node's MODULE.bazel; the root also depends on the built-in
// bazel_tools, as every Bazel module does.
func (r *resolver) fileDeps(node *graphNode) []depSpec {
	deps := node.file.deps
	if node.key == rootKey && r.builtin != nil {
		deps = append(append([]depSpec(nil), deps...), depSpec{name: r.builtin.name, maxCompatibilityLevel: -1})
	}
	return deps
}

// discoverDeps records a node's dependencies with the root's overrides applied, and reads the
// module versions they ask for that are new (nodep ones excepted).
func (r *resolver) discoverDeps(node *graphNode) error {
	for _, d := range r.fileDeps(node) {
		k := r.applyOverrides(d)
		node.deps = append(node.deps, depSpec{name: k.name, version: k.version, maxCompatibilityLevel: d.maxCompatibilityLevel, dev: d.dev, nodep: d.nodep})
		if d.nodep {
			continue
		}
		if err := r.visit(k, d, node.key); err != nil {
			return err
		}
	}
	return nil
}

// visit reads the MODULE.bazel of module version k, asked for by d of from, unless already known.
func (r *resolver) visit(k moduleKey, d depSpec, from moduleKey) error {
	if _, known := r.graph[k]; known || r.unavailable[k] {
		return nil
	}
	r.firstAskedBy[k] = from
	next, err := r.load(k, d)
	if err != nil {
		return err
	}
	if next == nil {
		r.unavailable[k] = true
		return nil
	}
	r.graph[k] = next
	r.order = append(r.order, k)
	return nil
}

// followNodeps reads the versions that nodep dependencies ask for, of modules the graph already
// holds, and reports whether that added any.
func (r *resolver) followNodeps() (bool, error) {
	present := map[string]bool{}
	for _, k := range r.order {
		present[k.name] = true
	}
	before := len(r.order)
	for _, from := range append([]moduleKey(nil), r.order...) {
		for _, d := range r.graph[from].deps {
			if d.nodep && present[d.name] {
				if err := r.visit(moduleKey{d.name, d.version}, d, from); err != nil {
					return false, err
				}
			}
		}
	}
	return len(r.order) > before, nil
}

// load reads the MODULE.bazel of one module version; nil (and a problem) when it does not exist.
func (r *resolver) load(k moduleKey, asked depSpec) (*graphNode, error) {
	node := &graphNode{key: k}
	if r.builtin != nil && k.name == r.builtin.name {
		node.file, node.fromOutside = r.builtin, "built into Bazel"
		return node, nil
	}
	if k.version == "" {
		o, ok := r.root.overrides[k.name]
		if !ok || !o.nonRegistry() {
			r.problemf("%s: bazel_dep(name = %q) asks for no version, and the root module has no override that supplies one", r.chain(k), asked.name)
			return nil, nil
		}
		node.fromOutside = o.kind
		if o.kind != "local_path_override" {
			r.res.notes = append(r.res.notes, fmt.Sprintf("%s comes from %s: its MODULE.bazel, and so its dependencies, are not read here", k.name, o.kind))
			node.file = &moduleFile{name: k.name}
			return node, nil
		}
		f, err := parseFile(filepath.Join(r.rootDir, filepath.FromSlash(o.path), "MODULE.bazel"))
		if err != nil {
			return nil, fmt.Errorf("local_path_override(%q, path = %q): %w", k.name, o.path, err)
		}
		if node.file, err = parseModuleFile(f, false); err != nil {
			return nil, err
		}
		r.checkName(node)
		return node, nil
	}
	meta, err := r.registry.moduleMetadata(k.name)
	if err != nil {
		return nil, err
	}
	if meta == nil {
		r.problemf("%s: module %s is not in the registry (no modules/%s/metadata.json)", r.chain(k), k.name, k.name)
		return nil, nil
	}
	path := moduleFilePath(k.name, k.version)
	data, err := r.registry.read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || (err == nil && !contains(meta.Versions, k.version)):
		newest := "none"
		if len(meta.Versions) > 0 {
			newest = highestVersion(meta.Versions)
		}
		r.problemf("%s: %s %s is not in the registry (modules/%s/metadata.json's newest version is %s)", r.chain(k), k.name, k.version, k.name, newest)
		return nil, nil
	case err != nil:
		return nil, err
	}
	f, err := build.ParseModule("registry:"+path, data)
	if err != nil {
		return nil, err
	}
	if node.file, err = parseModuleFile(f, false); err != nil {
		return nil, err
	}
	r.checkName(node)
	return node, nil
}

// checkName: Bazel refuses a MODULE.bazel whose module() names another module.
func (r *resolver) checkName(n *graphNode) {
	if n.file.name != n.key.name {
		r.problemf("%s: %s declares module(name = %q)", r.chain(n.key), n.file.path, n.file.name)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func highestVersion(versions []string) string {
	high := versions[0]
	for _, v := range versions[1:] {
		if compareVersions(v, high) > 0 {
			high = v
		}
	}
	return high
}

// selectionGroup is Bazel's unit of selection: one version is selected per module name and
// compatibility level, and, under a multiple_version_override, per allowed version it snaps to.
type selectionGroup struct {
	name          string
	level         int
	targetAllowed string // "" (Bazel's empty version) without a multiple_version_override
}

func (r *resolver) level(k moduleKey) int {
	if n := r.graph[k]; n != nil && n.file != nil {
		return n.file.compatibilityLevel
	}
	return 0
}

// selectVersions runs Minimal Version Selection over the discovered graph and returns the
// module versions the root still reaches, in breadth-first order; nil (with problems) when no
// valid graph exists.
func (r *resolver) selectVersions() []moduleKey {
	// multiple_version_override: per (name, level), the allowed versions, ascending.
	allowed := map[selectionGroup][]string{}
	for _, name := range sortedKeys(r.root.overrides) {
		o := r.root.overrides[name]
		if o.kind != "multiple_version_override" {
			continue
		}
		for _, v := range o.versions {
			k := moduleKey{name, v}
			if _, ok := r.graph[k]; !ok {
				r.problemf("multiple_version_override for module %s lists version %s, which nothing in the dependency graph asks for", name, v)
				return nil
			}
			g := selectionGroup{name: name, level: r.level(k)}
			allowed[g] = append(allowed[g], v)
		}
	}
	for _, versions := range allowed {
		sort.Slice(versions, func(i, j int) bool { return compareVersions(versions[i], versions[j]) < 0 })
	}
	groups := map[moduleKey]selectionGroup{}
	selected := map[selectionGroup]string{}
	for _, k := range r.order {
		if k == rootKey {
			continue
		}
		g := selectionGroup{name: k.name, level: r.level(k)}
		if versions, ok := allowed[g]; ok {
			for _, v := range versions {
				if compareVersions(v, k.version) >= 0 {
					g.targetAllowed = v
					break
				}
			}
		}
		groups[k] = g
		if s, ok := selected[g]; !ok || compareVersions(k.version, s) > 0 {
			selected[g] = k.version
		}
	}

	// Each distinct dependency may resolve to one selected version per compatibility level it
	// admits (more than one only with max_compatibility_level).
	var specs []depSpec
	choices := map[depSpec][]moduleKey{}
	for _, k := range r.order {
		for _, d := range r.graph[k].deps {
			key := depSpec{name: d.name, version: d.version, maxCompatibilityLevel: d.maxCompatibilityLevel}
			dk := moduleKey{d.name, d.version}
			if _, done := choices[key]; done || dk == rootKey || d.nodep {
				continue
			}
			if _, found := r.graph[dk]; !found {
				continue // not in the registry: already a problem
			}
			specs = append(specs, key)
			choices[key] = r.possibleResolutions(key, groups[dk], selected)
		}
	}
	const maxStrategies = 10000
	total := 1
	for _, d := range specs {
		total *= len(choices[d])
		if total > maxStrategies {
			r.problemf("more than %d combinations of max_compatibility_level choices: this check does not try them all", maxStrategies)
			return nil
		}
	}
	var firstFailure string
	for i := 0; i < total; i++ {
		pick := map[depSpec]moduleKey{}
		rest := i
		for j := len(specs) - 1; j >= 0; j-- { // cartesian order: the last spec varies fastest
			c := choices[specs[j]]
			pick[specs[j]] = c[rest%len(c)]
			rest /= len(c)
		}
		pruned, from, failure := r.walk(pick, groups)
		if failure == "" {
			r.selectedFrom = from
			return pruned
		}
		if firstFailure == "" {
			firstFailure = failure
		}
	}
	r.problemf("%s", firstFailure)
	return nil
}

// possibleResolutions lists, lowest compatibility level first, the selected versions a
// dependency may resolve to.
func (r *resolver) possibleResolutions(d depSpec, own selectionGroup, selected map[selectionGroup]string) []moduleKey {
	maxLevel := d.maxCompatibilityLevel
	if maxLevel < 0 {
		maxLevel = own.level
	}
	byLevel := map[int]string{}
	for g, v := range selected {
		if g.name != d.name || g.level < own.level || g.level > maxLevel {
			continue
		}
		if g.targetAllowed != "" && compareVersions(g.targetAllowed, d.version) < 0 {
			continue
		}
		if prev, ok := byLevel[g.level]; !ok || compareVersions(v, prev) < 0 {
			byLevel[g.level] = v
		}
	}
	levels := make([]int, 0, len(byLevel))
	for l := range byLevel {
		levels = append(levels, l)
	}
	sort.Ints(levels)
	var keys []moduleKey
	for _, l := range levels {
		keys = append(keys, moduleKey{d.name, byLevel[l]})
	}
	return keys
}

// walk follows the selected graph from the root and returns what it reaches, or why the result
// is not a valid graph: one module at two compatibility levels, or a version a
// multiple_version_override does not allow.
func (r *resolver) walk(pick map[depSpec]moduleKey, groups map[moduleKey]selectionGroup) ([]moduleKey, map[moduleKey]moduleKey, string) {
	type reached struct{ key, from moduleKey }
	byName := map[string]reached{}
	seen := map[moduleKey]bool{rootKey: true}
	queue := []reached{{key: rootKey}}
	var out []moduleKey
	from := map[moduleKey]moduleKey{}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		out = append(out, cur.key)
		from[cur.key] = cur.from
		if cur.key != rootKey {
			if o, ok := r.root.overrides[cur.key.name]; ok && o.kind == "multiple_version_override" {
				if groups[cur.key].targetAllowed == "" {
					return nil, nil, fmt.Sprintf("%s depends on %s, which the multiple_version_override on %s does not allow (it allows only %s)",
						r.label(cur.from), cur.key, cur.key.name, strings.Join(o.versions, ", "))
				}
			} else if prev, ok := byName[cur.key.name]; ok {
				return nil, nil, fmt.Sprintf("%s depends on %s at compatibility level %d, but %s depends on %s at compatibility level %d: Bazel needs one level (a max_compatibility_level or a multiple_version_override could allow both)",
					r.label(cur.from), cur.key, r.level(cur.key), r.label(prev.from), prev.key, r.level(prev.key))
			} else {
				byName[cur.key.name] = cur
			}
		}
		for _, d := range r.graph[cur.key].deps {
			if d.nodep {
				continue // it raised a version in selection; it reaches nothing
			}
			next := rootKey
			if (moduleKey{d.name, d.version}) != rootKey {
				k, ok := pick[depSpec{name: d.name, version: d.version, maxCompatibilityLevel: d.maxCompatibilityLevel}]
				if !ok {
					continue // missing from the registry: already a problem
				}
				next = k
			}
			if !seen[next] {
				seen[next] = true
				queue = append(queue, reached{key: next, from: cur.key})
			}
		}
	}
	return out, from, ""
}

// checkSelected holds the selected graph to the registry's yanked versions and to
// .bazelversion.
func (r *resolver) checkSelected(pruned []moduleKey) error {
	for _, k := range pruned {
		n := r.graph[k]
		if k != rootKey && n.fromOutside == "" {
			meta, err := r.registry.moduleMetadata(k.name)
			if err != nil {
				return err
			}
			if reason, yanked := meta.YankedVersions[k.version]; yanked {
				r.problemf("%s is selected, but the registry has yanked it: %q", k, reason)
			}
		}
		for _, c := range n.file.bazelCompatibility {
			ok, err := bazelAdmits(r.bazel, c)
			if err != nil {
				r.problemf("%s: %v", r.label(k), err)
				break
			}
			if !ok {
				r.problemf("Bazel %s (.bazelversion) is not compatible with %s: bazel_compatibility = [%s]", r.bazel, r.label(k), quoteAll(n.file.bazelCompatibility))
				break
			}
		}
	}
	return nil
}

func quoteAll(list []string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = strconv.Quote(s)
	}
	return strings.Join(quoted, ", ")
}

// bazelBound is the lower end of a bazel_compatibility list: the Bazel release it starts at, and
// whether it excludes that release itself (">").
type bazelBound struct {
	version   string // X.Y.Z; "" when the list sets no lower bound
	exclusive bool
}

func (b bazelBound) String() string {
	if b.exclusive {
		return ">" + b.version
	}
	return ">=" + b.version
}

// compare orders two lower bounds by the releases they admit: the higher bound admits fewer.
func (b bazelBound) compare(o bazelBound) int {
	switch {
	case b.version == "" || o.version == "":
		return boolOrder(b.version != "") - boolOrder(o.version != "")
	}
	if c := compareVersions(b.version, o.version); c != 0 {
		return c
	}
	return boolOrder(b.exclusive) - boolOrder(o.exclusive)
}

// lowerBound is the tightest ">=" or ">" entry of a bazel_compatibility list. Upper bounds and
// excluded releases ("<", "<=", "-") say nothing about the oldest Bazel a module needs.
func lowerBound(constraints []string) bazelBound {
	var low bazelBound
	for _, c := range constraints {
		m := bazelCompatibilityRE.FindStringSubmatch(c)
		if m == nil || (m[1] != ">=" && m[1] != ">") {
			continue
		}
		if b := (bazelBound{version: m[2], exclusive: m[1] == ">"}); b.compare(low) > 0 {
			low = b
		}
	}
	return low
}

// checkFloor derives the graph's floor, the lowest Bazel every selected module admits, and holds
// the root's bazel_compatibility to it: a root that states one must not promise a Bazel that a
// module of its own graph refuses. A root without one promises nothing (Bazel reads it as "any").
func (r *resolver) checkFloor(pruned []moduleKey) {
	var floor *bazelFloor
	for _, k := range pruned {
		if k == rootKey {
			continue
		}
		b := lowerBound(r.graph[k].file.bazelCompatibility)
		if b.version == "" {
			continue
		}
		at := r.selectedChain(k)
		switch {
		case floor == nil || b.compare(floor.bound) > 0:
			floor = &bazelFloor{bound: b, setBy: []string{at}}
		case b.compare(floor.bound) == 0:
			floor.setBy = append(floor.setBy, at)
		}
	}
	r.res.floor = floor
	if floor == nil || len(r.root.bazelCompatibility) == 0 {
		return
	}
	if promised := lowerBound(r.root.bazelCompatibility); promised.compare(floor.bound) < 0 {
		admits := "every Bazel"
		if promised.version != "" {
			admits = "Bazel " + promised.String()
		}
		r.problemf("%s: bazel_compatibility = [%s] admits %s, but the resolved graph needs Bazel %s: %s; raise its lower bound to %q",
			r.root.name, quoteAll(r.root.bazelCompatibility), admits, floor.bound, strings.Join(floor.setBy, ", "), floor.bound.String())
	}
}

// selectedChain is the path from the root to k in the selected graph.
func (r *resolver) selectedChain(k moduleKey) string {
	keys := []string{}
	for ; k != rootKey; k = r.selectedFrom[k] {
		keys = append([]string{k.String()}, keys...)
	}
	return strings.Join(append([]string{r.root.name}, keys...), " -> ")
}
