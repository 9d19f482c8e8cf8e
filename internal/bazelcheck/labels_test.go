package bazelcheck

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// labelAttrs are the attributes, of the rules and macros our BUILD files call, whose values are
// labels (read from each rule's attr.label / attr.label_list declarations).
var labelAttrs = map[string]bool{
	"actual": true, "base": true, "created": true, "data": true, "deps": true, "embed": true,
	"image": true, "images": true, "platforms": true, "srcs": true, "tars": true,
	"constraint_values": true, "loader": true, "repository_file": true,
}

// locationRE finds $(execpath X), $(location X), $(rootpath X), ... in a string attribute.
var locationRE = regexp.MustCompile(`\$\((?:execpath|execpaths|location|locations|rootpath|rootpaths|rlocationpath)\s+([^)]+)\)`)

type label struct {
	repo string // apparent repository name; "" is the module the label is written in
	pkg  string
	name string
}

func (l label) String() string {
	repo := ""
	if l.repo != "" {
		repo = "@" + l.repo
	}
	return fmt.Sprintf("%s//%s:%s", repo, l.pkg, l.name)
}

// parseLabel parses s as written in package pkg. Relative names ("file.txt", ":name") are in pkg.
func parseLabel(s, pkg string) (label, error) {
	l := label{pkg: pkg}
	rest := s
	if strings.HasPrefix(rest, "@") {
		rest = strings.TrimLeft(rest, "@")
		i := strings.Index(rest, "//")
		if i < 0 {
			// "@repo" is "@repo//:repo"
			return label{repo: rest, name: rest}, nil
		}
		l.repo, rest = rest[:i], rest[i:]
	}
	switch {
	case strings.HasPrefix(rest, "//"):
		rest = rest[2:]
		if i := strings.Index(rest, ":"); i >= 0 {
			l.pkg, l.name = rest[:i], rest[i+1:]
		} else {
			l.pkg, l.name = rest, path.Base(rest)
		}
	case strings.HasPrefix(rest, ":"):
		l.name = rest[1:]
	default:
		l.name = rest
	}
	if l.name == "" || strings.Contains(l.pkg, ":") || strings.HasPrefix(l.pkg, "/") {
		return l, fmt.Errorf("malformed label %q", s)
	}
	return l, nil
}

// target is what a label names: a rule (or a target a known macro makes) or a source file.
type target struct {
	visibility []string // nil for source files: visible inside their package only
	isFile     bool
}

// targetsOf lists the targets of a package: rule calls by name, the targets our macros and the
// rules_oci / tar.bzl macros add (read from their source), and files.
func targetsOf(t *testing.T, m *bazelModule, p *bazelPackage) map[string]target {
	t.Helper()
	defaultVis := []string{"//visibility:private"}
	for _, stmt := range p.file.Stmt {
		if call, _ := callOf(stmt); call != nil && calleeName(call) == "package" {
			if v := stringList(kwarg(call, "default_visibility")); v != nil {
				defaultVis = v
			}
		}
	}
	targets := map[string]target{}
	for _, call := range ruleCalls(p.file) {
		name := stringArg(call, "name")
		vis := stringList(kwarg(call, "visibility"))
		if vis == nil {
			vis = defaultVis
		}
		targets[name] = target{visibility: vis}
		switch calleeName(call) {
		case "linux_platforms": // images/defs.bzl: one platform per LINUX_PLATFORMS entry
			for _, arch := range linuxPlatforms(t) {
				targets[name+"_"+arch.arch] = target{visibility: vis}
			}
		case "oci_image", "oci_image_index", "scratch_image": // rules_oci oci/defs.bzl _digest
			targets[name+".digest"] = target{visibility: vis}
		case "tar": // tar.bzl tar/tar.bzl: the mtree target
			targets[name+"_mtree"] = target{visibility: []string{"//visibility:private"}}
		}
	}
	return targets
}

