package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

const (
	testVersion  = "v0.0.0-buildimage-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

// testBinaryPlatforms: two of the image's platforms and one desktop. The release's default list
// (every platform) is checked by the release workflow's own build.
var testBinaryPlatforms = []string{"linux/amd64", "linux/arm/v7", "darwin/arm64"}

func TestRunRejectsBadUsageBeforeBuilding(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no output asked for", nil, "nothing to write"},
		{"unknown platform", []string{"-layer", "x.tar", "-platform", "linux/mips64"}, `platform "linux/mips64"`},
		{"variant that is not built", []string{"-layer", "x.tar", "-platform", "linux/arm/v6"}, `platform "linux/arm/v6"`},
		{"unknown binary platform", []string{"-binaries", "dir", "-binary-platforms", "linux/amd64,plan9/amd64"}, `platform "plan9/amd64"`},
		{"revision with a space", []string{"-o", "dir", "-revision", "a b"}, "-revision"},
		{"index platform unknown", []string{"-o", "dir", "-platforms", "linux/amd64,linux/mips"}, `-platforms: platform "linux/mips"`},
		{"platform outside the index", []string{"-layer", "x.tar", "-platforms", "linux/arm64", "-platform", "linux/amd64"}, "-platform linux/amd64 is not one of -platforms"},
		{"platform without os", []string{"-layer", "x.tar", "-platform", "amd64"}, `platform "amd64"`},
		{"positional argument", []string{"-o", "dir", "extra"}, "unexpected arguments: extra"},
		{"version with a space", []string{"-o", "dir", "-version", "v1 2"}, "version"},
		{"bad tag", []string{"-o", "dir", "-tag", "Not A Tag"}, "-tag"},
		{"unknown flag", []string{"-push"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, stderr.String(), tc.want)
			assert.Empty(t, stdout.String())
		})
	}
}

// digestLines parses the command's output: "index sha256:..." and "PLATFORM sha256:...".
func digestLines(t *testing.T, out string) map[string]string {
	t.Helper()
	digests := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		what, digest, ok := strings.Cut(line, " ")
		require.True(t, ok, "output line %q", line)
		require.True(t, strings.HasPrefix(digest, "sha256:"), "output line %q", line)
		digests[what] = digest
	}
	return digests
}

type built struct {
	dir, stdout string
}

// layoutBuilt records that buildOnce ran, so that TestMain cleans up only what exists.
var layoutBuilt atomic.Bool

// buildOnce runs the command in-process once per test binary: the tests below read the same build.
var buildOnce = sync.OnceValues(func() (built, error) {
	layoutBuilt.Store(true)
	dir, err := os.MkdirTemp("", "build-image-layout-")
	if err != nil {
		return built{}, err
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{
		"-o", dir, "-version", testVersion,
		"-docker-archive", filepath.Join(dir, "docker.tar"),
		"-layer", filepath.Join(dir, "layer.tar"),
		"-layers", filepath.Join(dir, "layers"),
		"-sbom", filepath.Join(dir, "sbom.spdx.json"),
		"-revision", testRevision,
		"-binaries", filepath.Join(dir, "binaries"), "-binary-platforms", strings.Join(testBinaryPlatforms, ","),
	}, &stdout, &stderr)
	if code != 0 {
		return built{dir: dir}, fmt.Errorf("build-image exited %d: %s", code, stderr.String())
	}
	return built{dir: dir, stdout: stdout.String()}, nil
})

// buildLayout returns the layout directory of the shared build and the digests it printed.
func buildLayout(t *testing.T) (string, string) {
	t.Helper()
	testutil.NeedsGoTree(t)
	b, err := buildOnce()
	require.NoError(t, err)
	return b.dir, b.stdout
}

func TestMain(m *testing.M) {
	code := m.Run()
	if !layoutBuilt.Load() {
		os.Exit(code)
	}
	if b, _ := buildOnce(); b.dir != "" {
		os.RemoveAll(b.dir)
	}
	os.Exit(code)
}

