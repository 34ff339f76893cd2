"""Checkpoint sources: where tensors come from. A source knows files, never models.

A source lists tensor names with shapes and loads one tensor at a time, so a multi-GB checkpoint
is never held twice in memory.
"""

import hashlib
import json
import os
import pathlib
from typing import Protocol

import torch
from safetensors import safe_open

from litezoo.core.errors import ZooError


class CheckpointError(ZooError, ValueError):
  """A checkpoint that cannot be used, with a message naming the problem and the fix."""


class Source(Protocol):

  def names(self) -> list[str]:
    ...

  def shape(self, name: str) -> tuple[int, ...]:
    ...

  def load(self, name: str) -> torch.Tensor:
    ...

  def identity(self) -> dict:
    """What the manifest records: kind, location and sha256 of every file."""
    ...


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


class SafetensorsSource:
  """A `.safetensors` file, or a directory with one or a sharded `model.safetensors.index.json`."""

  INDEX = "model.safetensors.index.json"

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._files = self._find_files(self.path)
    self._where: dict[str, pathlib.Path] = {}
    self._shapes: dict[str, tuple[int, ...]] = {}
    self._handles = {}
    for file in self._files:
      try:
        handle = safe_open(str(file), framework="pt")
      except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
      self._handles[file] = handle
      for name in handle.keys():
        if name in self._where:
          raise CheckpointError(f"tensor {name!r} appears in both {self._where[name]} and {file}")
        self._where[name] = file
        self._shapes[name] = tuple(handle.get_slice(name).get_shape())

  @classmethod
  def _find_files(cls, path: pathlib.Path) -> list[pathlib.Path]:
    if not path.exists():
      raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file():
      if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a .safetensors file or a checkpoint directory")
      return [path]
    index = path / cls.INDEX
    if index.exists():
      try:
        weight_map = json.loads(index.read_text())["weight_map"]
      except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from e
      files = sorted({path / f for f in weight_map.values()})
      missing = [str(f) for f in files if not f.exists()]
      if missing:
        raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing)}")
      return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
      pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
      hint = (f" (found pickled {', '.join(pickles)}: convert it to safetensors)" if pickles else "")
      raise CheckpointError(f"no .safetensors files in {path}{hint}")
    return files

  def names(self) -> list[str]:
    return list(self._where)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._shapes[name]

  def load(self, name: str) -> torch.Tensor:
    return self._handles[self._where[name]].get_tensor(name)

  def identity(self) -> dict:
    return {
        "kind": "safetensors",
        "path": str(self.path.resolve()),
        "files": {f.name: sha256_file(f) for f in self._files},
    }


def open_checkpoint(path: str | os.PathLike) -> Source:
  return SafetensorsSource(path)