// resolve checks that l, written in package fromPkg of module from, names an existing target
// that from may use, and returns a description of what is wrong, or "".
func resolve(t *testing.T, mods map[string]*bazelModule, from *bazelModule, fromPkg string, l label) string {
	t.Helper()
	to := from
	if l.repo != "" && l.repo != from.name {
		moduleName, ok := from.repos[l.repo]
		if !ok {
			return fmt.Sprintf("repository @%s is not visible from module %s (no bazel_dep or use_repo)", l.repo, from.name)
		}
		if to, ok = mods[moduleName]; !ok {
			return "" // a dependency or an extension repository: only its visibility can be checked here
		}
	}
	p, ok := to.packages[l.pkg]
	if !ok {
		return fmt.Sprintf("%s: no package %q in module %s", l, l.pkg, to.name)
	}
	tg, ok := targetsOf(t, to, p)[l.name]
	if !ok {
		if fileInPackage(to, l.pkg, l.name) {
			tg = target{isFile: true}
		} else {
			return fmt.Sprintf("%s: no target or file %q in package //%s of module %s", l, l.name, l.pkg, to.name)
		}
	}
	sameModule := to == from
	if sameModule && l.pkg == fromPkg {
		return ""
	}
	if tg.isFile {
		return fmt.Sprintf("%s: a source file used outside its package needs exports_files", l)
	}
	for _, v := range tg.visibility {
		switch {
		case v == "//visibility:public":
			return ""
		case !sameModule:
			continue
		case strings.HasSuffix(v, ":__pkg__") && strings.TrimSuffix(strings.TrimPrefix(v, "//"), ":__pkg__") == fromPkg:
			return ""
		case strings.HasSuffix(v, ":__subpackages__"):
			base := strings.TrimSuffix(strings.TrimPrefix(v, "//"), ":__subpackages__")
			if base == "" || fromPkg == base || strings.HasPrefix(fromPkg, base+"/") {
				return ""
			}
		}
	}
	where := "package //" + fromPkg
	if !sameModule {
		where = "module " + from.name
	}
	return fmt.Sprintf("%s is not visible from %s (visibility %v)", l, where, tg.visibility)
}

// fileInPackage reports whether name is a source file of package pkg (not of a subpackage).
func fileInPackage(m *bazelModule, pkg, name string) bool {
	if !fileExists(filepath.Join(m.dir, pkg, name)) {
		return false
	}
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if buildFileIn(filepath.Join(m.dir, pkg, dir)) != "" {
			return false
		}
	}
	return true
}

// TestLabelsNameExistingTargets holds every label in the BUILD and .bzl files of this repository
// (and of examples/downstream, which uses ours) to an existing, visible package and target.
func TestLabelsNameExistingTargets(t *testing.T) {
	mods := loadModules(t)
	require.Contains(t, mods, rootModuleName)
	require.Contains(t, mods, "downstream_example", "examples/downstream is checked as a consumer")
	checked := 0
	for _, m := range mods {
		for _, pkgPath := range sortedKeys(m.packages) {
			p := m.packages[pkgPath]
			for _, call := range ruleCalls(p.file) {
				for _, key := range kwargNames(call) {
					value := kwarg(call, key)
					if key == "visibility" {
						for _, v := range stringList(value) {
							assert.Regexp(t, `^//(visibility:(public|private)|[a-z0-9_/.-]*:(__pkg__|__subpackages__))$`, v,
								"%s: visibility", p.file.Path)
						}
						continue
					}
					var strs []string
					inGlob := map[*build.StringExpr]bool{}
					build.Walk(value, func(x build.Expr, _ []build.Expr) {
						if c, ok := x.(*build.CallExpr); ok && calleeName(c) == "glob" {
							checked++
							checkGlob(t, m, pkgPath, p.file.Path, c)
							build.Walk(c, func(y build.Expr, _ []build.Expr) {
								if s, ok := y.(*build.StringExpr); ok {
									inGlob[s] = true
								}
							})
						}
						if s, ok := x.(*build.StringExpr); ok && !inGlob[s] {
							strs = append(strs, s.Value)
						}
					})
					for _, s := range strs {
						if labelAttrs[key] {
							checked++
							checkLabel(t, mods, m, pkgPath, p.file.Path, s)
						}
						for _, match := range locationRE.FindAllStringSubmatch(s, -1) {
							checked++
							ref := strings.TrimSpace(match[1])
							assert.Contains(t, stringList(kwarg(call, "srcs")), ref,
								"%s: %s: $(...) may only name a label of the same target's srcs", p.file.Path, stringArg(call, "name"))
							checkLabel(t, mods, m, pkgPath, p.file.Path, ref)
						}
					}
				}
			}
		}
		for rel, f := range m.bzlFiles(t) {
			pkgPath := path.Dir(rel)
			if pkgPath == "." {
				pkgPath = ""
			}
			build.Walk(f, func(x build.Expr, _ []build.Expr) {
				call, ok := x.(*build.CallExpr)
				if !ok || calleeName(call) != "Label" || len(call.List) != 1 {
					return
				}
				if s, ok := call.List[0].(*build.StringExpr); ok {
					checked++
					checkLabel(t, mods, m, pkgPath, f.Path, s.Value)
				}
			})
		}
	}
	assert.Greater(t, checked, 20, "the walk found the labels")
}