func TestOutputPrintsTheDigestsOfTheWrittenLayout(t *testing.T) {
	dir, out := buildLayout(t)
	digests := digestLines(t, out)

	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	top, err := p.ImageIndex()
	require.NoError(t, err)
	topManifest, err := top.IndexManifest()
	require.NoError(t, err)
	byRef := map[string]string{}
	for _, desc := range topManifest.Manifests {
		byRef[desc.Annotations["org.opencontainers.image.ref.name"]] = desc.Digest.String()
	}
	assert.Equal(t, digests["index"], byRef["dev"])
	for _, arch := range imagespec.Architectures {
		assert.Equal(t, digests[imagespec.Platform(arch)], byRef["dev-"+arch], arch)
	}
	assert.Len(t, digests, 1+len(imagespec.Architectures))
}

// layoutLayerDigest returns the digest of the one layer of arch's image in the layout at dir.
func layoutLayerDigest(t *testing.T, dir, arch string) string {
	t.Helper()
	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	idx, err := p.ImageIndex()
	require.NoError(t, err)
	top, err := idx.IndexManifest()
	require.NoError(t, err)
	for _, desc := range top.Manifests {
		if desc.Annotations["org.opencontainers.image.ref.name"] != "dev-"+arch {
			continue
		}
		img, err := idx.Image(desc.Digest)
		require.NoError(t, err)
		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 1)
		digest, err := layers[0].Digest()
		require.NoError(t, err)
		return digest.String()
	}
	require.FailNow(t, "no manifest for "+arch+" in the layout")
	return ""
}

// probeFromLayer returns the one file of a gzipped layer tarball.
func probeFromLayer(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	hdr, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, imagespec.LayerEntryName, hdr.Name)
	binary, err := io.ReadAll(tr)
	require.NoError(t, err)
	return binary
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestLayersAreTheBlobsTheManifestsName: each file in -layers DIR is byte for byte the layer blob
// of its platform's image, so its SHA-256 (in a release's SHA256SUMS) is the manifest's layer digest.
func TestLayersAreTheBlobsTheManifestsName(t *testing.T) {
	dir, _ := buildLayout(t)
	for _, arch := range imagespec.Architectures {
		t.Run(imagespec.Platform(arch), func(t *testing.T) {
			path := filepath.Join(dir, "layers", "health-check-layer-"+strings.ReplaceAll(imagespec.Platform(arch), "/", "-")+".tar.gz")
			blob, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, layoutLayerDigest(t, dir, arch), "sha256:"+sha256Hex(blob))
			assertELFFor(t, arch, probeFromLayer(t, path))
		})
	}
	entries, err := os.ReadDir(filepath.Join(dir, "layers"))
	require.NoError(t, err)
	assert.Len(t, entries, len(imagespec.Architectures), "one layer per platform, nothing else")
}

