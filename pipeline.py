"""The one flow every tool, test, benchmark peer and release takes:

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
from typing import Any, Callable

from litezoo.artifacts import cache, files, manifest
from litezoo.artifacts.manifest import Artifact
from litezoo.core.spec import ModelSpec, Signatures
from litezoo.quant import recipes
from litezoo.sources.weights import Weights, resolve as weights

__all__ = ["Transform", "Weights", "artifact", "original_and_ours", "tokenizer", "weights"]


@dataclasses.dataclass(frozen=True)
class Transform:
  """A change applied to the re-authored model after loading, before export (explore's
  --corrupt_layer); `name` goes into the artifact's cache key and manifest."""

  name: str
  apply: Callable[[Any], None]  # (torch.nn.Module) -> None, changes it in place


def artifact(spec: ModelSpec, variant: str | None, weights_: Weights, *, recipe: str | None = None,
             signatures: Signatures | None = None, transform: Transform | None = None,
             log: Callable[[str], None] = print) -> Artifact:
  """The cached .tflite of these settings, converted on first use.

  Every recipe quantizes the one cached float conversion (seconds, not a conversion). Processes
  asking for the same artifact wait on a lock and convert once; a cached file whose bytes no
  longer match its manifest is converted again. Raises what `convert.convert` raises.
  """
  variant = variant or spec.default_variant
  spec.variant(variant)
  recipe = recipes.check(recipe or spec.default_recipe)
  signatures = signatures or spec.signatures
  spec.check_signatures(variant, signatures)  # bad input fails before any work
  tag = recipes.parse(recipe).file_tag
  key = cache.key(spec, variant, recipe, signatures, weights_,
                  transform.name if transform is not None else None)
  directory = cache.directory(spec, variant, tag, key)
  final = directory / files.artifact_name(spec.name, variant, tag, signatures.kv_cache_max_len)
  # Not with_suffix: a name like tinyllama-1.1b_... would lose ".1b_..." and collide with the
  # float artifact's lock, which a quantized conversion takes while holding its own.
  with files.locked(directory.parent / (directory.name + ".lock")):
    found = manifest.find(final)
    if found is not None and found.intact():
      return found
    # Imported only on a miss: a cached artifact runs without torch (180 MiB, a second).
    from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top
    if final.exists():
      log(f"cached {final.name} does not match its manifest's sha256: converting again")
    if recipe == "none":
      log(f"converting {spec.name}-{variant} ({recipe}) on first use into {directory}")
      return convert.convert(spec, variant, weights_, output_dir=directory, recipe=recipe,
                             signatures=signatures, transform=transform, log=log)
    float_artifact = artifact(spec, variant, weights_, recipe="none", signatures=signatures,
                              transform=transform, log=log)
    log(f"quantizing {spec.name}-{variant} ({recipe}) on first use into {directory}")
    return convert.quantize(spec, float_artifact, recipe, output_dir=directory, log=log)


def tokenizer(weights_: Weights, log: Callable[[str], None] = lambda _: None):
  """The checkpoint's tokenizer (runtime.tokenizer.HFTokenizer), kept under the cache root once
  built: building one from GGUF metadata takes seconds (minutes for Gemma's 262k vocabulary)."""
  from litezoo.runtime import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  identity = hashlib.sha256(json.dumps(dict(weights_.identity), sort_keys=True).encode())
  cache = files.cache_root() / "tokenizers" / identity.hexdigest()[:20]
  if not tokenizer_lib.is_saved(cache):
    log(f"reading the tokenizer of {weights_.path} (once; kept in {cache})")
  return tokenizer_lib.load(weights_.path, cache=cache)


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
