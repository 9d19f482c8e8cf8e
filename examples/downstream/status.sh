#!/usr/bin/env bash
# Workspace status for `bazel build --config=release` (.bazelrc): Bazel runs it from the workspace
# root and reads "KEY value" lines. STABLE_VERSION is the application's version (BUILD.bazel x_defs).
set -euo pipefail

echo "STABLE_VERSION app-$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"
