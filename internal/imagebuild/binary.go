// Package imagebuild builds the health-check image without Bazel and without a Docker daemon: the
// probe compiled reproducibly for each platform, a layer that holds only the probe, a scratch image
// per platform and the multi-arch index, all with go-containerregistry. The shape comes from
// internal/imagespec. cmd/build-image is a thin command over this package; the container tests use
// it to build images of their own (the probe's layer under a test application).
package imagebuild

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/health-check-proxy/health-check-proxy/internal/imagespec"
)

// BinaryOptions say how to compile one Go program for one platform.
type BinaryOptions struct {
	// Dir is where the go command runs: any directory inside the module ("" is the current one).
	Dir string
	// Package is the import path of the main package; "" is the probe.
	Package string
	// OS is the GOOS; "" is imagespec.OS. The release also ships the probe for desktops.
	OS string
	// Arch is the GOARCH: one of imagespec.Architectures for linux.
	Arch string
	// Version is stamped into main.version; "" leaves the program's own default.
	Version string
	// Toolchain is GOTOOLCHAIN for the go command ("" keeps the environment's).
	Toolchain string
	// Env is added to the go command's environment after the inherited one and before the settings
	// that make the build reproducible, which always win.
	Env []string
}

// reproducibleEnv pins every setting of the environment that changes the compiled bytes: a pure-Go
// static binary, the baseline instruction set of each architecture (ARMv7 for arm, the variant the
// index names), and no ambient GOFLAGS or experiments from the caller's shell.
func reproducibleEnv(goos, arch string) []string {
	return []string{
		"CGO_ENABLED=0",
		"GOOS=" + goos,
		"GOARCH=" + arch,
		"GOAMD64=v1",
		"GOARM64=v8.0",
		"GOARM=" + imagespec.GOARM,
		"GOPPC64=power8",
		"GORISCV64=rva20u64",
		"GOFLAGS=",
		"GOEXPERIMENT=",
	}
}

// BuildBinary compiles opts.Package to the file out: static, stripped, -trimpath, no build id, no
// VCS stamp, so that the same source gives the same bytes on any machine, in any directory.
func BuildBinary(ctx context.Context, opts BinaryOptions, out string) error {
	pkg := opts.Package
	if pkg == "" {
		pkg = imagespec.ProbePackage
	}
	if opts.Arch == "" {
		return errors.New("build binary: no architecture given")
	}
	goos := cmp.Or(opts.OS, imagespec.OS)
	platform := goos + "/" + opts.Arch
	if goos == imagespec.OS {
		platform = imagespec.Platform(opts.Arch)
	}
	ldflags := "-s -w -buildid="
	if opts.Version != "" {
		if err := ValidateVersion(opts.Version); err != nil {
			return err
		}
		ldflags += " -X " + imagespec.VersionSymbol + "=" + opts.Version
	}
	cmd := exec.CommandContext(ctx, "go", "build",
		"-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", out, pkg)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	if opts.Toolchain != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+opts.Toolchain)
	}
	cmd.Env = append(cmd.Env, reproducibleEnv(goos, opts.Arch)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w: %s", pkg, platform, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// ValidateVersion rejects versions the linker flag cannot carry as one word, and ones no one would
// want to read in `health-check -version`.
func ValidateVersion(version string) error {
	if version == "" {
		return errors.New("version is empty")
	}
	for _, r := range version {
		if r <= ' ' || r > '~' || r == '\'' || r == '"' || r == '\\' {
			return fmt.Errorf("version %q: only printable ASCII without spaces or quotes is allowed", version)
		}
	}
	return nil
}

// GitDescribe returns `git describe --tags --always --dirty` for the repository around dir, or ""
// when dir is not in a git checkout or git is missing: then the caller falls back to its default.
func GitDescribe(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	version := strings.TrimSpace(string(out))
	if ValidateVersion(version) != nil {
		return ""
	}
	return version
}