func checkLabel(t *testing.T, mods map[string]*bazelModule, m *bazelModule, pkg, file, s string) {
	t.Helper()
	if s == "//conditions:default" {
		return // select's key for "no other condition matched": Bazel's, not a target
	}
	l, err := parseLabel(s, pkg)
	if !assert.NoError(t, err, file) {
		return
	}
	if problem := resolve(t, mods, m, pkg, l); problem != "" {
		assert.Fail(t, problem, "%s: label %q", file, s)
	}
}

func TestParseLabel(t *testing.T) {
	tests := []struct {
		in   string
		want label
	}{
		{"//cmd/health-check", label{pkg: "cmd/health-check", name: "health-check"}},
		{"//images:layer", label{pkg: "images", name: "layer"}},
		{":layer", label{pkg: "images", name: "layer"}},
		{"created.txt", label{pkg: "images", name: "created.txt"}},
		{"@health_check_proxy//images:layer", label{repo: "health_check_proxy", pkg: "images", name: "layer"}},
		{"@platforms//cpu:x86_64", label{repo: "platforms", pkg: "cpu", name: "x86_64"}},
		{"@tar.bzl", label{repo: "tar.bzl", name: "tar.bzl"}},
		{"@rules_go//go:def.bzl", label{repo: "rules_go", pkg: "go", name: "def.bzl"}},
		{"//:go.mod", label{name: "go.mod"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLabel(tt.in, "images")
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// checkGlob: a glob() matches at least one file of its package, since Bazel 8 fails on an empty
// glob unless allow_empty = True.
func checkGlob(t *testing.T, m *bazelModule, pkg, file string, call *build.CallExpr) {
	t.Helper()
	if literal(kwarg(call, "allow_empty")) == "True" {
		return
	}
	var include []string
	if len(call.List) > 0 {
		include = stringList(call.List[0])
	}
	if inc := stringList(kwarg(call, "include")); inc != nil {
		include = inc
	}
	exclude := stringList(kwarg(call, "exclude"))
	matches := 0
	root := filepath.Join(m.dir, pkg)
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && buildFileIn(p) != "" {
				return filepath.SkipDir // a subpackage's files are not ours
			}
			return nil
		}
		if globMatches(include, rel) && !globMatches(exclude, rel) {
			matches++
		}
		return nil
	})
	assert.Positive(t, matches, "%s:%d: glob(%v) matches no file (Bazel 8 fails on an empty glob)", file, call.Pos.Line, include)
}

func globMatches(patterns []string, rel string) bool {
	for _, pattern := range patterns {
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pattern); i++ {
			switch {
			case strings.HasPrefix(pattern[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pattern[i:], "**"):
				re.WriteString(".*")
				i++
			case pattern[i] == '*':
				re.WriteString("[^/]*")
			default:
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			}
		}
		re.WriteString("$")
		if regexp.MustCompile(re.String()).MatchString(rel) {
			return true
		}
	}
	return false
}

func TestGlobMatches(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"testdata/**", "testdata/fuzz/FuzzX/case", true},
		{"testdata/**", "other/x", false},
		{"*.go", "main.go", true},
		{"*.go", "sub/main.go", false},
		{"**/*.pem", "a/b/c.pem", true},
		{"**/*.pem", "c.pem", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, globMatches([]string{tt.pattern}, tt.path))
		})
	}
}
