package bazelcheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// goarchToCPU maps a GOARCH (and OCI architecture) to the @platforms cpu constraint of it.
var goarchToCPU = map[string]string{
	"amd64":   "@platforms//cpu:x86_64",
	"arm64":   "@platforms//cpu:arm64",
	"arm":     "@platforms//cpu:armv7",
	"ppc64le": "@platforms//cpu:ppc64le",
	"s390x":   "@platforms//cpu:s390x",
	"riscv64": "@platforms//cpu:riscv64",
}

// mtreeKeywordRE is one keyword=value of an mtree line; a value may be a $(execpath ...) that Bazel
// expands before bsdtar reads the line.
var mtreeKeywordRE = regexp.MustCompile(`([a-z]+)=(\$\([^)]*\)|\S+)`)

type linuxPlatform struct{ arch, cpu string }

// linuxPlatforms reads LINUX_PLATFORMS from images/defs.bzl, in order.
func linuxPlatforms(t *testing.T) []linuxPlatform {
	t.Helper()
	f, err := parseFile(filepath.Join(repoRoot(t), "images", "defs.bzl"))
	require.NoError(t, err)
	for _, stmt := range f.Stmt {
		a, ok := stmt.(*build.AssignExpr)
		if !ok || literal(a.LHS) != "LINUX_PLATFORMS" {
			continue
		}
		dict, ok := a.RHS.(*build.DictExpr)
		require.True(t, ok, "LINUX_PLATFORMS is a dict literal")
		var out []linuxPlatform
		for _, kv := range dict.List {
			call, ok := kv.Value.(*build.CallExpr)
			require.True(t, ok && calleeName(call) == "Label" && len(call.List) == 1, "LINUX_PLATFORMS values are Label(...)")
			out = append(out, linuxPlatform{arch: literal(kv.Key), cpu: literal(call.List[0])})
		}
		return out
	}
	require.Fail(t, "images/defs.bzl defines no LINUX_PLATFORMS")
	return nil
}

// imagesCall returns the call in images/BUILD.bazel that makes the named target.
func imagesCall(t *testing.T, name string) *build.CallExpr {
	t.Helper()
	p, ok := loadModules(t)[rootModuleName].packages["images"]
	require.True(t, ok, "images/BUILD.bazel")
	for _, call := range ruleCalls(p.file) {
		if stringArg(call, "name") == name {
			return call
		}
	}
	require.Fail(t, "images/BUILD.bazel has no target "+name)
	return nil
}

// TestPlatformsFollowImageSpec: the index's platforms are imagespec.Architectures, in order, each
// with the right cpu constraint; the image's architecture select is made from the same table.
func TestPlatformsFollowImageSpec(t *testing.T) {
	platforms := linuxPlatforms(t)
	var arches []string
	for _, p := range platforms {
		arches = append(arches, p.arch)
		assert.Equal(t, goarchToCPU[p.arch], p.cpu, "LINUX_PLATFORMS[%q]", p.arch)
	}
	assert.Equal(t, imagespec.Architectures, arches, "images/defs.bzl LINUX_PLATFORMS, in index order")

	// LINUX_VARIANTS: the variant of each architecture that has one, and for arm the rules_go
	// constraint that makes GOARM the one the Go-native build uses.
	defs, err := parseFile(filepath.Join(repoRoot(t), "images", "defs.bzl"))
	require.NoError(t, err)
	variants := map[string]string{}
	constraints := map[string][]string{}
	for _, stmt := range defs.Stmt {
		a, ok := stmt.(*build.AssignExpr)
		if !ok || literal(a.LHS) != "LINUX_VARIANTS" {
			continue
		}
		dict, ok := a.RHS.(*build.DictExpr)
		require.True(t, ok, "LINUX_VARIANTS is a dict literal")
		for _, kv := range dict.List {
			call, ok := kv.Value.(*build.CallExpr)
			require.True(t, ok && calleeName(call) == "struct", "LINUX_VARIANTS values are struct(...)")
			arch := literal(kv.Key)
			variants[arch] = stringArg(call, "variant")
			list, ok := kwarg(call, "constraints").(*build.ListExpr)
			require.True(t, ok, "LINUX_VARIANTS[%q].constraints is a list", arch)
			for _, c := range list.List {
				label, ok := c.(*build.CallExpr)
				require.True(t, ok && calleeName(label) == "Label" && len(label.List) == 1)
				constraints[arch] = append(constraints[arch], literal(label.List[0]))
			}
		}
	}
	assert.Equal(t, imagespec.Variants, variants, "images/defs.bzl LINUX_VARIANTS")
	assert.Equal(t, map[string][]string{"arm": {"@rules_go//go/constraints/arm:" + imagespec.GOARM}}, constraints)

	index := imagesCall(t, "index")
	assert.Equal(t, "oci_image_index", calleeName(index))
	assert.Equal(t, []string{":image"}, stringList(kwarg(index, "images")))
	assert.Equal(t, "INDEX_PLATFORMS", literal(kwarg(index, "platforms")), "the index uses the platforms made from LINUX_PLATFORMS")
}

