"""The artifact cache's keys: a converted model is reused while nothing that affects its bytes
changed (plugin version and config, variant, recipe, signatures, the weights' identity, the
converter's versions, the zoo's own conversion code). `litezoo.pipeline.artifact` looks up,
locks and fills it.

Below the cache sits an optional read-only layer, `$LITEZOO_PREBUILT`: artifacts converted
elsewhere (a Bazel zoo_artifact action, a CI job) that fill the cache on a miss when their
manifest carries the wanted key, so the same model is converted once, not once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
from typing import Any, Callable, Mapping

from litezoo.artifacts import files, manifest
from litezoo.core.spec import ModelSpec, Signatures
from litezoo.quant import calibration, recipes
from litezoo.sources.weights import Weights


PREBUILT_ENV = "LITEZOO_PREBUILT"
# The zoo's packages whose code decides a conversion's bytes: a fix to a family or the exporter
# must not be answered with a file the old code wrote.
CODE_PACKAGES = ("core", "families", "sources", "conversion", "quant")


@functools.cache
def code_identity(root: pathlib.Path | None = None) -> str:
  """16 hex digits of the sha256 of CODE_PACKAGES' Python files (paths and contents) under
  `root`, by default this installation of the zoo."""
  # Not resolved: under Bazel this is the runfiles tree, the files the converting process has.
  root = root or pathlib.Path(__file__).absolute().parents[1]
  digest = hashlib.sha256()
  for package in CODE_PACKAGES:
    for path in sorted((root / package).glob("*.py")):
      digest.update(f"{package}/{path.name}\0".encode())
      digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


def content_identity(identity: Mapping[str, Any]) -> dict:
  """A weights identity less where a local checkpoint lies: its files' sha256s say what it holds,
  so a copy of it elsewhere (or the same file given by another path) is the same checkpoint."""
  return {k: v for k, v in identity.items() if k != "path"}


def key(spec: ModelSpec, variant: str, recipe: str, signatures: Signatures,
        weights: Weights | Mapping[str, Any], transform: str | None = None) -> str:
  """20 hex digits of the sha256 of everything that decides the artifact's bytes. `weights` is
  a Weights or its identity (what a manifest's `checkpoint` records, less `transform`)."""
  identity = content_identity(weights.identity if isinstance(weights, Weights) else weights)
  described = {
      "format": manifest.FORMAT, "model": spec.name, "plugin_version": spec.version,
      "variant": variant, "config": dict(spec.variant(variant).config), "recipe": recipe,
      "signatures": signatures.as_dict(), "checkpoint": dict(identity),
      "transform": transform, "versions": manifest.versions(), "code": code_identity(),
  }
  if recipe != "none":  # how a recipe name becomes quantizer entries; float files keep their keys
    described["recipe_format"] = recipes.FORMAT
  if recipes.calibrated(recipe):  # and what the model read to fit it
    described["calibration"] = calibration.identity()
  return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def directory(spec: ModelSpec, variant: str, recipe_tag: str, cache_key: str) -> pathlib.Path:
  return files.cache_root() / "artifacts" / f"{spec.name}-{variant}_{recipe_tag}-{cache_key}"


def prebuilt(cache_key: str, log: Callable[[str], None]) -> manifest.Artifact | None:
  """The artifact among `$LITEZOO_PREBUILT` (.tflite paths separated by os.pathsep; each with
  its manifest beside it) whose manifest carries `cache_key`, checked like a cached file (sha256,
  size, the LiteRT verifier); else None. A listed file that is missing, unreadable or whose bytes
  do not match its manifest is skipped with a log line, never trusted."""
  for entry in filter(None, os.environ.get(PREBUILT_ENV, "").split(os.pathsep)):
    path = pathlib.Path(entry)
    try:
      if not path.is_file():
        raise files.ArtifactError(f"{path} is a directory, not a .tflite" if path.is_dir()
                                  else f"{path} does not exist")
      if manifest.Artifact.read(path).manifest.cache_key != cache_key:
        continue
      return manifest.open_verified(path)
    except files.ArtifactError as e:
      log(f"ignoring prebuilt {path} (from ${PREBUILT_ENV}): {e}")
  return None


def fill_from(found: manifest.Artifact, final: pathlib.Path,
              link: bool = False) -> tuple[manifest.Artifact, bool]:
  """The artifact `found` (a prebuilt one, or a cached one for `convert`) at `final`, and whether
  it is a hard link rather than a copy. Manifest first (as a conversion writes it), the bytes
  through a temp file so no reader sees half a file.

  With `link`, `final` becomes a hard link to `found` where the file system allows one (same
  device), so a 1 GB model is not stored twice; else, and without `link`, a copy. Every reader
  checks the bytes against the manifest's sha256 (`manifest.open_verified`), so a linked file
  changed in place is caught in both places, and the cache converts its own again.
  """
  copied = manifest.Artifact(final, dataclasses.replace(found.manifest, file=final.name))
  final.parent.mkdir(parents=True, exist_ok=True)
  linked = False
  with files.atomic_path(final) as tmp:
    if link:
      staged = tmp.with_name(tmp.name + ".link")
      try:
        os.link(found.path, staged)
        os.replace(staged, tmp)  # the locked temp name now holds the linked inode
        linked = True
      except OSError:  # another device (EXDEV), no hard links there, or not allowed: copy
        staged.unlink(missing_ok=True)
    if not linked:
      shutil.copyfile(found.path, tmp)
    copied.write_manifest()
  return copied, linked
