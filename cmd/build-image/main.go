// Command build-image builds the health-check image without Bazel and without a Docker daemon: the
// probe for six Linux platforms (amd64, arm64, arm/v7, ppc64le, s390x, riscv64), a layer holding
// only /health-check, a scratch image per platform and the multi-arch index, reproducibly (same
// source, same digests). Every manifest carries the OCI annotations org.opencontainers.image.*.
//
//	go run ./cmd/build-image -o out/image                    # OCI image layout; prints the digests
//	go run ./cmd/build-image -docker-archive out/image.tar   # then: docker load -i out/image.tar
//	go run ./cmd/build-image -layer out/health-check.tar     # the layer alone, for your own image
//	go run ./cmd/build-image -layers out/release -sbom out/release/health-check.spdx.json
//	                                   # every platform's layer, and an SPDX SBOM of the probes
//	go run ./cmd/build-image -binaries out/release       # the probe itself, per platform and desktop
//
// SOURCE_DATE_EPOCH, when set, is the layer's mtime, the image's created time and annotation, and
// the SBOM's creation time. A release also gives -version and -revision; without them the
// annotations say "dev" (or git describe) and "unknown", so that plain builds stay reproducible.
package main

import (
	"cmp"
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
	binariesDir   string
	binaryTargets []string // os/arch, or a Linux platform as imagespec.Platform names it
	archs         []string // the index's platforms, by architecture
	platform      string
	tag           string
	refName       string // the tag part of tag
	version       string
	revision      string
	toolchain     string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("build-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.layoutDir, "o", "", "write the multi-arch image as an OCI image layout to `DIR`")
	fs.StringVar(&c.dockerArchive, "docker-archive", "", "write the -platform image as a docker load tarball to `FILE`")
	fs.StringVar(&c.layerFile, "layer", "", "write the -platform layer to `FILE` (plain tar; gzipped if FILE ends in .gz or .tgz)")
	fs.StringVar(&c.layersDir, "layers", "", "write every platform's layer, gzipped (the blob the manifest names), to `DIR`/health-check-layer-OS-ARCH[-VARIANT].tar.gz")
	fs.StringVar(&c.binariesDir, "binaries", "", "write the probe for each -binary-platforms entry to `DIR`/health-check-OS-ARCH[-VARIANT][.exe]")
	imagePlatforms := fs.String("platforms", strings.Join(defaultBinaryPlatforms()[:len(imagespec.Architectures)], ","), "comma-separated platforms of the index (a subset builds faster; releases build all)")
	binaryPlatforms := fs.String("binary-platforms", strings.Join(defaultBinaryPlatforms(), ","), "comma-separated platforms for -binaries")
	fs.StringVar(&c.sbomFile, "sbom", "", "write an SPDX 2.3 JSON SBOM of every platform's probe to `FILE`")
	fs.StringVar(&c.platform, "platform", imagespec.OS+"/"+imagespec.Architectures[0], "platform for -docker-archive and -layer")
	fs.StringVar(&c.tag, "tag", "health-check:dev", "tag of the -docker-archive image; its tag part names the image in the -o layout")
	fs.StringVar(&c.version, "version", "", "version stamped into the probe and the version annotation (default: git describe, else "+imagespec.UnstampedVersion+")")
	fs.StringVar(&c.revision, "revision", "", "source revision for the revision annotation (default: "+imagespec.UnstampedRevision+")")
	fs.StringVar(&c.toolchain, "toolchain", "", "GOTOOLCHAIN for compiling the probe (default: the one go.mod pins; \"local\" for the go on PATH)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: build-image [-o DIR] [-docker-archive FILE] [-layer FILE] [-layers DIR] [-sbom FILE] [-binaries DIR] [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.layoutDir == "" && c.dockerArchive == "" && c.layerFile == "" && c.layersDir == "" && c.sbomFile == "" && c.binariesDir == "" {
		return c, errors.New("nothing to write: give -o DIR, -docker-archive FILE, -layer FILE, -layers DIR, -sbom FILE or -binaries DIR")
	}
	for _, p := range strings.Split(*imagePlatforms, ",") {
		arch, err := platformArch(p)
		if err != nil {
			return c, fmt.Errorf("-platforms: %w", err)
		}
		c.archs = append(c.archs, arch)
	}
	for _, p := range strings.Split(*binaryPlatforms, ",") {
		if !slices.Contains(defaultBinaryPlatforms(), p) {
			return c, fmt.Errorf("-binary-platforms: platform %q: want some of %s", p, strings.Join(defaultBinaryPlatforms(), ","))
		}
		c.binaryTargets = append(c.binaryTargets, p)
	}
	tag, err := name.NewTag(c.tag, name.WithDefaultTag("dev"))
	if err != nil {
		return c, fmt.Errorf("-tag %q: %w", c.tag, err)
	}
	c.refName = tag.TagStr()
	for flagName, value := range map[string]string{"-version": c.version, "-revision": c.revision} {
		if value == "" {
			continue
		}
		if err := imagebuild.ValidateVersion(value); err != nil {
			return c, fmt.Errorf("%s: %w", flagName, err)
		}
	}
	return c, nil
}

// defaultBinaryPlatforms are the platforms a release ships the probe for: the image's, then the
// desktops'.
func defaultBinaryPlatforms() []string {
	var platforms []string
	for _, arch := range imagespec.Architectures {
		platforms = append(platforms, imagespec.Platform(arch))
	}
	return append(platforms, imagespec.DesktopPlatforms...)
}

// platformArch returns the architecture of a platform of the image, given as imagespec.Platform
// names it (linux/arm/v7) or without its variant (linux/arm).
func platformArch(platform string) (string, error) {
	var supported []string
	for _, arch := range imagespec.Architectures {
		if platform == imagespec.Platform(arch) || platform == imagespec.OS+"/"+arch {
			return arch, nil
		}
		supported = append(supported, imagespec.Platform(arch))
	}
	return "", fmt.Errorf("platform %q: want one of %s", platform, strings.Join(supported, ", "))
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
	if err == nil && !slices.Contains(c.archs, arch) {
		err = fmt.Errorf("-platform %s is not one of -platforms", c.platform)
	}
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
	version := cmp.Or(c.version, imagebuild.GitDescribe(ctx, ""), imagespec.UnstampedVersion)
	toolchain := c.toolchain
	if toolchain == "" {
		if toolchain, err = imagebuild.ModuleToolchain(ctx, ""); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "build-image: building %s with %s, version %s, epoch %d\n",
		imagespec.ProbePackage, toolchain, version, epoch.Unix())

	res, err := imagebuild.Build(ctx, imagebuild.Options{
		Version: version, Revision: c.revision, Toolchain: toolchain, Epoch: epoch, Architectures: c.archs,
	})
	if err != nil {
		return err
	}
	if err := writeOutputs(c, arch, res); err != nil {
		return err
	}
	if c.sbomFile != "" {
		if err := writeSBOM(c.sbomFile, res, version, epoch); err != nil {
			return err
		}
	}
	if c.binariesDir != "" {
		opts := imagebuild.BinaryOptions{Version: version, Toolchain: toolchain}
		if err := writeBinaries(ctx, c.binariesDir, c.binaryTargets, res, opts); err != nil {
			return err
		}
	}
	return printDigests(stdout, res)
}

// writeOutputs writes what the image build itself made: the layout, the docker archive, the layers.
func writeOutputs(c config, arch string, res *imagebuild.Result) error {
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
	return nil
}

// writeBinaries writes the probe for each platform to dir. A Linux platform's probe is the one its
// image carries; the others are compiled here, with the same reproducible settings.
func writeBinaries(ctx context.Context, dir string, platforms []string, res *imagebuild.Result, opts imagebuild.BinaryOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, platform := range platforms {
		path := filepath.Join(dir, binaryFileName(platform))
		if arch, err := platformArch(platform); err == nil && res.Binaries[arch] != nil {
			if err := os.WriteFile(path, res.Binaries[arch], 0o755); err != nil {
				return err
			}
			continue
		}
		if arch, err := platformArch(platform); err == nil {
			platform = imagespec.OS + "/" + arch // the variant is GOARM, which BuildBinary sets
		}
		opts.OS, opts.Arch, _ = strings.Cut(platform, "/")
		if err := imagebuild.BuildBinary(ctx, opts, path); err != nil {
			return err
		}
	}
	return nil
}

// layerFileName names a platform's layer in the -layers directory: gzipped, so that its SHA-256 is
// the layer digest in that platform's image manifest.
func layerFileName(arch string) string {
	return "health-check-layer-" + strings.ReplaceAll(imagespec.Platform(arch), "/", "-") + ".tar.gz"
}

// binaryFileName names a platform's probe in the -binaries directory: health-check-linux-arm-v7,
// health-check-windows-amd64.exe.
func binaryFileName(platform string) string {
	name := "health-check-" + strings.ReplaceAll(platform, "/", "-")
	if strings.HasPrefix(platform, "windows/") {
		name += ".exe"
	}
	return name
}

func writeSBOM(path string, res *imagebuild.Result, version string, epoch time.Time) error {
	var binaries []sbom.Binary
	for _, arch := range res.Architectures {
		binaries = append(binaries, sbom.Binary{Platform: imagespec.Platform(arch), Content: res.Binaries[arch]})
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

// printDigests prints "index sha256:..." and one "PLATFORM sha256:..." line per manifest: the
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
		fmt.Fprintf(w, "%s %s\n", imagespec.Platform(arch), digest)
	}
	return nil
}
