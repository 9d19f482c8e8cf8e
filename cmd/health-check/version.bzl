"""The probe's version, from this module's own version: never from a build's status files.

A downstream that builds with `--stamp` has its own status keys; an x_defs value holding `{KEY}`
would be filled from them (rules_go's link builder reads the status files of whoever runs the
build), so its releases would rewrite our layer. module_version(), which
cmd/health-check/BUILD.bazel passes here, is the version of the module whose BUILD file calls it:
the registry's copy of MODULE.bazel carries the release version (publish-to-bcr patches it in,
.bcr/README.md), so the probe of release X.Y.Z says vX.Y.Z in every build of every module that
uses it. docs/bazel.md says what each kind of build reports.
"""

# The version MODULE.bazel holds between releases. A build of this repository at a commit (the
# root, or a downstream's local_path_override / git_override / archive_override) reports "dev", as
# `go build` without -ldflags does. Under such an override Bazel keys the module without a version
# (name@_), but module_version() is still the one our MODULE.bazel declares (Bazel's
# RepositoryMappingFunction hands packages Module.getVersion(), read from module()); either way,
# "0.0.0" or empty, the probe says "dev".
UNRELEASED_VERSION = "0.0.0"

def probe_x_defs(version):
    """x_defs for the probe's go_binary: main.version from this module's version.

    Args:
        version: module_version() of the BUILD file that calls this (None outside Bzlmod).

    Returns:
        {"main.version": "vX.Y.Z"} for a released module version X.Y.Z (the tag's form, as the
        Go-native release build prints it); {} for an unreleased tree, so that main.version keeps
        its source default, "dev". No value holds a `{KEY}`, so stamping never changes the probe.
    """
    if not version or version == UNRELEASED_VERSION:
        return {}
    if not version.startswith("v"):
        version = "v" + version
    return {"main.version": version}
