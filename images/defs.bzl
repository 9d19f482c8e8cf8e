"""Public macros for scratch images that carry the health-check probe.

The platforms we build for are listed once, in LINUX_PLATFORMS; the platform targets
(//platforms), the `architecture` select of every image and the index's platform list are all
made from it, so adding a platform is one line here.

Load from another module:

    load("@health_check_proxy//images:defs.bzl", "INDEX_PLATFORMS", "linux_load", "scratch_image")
"""

load("@rules_oci//oci:defs.bzl", "oci_image", "oci_load")

# OCI/GOARCH architecture name -> the @platforms cpu constraint a target platform carries, in
# index order: internal/imagespec's Architectures, the Go-native build's list.
LINUX_PLATFORMS = {
    "amd64": Label("@platforms//cpu:x86_64"),
    "arm64": Label("@platforms//cpu:arm64"),
    "arm": Label("@platforms//cpu:armv7"),
    "ppc64le": Label("@platforms//cpu:ppc64le"),
    "s390x": Label("@platforms//cpu:s390x"),
    "riscv64": Label("@platforms//cpu:riscv64"),
}

# Architectures of LINUX_PLATFORMS that need more than a cpu: the OCI `variant` their image and
# index entry carry (internal/imagespec's Variants), and the constraints their platform adds.
# rules_go sets GOARM from @rules_go//go/constraints/arm; the Go-native build compiles with GOARM=7.
LINUX_VARIANTS = {
    "arm": struct(
        variant = "v7",
        constraints = [Label("@rules_go//go/constraints/arm:7")],
    ),
}

# The platform targets an oci_image_index transitions its image to, in index order.
INDEX_PLATFORMS = [Label("//platforms:linux_" + arch) for arch in LINUX_PLATFORMS]

def linux_platforms(name = "linux", visibility = None):
    """Declares one `<name>_<arch>` platform (linux_amd64, ...) per entry of LINUX_PLATFORMS.

    Args:
        name: prefix of the platform names; INDEX_PLATFORMS expects "linux".
        visibility: visibility of the platform targets.
    """
    for arch, cpu in LINUX_PLATFORMS.items():
        native.platform(
            name = name + "_" + arch,
            constraint_values = [
                Label("@platforms//os:linux"),
                cpu,
            ] + (LINUX_VARIANTS[arch].constraints if arch in LINUX_VARIANTS else []),
            visibility = visibility,
        )

def linux_compatible():
    """`target_compatible_with` for what holds the probe: linux, on a cpu of LINUX_PLATFORMS.

    `bazel build //...` then skips the layer and the images on other hosts (a darwin probe must
    never land in a linux image; neither must a binary for a cpu the index does not list) instead
    of failing on them.

    Returns:
        A list of constraints, with a select() that makes other cpus incompatible.
    """
    by_cpu = {cpu: [] for cpu in LINUX_PLATFORMS.values()}
    by_cpu["//conditions:default"] = [Label("@platforms//:incompatible")]
    return [Label("@platforms//os:linux")] + select(by_cpu)

def oci_architecture():
    """The OCI architecture of the target platform, as a select() for oci_image's `architecture`.

    An oci_image_index with `platforms` builds its one image once per platform, so the image's
    architecture must follow the target platform rather than be a fixed string.

    Returns:
        A select() from the target platform's cpu constraint to the OCI architecture name.
    """
    return select(
        {cpu: arch for arch, cpu in LINUX_PLATFORMS.items()},
        no_match_error = "health_check_proxy builds linux images for these cpus only: " +
                         ", ".join([str(cpu) for cpu in LINUX_PLATFORMS.values()]),
    )

def oci_variant():
    """The OCI variant of the target platform, as a select() for oci_image's `variant`.

    Returns:
        A select() from the cpu constraint to the variant; "" (no variant) for the other cpus.
    """
    by_cpu = {LINUX_PLATFORMS[arch]: v.variant for arch, v in LINUX_VARIANTS.items()}
    by_cpu["//conditions:default"] = ""
    return select(by_cpu)