// TestImageFollowsImageSpec: the Bazel image has the shape internal/imagespec gives the Go-native
// build: user, entrypoint, os, created, and exactly one layer entry with the probe's path, mode,
// owner and mtime.
func TestImageFollowsImageSpec(t *testing.T) {
	root := repoRoot(t)

	image := imagesCall(t, "image")
	assert.Equal(t, "scratch_image", calleeName(image))
	assert.Equal(t, imagespec.User, stringArg(image, "user"))
	assert.Equal(t, imagespec.Entrypoint, stringList(kwarg(image, "entrypoint")))
	assert.Equal(t, []string{":layer"}, stringList(kwarg(image, "tars")), "the image is the layer alone")
	assert.Nil(t, kwarg(image, "base"), "no base image: scratch")

	// scratch_image (images/defs.bzl) sets os; architecture follows the target platform.
	defs, err := parseFile(filepath.Join(root, "images", "defs.bzl"))
	require.NoError(t, err)
	var inner *build.CallExpr
	build.Walk(defs, func(x build.Expr, stk []build.Expr) {
		if call, ok := x.(*build.CallExpr); ok && calleeName(call) == "oci_image" {
			inner = call
		}
	})
	require.NotNil(t, inner, "scratch_image calls oci_image")
	assert.Equal(t, imagespec.OS, stringArg(inner, "os"))
	assert.Equal(t, "oci_architecture()", build.FormatString(kwarg(inner, "architecture")))
	assert.Equal(t, "oci_variant()", build.FormatString(kwarg(inner, "variant")))

	created := stringArg(image, "created")
	require.NotEmpty(t, created, "a fixed created time from a checked-in file")
	data, err := os.ReadFile(filepath.Join(root, "images", created))
	require.NoError(t, err)
	// rules_oci reads the file raw (jq --rawfile): a trailing newline would end up in the config.
	assert.Equal(t, strings.TrimSpace(string(data)), string(data), "images/%s must not end with a newline", created)
	when, err := time.Parse(time.RFC3339, string(data))
	require.NoError(t, err)
	assert.Equal(t, time.Unix(imagespec.DefaultSourceDateEpoch, 0).UTC(), when.UTC(), "created, as the Go-native build")

	// The annotations of a build that is not a release, as the Go-native build writes them.
	annotations, ok := kwarg(image, "annotations").(*build.DictExpr)
	require.True(t, ok, "the image's annotations are a dict literal")
	got := map[string]string{}
	for _, kv := range annotations.List {
		got[literal(kv.Key)] = literal(kv.Value)
	}
	assert.Equal(t, imagespec.Annotations(imagespec.UnstampedVersion, imagespec.UnstampedRevision, string(data)), got)

	layer := imagesCall(t, "layer")
	assert.Equal(t, "tar", calleeName(layer))
	assert.Equal(t, []string{"//cmd/health-check"}, stringList(kwarg(layer, "srcs")))
	assert.True(t, strings.HasSuffix(imagespec.LayerMediaType, "+gzip"))
	assert.Equal(t, "gzip", stringArg(layer, "compress"), "layer media type %s", imagespec.LayerMediaType)
	assert.Nil(t, kwarg(layer, "include_runfiles"), "explicit mtree lines list every entry")
	mtree := stringList(kwarg(layer, "mtree"))
	require.Len(t, mtree, 1, "the layer holds exactly one entry")
	entry, rest, _ := strings.Cut(mtree[0], " ")
	assert.Equal(t, imagespec.LayerEntryName, entry)
	assert.Equal(t, strings.TrimPrefix(imagespec.BinaryPath, "/"), entry)
	keywords := map[string]string{}
	for _, kw := range mtreeKeywordRE.FindAllStringSubmatch(rest, -1) {
		keywords[kw[1]] = kw[2]
	}
	assert.Empty(t, strings.TrimSpace(mtreeKeywordRE.ReplaceAllString(rest, "")), "every part of the mtree line is a keyword=value")
	assert.Equal(t, map[string]string{
		"uid":     strconv.Itoa(imagespec.OwnerUID),
		"gid":     strconv.Itoa(imagespec.OwnerGID),
		"time":    strconv.FormatInt(imagespec.DefaultSourceDateEpoch, 10),
		"mode":    fmt.Sprintf("%04o", imagespec.BinaryMode),
		"type":    "file",
		"content": "$(execpath //cmd/health-check)",
	}, keywords)

	// The public targets are the ones docs/bazel.md and examples/downstream name.
	for _, name := range []string{"layer", "image", "index"} {
		assert.Equal(t, []string{"//visibility:public"}, stringList(kwarg(imagesCall(t, name), "visibility")), name)
	}
}

