"""Project macros."""

def zoo_py_test(name, srcs, deps = [], data = [], args = [], **kwargs):
    """A py_test that runs its test files under pytest."""
    native.py_test(
        name = name,
        srcs = srcs + ["//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = ["$(location %s)" % src for src in srcs] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        **kwargs
    )

def zoo_plugin(name, deps = []):
    """A model plugin: `plugins/<name>/<name>.py` as its own library, and its own test."""
    native.py_library(
        name = name,
        srcs = ["__init__.py", name + ".py"],
        deps = ["//core"] + deps,
        visibility = ["//visibility:public"],
    )
    zoo_py_test(
        name = name + "_test",
        size = "medium",
        srcs = [name + "_test.py"],
        deps = [":" + name, "//tests:testing"],
    )
