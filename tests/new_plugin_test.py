"""tools/new_plugin: a scaffold passes its own test and the conformance suite as written, for every
family; bad names and families are refused with the valid choices; plugins/BUILD stays sorted.

The scaffolds go into a copy of the source tree (<tmp>/litezoo), never into the checkout.
"""

import dataclasses
import importlib
import json
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys

import pytest

from litezoo.core import registry
from litezoo. import families as families_package
from litezoo.core.spec import TensorNames
from litezoo.tests import testing
from litezoo.tools import new_plugin

SOURCE = testing.RUNFILES_ROOT / "litezoo"
COPIED = ("requirements.lock", "core", "plugins", "quant", "tests", "tools")
OTHER_FAMILIES = [f for f in new_plugin.families() if f != "llama"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> pathlib.Path:
  """A copy of the source tree at <tmp>/litezoo: the tools run from it and scaffold into it."""
  root = tmp_path_factory.mktemp("checkout") / "litezoo"
  root.mkdir()
  (root / "__init__.py").touch()  # empty in the checkout, absent from Bazel's runfiles
  for name in COPIED:
    if (SOURCE / name).is_dir():
      shutil.copytree(SOURCE / name, root / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tflite"))
    else:
      shutil.copy(SOURCE / name, root / name)
  return root


def run_python(checkout: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess:
  """`python ARGS` with only the copy importable as `litezoo`, outside Bazel's test sharding."""
  clean = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEST_SHARD", "TEST_TOTAL_SHARDS", "BUILD_", "LITEZOO_"))
           and k != "XML_OUTPUT_FILE"}
  return subprocess.run([sys.executable, *args], cwd=checkout.parent, capture_output=True,
                        text=True, timeout=1200, check=False,
                        env={**clean, "PYTHONPATH": str(checkout.parent), **env})


def pytest_results(checkout: pathlib.Path, *files: str, **env: str) -> dict[str, str]:
  """Test id -> outcome (PASSED, FAILED, ...) of a pytest run over `files` in the copy."""
  result = run_python(checkout, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *files,
                      **env)
  outcomes = dict((test, outcome) for outcome, test in
                  re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", result.stdout,
                             re.M))
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  return outcomes


def all_deps(build: pathlib.Path) -> list[str]:
  block = re.search(r'name = "all",.*?deps = \[(.*?)\]', build.read_text(), re.S).group(1)
  return re.findall(r'"([^"]+)"', block)


def test_llama_scaffold_passes_its_test_and_the_conformance_suite(checkout):
  result = run_python(checkout, "-m", "litezoo.tools.new_plugin", "--name=mymodel",
                      "--family=llama")
  assert result.returncode == 0, result.stderr
  for step in ("bazel test //plugins/mymodel:mymodel_test",
               "bazel run //tools:verify -- --model=mymodel --variant=tiny --per_layer",
               "bazel run //tools:convert -- --model=mymodel",
               "bazel run //tools:release -- --model=mymodel --update_pins",
               "bazel build //plugins/mymodel:release"):
    assert step in result.stdout
  plugin = checkout / "plugins" / "mymodel"
  assert (plugin / "BUILD").read_text().strip().endswith('zoo_plugin(name = "mymodel")')
  assert (plugin / "__init__.py").exists()
  deps = all_deps(checkout / "plugins" / "BUILD")
  assert "//plugins/mymodel" in deps and deps == sorted(deps)
  assert set(deps) - {"//plugins/mymodel"} == set(all_deps(SOURCE / "plugins" / "BUILD"))

  results = pytest_results(checkout, "litezoo/plugins/mymodel/mymodel_test.py",
                           "litezoo/tests/conformance_test.py",
                           LITEZOO_CONFORMANCE_MODELS="mymodel")
  assert results["litezoo/plugins/mymodel/mymodel_test.py::test_tiny_matches_transformers"] == \
      "PASSED"
  conformance = {t: o for t, o in results.items() if "conformance_test.py" in t}
  assert all("[mymodel" in t and o == "PASSED" for t, o in conformance.items()), conformance
  for test in ("test_pytorch_matches_transformers[mymodel]",
               "test_int8_keeps_greedy_tokens_and_logits_within_tolerance[mymodel]",
               "test_every_recipe_quantizes_every_weight_matrix[mymodel-dynamic_int4_block32]"):
    assert conformance[f"litezoo/tests/conformance_test.py::{test}"] == "PASSED"


def test_scaffold_records_release_pins_that_check_clean(checkout):
  release = pytest.importorskip("litezoo.tools.release.pins")
  plugin = checkout / "plugins" / "pinned"
  new_plugin.scaffold("pinned", "llama", checkout / "plugins", {}, log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / "pinned.py")
  recorded = json.loads((plugin / release.PINS_FILE).read_text())
  assert (recorded["model"], recorded["version"]) == ("pinned", "0.1.0")
  release.check_pins(spec, plugin, checkout / "requirements.lock")  # raises if they differ


@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_scaffold_of_every_family_imports_with_the_family_tensor_names(family, tmp_path):
  plugin = new_plugin.scaffold(f"my_{family}", family, tmp_path, {}, log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / f"my_{family}.py")
  module = importlib.import_module(f"litezoo.families.{family}")
  assert spec.tensor_names == module.TENSOR_NAMES
  assert spec.build is module.build and spec.version == "0.1.0"
  assert spec.variants["tiny"].synthetic


def test_scaffolds_of_the_other_families_match_transformers(checkout):
  for family in OTHER_FAMILIES:
    new_plugin.scaffold(f"my_{family}", family, checkout / "plugins", {}, log=lambda _: None)
  results = pytest_results(checkout, *(f"litezoo/plugins/my_{f}/my_{f}_test.py"
                                       for f in OTHER_FAMILIES))
  for family in OTHER_FAMILIES:
    test_file = f"litezoo/plugins/my_{family}/my_{family}_test.py"
    assert results[f"{test_file}::test_tiny_matches_transformers"] == "PASSED"
    assert results[f"{test_file}::test_base_has_the_parameters_of_the_original"] == "PASSED"


def test_every_family_in_core_can_be_scaffolded():
  in_core = sorted(m.name for m in pkgutil.iter_modules(families_package.__path__)
                   if hasattr(importlib.import_module(f"{families_package.__name__}.{m.name}"),
                              "build"))
  assert new_plugin.families() == in_core
  fields = {f.name for f in dataclasses.fields(TensorNames)}
  assert sorted(new_plugin.READING_ORDER) == sorted(fields)


@pytest.mark.parametrize("name", ["MyModel", "my-model", "1model", "class", "", "my model"])
def test_names_that_are_not_lowercase_identifiers_are_refused(name, tmp_path):
  with pytest.raises(new_plugin.ScaffoldError, match="not a lowercase Python identifier"):
    new_plugin.scaffold(name, "llama", tmp_path, {}, log=lambda _: None)
  assert not list(tmp_path.iterdir())


def test_registered_names_and_existing_directories_are_refused(tmp_path):
  reg = registry.Registry()
  taken = reg.names()[0]
  with pytest.raises(new_plugin.ScaffoldError,
                     match=f"model '{taken}' is already registered by plugin '{reg.owner(taken)}'"):
    new_plugin.scaffold(taken, "llama", tmp_path, {taken: reg.owner(taken)}, log=lambda _: None)
  (tmp_path / "mine").mkdir()
  with pytest.raises(new_plugin.ScaffoldError, match="mine already exists"):
    new_plugin.scaffold("mine", "llama", tmp_path, {}, log=lambda _: None)
  assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_unknown_family_is_refused_listing_the_families(tmp_path):
  result = testing.run_tool("new_plugin", "--name=mymodel", "--family=mistral",
                            f"--plugins_dir={tmp_path}")
  assert result.returncode == 2
  choices = ", ".join(new_plugin.families())
  assert f"new_plugin: error: unknown family 'mistral'; choose one of: {choices}" in result.stderr
  assert "llama" in choices and "gemma3" in choices
  assert not list(tmp_path.iterdir())


def test_build_without_an_all_list_is_refused_before_anything_is_written(tmp_path):
  (tmp_path / "BUILD").write_text('py_library(name = "other")\n')
  with pytest.raises(new_plugin.ScaffoldError, match='no py_library\\(name = "all"'):
    new_plugin.scaffold("mymodel", "llama", tmp_path, {}, log=lambda _: None)
  assert [p.name for p in tmp_path.iterdir()] == ["BUILD"]


def test_all_list_stays_sorted_and_keeps_its_layout():
  build = ('py_library(\n    name = "all",\n    srcs = ["__init__.py"],\n    deps = [\n'
           '        "//plugins/gemma",\n        "//plugins/tinyllama",\n    ],\n)\n')
  updated = new_plugin.add_to_all(build, "//plugins/phi3")
  assert updated == build.replace('        "//plugins/tinyllama",\n',
                                  '        "//plugins/phi3",\n        "//plugins/tinyllama",\n')
  assert new_plugin.add_to_all(updated, "//plugins/phi3") == updated
