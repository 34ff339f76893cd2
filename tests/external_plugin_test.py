"""An out-of-tree plugin (examples/litezoo-plugin-example), pip-installed into a temporary
directory, is found by the tools through the `litezoo` entry-point group, only when installed."""

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from litezoo.artifacts import files as artifacts
from litezoo.core import registry
from litezoo.runtime import runner
from litezoo.tests import testing

EXAMPLE = testing.RUNFILES_ROOT / "litezoo" / "examples" / "litezoo-plugin-example"
MODEL = "example_llama"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
  """The example installed by pip into a directory of its own, as `pip install --target` lays it."""
  tmp = tmp_path_factory.mktemp("external")
  source = tmp / "source"  # pip builds in the source tree: a copy keeps the checkout clean
  shutil.copytree(EXAMPLE, source,
                  ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
  target = tmp / "site"
  result = subprocess.run(
      [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
       "--no-cache-dir", "--disable-pip-version-check", "--target", str(target), str(source)],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  return target


def convert(output_dir: pathlib.Path, site: pathlib.Path | None) -> subprocess.CompletedProcess:
  """tools/convert on the example model, with the install on the path or without it."""
  path = [str(testing.RUNFILES_ROOT)] + ([str(site)] if site else [])
  env = {k: v for k, v in os.environ.items() if k != registry.ALLOW_LIST_ENV}
  return subprocess.run(
      [sys.executable, "-m", "litezoo.tools.convert", f"--model={MODEL}", "--variant=tiny",
       f"--output_dir={output_dir}"],
      env={**env, "PYTHONPATH": os.pathsep.join(path)}, capture_output=True, text=True,
      timeout=900, check=False)


def test_installed_plugin_converts_with_the_zoo_tools(site, tmp_path):
  result = convert(tmp_path, site)
  assert result.returncode == 0, result.stderr[-3000:]
  [tflite] = tmp_path.glob("*.tflite")
  manifest = artifacts.read_manifest(tflite)
  [installed] = importlib.metadata.distributions(name="litezoo-plugin-example", path=[str(site)])
  assert (manifest["model"], manifest["variant"]) == (MODEL, "tiny")
  assert manifest["plugin_version"] == installed.version
  assert manifest["sha256"] == artifacts.sha256_file(tflite)
  # The LiteRT interpreter reads the signatures the manifest promises.
  assert runner.Runner(tflite).prefill_lengths == manifest["prefill_seq_lens"]


def test_installed_plugin_registers_through_its_entry_point(site, monkeypatch):
  monkeypatch.syspath_prepend(str(site))
  try:
    reg = registry.Registry()
    assert MODEL in reg.names() and reg.errors == []
    [entry_point] = [e for e in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)
                     if e.name == reg.owner(MODEL)]
    assert entry_point.dist.name == "litezoo-plugin-example"
    assert reg.get(MODEL).variant("tiny").synthetic
  finally:
    for module in [m for m in sys.modules if m.startswith("litezoo_plugin_example")]:
      del sys.modules[module]


def test_plugin_is_not_visible_without_the_install(tmp_path):
  assert MODEL not in registry.Registry().names()
  result = convert(tmp_path, site=None)
  assert result.returncode == 2
  assert f"convert: error: unknown model '{MODEL}'" in result.stderr
  assert not list(tmp_path.iterdir())
