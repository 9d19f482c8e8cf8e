package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/testutil"
)

var (
	fakeBinary = []byte("\x7fELF not really a probe, but bytes to carry")
	epoch      = time.Unix(1_700_000_000, 0).UTC()
)

type tarEntry struct {
	hdr     *tar.Header
	content []byte
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var entries []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		require.NoError(t, err)
		content, err := io.ReadAll(tr)
		require.NoError(t, err)
		entries = append(entries, tarEntry{hdr: hdr, content: content})
	}
}

func layerEntries(t *testing.T, layer v1.Layer) []tarEntry {
	t.Helper()
	rc, err := layer.Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	return readTar(t, rc)
}

func TestProbeLayerHoldsOnlyTheProbeRootOwnedExecutableWithFixedMtime(t *testing.T) {
	layer, err := ProbeLayer(fakeBinary, epoch)
	require.NoError(t, err)

	entries := layerEntries(t, layer)
	require.Len(t, entries, 1, "the layer holds the probe and nothing else")
	hdr := entries[0].hdr
	assert.Equal(t, imagespec.LayerEntryName, hdr.Name)
	assert.Equal(t, "/"+hdr.Name, imagespec.BinaryPath)
	assert.Equal(t, byte(tar.TypeReg), hdr.Typeflag)
	assert.Equal(t, int64(imagespec.BinaryMode), hdr.Mode)
	assert.Equal(t, imagespec.OwnerUID, hdr.Uid)
	assert.Equal(t, imagespec.OwnerGID, hdr.Gid)
	assert.Empty(t, hdr.Uname, "no user name: it would differ between machines")
	assert.Empty(t, hdr.Gname)
	assert.True(t, epoch.Equal(hdr.ModTime), "mtime %v, want %v", hdr.ModTime, epoch)
	assert.Empty(t, hdr.PAXRecords, "no PAX records (atime, ctime) that could vary")
	assert.Equal(t, fakeBinary, entries[0].content)

	mediaType, err := layer.MediaType()
	require.NoError(t, err)
	assert.Equal(t, imagespec.LayerMediaType, string(mediaType))
}

func TestLayerGzipHeaderCarriesNoNameOrTime(t *testing.T) {
	layer, err := ProbeLayer(fakeBinary, epoch)
	require.NoError(t, err)
	rc, err := layer.Compressed()
	require.NoError(t, err)
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	require.NoError(t, err)
	assert.Empty(t, zr.Name)
	assert.Empty(t, zr.Comment)
	assert.True(t, zr.ModTime.IsZero(), "gzip mtime %v", zr.ModTime)
}

func TestLayerDigestDependsOnlyOnItsInputs(t *testing.T) {
	digestOf := func(binary []byte, modTime time.Time) v1.Hash {
		layer, err := ProbeLayer(binary, modTime)
		require.NoError(t, err)
		digest, err := layer.Digest()
		require.NoError(t, err)
		return digest
	}
	same := digestOf(fakeBinary, epoch)
	assert.Equal(t, same, digestOf(bytes.Clone(fakeBinary), epoch), "same inputs, same digest")
	assert.NotEqual(t, same, digestOf(fakeBinary, epoch.Add(time.Second)), "the mtime is part of the layer")
	assert.NotEqual(t, same, digestOf(append(bytes.Clone(fakeBinary), 0), epoch), "the content is part of the layer")
}

func TestTarFilesRejectsPathsThatAreNotFiles(t *testing.T) {
	for _, path := range []string{"", "/", "/etc/"} {
		t.Run(path, func(t *testing.T) {
			_, err := TarFiles([]File{{Path: path, Mode: 0o644}}, epoch)
			assert.Error(t, err)
		})
	}
}

