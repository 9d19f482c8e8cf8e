package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// File is one regular file of a layer.
type File struct {
	// Path is the absolute path in the image, e.g. /health-check.
	Path     string
	Mode     int64
	UID, GID int
	Content  []byte
}

// ProbeLayer is the layer every image of ours carries: the probe at imagespec.BinaryPath, root owned,
// 0755, and nothing else.
func ProbeLayer(binary []byte, modTime time.Time) (v1.Layer, error) {
	return Layer([]File{ProbeFile(binary)}, modTime)
}

// ProbeFile is the probe binary as the layer holds it.
func ProbeFile(binary []byte) File {
	return File{
		Path:    imagespec.BinaryPath,
		Mode:    imagespec.BinaryMode,
		UID:     imagespec.OwnerUID,
		GID:     imagespec.OwnerGID,
		Content: binary,
	}
}

// Layer makes a gzipped OCI layer of files, in the order given, every entry stamped with modTime.
// The tar and the gzip stream depend only on the arguments: no user or group names, no PAX times,
// no gzip name or time, and a fixed compression level.
func Layer(files []File, modTime time.Time) (v1.Layer, error) {
	uncompressed, err := TarFiles(files, modTime)
	if err != nil {
		return nil, err
	}
	var compressed bytes.Buffer
	zw, err := gzip.NewWriterLevel(&compressed, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(uncompressed); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	gz := compressed.Bytes()
	// Handing go-containerregistry the compressed bytes keeps it from compressing again with its
	// own settings: the digest is the digest of exactly these bytes.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.MediaType(imagespec.LayerMediaType)))
}

// TarFiles returns the uncompressed tar of files. Entry names are relative to the root ("health-check",
// not "/health-check"), as OCI layers name them.
func TarFiles(files []File, modTime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		if name == "" || strings.HasSuffix(name, "/") {
			return nil, fmt.Errorf("layer file %q: not a file path", f.Path)
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     f.Mode,
			Uid:      f.UID,
			Gid:      f.GID,
			Size:     int64(len(f.Content)),
			ModTime:  modTime.UTC().Truncate(time.Second),
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
