"""The one flow every tool, test, benchmark peer and release takes:

    checkpoint_spec(path)              -> ModelSpec (any checkpoint of a family the zoo builds)
    weights(spec, variant, ...)        -> Weights   (pinned, local, GGUF or random: one path)
    artifact(spec, variant, weights)   -> Artifact  (converted once, cached, locked, verified)
    tokenizer(weights)                 -> the model's tokenizer, built once
    original_and_ours(spec, ...)       -> transformers' model and the re-authored one, same weights

A fix or a speed-up here reaches every tool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
from typing import Any, Callable

from litezoo.artifacts import cache, files, manifest
from litezoo.artifacts.manifest import Artifact
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec, Signatures, Variant
from litezoo.quant import recipes
from litezoo.sources.weights import Weights, resolve as weights

__all__ = ["Transform", "Weights", "artifact", "checkpoint_spec", "original_and_ours", "tokenizer",
           "weights"]

# The one variant of a model read from a checkpoint, and its defaults: every tool's signatures,
# the families' usual recipe.
CHECKPOINT_VARIANT = "checkpoint"
CHECKPOINT_PREFILL = (32, 128)
CHECKPOINT_KV_CACHE = 1024
# config.json keys that are bookkeeping, not architecture (as tools/new_plugin leaves them out).
_NOT_CONFIG = ("architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path",
               "use_cache", "initializer_range")


class CheckpointSpecError(ZooError, ValueError):
  pass


def _model_name(path: pathlib.Path) -> str:
  """A model name from a checkpoint's directory (or GGUF file) name: lowercase, [a-z0-9_.-]."""
  stem = path.stem if path.suffix == ".gguf" else path.name
  if stem.startswith("snapshots") or re.fullmatch(r"[0-9a-f]{40}", stem):  # a hub cache snapshot
    stem = path.parents[1].name.removeprefix("models--")
  return re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-.") or "checkpoint"


def _gguf_config(path: pathlib.Path) -> tuple[Any, dict]:
  """(family, config.json dict) of a GGUF file: its architecture names the family, its metadata
  the hyper-parameters."""
  from litezoo import families  # pylint: disable=g-import-not-at-top
  from litezoo.sources import gguf  # pylint: disable=g-import-not-at-top
  architecture = gguf.architecture(path)
  family = next((f for f in families.FAMILIES
                 if f.gguf is not None and f.gguf.architecture == architecture), None)
  if family is None:
    known = sorted({f.gguf.architecture for f in families.FAMILIES if f.gguf is not None})
    raise CheckpointSpecError(f"{path} holds a llama.cpp {architecture!r} model, which the zoo "
                              f"cannot import; it imports GGUF architectures: {', '.join(known)}")
  config = {"model_type": family.model_types[0],
            **gguf.GGUFSource(path, family.gguf).config()}
  return family, config


def checkpoint_spec(path: str | pathlib.Path, log: Callable[[str], None] = print) -> ModelSpec:
  """The ModelSpec of a checkpoint the zoo has no plugin for: a Hugging Face directory (its
  config.json's model_type picks the family, its keys are the config) or a GGUF file (its
  architecture and metadata). One variant, "checkpoint"; the zoo's default signatures (the KV
  cache no longer than the model's context) and the dynamic_int8 recipe.

  Raises UnsupportedConfigError listing the model types the zoo builds, or naming the field a
  family does not implement; CheckpointSpecError / CheckpointError for an unreadable checkpoint.
  """
  from litezoo import families  # pylint: disable=g-import-not-at-top
  from litezoo import sources  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.exists():
    raise sources.missing(path)
  if path.suffix == ".gguf":
    family, config = _gguf_config(path)
  else:
    from litezoo.sources import safetensors  # pylint: disable=g-import-not-at-top
    config = safetensors.read_config(path)
    if config is None:
      what = "has no config.json" if path.is_dir() else "is a single file but not a .gguf"
      raise CheckpointSpecError(
          f"{path} {what}, so the zoo cannot tell what model it holds; pass a Hugging Face "
          "checkpoint directory (config.json + safetensors), a .gguf file, or --model=NAME")
    config = {k: v for k, v in config.items() if k not in _NOT_CONFIG}
    family = families.by_model_type(config.get("model_type"))
  family.config(config)  # refuses a field the family cannot build, naming it
  context = int(config.get("max_position_embeddings") or CHECKPOINT_KV_CACHE)
  kv = min(CHECKPOINT_KV_CACHE, context)
  prefill = tuple(n for n in CHECKPOINT_PREFILL if n < kv) or (kv,)
  name = _model_name(path)
  kind = str(config["model_type"])
  article = "an" if kind[:1].lower() in "aeio" else "a"
  log(f"{path}: {article} {kind} model ({family.name} family), converted as {name}")
  return ModelSpec(
      name=name, version="0.0.0", variants={CHECKPOINT_VARIANT: Variant(config)},
      default_variant=CHECKPOINT_VARIANT, family=family,
      signatures=Signatures(prefill_seq_lens=prefill, kv_cache_max_len=kv),
      description=f"{config['model_type']} checkpoint {path}")



