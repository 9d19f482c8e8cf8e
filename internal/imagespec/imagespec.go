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
	// OwnerUID and OwnerGID own the binary: root, so that the non-root user the image runs as cannot
	// replace it.
	OwnerUID = 0
	OwnerGID = 0
	// User is distroless' "nonroot" user; scratch has no /etc/passwd, so it is numeric.
	User = "65532:65532"
	// OS of every image we build.
	OS = "linux"
)

// Entrypoint is the image's entrypoint: the probe itself, so `docker run IMAGE -url ...` works.
var Entrypoint = []string{BinaryPath}

// Architectures are the platforms of the multi-arch index, in index order.
var Architectures = []string{"amd64", "arm64"}
