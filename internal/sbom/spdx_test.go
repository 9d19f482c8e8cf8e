package sbom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

const testVersion = "v0.0.0-sbom-test"

var testEpoch = time.Unix(1_700_000_000, 0).UTC()

type builtProbes struct {
	binaries  []Binary
	toolchain string
}

// buildProbes compiles the real probe for every platform, once per test binary, the way the image
// build does.
var buildProbes = sync.OnceValues(func() (builtProbes, error) {
	ctx := context.Background()
	toolchain, err := imagebuild.ModuleToolchain(ctx, "")
	if err != nil {
		return builtProbes{}, err
	}
	dir, err := os.MkdirTemp("", "sbom-test-")
	if err != nil {
		return builtProbes{}, err
	}
	defer os.RemoveAll(dir)
	probes := builtProbes{toolchain: toolchain}
	for _, arch := range imagespec.Architectures {
		out := filepath.Join(dir, arch)
		opts := imagebuild.BinaryOptions{Arch: arch, Version: testVersion, Toolchain: toolchain}
		if err := imagebuild.BuildBinary(ctx, opts, out); err != nil {
			return builtProbes{}, err
		}
		content, err := os.ReadFile(out)
		if err != nil {
			return builtProbes{}, err
		}
		probes.binaries = append(probes.binaries, Binary{Platform: imagespec.Platform(arch), Content: content})
	}
	return probes, nil
})

func probes(t *testing.T) builtProbes {
	t.Helper()
	testutil.NeedsGoTree(t)
	p, err := buildProbes()
	require.NoError(t, err)
	return p
}

func testOptions() Options {
	return Options{Name: "health-check", Version: testVersion, Created: testEpoch, Creator: "build-image"}
}

// The document as a generic JSON tree, so that the test reads the field names SPDX defines rather
// than the ones our structs happen to carry.
type jsonObject = map[string]any

func decode(t *testing.T, raw []byte) jsonObject {
	t.Helper()
	var doc jsonObject
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

func objects(t *testing.T, v any) []jsonObject {
	t.Helper()
	list, ok := v.([]any)
	require.True(t, ok, "want a JSON array, got %T", v)
	var out []jsonObject
	for _, item := range list {
		obj, ok := item.(jsonObject)
		require.True(t, ok, "want a JSON object, got %T", item)
		out = append(out, obj)
	}
	return out
}

// spdxIDPattern is SPDX 2.3's syntax for element identifiers.
var spdxIDPattern = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)

// TestSPDXHasTheFieldsSPDX23Requires checks the document against the fields SPDX 2.3 makes
// mandatory (clauses 6 and 7, and 11 for relationships), for the real probe of every platform.
func TestSPDXHasTheFieldsSPDX23Requires(t *testing.T) {
	raw, err := SPDX(testOptions(), probes(t).binaries)
	require.NoError(t, err)
	doc := decode(t, raw)

	assert.Equal(t, "SPDX-2.3", doc["spdxVersion"])
	assert.Equal(t, "CC0-1.0", doc["dataLicense"])
	assert.Equal(t, "SPDXRef-DOCUMENT", doc["SPDXID"])
	assert.Equal(t, "health-check-"+testVersion, doc["name"])
	namespace, err := url.Parse(doc["documentNamespace"].(string))
	require.NoError(t, err)
	assert.True(t, namespace.IsAbs(), "the namespace is an absolute URI: %s", namespace)
	assert.Empty(t, namespace.Fragment, "SPDX forbids # in the namespace")
	assert.NotContains(t, doc["documentNamespace"], "#")

	info, ok := doc["creationInfo"].(jsonObject)
	require.True(t, ok, "creationInfo")
	assert.Equal(t, "2023-11-14T22:13:20Z", info["created"], "the build's epoch, in SPDX's date format")
	assert.Equal(t, []any{"Tool: build-image"}, info["creators"])

	ids := map[string]jsonObject{}
	for _, p := range objects(t, doc["packages"]) {
		id, _ := p["SPDXID"].(string)
		assert.Regexp(t, spdxIDPattern, id)
		assert.NotContains(t, ids, id, "SPDX IDs are unique")
		ids[id] = p
		assert.NotEmpty(t, p["name"], id)
		assert.NotEmpty(t, p["downloadLocation"], id)
		// filesAnalyzed true (the default) would require a packageVerificationCode over files we
		// do not list.
		assert.Equal(t, false, p["filesAnalyzed"], id)
		// Optional in SPDX 2.3, but an empty value where one is given is invalid.
		for _, field := range []string{"licenseConcluded", "licenseDeclared", "copyrightText"} {
			assert.Equal(t, "NOASSERTION", p[field], "%s of %s", field, id)
		}
	}
	describes := 0
	for _, r := range objects(t, doc["relationships"]) {
		element, related := r["spdxElementId"].(string), r["relatedSpdxElement"].(string)
		assert.NotEmpty(t, r["relationshipType"])
		if element != "SPDXRef-DOCUMENT" {
			assert.Contains(t, ids, element, "relationship from a package in the document")
		}
		assert.Contains(t, ids, related, "relationship to a package in the document")
		if r["relationshipType"] == "DESCRIBES" {
			describes++
		}
	}
	assert.Equal(t, len(imagespec.Architectures), describes, "the document describes each platform's binary")
}