def scratch_image(name, tars, target_compatible_with = [], **kwargs):
    """An oci_image with no base image, for linux, whose platform follows the target platform.

    The architecture (and the variant, for arm/v7) come from the target platform's cpu.

    Nothing is pulled: the image holds exactly the layers in `tars`, in that order. Put the probe's
    layer first (`@health_check_proxy//images:layer`): it changes less often than yours.

    Args:
        name: name of the oci_image target (rules_oci's macro also makes `<name>.digest`).
        tars: the layers, bottom first.
        target_compatible_with: constraints of yours; linux_compatible() is always added.
        **kwargs: other oci_image arguments: `entrypoint`, `cmd`, `user`, `env`, `created`,
            `labels`, `annotations`, `visibility`, ... (not `base`, `os`, `architecture` or
            `variant`).
    """
    oci_image(
        name = name,
        tars = tars,
        os = "linux",
        architecture = oci_architecture(),
        variant = oci_variant(),
        target_compatible_with = linux_compatible() + target_compatible_with,
        **kwargs
    )

def _linux_on_host_cpu_transition_impl(_settings, attr):
    return {"//command_line_option:platforms": str(attr.platform)}

# To the Linux platform of LINUX_PLATFORMS on the cpu of the target platform in force (the host's,
# unless --platforms says otherwise).
_linux_on_host_cpu_transition = transition(
    implementation = _linux_on_host_cpu_transition_impl,
    inputs = [],
    outputs = ["//command_line_option:platforms"],
)

def _linux_on_host_cpu_impl(ctx):
    # One image. Bazel hands a transitioned attribute to the rule as a list even for attr.label
    # (bazelbuild/bazel#15892); a label_list of one says so in the schema too.
    image = ctx.attr.image[0][DefaultInfo]
    return [DefaultInfo(files = image.files, runfiles = image.default_runfiles)]

_linux_on_host_cpu = rule(
    implementation = _linux_on_host_cpu_impl,
    doc = "Forwards `image` (an oci_image) built for `platform`; linux_load sets that to Linux on the host's cpu.",
    attrs = {
        "image": attr.label_list(mandatory = True, cfg = _linux_on_host_cpu_transition),
        "platform": attr.label(mandatory = True),
        # Bazel 6 requires it for a Starlark transition (rules_oci's oci_image_index declares it too).
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)

def linux_load(name, image, repo_tags, **kwargs):
    """`bazel run :<name>` loads `image`, built for Linux on the host's cpu, into Docker.

    rules_oci's oci_load runs the bsdtar of its own target platform when it writes the tarball
    (oci/private/load.bzl at 2.3.0: `@tar.bzl//tar/toolchain:target_type`). With --platforms set
    to Linux on a macOS host, that is a Linux bsdtar the Mac cannot run; without it, our images are
    incompatible with a darwin target (linux_compatible). So only the image moves to Linux, on the
    host's cpu (Apple silicon: arm64, Intel: amd64), which is what Docker Desktop runs natively;
    oci_load and its tools stay on the host. On a Linux host on a cpu of LINUX_PLATFORMS the
    transition changes nothing (on armv7 it adds rules_go's GOARM constraint). Hosts on other cpus
    skip the target in `bazel build //...`.

    Args:
        name: name of the oci_load target; `<name>_image` is the image in its Linux configuration.
        image: an oci_image for linux (scratch_image, or oci_image with a linux base).
        repo_tags: the tags `docker load` gives the image, e.g. ["my-app:latest"].
        **kwargs: other oci_load arguments (`format`, `loader`, `visibility`, ...).
    """
    platform_by_cpu = {cpu: Label("//platforms:linux_" + arch) for arch, cpu in LINUX_PLATFORMS.items()}

    # Any value: the target is incompatible there (below), so Bazel never builds the image for it.
    platform_by_cpu["//conditions:default"] = Label("//platforms:linux_amd64")
    host_cpu_compatible = {cpu: [] for cpu in LINUX_PLATFORMS.values()}
    host_cpu_compatible["//conditions:default"] = [Label("@platforms//:incompatible")]
    _linux_on_host_cpu(
        name = name + "_image",
        image = [image],
        platform = select(platform_by_cpu),
        target_compatible_with = select(host_cpu_compatible),
        visibility = ["//visibility:private"],
    )
    oci_load(
        name = name,
        image = ":" + name + "_image",
        repo_tags = repo_tags,
        **kwargs
    )
