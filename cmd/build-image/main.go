// Command build-image builds the health-check image without Bazel and without a Docker daemon: the
// probe for linux/amd64 and linux/arm64, a layer holding only /health-check, a scratch image per
// platform and the multi-arch index, reproducibly (same source, same digests).
//
//	go run ./cmd/build-image -o out/image                    # OCI image layout; prints the digests
//	go run ./cmd/build-image -docker-archive out/image.tar   # then: docker load -i out/image.tar
//	go run ./cmd/build-image -layer out/health-check.tar     # the layer alone, for your own image
//	go run ./cmd/build-image -layers out/release -sbom out/release/health-check.spdx.json
//	                                   # every platform's layer, and an SPDX SBOM of the probes
//
// SOURCE_DATE_EPOCH, when set, is the layer's mtime, the image's created time and the SBOM's
// creation time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/health-check-proxy/health-check-proxy/internal/imagebuild"
	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
	"github.com/health-check-proxy/health-check-proxy/internal/sbom"
)

// Exit codes: 2 for usage, as the flag package does; 1 for a failed build.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	layoutDir     string
	dockerArchive string
	layerFile     string
	layersDir     string
	sbomFile      string
	platform      string
	tag           string
	refName       string // the tag part of tag
	version       string
	toolchain     string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("build-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.layoutDir, "o", "", "write the multi-arch image as an OCI image layout to `DIR`")
	fs.StringVar(&c.dockerArchive, "docker-archive", "", "write the -platform image as a docker load tarball to `FILE`")
	fs.StringVar(&c.layerFile, "layer", "", "write the -platform layer to `FILE` (plain tar; gzipped if FILE ends in .gz or .tgz)")
	fs.StringVar(&c.layersDir, "layers", "", "write every platform's layer, gzipped (the blob the manifest names), to `DIR`/"+layerFileName("ARCH"))
	fs.StringVar(&c.sbomFile, "sbom", "", "write an SPDX 2.3 JSON SBOM of every platform's probe to `FILE`")
	fs.StringVar(&c.platform, "platform", imagespec.OS+"/"+imagespec.Architectures[0], "platform for -docker-archive and -layer")
	fs.StringVar(&c.tag, "tag", "health-check:dev", "tag of the -docker-archive image; its tag part names the image in the -o layout")
	fs.StringVar(&c.version, "version", "", "version stamped into the probe (default: git describe, else dev)")
	fs.StringVar(&c.toolchain, "toolchain", "", "GOTOOLCHAIN for compiling the probe (default: the one go.mod pins; \"local\" for the go on PATH)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: build-image [-o DIR] [-docker-archive FILE] [-layer FILE] [-layers DIR] [-sbom FILE] [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.layoutDir == "" && c.dockerArchive == "" && c.layerFile == "" && c.layersDir == "" && c.sbomFile == "" {
		return c, errors.New("nothing to write: give -o DIR, -docker-archive FILE, -layer FILE, -layers DIR or -sbom FILE")
	}
	tag, err := name.NewTag(c.tag, name.WithDefaultTag("dev"))
	if err != nil {
		return c, fmt.Errorf("-tag %q: %w", c.tag, err)
	}
	c.refName = tag.TagStr()
	if c.version != "" {
		if err := imagebuild.ValidateVersion(c.version); err != nil {
			return c, err
		}
	}
	return c, nil
}

// platformArch returns the architecture of an os/arch platform we build.
func platformArch(platform string) (string, error) {
	osName, arch, ok := strings.Cut(platform, "/")
	if !ok || osName != imagespec.OS || !slices.Contains(imagespec.Architectures, arch) {
		var supported []string
		for _, a := range imagespec.Architectures {
			supported = append(supported, imagespec.OS+"/"+a)
		}
		return "", fmt.Errorf("platform %q: want one of %s", platform, strings.Join(supported, ", "))
	}
	return arch, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "build-image: %v\n", err)
		return exitUsage
	}
	arch, err := platformArch(c.platform)
	if err != nil {
		fmt.Fprintf(stderr, "build-image: %v\n", err)
		return exitUsage
	}
	if err := build(ctx, c, arch, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "build-image: %v\n", err)
		return exitFailed
	}
	return 0
}

func build(ctx context.Context, c config, arch string, stdout, stderr io.Writer) error {
	epoch, err := imagebuild.EpochFromEnv(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	version := c.version
	if version == "" {
		version = imagebuild.GitDescribe(ctx, "")
	}
	if version == "" {
		version = "dev"
	}
	toolchain := c.toolchain
	if toolchain == "" {
		if toolchain, err = imagebuild.ModuleToolchain(ctx, ""); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "build-image: building %s with %s, version %s, epoch %d\n",
		imagespec.ProbePackage, toolchain, version, epoch.Unix())

	res, err := imagebuild.Build(ctx, imagebuild.Options{Version: version, Toolchain: toolchain, Epoch: epoch})
	if err != nil {
		return err
	}

	if c.layoutDir != "" {
		if err := imagebuild.WriteLayout(c.layoutDir, res.Index, c.refName); err != nil {
			return err
		}
	}
	if c.dockerArchive != "" {
		if err := imagebuild.WriteDockerArchive(c.dockerArchive, res.Images[arch], c.tag); err != nil {
			return err
		}
	}
	if c.layerFile != "" {
		if err := imagebuild.WriteLayer(c.layerFile, res.Layers[arch]); err != nil {
			return err
		}
	}
	if c.layersDir != "" {
		if err := os.MkdirAll(c.layersDir, 0o755); err != nil {
			return err
		}
		for _, arch := range res.Architectures {
			if err := imagebuild.WriteLayer(filepath.Join(c.layersDir, layerFileName(arch)), res.Layers[arch]); err != nil {
				return err
			}
		}
	}
	if c.sbomFile != "" {
		if err := writeSBOM(c.sbomFile, res, version, epoch); err != nil {
			return err
		}
	}
	return printDigests(stdout, res)
}

// layerFileName names a platform's layer in the -layers directory: gzipped, so that its SHA-256 is
// the layer digest in that platform's image manifest.
func layerFileName(arch string) string {
	return "health-check-layer-" + imagespec.OS + "-" + arch + ".tar.gz"
}

func writeSBOM(path string, res *imagebuild.Result, version string, epoch time.Time) error {
	var binaries []sbom.Binary
	for _, arch := range res.Architectures {
		binaries = append(binaries, sbom.Binary{Platform: imagespec.OS + "/" + arch, Content: res.Binaries[arch]})
	}
	doc, err := sbom.SPDX(sbom.Options{
		Name: "health-check", Version: version, Created: epoch, Creator: "build-image",
	}, binaries)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		return fmt.Errorf("write SBOM: %w", err)
	}
	return nil
}

// printDigests prints "index sha256:..." and one "linux/ARCH sha256:..." line per manifest: the
// lines a person compares between two builds, and scripts read with awk.
func printDigests(w io.Writer, res *imagebuild.Result) error {
	digest, err := res.Index.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "index %s\n", digest)
	for _, arch := range res.Architectures {
		digest, err := res.Images[arch].Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s/%s %s\n", imagespec.OS, arch, digest)
	}
	return nil
}