// assertELFFor checks that probe is a static Linux executable for arch: the machine, word size and
// byte order the platform runs, and no program interpreter (scratch has no dynamic loader).
func assertELFFor(t *testing.T, arch string, probe []byte) {
	t.Helper()
	want := map[string]struct {
		machine elf.Machine
		class   elf.Class
		order   binary.ByteOrder
	}{
		"amd64":   {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
		"arm64":   {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
		"arm":     {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
		"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
		"s390x":   {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
		"riscv64": {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
	}[arch]
	require.NotZero(t, want.machine, "no ELF expectation for %s", arch)
	exe, err := elf.NewFile(bytes.NewReader(probe))
	require.NoError(t, err)
	assert.Equal(t, want.machine, exe.Machine)
	assert.Equal(t, want.class, exe.Class)
	assert.Equal(t, want.order, exe.ByteOrder)
	assert.Equal(t, elf.ET_EXEC, exe.Type, "a static executable, not PIE")
	for _, prog := range exe.Progs {
		assert.NotEqual(t, elf.PT_INTERP, prog.Type, "no program interpreter")
	}
}

// TestBinariesAreTheProbesOfTheImageAndTheDesktops: -binaries writes each Linux platform's probe as
// the very bytes its layer carries, and compiles the desktop ones; nothing else lands there.
func TestBinariesAreTheProbesOfTheImageAndTheDesktops(t *testing.T) {
	dir, _ := buildLayout(t)
	entries, err := os.ReadDir(filepath.Join(dir, "binaries"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"health-check-linux-amd64", "health-check-linux-arm-v7", "health-check-darwin-arm64"}, names)

	for _, arch := range []string{"amd64", "arm"} {
		probe, err := os.ReadFile(filepath.Join(dir, "binaries", binaryFileName(imagespec.Platform(arch))))
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(probeFromLayer(t, filepath.Join(dir, "layers", layerFileName(arch)))), sha256Hex(probe), arch)
		assertELFFor(t, arch, probe)
	}
	exe, err := macho.Open(filepath.Join(dir, "binaries", "health-check-darwin-arm64"))
	require.NoError(t, err)
	defer exe.Close()
	assert.Equal(t, macho.CpuArm64, exe.Cpu)
	assert.Equal(t, "health-check-windows-arm64.exe", binaryFileName("windows/arm64"))
}

// TestSBOMDescribesTheProbesInTheLayers: the SBOM's binary checksums are those of the probes the
// layers carry, and it was created at the build's epoch (SOURCE_DATE_EPOCH unset: 0).
func TestSBOMDescribesTheProbesInTheLayers(t *testing.T) {
	dir, _ := buildLayout(t)
	raw, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
	require.NoError(t, err)
	var doc struct {
		SPDXVersion  string `json:"spdxVersion"`
		CreationInfo struct {
			Created string `json:"created"`
		} `json:"creationInfo"`
		Packages []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
			Checksums   []struct {
				Algorithm string `json:"algorithm"`
				Value     string `json:"checksumValue"`
			} `json:"checksums"`
		} `json:"packages"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	assert.Equal(t, "SPDX-2.3", doc.SPDXVersion)
	assert.Equal(t, "1970-01-01T00:00:00Z", doc.CreationInfo.Created)
	for _, arch := range imagespec.Architectures {
		binary := probeFromLayer(t, filepath.Join(dir, "layers", layerFileName(arch)))
		found := false
		for _, p := range doc.Packages {
			if p.Name != "health-check ("+imagespec.Platform(arch)+")" {
				continue
			}
			found = true
			assert.Equal(t, testVersion, p.VersionInfo)
			require.Len(t, p.Checksums, 1)
			assert.Equal(t, "SHA256", p.Checksums[0].Algorithm)
			assert.Equal(t, sha256Hex(binary), p.Checksums[0].Value, arch)
		}
		assert.True(t, found, "the SBOM describes the %s probe", imagespec.Platform(arch))
	}
}

func TestLayerFileIsTheAmd64Layer(t *testing.T) {
	dir, _ := buildLayout(t)
	f, err := os.Open(filepath.Join(dir, "layer.tar"))
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	hdr, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, imagespec.LayerEntryName, hdr.Name)
	assert.Equal(t, int64(imagespec.BinaryMode), hdr.Mode)
	binary, err := io.ReadAll(tr)
	require.NoError(t, err)
	_, err = tr.Next()
	assert.Equal(t, io.EOF, err, "one entry only")
	exe, err := elf.NewFile(bytes.NewReader(binary))
	require.NoError(t, err)
	assert.Equal(t, elf.EM_X86_64, exe.Machine)
	// Static: a scratch image has no dynamic loader and no libc.
	for _, prog := range exe.Progs {
		assert.NotEqual(t, elf.PT_INTERP, prog.Type, "no program interpreter")
	}
	libs, err := exe.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs)
	// Stripped (-s): no symbol table.
	assert.Nil(t, exe.Section(".symtab"))
}

// TestProbeCarriesTheStampedVersion runs the amd64 probe from the layer: the version given to
// build-image is what `health-check -version` prints.
func TestProbeCarriesTheStampedVersion(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("runs the linux/amd64 probe; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	dir, _ := buildLayout(t)
	f, err := os.Open(filepath.Join(dir, "layer.tar"))
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	_, err = tr.Next()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "health-check")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, tr)
	require.NoError(t, err)
	require.NoError(t, out.Close())

	got, err := exec.Command(bin, "-version").CombinedOutput()
	require.NoError(t, err, "%s", got)
	assert.Contains(t, string(got), testVersion)
}

// qemuUser names Debian's qemu-user-static emulator of each architecture.
var qemuUser = map[string]string{
	"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static", "arm": "qemu-arm-static",
	"ppc64le": "qemu-ppc64le-static", "s390x": "qemu-s390x-static", "riscv64": "qemu-riscv64-static",
}

// TestEveryPlatformsProbeRunsUnderQemuUser runs each layer's probe with `-version` through
// qemu-user (the host's own architecture natively): it starts on its platform and carries the
// stamped version. The container tests run the images themselves where the engine can (binfmt).
func TestEveryPlatformsProbeRunsUnderQemuUser(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("runs Linux probes; this is %s", runtime.GOOS)
	}
	dir, _ := buildLayout(t)
	for _, arch := range imagespec.Architectures {
		t.Run(imagespec.Platform(arch), func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "health-check")
			require.NoError(t, os.WriteFile(bin, probeFromLayer(t, filepath.Join(dir, "layers", layerFileName(arch))), 0o755))
			cmd := exec.Command(bin, "-version")
			if arch != runtime.GOARCH {
				qemu := testutil.RequireCommand(t, qemuUser[arch], "apt-get install -y qemu-user-static")
				cmd = exec.Command(qemu, bin, "-version")
			}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), testVersion)
		})
	}
}

func TestSkopeoReadsTheLayout(t *testing.T) {
	skopeo := testutil.RequireCommand(t, "skopeo", "apt-get install -y skopeo")
	dir, out := buildLayout(t)
	digests := digestLines(t, out)

	inspect := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		cmd := exec.Command(skopeo, append([]string{"inspect"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		require.NoError(t, err, "skopeo %v: %s", args, stderr.String())
		var v map[string]any
		require.NoError(t, json.Unmarshal(stdout, &v), "%s", stdout)
		return v
	}

	t.Run("raw index", func(t *testing.T) {
		raw := inspect(t, "--raw", "oci:"+dir+":dev")
		assert.Equal(t, imagespec.IndexMediaType, raw["mediaType"])
		manifests, ok := raw["manifests"].([]any)
		require.True(t, ok)
		require.Len(t, manifests, len(imagespec.Architectures))
		for i, arch := range imagespec.Architectures {
			m := manifests[i].(map[string]any)
			assert.Equal(t, digests[imagespec.Platform(arch)], m["digest"])
			platform := map[string]any{"os": "linux", "architecture": arch}
			if variant := imagespec.Variants[arch]; variant != "" {
				platform["variant"] = variant
			}
			assert.Equal(t, platform, m["platform"])
		}
	})
	for _, arch := range imagespec.Architectures {
		t.Run(imagespec.Platform(arch)+" from the index", func(t *testing.T) {
			args := []string{"--override-os", "linux", "--override-arch", arch}
			if variant := imagespec.Variants[arch]; variant != "" {
				args = append(args, "--override-variant", variant)
			}
			v := inspect(t, append(args, "oci:"+dir+":dev")...)
			assert.Equal(t, arch, v["Architecture"])
			assert.Equal(t, "linux", v["Os"])
			assert.Equal(t, "1970-01-01T00:00:00Z", v["Created"])
			assert.Len(t, v["Layers"], 1)
		})
		t.Run(imagespec.Platform(arch)+" manifest annotations", func(t *testing.T) {
			manifest := inspect(t, "--raw", "oci:"+dir+":dev-"+arch)
			assert.Equal(t, map[string]any{
				imagespec.AnnotationSource: imagespec.Source, imagespec.AnnotationRevision: testRevision,
				imagespec.AnnotationVersion: testVersion, imagespec.AnnotationCreated: "1970-01-01T00:00:00Z",
				imagespec.AnnotationLicenses: imagespec.Licenses, imagespec.AnnotationTitle: imagespec.Title,
				imagespec.AnnotationDescription: imagespec.Description,
			}, manifest["annotations"])
		})
		t.Run(imagespec.Platform(arch)+" config by its own name", func(t *testing.T) {
			cfg := inspect(t, "--config", "oci:"+dir+":dev-"+arch)
			assert.Equal(t, arch, cfg["architecture"])
			config := cfg["config"].(map[string]any)
			assert.Equal(t, imagespec.User, config["User"])
			assert.Equal(t, []any{imagespec.BinaryPath}, config["Entrypoint"])
		})
	}
}

func TestUmociUnpacksOnlyTheProbe(t *testing.T) {
	umoci := testutil.RequireCommand(t, "umoci", "apt-get install -y umoci")
	dir, _ := buildLayout(t)
	for _, arch := range imagespec.Architectures {
		t.Run(imagespec.Platform(arch), func(t *testing.T) {
			bundle := filepath.Join(t.TempDir(), "bundle")
			args := []string{"unpack"}
			if os.Geteuid() != 0 {
				args = append(args, "--rootless")
			}
			args = append(args, "--image", dir+":dev-"+arch, bundle)
			out, err := exec.Command(umoci, args...).CombinedOutput()
			require.NoError(t, err, "umoci %v: %s", args, out)

			rootfs := filepath.Join(bundle, "rootfs")
			var paths []string
			require.NoError(t, filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
				require.NoError(t, err)
				rel, err := filepath.Rel(rootfs, path)
				require.NoError(t, err)
				if rel != "." {
					paths = append(paths, "/"+rel)
				}
				return nil
			}))
			assert.Equal(t, []string{imagespec.BinaryPath}, paths, "the root holds the probe and nothing else")
			info, err := os.Stat(filepath.Join(rootfs, imagespec.LayerEntryName))
			require.NoError(t, err)
			assert.Equal(t, fs.FileMode(imagespec.BinaryMode), info.Mode().Perm())

			// umoci turns the image config into an OCI runtime spec: the user and the entrypoint
			// as a runtime sees them.
			var spec struct {
				Process struct {
					User struct{ UID, GID int }
					Args []string
				}
			}
			raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(raw, &spec))
			if os.Geteuid() == 0 {
				assert.Equal(t, 65532, spec.Process.User.UID)
				assert.Equal(t, 65532, spec.Process.User.GID)
			}
			assert.Equal(t, imagespec.Entrypoint, spec.Process.Args)
		})
	}
}

// moduleFiles lists the module's files as git sees them (tracked and untracked, not ignored),
// relative to the module root.
func moduleFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("copying the module needs a git checkout: %v", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if info, err := os.Lstat(filepath.Join(root, f)); err == nil && info.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	return files
}

// TestTwoCheckoutsGiveTheSameIndexDigest copies the module twice, to directories of different
// depth, and builds the image in each: one with the caller's environment and warm build cache, one
// with its own HOME, GOPATH and an empty GOCACHE. The digests and the SBOMs must match. Only the
// module cache is shared, so the test downloads nothing. The cold build is the slow part, so both
// build two of the six platforms (amd64, and arm/v7 for a 32-bit one with a variant): the standard
// library of each platform compiled from nothing is most of a build's CPU. The release's rebuild
// job checks all six, from the source archive on another machine.
func TestTwoCheckoutsGiveTheSameIndexDigest(t *testing.T) {
	testutil.NeedsGoTree(t)
	if testing.Short() {
		t.Skip("compiles the probe from a cold cache; skipped with -short")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	modCache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	require.NoError(t, err)

	tmp := t.TempDir()
	tool := filepath.Join(tmp, "build-image")
	out, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	// One snapshot of the files for both copies, so that both build the same source.
	files := moduleFiles(t, root)
	snapshot := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		snapshot[f] = data
	}
	checkout := func(dir string) string {
		for f, data := range snapshot {
			dst := filepath.Join(dir, f)
			require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
			require.NoError(t, os.WriteFile(dst, data, 0o644))
		}
		return dir
	}
	build := func(name, src string, env ...string) map[string]string {
		cmd := exec.Command(tool, "-o", filepath.Join(tmp, name+"-image"), "-version", testVersion,
			"-platforms", "linux/amd64,linux/arm/v7", "-sbom", filepath.Join(tmp, name+".spdx.json"))
		cmd.Dir = src
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "build %s: %s", name, stderr.String())
		return digestLines(t, stdout.String())
	}

	warm := build("warm", checkout(filepath.Join(tmp, "a", "src")))
	cold := build("cold", checkout(filepath.Join(tmp, "b", "a", "deeper", "checkout", "of", "the", "module")),
		"HOME="+filepath.Join(tmp, "home"),
		"GOPATH="+filepath.Join(tmp, "gopath"),
		"GOCACHE="+filepath.Join(tmp, "gocache"),
		"GOMODCACHE="+strings.TrimSpace(string(modCache)),
		"GOFLAGS=",
	)
	assert.Equal(t, warm, cold)
	warmSBOM, err := os.ReadFile(filepath.Join(tmp, "warm.spdx.json"))
	require.NoError(t, err)
	coldSBOM, err := os.ReadFile(filepath.Join(tmp, "cold.spdx.json"))
	require.NoError(t, err)
	assert.Equal(t, string(warmSBOM), string(coldSBOM), "the SBOM is the same bytes too")
	t.Logf("index digest in both checkouts: %s", warm["index"])
}
