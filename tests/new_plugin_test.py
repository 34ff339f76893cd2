"""tools/new_plugin and a contributor's first hour: a scaffold passes the conformance suite as
written and its size test fails until the published parameter count is filled in; scaffolds come
from the family's registered plugin or from a checkpoint's config.json; every mistake a
contributor makes is reported by name.

The scaffolds that run go into a copy of the source tree (<tmp>/litezoo), never into the checkout.
"""

import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from litezoo import families
from litezoo.core import registry
from litezoo.core.spec import UnsupportedConfigError
from litezoo.families import llama
from litezoo.tests import testing
from litezoo.tools import new_plugin

SOURCE = testing.RUNFILES_ROOT / "litezoo"
COPIED = ("requirements.lock", "__init__.py", "pipeline.py", "artifacts", "conversion", "core",
          "families", "plugins", "quant", "reference", "runtime", "sources", "tests", "tools")
REGISTRY = registry.Registry()
SPECS = [REGISTRY.get(m) for m in REGISTRY.names()]
FAMILIES = sorted(new_plugin.representatives(SPECS))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> pathlib.Path:
  """A copy of the source tree at <tmp>/litezoo: the tools run from it and scaffold into it."""
  root = tmp_path_factory.mktemp("checkout") / "litezoo"
  root.mkdir()
  for name in COPIED:
    if (SOURCE / name).is_dir():
      shutil.copytree(SOURCE / name, root / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tflite"))
    elif (SOURCE / name).exists():
      shutil.copy(SOURCE / name, root / name)
    else:
      (root / name).touch()  # the package's empty __init__.py, absent from Bazel's runfiles
  return root


def run_python(checkout: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess:
  """`python ARGS` with only the copy importable as `litezoo`, outside Bazel's test sharding."""
  clean = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEST_SHARD", "TEST_TOTAL_SHARDS", "BUILD_"))
           and k != "XML_OUTPUT_FILE"}
  return subprocess.run([sys.executable, *args], cwd=checkout.parent, capture_output=True,
                        text=True, timeout=1200, check=False,
                        env={**clean, "PYTHONPATH": str(checkout.parent), **env})


def pytest_results(checkout: pathlib.Path, *files: str, **env: str) -> tuple[dict, str]:
  """(test id -> outcome, output) of a pytest run over `files` in the copy."""
  result = run_python(checkout, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *files,
                      **env)
  outcomes = dict((test, outcome) for outcome, test in
                  re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED) (\S+)", result.stdout, re.M))
  return outcomes, result.stdout


def test_llama_scaffold_passes_conformance_and_its_size_test_waits_for_the_published_count(
    checkout):
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
  assert not (plugin / "release_pins.json").exists()  # recorded at release, once filled in
  listed = re.findall(r'"([^"]+)"', (checkout / "plugins" / "plugins.bzl").read_text().split(
      "ZOO_PLUGINS = [")[1])
  assert "mymodel" in listed and listed == sorted(listed)

  results, output = pytest_results(checkout, "litezoo/plugins/mymodel/mymodel_test.py",
                                   "litezoo/tests/conformance_test.py",
                                   LITEZOO_CONFORMANCE_MODELS="mymodel")
  size_test = "litezoo/plugins/mymodel/mymodel_test.py::test_base_has_the_published_parameter_count"
  assert results[size_test] == "FAILED"
  assert "fill in the published parameter count" in output
  conformance = {t: o for t, o in results.items() if "conformance_test.py" in t}
  assert conformance and all("[mymodel" in t and o == "PASSED" for t, o in conformance.items())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_scaffolds_from_its_registered_plugin(family, tmp_path):
  name, config, tiny, _ = new_plugin.from_family(family, SPECS)
  plugin = new_plugin.scaffold(f"my_{family}", new_plugin.render(
      f"my_{family}", name, config, tiny, "", f"--family={family}"), tmp_path, {},
                               log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / f"my_{family}.py")
  representative = new_plugin.representatives(SPECS)[family]
  assert spec.family.name == family and spec.version == "0.1.0"
  assert dict(spec.variants["base"].config) == dict(representative.variant(None).config)
  assert spec.variants["tiny"].random_weights and spec.variants["base"].params is None
  spec.family.config(spec.variants["tiny"].config)  # the tiny shape is one the family builds


def test_a_scaffold_from_a_checkpoint_takes_its_config(tmp_path):
  config = {**REGISTRY.get("smollm2").variant("135m").config, "architectures": ["X"],
            "torch_dtype": "bfloat16"}
  (tmp_path / "ckpt").mkdir()
  (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
  family, read, tiny, note = new_plugin.from_checkpoint(tmp_path / "ckpt")
  assert family == "llama" and "config.json" in note
  assert "architectures" not in read and read["num_key_value_heads"] == 3
  plugin = new_plugin.scaffold("fromckpt", new_plugin.render("fromckpt", family, read, tiny, note,
                                                             "--from_checkpoint=ckpt"),
                               tmp_path, {}, log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / "fromckpt.py")
  llama.read_config(spec.variants["tiny"].config)


# Real-sized configs whose per-layer lists and LongRoPE factors depend on the size.
_REAL = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
             num_attention_heads=24, num_key_value_heads=8, max_position_embeddings=131072)


@pytest.mark.parametrize("config, kinds", [
    # Phi-4-mini: 3/4 of a 128-wide head rotates, so 48 factors of each LongRoPE kind.
    ({**_REAL, "model_type": "phi3", "partial_rotary_factor": 0.75,
      "original_max_position_embeddings": 4096, "rope_scaling": {
          "type": "longrope", "short_factor": [1.0 + i / 48 for i in range(48)],
          "long_factor": [2.0 + i for i in range(48)]}}, None),
    ({**_REAL, "model_type": "smollm3", "no_rope_layers": [1, 1, 1, 0] * 8}, "no_rope_layers"),
    ({**_REAL, "model_type": "ministral", "sliding_window": 4096, "head_dim": 128,
      "layer_types": ["full_attention"] + ["sliding_attention"] * 31}, "layer_types"),
])
def test_a_scaffold_from_a_real_sized_checkpoint_has_a_tiny_variant_transformers_builds(
    tmp_path, config, kinds):
  import transformers  # pylint: disable=g-import-not-at-top
  (tmp_path / "config.json").write_text(json.dumps(config))
  family, read, overrides, _ = new_plugin.from_checkpoint(tmp_path)
  tiny = {**read, **overrides}
  transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**tiny))
  assert families.by_model_type(tiny["model_type"]).name == family
  families.by_model_type(tiny["model_type"]).config(tiny)
  if kinds:  # both kinds of layer survive the shrinking
    assert len(tiny[kinds]) == 2 and len(set(tiny[kinds])) == 2


