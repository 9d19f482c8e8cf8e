#!/usr/bin/env bash
# The release build, shared by release.yml's `build` job (in the checkout of the tag) and its
# `rebuild` job (in the unpacked source archive, on another runner): both must print the same
# digests and write the same files, or the release stops.
#
# usage: .github/release/build.sh OUT
# with TAG (vX.Y.Z), REVISION (the tagged commit) and SOURCE_DATE_EPOCH (its commit time) set.
# Writes OUT/image (the OCI layout of the multi-arch index), OUT/digests.txt (build-image's digest
# lines) and OUT/release/ (each platform's layer and probe, the desktop probes, the SPDX SBOM).
set -euo pipefail

out=${1:?usage: build.sh OUT}
: "${TAG:?}" "${REVISION:?}" "${SOURCE_DATE_EPOCH:?}"
export SOURCE_DATE_EPOCH

mkdir -p "${out}/release"
go run ./cmd/build-image -o "${out}/image" -tag "health-check:${TAG}" \
  -version "${TAG}" -revision "${REVISION}" \
  -layers "${out}/release" -binaries "${out}/release" \
  -sbom "${out}/release/health-check.spdx.json" >"${out}/digests.txt"
cat "${out}/digests.txt"
