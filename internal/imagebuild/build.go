package imagebuild

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// Options configure a build of the health-check image.
type Options struct {
	// Dir is any directory inside the module ("" is the current one).
	Dir string
	// Version is stamped into the probe and the version annotation; "" means
	// imagespec.UnstampedVersion.
	Version string
	// Revision is the source revision annotation; "" means imagespec.UnstampedRevision.
	Revision string
	// Toolchain is GOTOOLCHAIN for the go command: see ModuleToolchain.
	Toolchain string
	// Epoch is the layer's mtime, the config's created time and the created annotation.
	Epoch time.Time
	// Architectures to build, in index order; nil means imagespec.Architectures.
	Architectures []string
	// Env is added to the go command's environment (see BinaryOptions.Env).
	Env []string
}

// Result is a built image: the index and, per architecture, the image, the probe's layer and the
// probe itself (for the SBOM, which reads the build information the go command put into it).
type Result struct {
	Index    v1.ImageIndex
	Images   map[string]v1.Image
	Layers   map[string]v1.Layer
	Binaries map[string][]byte
	// Architectures in index order.
	Architectures []string
}

// Build compiles the probe for every architecture and assembles the images and the index.
func Build(ctx context.Context, opts Options) (*Result, error) {
	archs := opts.Architectures
	if archs == nil {
		archs = imagespec.Architectures
	}
	version := cmp.Or(opts.Version, imagespec.UnstampedVersion)
	annotations := imagespec.Annotations(version, cmp.Or(opts.Revision, imagespec.UnstampedRevision),
		opts.Epoch.UTC().Format(time.RFC3339))
	tmp, err := os.MkdirTemp("", "build-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	res := &Result{
		Images: map[string]v1.Image{}, Layers: map[string]v1.Layer{}, Binaries: map[string][]byte{},
		Architectures: archs,
	}
	images := make([]v1.Image, 0, len(archs))
	for _, arch := range archs {
		out := filepath.Join(tmp, "health-check-"+arch)
		err := BuildBinary(ctx, BinaryOptions{
			Dir: opts.Dir, Arch: arch, Version: version, Toolchain: opts.Toolchain, Env: opts.Env,
		}, out)
		if err != nil {
			return nil, err
		}
		binary, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		layer, err := ProbeLayer(binary, opts.Epoch)
		if err != nil {
			return nil, fmt.Errorf("layer for %s: %w", imagespec.Platform(arch), err)
		}
		img, err := Image(arch, opts.Epoch, []v1.Layer{layer}, nil)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", imagespec.Platform(arch), err)
		}
		img = mutate.Annotations(img, annotations).(v1.Image)
		res.Layers[arch] = layer
		res.Binaries[arch] = binary
		res.Images[arch] = img
		images = append(images, img)
	}
	if res.Index, err = Index(images); err != nil {
		return nil, err
	}
	return res, nil
}

// EpochFromEnv turns a SOURCE_DATE_EPOCH value into the build's timestamp; an empty value gives
// imagespec.DefaultSourceDateEpoch. See https://reproducible-builds.org/specs/source-date-epoch/.
func EpochFromEnv(value string) (time.Time, error) {
	if value == "" {
		return time.Unix(imagespec.DefaultSourceDateEpoch, 0).UTC(), nil
	}
	secs, err := strconv.ParseInt(value, 10, 64)
	if err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative integer of seconds", value)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// ModuleToolchain is the Go toolchain the module in dir pins: go.mod's toolchain line, else its go
// line ("go1.26.8"). Setting GOTOOLCHAIN to it makes every machine compile with the same Go (the go
// command fetches that release when the local one differs), which the same digests depend on.
func ModuleToolchain(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	var mod struct {
		Go        string
		Toolchain string
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	if mod.Toolchain != "" {
		return mod.Toolchain, nil
	}
	if mod.Go == "" {
		return "", fmt.Errorf("go.mod has no go line")
	}
	// A go line like "1.26" names a language version, not a release; "1.26.8" names both.
	if strings.Count(mod.Go, ".") < 2 {
		return "", fmt.Errorf("go.mod's go line %q names no release; add a toolchain line", mod.Go)
	}
	return "go" + mod.Go, nil
}
