package imagebuild

import (
	"fmt"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// Image stacks layers on scratch for linux/arch, in order, and gives it the image's config: the
// non-root user, the probe as entrypoint, the fixed created time. configure, when not nil, changes
// the config further (the tests' app images set their own entrypoint and a health check).
func Image(arch string, created time.Time, layers []v1.Layer, configure func(*v1.Config)) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.MediaType(imagespec.ManifestMediaType))
	img = mutate.ConfigMediaType(img, types.MediaType(imagespec.ConfigMediaType))
	stamp := v1.Time{Time: created.UTC().Truncate(time.Second)}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, layer := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: stamp, CreatedBy: "health-check-proxy build-image"},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cfgFile, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfgFile = cfgFile.DeepCopy()
	cfgFile.OS = imagespec.OS
	cfgFile.Architecture = arch
	cfgFile.Variant = imagespec.Variants[arch]
	cfgFile.Created = stamp
	cfgFile.Config = v1.Config{
		User:       imagespec.User,
		Entrypoint: slices.Clone(imagespec.Entrypoint),
	}
	if configure != nil {
		configure(&cfgFile.Config)
	}
	img, err = mutate.ConfigFile(img, cfgFile)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// Index is the multi-arch index over images, in the order given, each entry carrying its
// platform from the image's config.
func Index(images []v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.MediaType(imagespec.IndexMediaType))
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, img := range images {
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		platform := cfg.Platform()
		if platform == nil {
			return nil, fmt.Errorf("image config without a platform")
		}
		mediaType, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		size, err := img.Size()
		if err != nil {
			return nil, err
		}
		desc := v1.Descriptor{MediaType: mediaType, Digest: digest, Size: size, Platform: platform}
		adds = append(adds, mutate.IndexAddendum{Add: indexEntry{Image: img, desc: desc}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// indexEntry is an image with the exact descriptor its index entry gets. Left to itself,
// go-containerregistry sets the entry's artifactType to the config's media type; OCI meant
// artifactType for artifacts, not images, and neither docker buildx nor rules_oci write it.
type indexEntry struct {
	v1.Image
	desc v1.Descriptor
}

// Descriptor makes partial.Descriptor use desc as it is.
func (e indexEntry) Descriptor() (*v1.Descriptor, error) {
	desc := e.desc
	return &desc, nil
}
