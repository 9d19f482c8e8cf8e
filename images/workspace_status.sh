#!/usr/bin/env bash
# Workspace status for `bazel build --config=release` (see .bazelrc). Bazel runs it from the
# workspace root and reads "KEY value" lines. STABLE_ keys are part of the stable status: a change
# re-links the binaries that use them (cmd/health-check's x_defs main.version).
set -euo pipefail

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
echo "STABLE_VERSION ${version}"