// TestProbeBinaryIsStaticAndVersioned: the go_binary that goes into the layer is pure Go, static,
// stripped, built from imagespec.ProbePackage, and takes its version from module_version().
func TestProbeBinaryIsStaticAndVersioned(t *testing.T) {
	p, ok := loadModules(t)[rootModuleName].packages["cmd/health-check"]
	require.True(t, ok)
	var bin, lib *build.CallExpr
	for _, call := range ruleCalls(p.file) {
		switch calleeName(call) {
		case "go_binary":
			bin = call
		case "go_library":
			lib = call
		}
	}
	require.NotNil(t, bin)
	require.NotNil(t, lib)
	assert.Equal(t, "health-check", stringArg(bin, "name"))
	assert.Equal(t, imagespec.ProbePackage, stringArg(lib, "importpath"))
	assert.Equal(t, "on", stringArg(bin, "pure"))
	assert.Equal(t, "on", stringArg(bin, "static"))
	assert.Subset(t, stringList(kwarg(bin, "gc_linkopts")), []string{"-s", "-w"})
	assert.Nil(t, kwarg(bin, "goos"), "platforms decide")
	assert.Nil(t, kwarg(bin, "goarch"), "platforms decide")

	// x_defs = probe_x_defs(version = module_version()), probe_x_defs loaded from :version.bzl.
	xdefs, ok := kwarg(bin, "x_defs").(*build.CallExpr)
	require.True(t, ok, "x_defs is probe_x_defs(version = module_version()), not a literal")
	assert.Equal(t, "probe_x_defs", calleeName(xdefs))
	require.Len(t, xdefs.List, 1)
	arg, ok := kwarg(xdefs, "version").(*build.CallExpr)
	require.True(t, ok, "probe_x_defs takes version = module_version()")
	assert.Equal(t, "module_version", calleeName(arg))
	assert.Empty(t, arg.List)
	assert.Equal(t, ":version.bzl", loadedFrom(p.file, "probe_x_defs"))
}

// loadedFrom is the module a BUILD or .bzl file loads symbol from, "" if it does not.
func loadedFrom(f *build.File, symbol string) string {
	for _, stmt := range f.Stmt {
		if l, ok := stmt.(*build.LoadStmt); ok {
			for _, to := range l.To {
				if to.Name == symbol {
					return l.Module.Value
				}
			}
		}
	}
	return ""
}

// TestProbeVersionReadsNoStatusKey: rules_go's link builder fills every {KEY} in an x_defs value
// from the status files of whoever runs the build (go/tools/builders/link.go at v0.63.0), so a
// downstream's --stamp would rewrite our probe. No string that can reach the probe's x_defs holds
// a brace; the version.bzl logic maps MODULE.bazel's own unreleased version to "no x_defs" (the
// source default, dev) and a release X.Y.Z to vX.Y.Z under imagespec.VersionSymbol.
func TestProbeVersionReadsNoStatusKey(t *testing.T) {
	root := loadModules(t)[rootModuleName]
	buildFile := root.packages["cmd/health-check"].file
	bzl, err := parseFile(filepath.Join(root.dir, "cmd", "health-check", "version.bzl"))
	require.NoError(t, err)
	var strs []string
	for _, f := range []*build.File{buildFile, bzl} {
		docs := docstrings(f)
		build.Walk(f, func(x build.Expr, _ []build.Expr) {
			if s, ok := x.(*build.StringExpr); ok && !docs[s] {
				strs = append(strs, s.Value)
			}
		})
	}
	require.NotEmpty(t, strs)
	for _, s := range strs {
		assert.NotContains(t, s, "{", "a {KEY} in x_defs is a status key that a downstream's --stamp fills")
		assert.NotContains(t, s, "STABLE_")
	}
	assert.Contains(t, strs, imagespec.VersionSymbol)

	var unreleased string
	for _, stmt := range bzl.Stmt {
		if a, ok := stmt.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok && id.Name == "UNRELEASED_VERSION" {
				unreleased = literal(a.RHS)
			}
		}
	}
	module, err := os.ReadFile(filepath.Join(root.dir, "MODULE.bazel"))
	require.NoError(t, err)
	found := bcrModuleVersion.FindSubmatch(module)
	require.NotNil(t, found)
	assert.Equal(t, string(found[1]), unreleased,
		"version.bzl's UNRELEASED_VERSION is MODULE.bazel's version between releases, so a build of the tree reports dev")

	// The root's release config stamps nothing: no output of ours depends on a status file.
	rc, err := os.ReadFile(filepath.Join(root.dir, ".bazelrc"))
	require.NoError(t, err)
	assert.NotRegexp(t, `(?m)^build:release\s+--(stamp|workspace_status_command)`, string(rc))
}