func TestImageConfigAndManifestPerArchitecture(t *testing.T) {
	for _, arch := range imagespec.Architectures {
		t.Run(arch, func(t *testing.T) {
			layer, err := ProbeLayer(fakeBinary, epoch)
			require.NoError(t, err)
			img, err := Image(arch, epoch, []v1.Layer{layer}, nil)
			require.NoError(t, err)

			cfg, err := img.ConfigFile()
			require.NoError(t, err)
			assert.Equal(t, imagespec.OS, cfg.OS)
			assert.Equal(t, arch, cfg.Architecture)
			assert.Equal(t, imagespec.Variants[arch], cfg.Variant, "arm says which ARM it needs")
			assert.True(t, epoch.Equal(cfg.Created.Time), "created %v", cfg.Created)
			assert.Equal(t, imagespec.User, cfg.Config.User)
			assert.Equal(t, imagespec.Entrypoint, cfg.Config.Entrypoint)
			assert.Empty(t, cfg.Config.Cmd)
			assert.Empty(t, cfg.Config.Env)
			diffID, err := layer.DiffID()
			require.NoError(t, err)
			assert.Equal(t, []v1.Hash{diffID}, cfg.RootFS.DiffIDs)

			manifest, err := img.Manifest()
			require.NoError(t, err)
			assert.Equal(t, imagespec.ManifestMediaType, string(manifest.MediaType))
			assert.Equal(t, imagespec.ConfigMediaType, string(manifest.Config.MediaType))
			require.Len(t, manifest.Layers, 1)
			assert.Equal(t, imagespec.LayerMediaType, string(manifest.Layers[0].MediaType))
		})
	}
}

func TestImageConfigureChangesOnlyWhatItSets(t *testing.T) {
	layer, err := ProbeLayer(fakeBinary, epoch)
	require.NoError(t, err)
	img, err := Image("amd64", epoch, []v1.Layer{layer}, func(c *v1.Config) {
		c.Entrypoint = []string{"/app"}
		c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", imagespec.BinaryPath}, Interval: time.Second}
	})
	require.NoError(t, err)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, []string{"/app"}, cfg.Config.Entrypoint)
	assert.Equal(t, []string{"CMD", imagespec.BinaryPath}, cfg.Config.Healthcheck.Test)
	assert.Equal(t, imagespec.User, cfg.Config.User)
	assert.Equal(t, []string{imagespec.BinaryPath}, imagespec.Entrypoint, "configure must not reach the shared spec")
}

func buildIndex(t *testing.T, binary []byte) (v1.ImageIndex, []v1.Image) {
	t.Helper()
	var images []v1.Image
	for _, arch := range imagespec.Architectures {
		layer, err := ProbeLayer(append(bytes.Clone(binary), arch...), epoch)
		require.NoError(t, err)
		img, err := Image(arch, epoch, []v1.Layer{layer}, nil)
		require.NoError(t, err)
		images = append(images, img)
	}
	idx, err := Index(images)
	require.NoError(t, err)
	return idx, images
}

func TestIndexListsEveryPlatformInOrderWithoutArtifactType(t *testing.T) {
	idx, images := buildIndex(t, fakeBinary)
	manifest, err := idx.IndexManifest()
	require.NoError(t, err)
	assert.Equal(t, imagespec.IndexMediaType, string(manifest.MediaType))
	require.Len(t, manifest.Manifests, len(imagespec.Architectures))
	for i, arch := range imagespec.Architectures {
		desc := manifest.Manifests[i]
		digest, err := images[i].Digest()
		require.NoError(t, err)
		assert.Equal(t, digest, desc.Digest)
		assert.Equal(t, imagespec.ManifestMediaType, string(desc.MediaType))
		require.NotNil(t, desc.Platform)
		assert.Equal(t, v1.Platform{OS: imagespec.OS, Architecture: arch, Variant: imagespec.Variants[arch]}, *desc.Platform)
		assert.Equal(t, imagespec.Platform(arch), desc.Platform.String())
		assert.Empty(t, desc.ArtifactType, "an image is not an artifact")
	}
	raw, err := idx.RawManifest()
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "artifactType")
}

