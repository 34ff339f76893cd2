"""The zoo installed with pip outside Bazel, and an out-of-tree plugin
(examples/litezoo-plugin-example) that depends on it: pip-installed into temporary directories,
the plugin is found through the `litezoo` entry-point group, only when installed, and the
`litezoo` command converts it."""

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from litezoo.artifacts import files as artifacts
from litezoo.artifacts import manifest as manifest_lib
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
  manifest = manifest_lib.Artifact.read(tflite).manifest
  [installed] = importlib.metadata.distributions(name="litezoo-plugin-example", path=[str(site)])
  assert (manifest.model, manifest.variant) == (MODEL, "tiny")
  assert manifest.plugin_version == installed.version
  assert manifest.sha256 == artifacts.sha256_file(tflite)
  # The LiteRT interpreter reads the signatures the manifest promises.
  assert runner.Runner(tflite).prefill_lengths == sorted(manifest.signatures.prefill_seq_lens)
  assert installed.requires == ["litezoo>=0.3"]  # a plugin declares the zoo it plugs into


def test_installed_plugin_registers_through_its_entry_point(site, monkeypatch):
  monkeypatch.syspath_prepend(str(site))
  try:
    reg = registry.Registry()
    assert MODEL in reg.names() and reg.errors == []
    [entry_point] = [e for e in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)
                     if e.name == reg.owner(MODEL)]
    assert entry_point.dist.name == "litezoo-plugin-example"
    assert reg.get(MODEL).variant("tiny").random_weights
  finally:
    for module in [m for m in sys.modules if m.startswith("litezoo_plugin_example")]:
      del sys.modules[module]


def test_plugin_is_not_visible_without_the_install(tmp_path):
  assert MODEL not in registry.Registry().names()
  result = convert(tmp_path, site=None)
  assert testing.one_line_error(result, "convert").startswith(
      f"convert: error: unknown model '{MODEL}'")


def test_pip_install_e_gives_import_litezoo_and_the_litezoo_command(tmp_path):
  """`pip install -e .` of a copy of the checkout into a fresh venv (whose packages come from the
  zoo's own venv), then the example plugin beside it: the `litezoo` command converts the plugin's
  model, outside Bazel."""
  checkout = tmp_path / "checkout"
  shutil.copytree(testing.RUNFILES_ROOT / "litezoo", checkout, symlinks=False,
                  ignore=shutil.ignore_patterns("__pycache__", "*.tflite", "bazel-*", ".venv"))
  (checkout / "__init__.py").touch()
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  site_packages = next(venv.glob("lib/python3*/site-packages"))
  import site as site_module  # pylint: disable=g-import-not-at-top
  (site_packages / "zoo-venv.pth").write_text("\n".join(site_module.getsitepackages()) + "\n")
  python = venv / "bin" / "python"
  pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--quiet"]
  for args in (["-e", str(checkout)], [str(EXAMPLE)]):
    result = subprocess.run(pip + args, capture_output=True, text=True, timeout=300,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", registry.ALLOW_LIST_ENV)}
  where = subprocess.run([str(python), "-c", "import litezoo; print(litezoo.__file__)"], env=env,
                         capture_output=True, text=True, check=True, cwd=tmp_path)
  assert where.stdout.strip() == str(checkout / "__init__.py")
  result = subprocess.run([str(venv / "bin" / "litezoo"), "convert", f"--model={MODEL}",
                           f"--output_dir={tmp_path / 'out'}", "--quantize=none"], env=env,
                          capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert [p.name for p in (tmp_path / "out").glob("*.tflite")] == [
      f"{MODEL}-tiny_none_ekv64.tflite"]
