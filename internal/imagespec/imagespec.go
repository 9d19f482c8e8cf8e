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

// Entrypoint is the image's entrypoint: the probe itself, so `docker run IMAGE -url ...` works.
var Entrypoint = []string{BinaryPath}

// Architectures are the platforms of the multi-arch index, in index order.
var Architectures = []string{"amd64", "arm64"}
