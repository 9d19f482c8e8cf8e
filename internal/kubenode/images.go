package kubenode

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
)

// The images a node's pods run, all built here from the module's source by internal/imagebuild
// (the code of cmd/build-image) and imported with ctr: there is no registry, the pods say
// imagePullPolicy: Never.
const (
	// ProbeImage is the product image: the probe's layer alone, for the serve sidecar.
	ProbeImage = "kubenode.local/health-check:1"
	// AppImage is the probe's layer plus e2e/testserver (the entrypoint), so that exec probes run
	// /health-check inside the app's container as the README shows.
	AppImage = "kubenode.local/app:1"
)

const modulePath = "github.com/health-check-proxy/health-check-proxy"

// BuildImages builds the pause, app and product images for this machine's architecture into dir
// as docker-archive tarballs, and returns their paths. moduleDir is any directory in the module
// ("" is the current one).
func BuildImages(ctx context.Context, moduleDir, dir string) ([]string, error) {
	binaries := map[string]string{"health-check": "", "testserver": modulePath + "/e2e/testserver", "pause": modulePath + "/e2e/pause"}
	content := map[string][]byte{}
	for name, pkg := range binaries {
		path := filepath.Join(dir, name)
		opts := imagebuild.BinaryOptions{Dir: moduleDir, Arch: runtime.GOARCH, Package: pkg}
		if pkg == "" {
			opts.Version = "kubenode"
		}
		if err := imagebuild.BuildBinary(ctx, opts, path); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		content[name] = b
	}
	epoch, err := imagebuild.EpochFromEnv("")
	if err != nil {
		return nil, err
	}
	probeLayer, err := imagebuild.ProbeLayer(content["health-check"], epoch)
	if err != nil {
		return nil, err
	}
	image := func(entrypoint string, layers ...v1.Layer) (v1.Image, error) {
		if entrypoint != "" {
			l, err := imagebuild.Layer([]imagebuild.File{{Path: "/" + entrypoint, Mode: 0o755, Content: content[entrypoint]}}, epoch)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
		}
		return imagebuild.Image(runtime.GOARCH, epoch, layers, func(c *v1.Config) {
			if entrypoint != "" {
				c.Entrypoint = []string{"/" + entrypoint}
			}
		})
	}
	var tarballs []string
	for _, img := range []struct {
		tag        string
		entrypoint string
		layers     []v1.Layer
	}{{PauseImage, "pause", nil}, {AppImage, "testserver", []v1.Layer{probeLayer}}, {ProbeImage, "", []v1.Layer{probeLayer}}} {
		built, err := image(img.entrypoint, img.layers...)
		if err != nil {
			return nil, err
		}
		tarball := filepath.Join(dir, strings.NewReplacer(":", "-", "/", "-").Replace(img.tag)+".tar")
		if err := imagebuild.WriteDockerArchive(tarball, built, img.tag); err != nil {
			return nil, err
		}
		tarballs = append(tarballs, tarball)
	}
	return tarballs, nil
}