func TestIndexDigestIsStableAndFollowsTheBinaries(t *testing.T) {
	first, _ := buildIndex(t, fakeBinary)
	second, _ := buildIndex(t, bytes.Clone(fakeBinary))
	other, _ := buildIndex(t, []byte("another probe"))
	d1, err := first.Digest()
	require.NoError(t, err)
	d2, err := second.Digest()
	require.NoError(t, err)
	d3, err := other.Digest()
	require.NoError(t, err)
	assert.Equal(t, d1, d2)
	assert.NotEqual(t, d1, d3)
}

func TestWriteLayoutNamesTheIndexAndEachPlatform(t *testing.T) {
	idx, images := buildIndex(t, fakeBinary)
	dir := filepath.Join(t.TempDir(), "layout")
	require.NoError(t, WriteLayout(dir, idx, "v1"))
	// Writing again over the same directory replaces the layout instead of adding to it.
	other, _ := buildIndex(t, []byte("an older build"))
	require.NoError(t, WriteLayout(dir, other, "v1"))
	require.NoError(t, WriteLayout(dir, idx, "v1"))

	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	top, err := p.ImageIndex()
	require.NoError(t, err)
	topManifest, err := top.IndexManifest()
	require.NoError(t, err)

	want := map[string]v1.Hash{}
	wantDigest, err := idx.Digest()
	require.NoError(t, err)
	want["v1"] = wantDigest
	for i, arch := range imagespec.Architectures {
		d, err := images[i].Digest()
		require.NoError(t, err)
		want["v1-"+arch] = d
	}
	got := map[string]v1.Hash{}
	for _, desc := range topManifest.Manifests {
		got[desc.Annotations[refNameAnnotation]] = desc.Digest
	}
	assert.Equal(t, want, got)

	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	require.NoError(t, err)
	// index + per platform: manifest, config, layer; nothing left of the builds written before.
	assert.Len(t, blobs, 1+3*len(imagespec.Architectures))
	for _, b := range blobs {
		info, err := b.Info()
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), info.Mode().Perm(), b.Name())
	}
}

func TestWriteLayerPlainOrGzippedByName(t *testing.T) {
	layer, err := ProbeLayer(fakeBinary, epoch)
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		gzipped bool
	}{
		{"health-check.tar", false},
		{"health-check.tar.gz", true},
		{"health-check.tgz", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.name)
			require.NoError(t, WriteLayer(path, layer))
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			var r io.Reader = f
			if tc.gzipped {
				zr, err := gzip.NewReader(f)
				require.NoError(t, err)
				r = zr
				digest, err := layer.Digest()
				require.NoError(t, err)
				written, _, err := v1.SHA256(mustOpen(t, path))
				require.NoError(t, err)
				assert.Equal(t, digest, written, "the gzipped file is the blob the manifest names")
			}
			entries := readTar(t, r)
			require.Len(t, entries, 1)
			assert.Equal(t, imagespec.LayerEntryName, entries[0].hdr.Name)
		})
	}
}

func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return bytes.NewReader(b)
}

func TestWriteDockerArchiveTagsTheImage(t *testing.T) {
	_, images := buildIndex(t, fakeBinary)
	path := filepath.Join(t.TempDir(), "image.tar")
	require.NoError(t, WriteDockerArchive(path, images[0], "health-check:dev"))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var manifest tarball.Manifest
	for _, e := range readTar(t, f) {
		if e.hdr.Name == "manifest.json" {
			require.NoError(t, json.Unmarshal(e.content, &manifest))
		}
	}
	require.Len(t, manifest, 1)
	assert.Equal(t, []string{"health-check:dev"}, manifest[0].RepoTags)

	loaded, err := tarball.ImageFromPath(path, nil)
	require.NoError(t, err)
	want, err := images[0].ConfigName()
	require.NoError(t, err)
	got, err := loaded.ConfigName()
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestEpochFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   string
		want    time.Time
		wantErr bool
	}{
		{"unset gives the default", "", time.Unix(imagespec.DefaultSourceDateEpoch, 0).UTC(), false},
		{"seconds", "1700000000", time.Unix(1_700_000_000, 0).UTC(), false},
		{"negative", "-1", time.Time{}, true},
		{"not a number", "yesterday", time.Time{}, true},
		{"fractional", "1.5", time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EpochFromEnv(tc.value)
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tc.want.Equal(got), "got %v, want %v", got, tc.want)
		})
	}
}

func TestValidateVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"dev", true},
		{"v1.2.3", true},
		{"v0.1.0-3-gdeadbee-dirty", true},
		{"", false},
		{"v1 2", false},
		{"v1'", false},
		{`v1"`, false},
		{"v1\n", false},
		{"vé", false},
	} {
		t.Run(tc.version, func(t *testing.T) {
			err := ValidateVersion(tc.version)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestModuleToolchainIsTheGoLineOfGoMod(t *testing.T) {
	for _, tc := range []struct {
		name, gomod, want string
		wantErr           bool
	}{
		{"go line with a release", "module example.com/m\n\ngo 1.26.8\n", "go1.26.8", false},
		{"toolchain line wins", "module example.com/m\n\ngo 1.26.0\n\ntoolchain go1.26.8\n", "go1.26.8", false},
		{"language version only", "module example.com/m\n\ngo 1.26\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(tc.gomod), 0o644))
			got, err := ModuleToolchain(context.Background(), dir)
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestBuildTwiceGivesTheSameDigests compiles the real probe for every platform twice and compares
// the digests: the unit-sized version of the reproducibility test in cmd/build-image. Without a
// revision, the manifests carry the fixed annotations of a build that is not a release.
func TestBuildTwiceGivesTheSameDigests(t *testing.T) {
	testutil.NeedsGoTree(t)
	if testing.Short() {
		t.Skip("compiles the probe twice per platform; skipped with -short")
	}
	ctx := context.Background()
	build := func() *Result {
		res, err := Build(ctx, Options{Version: "test", Toolchain: "local", Epoch: epoch})
		require.NoError(t, err)
		return res
	}
	first, second := build(), build()
	d1, err := first.Index.Digest()
	require.NoError(t, err)
	d2, err := second.Index.Digest()
	require.NoError(t, err)
	assert.Equal(t, d1, d2)
	for _, arch := range imagespec.Architectures {
		l1, err := first.Layers[arch].Digest()
		require.NoError(t, err)
		l2, err := second.Layers[arch].Digest()
		require.NoError(t, err)
		assert.Equal(t, l1, l2, arch)
		entries := layerEntries(t, first.Layers[arch])
		require.Len(t, entries, 1)
		assert.Greater(t, len(entries[0].content), 100_000, "%s: the layer carries a real binary", arch)
		manifest, err := first.Images[arch].Manifest()
		require.NoError(t, err)
		assert.Equal(t, imagespec.Annotations("test", imagespec.UnstampedRevision, "2023-11-14T22:13:20Z"), manifest.Annotations, arch)
	}
}

// TestAnnotationsCarryTheReleaseValues: version, revision and created are the ones given, the
// other four are the project's, on every manifest; the index and its entries carry none (rules_oci
// writes none there either), so a platform's manifest digest is all a signature needs.
func TestAnnotationsCarryTheReleaseValues(t *testing.T) {
	testutil.NeedsGoTree(t)
	res, err := Build(context.Background(), Options{
		Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Toolchain: "local",
		Epoch: epoch, Architectures: []string{"arm"},
	})
	require.NoError(t, err)
	manifest, err := res.Images["arm"].Manifest()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"org.opencontainers.image.source":      "https://github.com/health-check-proxy/health-check-proxy",
		"org.opencontainers.image.revision":    "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.version":     "v1.2.3",
		"org.opencontainers.image.created":     "2023-11-14T22:13:20Z",
		"org.opencontainers.image.licenses":    "NOASSERTION",
		"org.opencontainers.image.title":       "health-check",
		"org.opencontainers.image.description": imagespec.Description,
	}, manifest.Annotations)
	index, err := res.Index.IndexManifest()
	require.NoError(t, err)
	assert.Empty(t, index.Annotations)
	require.Len(t, index.Manifests, 1)
	assert.Empty(t, index.Manifests[0].Annotations)
	assert.Equal(t, "linux/arm/v7", index.Manifests[0].Platform.String())
}