// packageNamed returns the package whose name is name, failing when there is none or several.
func packageNamed(t *testing.T, doc jsonObject, name string) jsonObject {
	t.Helper()
	var found []jsonObject
	for _, p := range objects(t, doc["packages"]) {
		if p["name"] == name {
			found = append(found, p)
		}
	}
	require.Len(t, found, 1, "packages named %s", name)
	return found[0]
}

func goListVersion(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func TestSPDXListsWhatTheLinkerPutIntoTheProbe(t *testing.T) {
	built := probes(t)
	raw, err := SPDX(testOptions(), built.binaries)
	require.NoError(t, err)
	doc := decode(t, raw)

	for _, b := range built.binaries {
		binary := packageNamed(t, doc, "health-check ("+b.Platform+")")
		sum := sha256.Sum256(b.Content)
		assert.Equal(t, []any{jsonObject{"algorithm": "SHA256", "checksumValue": hex.EncodeToString(sum[:])}},
			binary["checksums"], b.Platform)
		assert.Equal(t, testVersion, binary["versionInfo"])
		arch, variant, _ := strings.Cut(strings.TrimPrefix(b.Platform, "linux/"), "/")
		assert.Contains(t, binary["comment"], "GOARCH="+arch)
		if variant != "" {
			assert.Contains(t, binary["comment"], "GOARM="+strings.TrimPrefix(variant, "v"), "the variant is the GOARM the linker recorded")
		}
	}

	xnet := packageNamed(t, doc, "golang.org/x/net")
	version := goListVersion(t, "golang.org/x/net")
	assert.Equal(t, version, xnet["versionInfo"], "the version go.mod selects")
	assert.Regexp(t, `^go\.sum hash: h1:[A-Za-z0-9+/]{43}=$`, xnet["comment"])
	assert.Equal(t, []any{jsonObject{
		"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
		"referenceLocator": "pkg:golang/golang.org/x/net@" + version,
	}}, xnet["externalRefs"])

	stdlib := packageNamed(t, doc, "stdlib")
	assert.Equal(t, built.toolchain, stdlib["versionInfo"], "the Go release go.mod pins")

	main := packageNamed(t, doc, "github.com/health-check-proxy/health-check-proxy")
	assert.Equal(t, testVersion, main["versionInfo"])

	// Test-only and tool-only modules never reach the probe, so the SBOM does not list them.
	for _, p := range objects(t, doc["packages"]) {
		assert.NotContains(t, p["name"], "testify")
		assert.NotContains(t, p["name"], "google.golang.org/grpc")
	}
}

func TestSPDXIsTheSameBytesForTheSameBinaries(t *testing.T) {
	binaries := probes(t).binaries
	first, err := SPDX(testOptions(), binaries)
	require.NoError(t, err)
	again, err := SPDX(testOptions(), binaries)
	require.NoError(t, err)
	assert.Equal(t, first, again)

	reversed := slices.Clone(binaries)
	slices.Reverse(reversed)
	other, err := SPDX(testOptions(), reversed)
	require.NoError(t, err)
	assert.Equal(t, first, other, "the order the platforms are given in does not matter")

	opts := testOptions()
	opts.Version = "v9.9.9"
	changed, err := SPDX(opts, binaries)
	require.NoError(t, err)
	assert.NotEqual(t, decode(t, first)["documentNamespace"], decode(t, changed)["documentNamespace"],
		"a different document gets a different namespace")
}

func TestSPDXRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		binaries []Binary
		want     string
	}{
		{"no binaries", testOptions(), nil, "no binaries"},
		{"no version", Options{Name: "health-check", Creator: "build-image"}, []Binary{{"linux/amd64", []byte("x")}}, "required"},
		{"not a Go binary", testOptions(), []Binary{{"linux/amd64", []byte("#!/bin/sh\n")}}, "linux/amd64 binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SPDX(tc.opts, tc.binaries)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
