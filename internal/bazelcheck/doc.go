// Package bazelcheck holds the checks of the Bazel files that run without Bazel, as Go tests:
// buildifier's format and lint, gazelle in diff mode, every label and load() against this
// repository and the pinned rule sources (rules_go and gazelle from the Go module cache; rules_oci
// and tar.bzl from a checked-in table of facts read from their source), images/BUILD.bazel
// against internal/imagespec, and the release path: the GitHub Actions workflows through
// actionlint, and release.yml's source archive and MODULE.bazel against what publish-to-bcr makes
// of .bcr/'s templates.
//
// Module resolution is checked the way Bzlmod does it: Minimal Version Selection over the Bazel
// Central Registry's MODULE.bazel files, for the root module and examples/downstream, with the
// dependencies of Bazel's built-in bazel_tools module (testdata/bazel_tools.json), failing on a
// missing or yanked version, one module at two compatibility levels, a bazel_compatibility that
// excludes .bazelversion, or a root whose bazel_compatibility promises a Bazel below the graph's
// floor. The resolved graphs and floors are recorded in testdata/registry_graph.json: with a
// git mirror of the registry (BZLCHECK_MIRRORS/bazelbuild+bazel-central-registry/repo) the tests
// re-derive them; without it they hold MODULE.bazel to the recorded inputs, and the rule sources
// above to the selected versions.
//
// No Bazel and no workflow runs here: these tests fail on drift, they do not build or publish.
package bazelcheck
