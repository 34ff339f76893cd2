"""What an artifact is: a `.tflite` and its manifest, a typed record of everything that made it.

The runner, the bundler and releases read facts (model, variant, recipe, signatures and their KV
cache layout, checkpoint identity) from the manifest, never from file names or tensor shapes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
from typing import Any, Mapping

from litezoo.artifacts import files
from litezoo.core.spec import Signatures

# 3: prefill returns the last token's logits by default, verify_<k> and decode_w<W> signatures
# (the signatures record says which); 2 is still read (every position, no such signatures).
FORMAT = 3
READABLE_FORMATS = (2, 3)
# The packages whose versions decide an artifact's bytes or speed: converter, quantizer, runtime,
# bundlers. Manifests, cache keys, releases and benchmark results all record these.
PACKAGES = ("ai-edge-litert", "ai-edge-quantizer", "gguf", "litert-converter", "litert-lm-api",
            "litert-lm-builder", "litert-torch", "mediapipe", "tensorflow-cpu", "torch",
            "transformers")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
  """Installed versions of `packages` (those not installed are left out) and Python's."""
  found = {}
  for name in packages:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  found["python"] = platform.python_version()
  return found



@dataclasses.dataclass(frozen=True)
class Manifest:
  """The manifest `<artifact stem>.manifest.json` beside every artifact (JSON, sorted keys)."""

  model: str
  variant: str
  plugin_version: str
  file: str  # the artifact's file name
  sha256: str
  size_bytes: int
  recipe: Mapping[str, Any]  # quant.recipes.describe(): name, default, per-component recipes
  signatures: Signatures
  signature_details: Mapping[str, Any]  # per signature: inputs/outputs with dtype and shape
  weights: Mapping[str, Any]  # storage types of the weight matrices, read from the file
  config: Mapping[str, Any]  # the HF config the model was built from
  checkpoint: Mapping[str, Any]  # the weights' identity (sources/weights.py)
  versions: Mapping[str, str]  # converter packages and Python
  conversion: Mapping[str, Any]  # seconds per stage, peak RSS
  format: int = FORMAT
  # The artifact cache's key of the settings that made it (artifacts/cache.py): how a prebuilt
  # file (LITEZOO_PREBUILT) is matched to a request. Empty in manifests written before it.
  cache_key: str = ""

  @property
  def recipe_name(self) -> str:
    return self.recipe["name"]

  def to_json(self) -> dict:
    data = dataclasses.asdict(self)
    data["signatures"] = self.signatures.as_dict()
    return data

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> Manifest:
    if data.get("format") not in READABLE_FORMATS:
      raise ValueError(f"manifest format {data.get('format')!r}, expected one of "
                       f"{READABLE_FORMATS}")
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in fields}
    values["signatures"] = Signatures.from_dict(data["signatures"])
    return cls(**values)


def manifest_path(artifact: str | os.PathLike) -> pathlib.Path:
  artifact = pathlib.Path(artifact)
  return artifact.with_name(artifact.stem + ".manifest.json")


@dataclasses.dataclass(frozen=True)
class Artifact:
  """A converted model on disk with its manifest."""

  path: pathlib.Path
  manifest: Manifest

  @classmethod
  def read(cls, path: str | os.PathLike) -> Artifact:
    """The artifact at `path` with its manifest; raises ArtifactError if the manifest is missing
    or unreadable (the bytes are not checked: see `open_verified`)."""
    path = pathlib.Path(path)
    if not manifest_path(path).exists():
      raise files.ArtifactError(
          f"{path}: its manifest {manifest_path(path).name} is missing (the zoo writes one beside "
          "every .tflite it converts): copy it along, or convert the model again")
    try:
      data = json.loads(manifest_path(path).read_text())
      return cls(path, Manifest.from_json(data))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise files.ArtifactError(
          f"{path}: its manifest {manifest_path(path).name} is unreadable "
          f"({type(e).__name__}: {e}); convert the model again") from e

  def write_manifest(self) -> None:
    files.write_json(manifest_path(self.path), self.manifest.to_json())

  def intact(self) -> bool:
    """True if the file exists and its bytes match the manifest's sha256."""
    try:  # hashed once per change of the file (size, mtime), not at every start
      return (self.path.stat().st_size == self.manifest.size_bytes
              and files.sha256_stamped(self.path) == self.manifest.sha256)
    except OSError:
      return False


def find(path: str | os.PathLike) -> Artifact | None:
  """The artifact at `path` if a manifest describes it, else None (a bare .tflite)."""
  try:
    return Artifact.read(path) if manifest_path(path).exists() else None
  except files.ArtifactError:
    return None


def open_verified(path: str | os.PathLike, interpreter: bool = True) -> Artifact:
  """An artifact whose bytes match its manifest and that LiteRT accepts; else ArtifactError
  naming the problem. The zoo's loaders call this before handing a file to a runtime: a flipped
  byte or a truncated copy is named as such instead of crashing native code."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise files.ArtifactError(f"{path} does not exist")
  artifact = Artifact.read(path)
  size = path.stat().st_size
  if size != artifact.manifest.size_bytes:
    raise files.ArtifactError(
        f"{path} is {size} bytes, but its manifest says {artifact.manifest.size_bytes}: truncated "
        "or replaced; delete it and convert again")
  actual = files.sha256_file(path)
  if actual != artifact.manifest.sha256:
    raise files.ArtifactError(
        f"{path}: sha256 {actual} does not match its manifest's {artifact.manifest.sha256}: the "
        "file is corrupt or was changed; delete it and convert again")
  files.check_tflite(path, interpreter)
  return artifact