@dataclasses.dataclass(frozen=True)
class Transform:
  """A change applied to the re-authored model after loading, before export (explore's
  --corrupt_layer); `name` goes into the artifact's cache key and manifest."""

  name: str
  apply: Callable[[Any], None]  # (torch.nn.Module) -> None, changes it in place


def _place(spec: ModelSpec, variant: str | None, weights_: Weights, recipe: str | None,
           signatures: Signatures | None, transform: Transform | None):
  """(variant, recipe, signatures, cache key, directory, .tflite path) of an artifact, defaults
  filled in; raises ZooError for settings the model cannot take, before any work."""
  variant = variant or spec.default_variant
  spec.variant(variant)
  recipe = recipes.check(recipe or spec.default_recipe)
  signatures = signatures or spec.signatures
  spec.check_signatures(variant, signatures)
  tag = recipes.parse(recipe).file_tag
  key = cache.key(spec, variant, recipe, signatures, weights_,
                  transform.name if transform is not None else None)
  directory = cache.directory(spec, variant, tag, key)
  final = directory / files.artifact_name(spec.name, variant, tag, signatures.kv_cache_max_len)
  return variant, recipe, signatures, key, directory, final


def cached_artifact(spec: ModelSpec, variant: str | None, weights_: Weights, *,
                    recipe: str | None = None, signatures: Signatures | None = None,
                    transform: Transform | None = None) -> Artifact | None:
  """The cached .tflite of these settings if it is there and intact, else None: what
  `artifact` would return without converting (no lock taken, nothing written)."""
  final = _place(spec, variant, weights_, recipe, signatures, transform)[-1]
  found = manifest.find(final)
  return found if found is not None and found.intact() else None


