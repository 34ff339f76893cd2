"""The artifact cache: a converted model is reused while nothing that affects its bytes changed.

The key hashes the plugin version and config, variant, recipe, signatures, the checkpoint's file
sha256s and the converter versions. A cached file is used only if it still matches its
manifest's sha256; concurrent conversions of one key wait on a lock and convert once.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
from typing import Callable

from litezoo.core import artifacts, checkpoint as checkpoint_lib, convert as convert_lib
from litezoo.core.spec import ModelSpec, Signatures
from litezoo.quant import recipes


def _files_identity(path: pathlib.Path | None) -> dict:
  if path is None:
    return {"kind": "random", "seed": 0}
  files = [path] if path.is_file() else sorted(
      p for p in path.iterdir() if p.suffix in (".safetensors", ".gguf", ".json") or
      p.suffix in checkpoint_lib.PICKLE_SUFFIXES)
  return {p.name: checkpoint_lib.sha256_file(p) for p in files}


def key(spec: ModelSpec, variant: str, recipe: str, signatures: Signatures,
        checkpoint: pathlib.Path | None) -> str:
  described = {
      "model": spec.name, "plugin_version": spec.version, "variant": variant,
      "config": dict(spec.variant(variant).config), "recipe": recipe,
      "prefill_seq_lens": sorted(signatures.prefill_seq_lens),
      "kv_cache_max_len": signatures.kv_cache_max_len, "kv_layout": signatures.kv_layout,
      "checkpoint": _files_identity(checkpoint),
      "versions": convert_lib.versions(),
  }
  return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def artifact(spec: ModelSpec, variant: str | None = None, *, recipe: str | None = None,
             signatures: Signatures | None = None, checkpoint: os.PathLike | None = None,
             allow_pickle: bool = False, log: Callable[[str], None] = print) -> pathlib.Path:
  """The cached .tflite for these settings, converted on first use."""
  variant = variant or spec.default_variant
  recipe = recipes.check(recipe or spec.default_recipe)
  signatures = signatures or spec.signatures
  path = convert_lib.checkpoint_path(spec, variant, checkpoint)
  tag = recipes.parse(recipe).file_tag
  directory = checkpoint_lib.cache_dir() / "artifacts" / (
      f"{spec.name}-{variant}_{tag}-" + key(spec, variant, recipe, signatures, path))
  final = directory / artifacts.artifact_name(spec.name, variant, tag, signatures.kv_cache_max_len)
  # Not with_suffix: a name like tinyllama-1.1b_... would lose ".1b_..." and collide with the
  # float artifact's lock, which a quantized conversion takes while holding its own.
  with _locked(directory.parent / (directory.name + ".lock")):
    if artifacts.verify(final):
      return final
    if final.exists():
      log(f"cached {final.name} does not match its manifest's sha256: converting again")
    if recipe == "none":
      log(f"converting {spec.name}-{variant} ({recipe}) on first use into {directory}")
      convert_lib.convert(spec, variant, output_dir=directory, checkpoint=path, recipe=recipe,
                          signatures=signatures, allow_pickle=allow_pickle, log=log)
    else:  # every recipe quantizes the one cached float conversion
      float_artifact = artifact(spec, variant, recipe="none", signatures=signatures,
                                checkpoint=checkpoint, allow_pickle=allow_pickle, log=log)
      log(f"converting {spec.name}-{variant} ({recipe}) on first use into {directory}")
      convert_lib.quantize_artifact(spec, float_artifact, recipe, output_dir=directory, log=log)
  return final