def test_a_checkpoint_of_an_unknown_or_unsupported_architecture_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
  with pytest.raises(UnsupportedConfigError, match="model_type 'mamba' is not one the zoo can "
                     "build; it builds: "):
    new_plugin.from_checkpoint(tmp_path)
  sliding = {**REGISTRY.get("smollm2").variant("135m").config, "rope_scaling": {
      "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}}
  (tmp_path / "config.json").write_text(json.dumps(sliding))
  with pytest.raises(UnsupportedConfigError, match="rope_scaling=.*RoPE type 'yarn' is not "
                     "implemented by the llama family"):
    new_plugin.from_checkpoint(tmp_path)


def test_a_missing_or_empty_checkpoint_directory_is_named(tmp_path):
  with pytest.raises(new_plugin.ScaffoldError, match=r"^--from_checkpoint: .*nosuch does not exist; "
                     "give a Hugging Face checkpoint directory"):
    new_plugin.from_checkpoint(tmp_path / "nosuch")
  with pytest.raises(new_plugin.ScaffoldError, match=r"^--from_checkpoint: .* has no config\.json"):
    new_plugin.from_checkpoint(tmp_path)
  (tmp_path / "file").write_text("x")
  with pytest.raises(new_plugin.ScaffoldError, match=r"file is not a directory"):
    new_plugin.from_checkpoint(tmp_path / "file")
  (tmp_path / "config.json").mkdir()  # read as every tool reads a checkpoint's config
  with pytest.raises(new_plugin.ScaffoldError, match=r"config\.json: is a directory, not a "
                     "regular file$"):
    new_plugin.from_checkpoint(tmp_path)


def test_heads_that_do_not_divide_are_named():
  """A contributor's tiny config with 6 heads and 4 KV heads."""
  bad = {**REGISTRY.get("smollm2").variant("tiny").config, "hidden_size": 96,
         "num_attention_heads": 6, "num_key_value_heads": 4}
  with pytest.raises(UnsupportedConfigError, match="num_attention_heads=6 is not a multiple of "
                     "num_key_value_heads=4"):
    llama.read_config(bad)


def test_a_plugin_whose_config_the_family_refuses_is_named_before_any_work(tmp_path):
  """The same mistake in a registered plugin's tiny variant: the tool names the plugin's config
  (not a cache path) before writing random weights or converting anything."""
  site = tmp_path / "site"
  site.mkdir()
  (site / "broken_plugin.py").write_text(
      "from litezoo.core import ModelSpec, Signatures, Variant, hookimpl\n"
      "from litezoo.families import llama\n"
      "from litezoo.plugins.smollm2 import smollm2\n"
      "TINY = {**smollm2.SPEC.variant('tiny').config, 'hidden_size': 96,\n"
      "        'num_attention_heads': 6, 'num_key_value_heads': 4}\n"
      "@hookimpl\n"
      "def litezoo_register_models(register):\n"
      "  register(ModelSpec(name='broken', version='1.0.0',\n"
      "                     variants={'tiny': Variant(TINY, random_weights=True)},\n"
      "                     default_variant='tiny', family=llama.FAMILY,\n"
      "                     signatures=Signatures((8,), 16)))\n")
  info = site / "broken-1.0.0.dist-info"
  info.mkdir()
  (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0.0\n")
  (info / "entry_points.txt").write_text(
      f"[{registry.ENTRY_POINT_GROUP}]\nbroken = broken_plugin\n")
  cache = tmp_path / "cache"
  run = testing.run_tool("generate", "--model=broken", "--prompt=hi",
                         env={"PYTHONPATH": f"{testing.RUNFILES_ROOT}{os.pathsep}{site}",
                              "LITEZOO_CACHE": str(cache)})
  assert testing.one_line_error(run, "generate") == (
      "generate: error: broken-tiny's config: num_attention_heads=6 is not a multiple of "
      "num_key_value_heads=4: grouped-query attention shares each key/value head among a whole "
      "number of query heads")
  assert not cache.exists() or not any(cache.rglob("*.safetensors"))


def test_a_wrong_real_size_fails_the_size_test_against_the_published_count():
  """Both the re-authored and the transformers model come from the same config, so only the
  published count catches a wrong num_key_value_heads."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  spec = REGISTRY.get("smollm2")
  wrong = dataclasses.replace(spec.variant("135m"), config={
      **spec.variant("135m").config, "num_key_value_heads": 9})
  spec = dataclasses.replace(spec, variants={**spec.variants, "135m": wrong})
  with pytest.raises(AssertionError, match="but the model card says 134,515,008: a size in the "
                     "config is wrong"):
    testing.check_parameter_count(spec, "135m")


@pytest.mark.parametrize("name", ["MyModel", "my-model", "1model", "class", "", "my model"])
def test_names_that_are_not_lowercase_identifiers_are_refused(name, tmp_path):
  with pytest.raises(new_plugin.ScaffoldError, match="not a lowercase Python identifier"):
    new_plugin.check_name(name, tmp_path, {})
  assert not list(tmp_path.iterdir())


def test_registered_names_and_existing_directories_are_refused(tmp_path):
  taken = REGISTRY.names()[0]
  with pytest.raises(new_plugin.ScaffoldError,
                     match=f"model '{taken}' is already registered by plugin "
                     f"'{REGISTRY.owner(taken)}'"):
    new_plugin.check_name(taken, tmp_path, {taken: REGISTRY.owner(taken)})
  (tmp_path / "mine").mkdir()
  with pytest.raises(new_plugin.ScaffoldError, match="mine already exists"):
    new_plugin.check_name("mine", tmp_path, {})


def test_unknown_family_is_refused_listing_the_families(tmp_path):
  result = testing.run_tool("new_plugin", "--name=mymodel", "--family=mamba",
                            f"--plugins_dir={tmp_path}")
  assert testing.one_line_error(result, "new_plugin") == (
      "new_plugin: error: unknown family 'mamba'; families with a registered plugin: "
      + ", ".join(FAMILIES))
  # A family the zoo builds but has no plugin of: there is no config to copy, a checkpoint has one.
  result = testing.run_tool("new_plugin", "--name=mymodel", "--family=qwen3",
                            f"--plugins_dir={tmp_path}")
  assert testing.one_line_error(result, "new_plugin").startswith(
      "new_plugin: error: family 'qwen3' has no registered plugin to copy a config from: "
      "scaffold from its checkpoint's config.json with --from_checkpoint=DIR")
  for flag in ("--from_checkpoint=", "--family= "):  # not the current directory, silently
    result = testing.run_tool("new_plugin", "--name=mymodel", flag, f"--plugins_dir={tmp_path}")
    assert testing.one_line_error(result, "new_plugin") == (
        f"new_plugin: error: {flag.split('=')[0]} is empty: give a value, or leave the flag out")
  assert not list(tmp_path.iterdir())


def test_plugin_list_stays_sorted_and_a_file_without_one_is_refused_before_writing(tmp_path):
  bzl = 'ZOO_PLUGINS = [\n    "gemma",\n    "tinyllama",\n]\n'
  updated = new_plugin.add_to_list(bzl, "phi3")
  assert updated == 'ZOO_PLUGINS = [\n    "gemma",\n    "phi3",\n    "tinyllama",\n]\n'
  assert new_plugin.add_to_list(updated, "phi3") == updated
  (tmp_path / "plugins.bzl").write_text("OTHER = []\n")
  with pytest.raises(new_plugin.ScaffoldError, match="no ZOO_PLUGINS"):
    new_plugin.scaffold("mymodel", {"mymodel.py": ""}, tmp_path, {}, log=lambda _: None)
  assert [p.name for p in tmp_path.iterdir()] == ["plugins.bzl"]


@pytest.mark.parametrize("tool, args", [
    ("generate", ["--prompt=hi"]), ("convert", []), ("verify", []), ("bundle", []),
    ("evaluate", [])])
def test_a_hint_never_names_a_flag_the_tool_does_not_take(tool, args, tmp_path):
  """A real-size variant without a pin: the error's hint names flags this very tool accepts."""
  run = testing.run_tool(tool, "--model=phi2", *args, cwd=tmp_path)
  line = testing.one_line_error(run, tool)
  hinted = set(re.findall(r"--([a-z_]+)", line))
  assert hinted >= {"checkpoint", "random_weights"}
  helped = testing.run_tool(tool, "--helpfull").stdout
  for flag in hinted:
    assert f"--{flag}" in helped or f"--[no]{flag}" in helped, (tool, flag)


@pytest.mark.parametrize("name", new_plugin.MACRO_TARGETS)
def test_names_of_targets_the_plugin_macro_makes_are_refused(name, tmp_path):
  """`zoo_release rule 'release' in package 'plugins/release' conflicts with existing py_library
  rule`, in every build, otherwise."""
  with pytest.raises(new_plugin.ScaffoldError, match=rf"^--name='{name}' is the name of a target "
                     "the zoo_plugin macro makes in every plugin's package .*; choose another "
                     rf"--name, e.g. --name=my_{name}$"):
    new_plugin.check_name(name, tmp_path, {})


def test_the_refused_target_names_are_all_the_plugin_macro_makes():
  """Every fixed `name = "..."` in bazel/defs.bzl's zoo_plugin (the others are <name>, <name>_test)."""
  found = [p / "bazel" / "defs.bzl" for p in (SOURCE, pathlib.Path(new_plugin.__file__).resolve()
                                              .parents[1]) if (p / "bazel" / "defs.bzl").exists()]
  assert found, "bazel/defs.bzl is not in this test's files (tests/BUILD: new_plugin_test's data)"
  macro = found[0].read_text().split("def zoo_plugin(")[1].split("\ndef ")[0]
  assert sorted(re.findall(r'\bname = "([^"]+)"', macro)) == sorted(new_plugin.MACRO_TARGETS)


def test_an_existing_directory_still_listed_names_its_line_in_plugins_bzl(tmp_path):
  """Removing the directory alone leaves plugins.bzl naming a package that is gone: `no such
  package 'plugins/pd3'` in every build."""
  (tmp_path / "pd3").mkdir()
  with pytest.raises(new_plugin.ScaffoldError, match=r"pd3 already exists; choose another --name "
                     r"or remove it$"):  # not listed: the directory is all there is
    new_plugin.check_name("pd3", tmp_path, {})
  (tmp_path / "plugins.bzl").write_text('ZOO_PLUGINS = [\n    "gemma",\n    "pd3",\n]\n')
  with pytest.raises(new_plugin.ScaffoldError, match=r"pd3 already exists; choose another --name, "
                     rf"or remove it and its \"pd3\" line from {re.escape(str(tmp_path))}/"
                     r"plugins\.bzl$"):
    new_plugin.check_name("pd3", tmp_path, {})


def test_a_missing_name_or_an_empty_plugins_dir_is_refused(checkout):
  """Run from the copy: an empty --plugins_dir would otherwise scaffold into its plugins/."""
  before = sorted(p.name for p in (checkout / "plugins").iterdir())
  result = run_python(checkout, "-m", "litezoo.tools.new_plugin", "--name=emptydir",
                      "--family=llama", "--plugins_dir=")
  assert testing.one_line_error(result, "new_plugin") == (
      "new_plugin: error: --plugins_dir is empty: give a value, or leave the flag out")
  result = run_python(checkout, "-m", "litezoo.tools.new_plugin", "--family=llama")
  assert testing.one_line_error(result, "new_plugin") == (
      "new_plugin: error: --name is required: the model's and its plugin's name, a lowercase "
      "Python identifier, e.g. --name=mymodel")
  assert sorted(p.name for p in (checkout / "plugins").iterdir()) == before
  with pytest.raises(new_plugin.ScaffoldError, match="^--name is required: "):
    new_plugin.check_name(None, checkout / "plugins", {})


@pytest.mark.parametrize("text, kind", [("[1, 2, 3]", "array"), ('"llama"', "string"),
                                        ("3", "number"), ("null", "null")])
def test_a_config_that_is_no_json_object_is_refused(text, kind, tmp_path):
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(new_plugin.ScaffoldError, match=rf"config\.json holds a JSON {kind}, "
                     r"not an object: a Hugging Face config\.json is one \{\.\.\.\} of the "
                     "model's settings$"):
    new_plugin.from_checkpoint(tmp_path)
  assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# Valid JSON that is no Python: keys no identifier or a keyword, and the non-finite numbers Python's
# json reads (NaN, Infinity, and 1e999, too large for a float).
_ODD = {"my-extra-key": 3, "lambda": 3, "": 1, 'quote"back\\slash\nline': [1, {"x-y": 2}],
        "text": '""" \\u', "missing": float("nan"), "limits": [float("inf"), -float("inf")]}


def _odd_checkpoint(directory: pathlib.Path, **config) -> pathlib.Path:
  """A checkpoint directory whose config.json is SmolLM2's, with _ODD's entries and `config`."""
  directory.mkdir()
  text = json.dumps({**REGISTRY.get("smollm2").variant("135m").config, **_ODD, **config})
  (directory / "config.json").write_text(text.replace('"limits": [Infinity', '"limits": [1e999'))
  return directory


def test_any_key_and_value_of_a_config_is_written_as_read(tmp_path):
  """The scaffold's config is a dict literal with quoted keys; NaN and infinities are
  float("nan") etc. The path, in the docstring and a comment, cannot end them either."""
  checkpoint = _odd_checkpoint(tmp_path / 'ck\\user"""\nx')
  family, read, tiny, note = new_plugin.from_checkpoint(checkpoint)
  plugin = new_plugin.scaffold("oddkeys", new_plugin.render(
      "oddkeys", family, read, tiny, note, f"--from_checkpoint={checkpoint}"), tmp_path, {},
                               log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / "oddkeys.py")
  config = spec.variants["base"].config
  for key in ("my-extra-key", "lambda", "", 'quote"back\\slash\nline', "text"):
    assert config[key] == _ODD[key], key
  assert config["missing"] != config["missing"] and config["limits"] == _ODD["limits"]
  assert 'float("nan")' in (plugin / "oddkeys.py").read_text()
  docstring = ast.get_docstring(ast.parse((plugin / "oddkeys.py").read_text()))
  assert f"--from_checkpoint={checkpoint}`" in docstring
  llama.read_config(spec.variants["tiny"].config)
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted([checkpoint.name, "oddkeys"])


@pytest.mark.parametrize("context, prefill, kv", [
    (512, (32, 128), 512), (100, (32,), 100), (20, (20,), 20), (8192, (32, 128), 1024)])
def test_the_cache_fits_a_checkpoint_context_shorter_than_1024_tokens(context, prefill, kv,
                                                                       tmp_path):
  """`verify --model=ckllama --checkpoint=DIR` refused the scaffold's 1024-token cache for a
  512-token model."""
  (tmp_path / "ck").mkdir()
  (tmp_path / "ck" / "config.json").write_text(json.dumps(
      {**REGISTRY.get("smollm2").variant("135m").config, "max_position_embeddings": context}))
  family, read, tiny, note = new_plugin.from_checkpoint(tmp_path / "ck")
  plugin = new_plugin.scaffold("ckllama", new_plugin.render(
      "ckllama", family, read, tiny, note, "--from_checkpoint=ck"), tmp_path, {},
                               log=lambda _: None)
  [spec] = new_plugin.load_specs(plugin / "ckllama.py")
  assert (spec.signatures.prefill_seq_lens, spec.signatures.kv_cache_max_len) == (prefill, kv)
  for variant in spec.variants:
    spec.check_signatures(variant, spec.signatures)


def test_a_plugin_named_like_a_module_its_test_imports_and_one_from_an_odd_config_test_as_written(
    checkout, tmp_path):
  """`from litezoo.tests import testing` shadowed a plugin module named `testing`; an odd config
  must import under pytest too. Each test fails only for the published count it waits for."""
  plugins = checkout / "plugins"
  name, config, tiny, _ = new_plugin.from_family("llama", SPECS)
  new_plugin.scaffold("testing", new_plugin.render("testing", name, config, tiny, "",
                                                   "--family=llama"), plugins, {},
                      log=lambda _: None)
  family, read, tiny, note = new_plugin.from_checkpoint(_odd_checkpoint(tmp_path / "ck"))
  new_plugin.scaffold("oddkeys", new_plugin.render("oddkeys", family, read, tiny, note,
                                                   "--from_checkpoint=ck"), plugins, {},
                      log=lambda _: None)
  results, output = pytest_results(checkout, "litezoo/plugins/testing/testing_test.py",
                                   "litezoo/plugins/oddkeys/oddkeys_test.py")
  assert results == {
      f"litezoo/plugins/{n}/{n}_test.py::test_base_has_the_published_parameter_count": "FAILED"
      for n in ("testing", "oddkeys")}, output
  for n in ("testing", "oddkeys"):
    assert f"{n}-base: fill in the published parameter count" in output, output
  assert "AttributeError" not in output and "Error while" not in output
