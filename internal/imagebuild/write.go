package imagebuild

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names an index.json entry, so that tools address it as DIR:NAME
// (skopeo oci:DIR:NAME, umoci --image DIR:NAME).
const refNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes idx as an OCI image layout at dir. index.json names the index itself refName
// (its blob's digest is the digest a registry would serve for it), and each platform's manifest
// refName-ARCH (dev-amd64, dev-arm64): tools that cannot pick a platform out of an index, such as
// umoci, take those. A layout already at dir is replaced: its index.json is overwritten and the
// blobs nothing refers to any more are removed. Files are 0644, so that any user can read the layout.
func WriteLayout(dir string, idx v1.ImageIndex, refName string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: refName})); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range manifest.Manifests {
		if desc.Platform == nil {
			continue
		}
		desc.Annotations = map[string]string{refNameAnnotation: refName + "-" + desc.Platform.Architecture}
		if err := p.AppendDescriptor(desc); err != nil {
			return fmt.Errorf("write OCI layout %s: %w", dir, err)
		}
	}
	unused, err := p.GarbageCollect()
	if err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	for _, h := range unused {
		if err := p.RemoveBlob(h); err != nil {
			return fmt.Errorf("write OCI layout %s: %w", dir, err)
		}
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
}

// WriteDockerArchive writes img as a `docker load` tarball tagged tag (e.g. health-check:dev).
func WriteDockerArchive(path string, img v1.Image, tag string) error {
	ref, err := name.NewTag(tag, name.WithDefaultTag("dev"))
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return fmt.Errorf("write docker archive %s: %w", path, err)
	}
	return nil
}

// WriteLayer writes layer to path: gzipped when the name ends in .gz or .tgz (the bytes whose digest
// the manifest names), else the plain tar (what `docker build`'s ADD, crane append or a Bazel tar
// rule take).
func WriteLayer(path string, layer v1.Layer) error {
	open := layer.Uncompressed
	if strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".tgz") {
		open = layer.Compressed
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("write layer %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write layer %s: %w", path, err)
	}
	return nil
}
