"""The artifact cache's keys: a converted model is reused while nothing that affects its bytes
changed (plugin version and config, variant, recipe, signatures, the weights' identity, the
converter's versions). `litezoo.pipeline.artifact` looks up, locks and fills it.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

from litezoo.artifacts import files, manifest
from litezoo.core.spec import ModelSpec, Signatures
from litezoo.quant import recipes
from litezoo.sources.weights import Weights


def key(spec: ModelSpec, variant: str, recipe: str, signatures: Signatures, weights: Weights,
        transform: str | None = None) -> str:
  """20 hex digits of the sha256 of everything that decides the artifact's bytes."""
  described = {
      "format": manifest.FORMAT, "model": spec.name, "plugin_version": spec.version,
      "variant": variant, "config": dict(spec.variant(variant).config), "recipe": recipe,
      "signatures": signatures.as_dict(), "checkpoint": dict(weights.identity),
      "transform": transform, "versions": manifest.versions(),
  }
  if recipe != "none":  # how a recipe name becomes quantizer entries; float files keep their keys
    described["recipe_format"] = recipes.FORMAT
  return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def directory(spec: ModelSpec, variant: str, recipe_tag: str, cache_key: str) -> pathlib.Path:
  return files.cache_root() / "artifacts" / f"{spec.name}-{variant}_{recipe_tag}-{cache_key}"
