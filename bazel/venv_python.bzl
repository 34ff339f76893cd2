"""The project's venv as Bazel's Python toolchain.

Writes a repository holding a py_runtime whose interpreter runs `<workspace>/.venv/bin/python3`, so
`bazel run`, `bazel test` and genrule actions import exactly the packages pinned in requirements.lock.
Bazel does not track pip packages; instead the runtime carries a copy of the lock file as a runfile, so
a lock change refetches this repository and invalidates every Python action and test result.
"""

def _venv_python_impl(ctx):
    workspace = ctx.path(Label("//:WORKSPACE")).dirname
    lock = ctx.path(Label("//:requirements.lock"))
    python = "%s/.venv/bin/python3" % workspace
    ctx.file("requirements.lock", ctx.read(lock))
    ctx.file(
        "python3",
        content = """#!/bin/sh
if [ ! -x "{python}" ]; then
  echo "litezoo: no venv at {python}; run ./setup.sh first" >&2
  exit 1
fi
exec "{python}" "$@"
""".format(python = python),
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
""")

venv_python = repository_rule(
    implementation = _venv_python_impl,
    local = False,
    attrs = {},
)