def artifact(spec: ModelSpec, variant: str | None, weights_: Weights, *, recipe: str | None = None,
             signatures: Signatures | None = None, transform: Transform | None = None,
             log: Callable[[str], None] = print) -> Artifact:
  """The cached .tflite of these settings, converted on first use.

  Every recipe quantizes the one cached float conversion (seconds, not a conversion). Processes
  asking for the same artifact wait on a lock and convert once; a cached file whose bytes no
  longer match its manifest is converted again. On a miss, a prebuilt file with the same key
  (`$LITEZOO_PREBUILT`, artifacts/cache.py) is copied in instead of converting. Raises what
  `convert.convert` raises.
  """
  variant, recipe, signatures, key, directory, final = _place(spec, variant, weights_, recipe,
                                                              signatures, transform)
  if recipe != "none":  # a recipe that cannot apply is refused before any lock or conversion
    cached = manifest.find(final)
    if cached is None or not cached.intact():
      refused = check_recipes(spec, variant, weights_, [recipe], signatures)
      if refused:
        raise refused[recipe]
  # Not with_suffix: a name like tinyllama-1.1b_... would lose ".1b_..." and collide with the
  # float artifact's lock, which a quantized conversion takes while holding its own.
  with files.locked(directory.parent / (directory.name + ".lock")):
    found = manifest.find(final)
    if found is not None and found.intact():
      return found
    if final.exists():
      log(f"cached {final.name} does not match its manifest's sha256: converting again")
    prebuilt = cache.prebuilt(key, log)
    if prebuilt is not None:
      log(f"using prebuilt {prebuilt.path} for {spec.name}-{variant} ({recipe})")
      return cache.fill_from(prebuilt, final)[0]
    # Imported only to convert: a cached or prebuilt artifact runs without torch (180 MiB, a
    # second).
    from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top
    if recipe == "none":
      log(f"converting {spec.name}-{variant} ({recipe}) on first use into {directory}")
      return convert.convert(spec, variant, weights_, output_dir=directory, recipe=recipe,
                             signatures=signatures, transform=transform, log=log)
    float_artifact = artifact(spec, variant, weights_, recipe="none", signatures=signatures,
                              transform=transform, log=log)
    log(f"quantizing {spec.name}-{variant} ({recipe}) on first use into {directory}")
    windows = (calibration_windows(spec, variant, weights_, log)
               if recipes.calibrated(recipe) else None)
    return convert.quantize(spec, float_artifact, recipe, output_dir=directory,
                            calibration=windows, weights=weights_, log=log)


def check_recipes(spec: ModelSpec, variant: str | None, weights_: Weights, recipes_: list[str],
                  signatures: Signatures | None = None,
                  log: Callable[[str], None] = lambda _: None) -> dict[str, Exception]:
  """Why each of `recipes_` (canonical names) cannot apply to this model (an int4 block size not
  dividing a layer's inputs, gptq of an untied embedding table), found in seconds with the
  checkpoint read once and nothing written: {recipe: export.QuantizeError} for those refused."""
  # pylint: disable=g-import-not-at-top  (torch: only when a conversion is coming anyway)
  from litezoo.conversion import convert
  variant = variant or spec.default_variant
  signatures = signatures or spec.signatures
  return convert.check_recipes(spec, variant, weights_, recipes_, signatures.kv_cache_max_len,
                               log)


def calibration_windows(spec: ModelSpec, variant: str, weights_: Weights,
                        log: Callable[[str], None] = print) -> list[list[int]]:
  """The calibration text (quant/calibration.py) in the model's tokens: windows of at most the
  model's context."""
  from litezoo.quant import calibration  # pylint: disable=g-import-not-at-top
  tok = tokenizer(weights_, log)
  context = spec.variant(variant).config.get("max_position_embeddings") or calibration.WINDOW
  return calibration.windows(tok.encode, tok.bos_id, min(calibration.WINDOW, context))


def tokenizer(weights_: Weights, log: Callable[[str], None] = lambda _: None):
  """The checkpoint's tokenizer (runtime.tokenizer.HFTokenizer), kept under the cache root once
  built: building one from GGUF metadata takes seconds (minutes for Gemma's 262k vocabulary)."""
  from litezoo.runtime import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  identity = json.dumps(cache.content_identity(weights_.identity), sort_keys=True)
  saved = files.cache_root() / "tokenizers" / hashlib.sha256(identity.encode()).hexdigest()[:20]
  if not tokenizer_lib.is_saved(saved):
    log(f"reading the tokenizer of {weights_.path} (once; kept in {saved})")
  return tokenizer_lib.load(weights_.path, cache=saved)


def original_and_ours(spec: ModelSpec, variant: str | None, weights_: Weights,
                      kv_cache_max_len: int, log: Callable[[str], None] = print):
  """(transformers' model, the re-authored model) with the same weights, both in float32 eval
  mode: the two sides of every numeric check."""
  # pylint: disable=g-import-not-at-top
  from litezoo.conversion import convert
  from litezoo.reference import hf
  variant = variant or spec.default_variant
  ours, config = convert.load_model(spec, variant, weights_, kv_cache_max_len, log)
  return hf.load(weights_.path, config), ours
