// Package imagespec is the one place that says what the health-check image looks like. The Go-native
// builder (cmd/build-image) builds from it, and a consistency test holds images/BUILD.bazel to it, so
// the two build paths cannot drift apart.
package imagespec

const (
	// BinaryPath is where the probe lives in the layer and in every image built on it. Users name it
	// in their exec probes, so it never changes.
	BinaryPath = "/health-check"
	// BinaryMode keeps the probe executable by any user while only root can change it.
	BinaryMode = 0o755
	// LayerEntryName is the binary's entry name in the layer tar: BinaryPath without the leading
	// slash, as tar and OCI layers name entries relative to the root (docker, umoci and bsdtar's
	// mtree all write and read it this way).
	LayerEntryName = "health-check"
	// OwnerUID and OwnerGID own the binary: root, so that the non-root user the image runs as cannot
	// replace it.
	OwnerUID = 0
	OwnerGID = 0
	// User is distroless' "nonroot" user; scratch has no /etc/passwd, so it is numeric.
	User = "65532:65532"
	// OS of every image we build.
	OS = "linux"

	// ProbePackage is the Go package the probe binary is built from. It is a full import path, not
	// ./cmd/health-check, so that a build started anywhere inside the module finds it.
	ProbePackage = "github.com/health-check-proxy/health-check-proxy/cmd/health-check"
	// VersionSymbol is the string variable the linker stamps with the version (-X main.version=...).
	VersionSymbol = "main.version"

	// DefaultSourceDateEpoch is the layer's mtime and the config's created time when
	// SOURCE_DATE_EPOCH is unset: the Unix epoch, as ko and rules_oci default to. A wall-clock time
	// here would change the digests on every build.
	DefaultSourceDateEpoch int64 = 0

	// Media types: OCI throughout, so the layout and the index are what OCI tools and registries
	// expect; docker load accepts the same layer and config.
	IndexMediaType    = "application/vnd.oci.image.index.v1+json"
	ManifestMediaType = "application/vnd.oci.image.manifest.v1+json"
	ConfigMediaType   = "application/vnd.oci.image.config.v1+json"
	LayerMediaType    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// The OCI annotations every image manifest carries (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
// Version, revision and created are known only to a release, which stamps them; a plain build
// gives the fixed values below, so that its digests stay the same from build to build.
const (
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationLicenses    = "org.opencontainers.image.licenses"
	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationDescription = "org.opencontainers.image.description"

	Source = "https://github.com/health-check-proxy/health-check-proxy"
	// Licenses is an SPDX expression; the repository declares no license yet, and NOASSERTION is
	// SPDX's word for "nothing is claimed".
	Licenses    = "NOASSERTION"
	Title       = "health-check"
	Description = "A static probe for Kubernetes exec probes and Docker HEALTHCHECKs: HTTP(S) with mutual TLS, gRPC health, TCP and TLS."
	// UnstampedVersion and UnstampedRevision are what a build that is not a release says.
	UnstampedVersion  = "dev"
	UnstampedRevision = "unknown"
)

// Annotations are the manifest annotations of an image of the given version, from the given
// source revision, created at created (an RFC 3339 time in UTC, as the config's created field).
func Annotations(version, revision, created string) map[string]string {
	return map[string]string{
		AnnotationSource:      Source,
		AnnotationRevision:    revision,
		AnnotationVersion:     version,
		AnnotationCreated:     created,
		AnnotationLicenses:    Licenses,
		AnnotationTitle:       Title,
		AnnotationDescription: Description,
	}
}

// Entrypoint is the image's entrypoint: the probe itself, so `docker run IMAGE -url ...` works.
var Entrypoint = []string{BinaryPath}

// Architectures are the GOARCH values (and OCI architectures) of the multi-arch index's platforms,
// in index order: the six Linux platforms grpc-health-probe's users run on. images/defs.bzl's
// LINUX_PLATFORMS names the same list (internal/bazelcheck holds it to this one).
var Architectures = []string{"amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"}

// GOARM is the ARM version the 32-bit arm probe is compiled for: ARMv7 with hardware floating
// point, what Debian's armhf and the linux/arm/v7 images of Docker Hub run on.
const GOARM = "7"

// Variants holds the OCI platform variant of the architectures that have one: arm is built for
// GOARM, which the index must say, or a runtime on an ARMv6 board would pick an image it cannot run.
var Variants = map[string]string{"arm": "v" + GOARM}

// Platform is the OCI platform of an architecture as docker and skopeo write it: "linux/arm64",
// "linux/arm/v7".
func Platform(arch string) string {
	if variant := Variants[arch]; variant != "" {
		return OS + "/" + arch + "/" + variant
	}
	return OS + "/" + arch
}

// DesktopPlatforms are the platforms, besides the image's, that a release ships the probe for as a
// plain file: developers run it on their own machines against the same endpoints.
var DesktopPlatforms = []string{"darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}
