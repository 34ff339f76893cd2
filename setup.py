"""The checkout is the `litezoo` package: its top-level folders are litezoo's subpackages."""

import setuptools

_NOT_PACKAGES = ("examples", "examples.*", "docs", "docs.*", "bazel", "bazel.*", "fuzz", "fuzz.*")

setuptools.setup(
    package_dir={"litezoo": "."},
    packages=["litezoo"] + [f"litezoo.{p}" for p in setuptools.find_packages(
        ".", exclude=_NOT_PACKAGES)],
    package_data={"litezoo.quant": ["data/*"], "litezoo.tools": ["templates/*.tmpl"]},
)