// docstrings are the string statements of a file and of its functions: text, never a value.
func docstrings(f *build.File) map[*build.StringExpr]bool {
	docs := map[*build.StringExpr]bool{}
	stmts := append([]build.Expr{}, f.Stmt...)
	for _, stmt := range f.Stmt {
		if def, ok := stmt.(*build.DefStmt); ok {
			stmts = append(stmts, def.Body...)
		}
	}
	for _, stmt := range stmts {
		if s, ok := stmt.(*build.StringExpr); ok {
			docs[s] = true
		}
	}
	return docs
}

// TestLoadTargetsRunOnTheHost: rules_oci 2.3.0's oci_load runs its target platform's bsdtar
// (oci/private/load.bzl), so an oci_load of a Linux image cannot run on a macOS host. Every load
// target, ours and the downstream example's, is a linux_load (images/defs.bzl), which moves only
// the image to Linux; no BUILD file calls oci_load itself.
func TestLoadTargetsRunOnTheHost(t *testing.T) {
	mods := loadModules(t)
	defs := map[string]string{rootModuleName: ":defs.bzl", "downstream_example": "@health_check_proxy//images:defs.bzl"}
	for name, pkg := range map[string]string{rootModuleName: "images", "downstream_example": ""} {
		m := mods[name]
		require.NotNil(t, m, name)
		p, ok := m.packages[pkg]
		require.True(t, ok, "%s: package %q", name, pkg)
		loads := 0
		for _, call := range ruleCalls(p.file) {
			assert.NotEqual(t, "oci_load", calleeName(call), "%s: %s", p.file.Path, stringArg(call, "name"))
			if calleeName(call) == "linux_load" {
				loads++
			}
		}
		assert.Equal(t, 1, loads, "%s: one linux_load", p.file.Path)
		assert.Equal(t, defs[name], loadedFrom(p.file, "linux_load"), p.file.Path)
	}
}

// TestDownstreamExampleIsWhatUsersCopy: the example's own layer is Linux-only like ours (a darwin
// /app must never land in a Linux image), and it shows a release stamped with the application's
// own STABLE_VERSION: .bazelrc's --config=release runs status.sh, which prints that key, and only
// the application's x_defs reads it (the replay holds our layer to the root's under that config).
func TestDownstreamExampleIsWhatUsersCopy(t *testing.T) {
	m := loadModules(t)["downstream_example"]
	require.NotNil(t, m)
	p := m.packages[""]
	require.NotNil(t, p)
	tars := 0
	for _, call := range ruleCalls(p.file) {
		switch calleeName(call) {
		case "tar":
			tars++
			tcw, ok := kwarg(call, "target_compatible_with").(*build.CallExpr)
			if assert.True(t, ok, "%s: target_compatible_with = linux_compatible()", stringArg(call, "name")) {
				assert.Equal(t, "linux_compatible", calleeName(tcw))
			}
		case "go_binary":
			xdefs, ok := kwarg(call, "x_defs").(*build.DictExpr)
			require.True(t, ok, "the application's x_defs")
			require.Len(t, xdefs.List, 1)
			assert.Equal(t, "{STABLE_VERSION}", literal(xdefs.List[0].Value))
		}
	}
	assert.Equal(t, 1, tars)

	rc, err := os.ReadFile(filepath.Join(m.dir, ".bazelrc"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^build:release --stamp$`, string(rc))
	assert.Regexp(t, `(?m)^build:release --workspace_status_command=status.sh$`, string(rc))
	// Bazel runs the status command from the workspace root and reads "KEY value" lines.
	status := exec.Command("bash", "status.sh")
	status.Dir = m.dir
	out, err := status.Output()
	require.NoError(t, err, "status.sh")
	assert.Regexp(t, `^STABLE_VERSION \S+\n$`, string(out))
}
