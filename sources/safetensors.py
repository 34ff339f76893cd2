"""Safetensors checkpoints: a file, or a directory of shards with or without an index.

Each tensor is read into its own buffer at the offsets of the validated header (sources/validate.py
checks the header against the file before anything trusts it).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

from litezoo.sources import CheckpointError, missing, validate

if TYPE_CHECKING:
  import torch


# safetensors dtype names -> torch dtype names (the format is little-endian, as torch on x86/arm).
TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
                "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F16": "float16",
                "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
                "I64": "int64", "U64": "uint64", "F64": "float64"}


class SafetensorsSource:
  """A `.safetensors` file, or a directory with one or a sharded `model.safetensors.index.json`.

  Each tensor is read into its own buffer at the offsets of the validated header. Reading, not
  memory-mapping: pages of a mapped checkpoint stay in the process's resident set while the file
  is open, which for TinyLlama 1.1B adds the whole 4.4 GB file to the model's 4.4 GB at conversion.
  """

  INDEX = "model.safetensors.index.json"

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._files = self._find_files(self.path)
    self._where: dict[str, pathlib.Path] = {}
    self._entries: dict[str, validate.SafetensorsEntry] = {}
    for file in self._files:
      try:
        entries = validate.check_safetensors(file)
      except validate.FileCheckError as e:
        raise CheckpointError(f"{file}: not a readable safetensors file: {e.detail}") from e
      for name, entry in entries.items():
        if name in self._where:
          raise CheckpointError(f"tensor {name!r} appears in both {self._where[name]} and {file}")
        self._where[name] = file
        self._entries[name] = entry
    index = self.path / self.INDEX if self.path.is_dir() else None
    if index is not None and index.exists():
      for name, shard in validate.check_safetensors_index(index).items():
        if name not in self._where or self._where[name].name != shard:
          found = f"it is in {self._where[name].name}" if name in self._where else "it is not there"
          raise CheckpointError(f"{index} puts {name!r} in {shard}, but {found}")

  @classmethod
  def _find_files(cls, path: pathlib.Path) -> list[pathlib.Path]:
    if not path.exists():
      raise missing(path)
    if path.is_file():
      if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a checkpoint directory (config.json + "
                              "safetensors), a .safetensors file or a .gguf file")
      return [path]
    index = path / cls.INDEX
    if os.path.lexists(index):  # a symlink loop or a directory is named by the check below
      try:
        weight_map = validate.check_safetensors_index(index)
      except validate.FileCheckError as e:
        raise CheckpointError(str(e)) from e
      files = sorted({path / f for f in weight_map.values()})
      missing = [str(f) for f in files if not f.exists()]
      if missing:
        raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing)}")
      return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
      raise CheckpointError(f"no .safetensors files in {path}")
    return files

  def names(self) -> list[str]:
    return list(self._where)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._entries[name].shape

  def load(self, name: str) -> torch.Tensor:
    import torch  # pylint: disable=g-import-not-at-top
    entry = self._entries[name]
    tensor = torch.empty(entry.shape, dtype=getattr(torch, TORCH_DTYPES[entry.dtype]))
    self.read_into(name, tensor)
    return tensor

  def read_into(self, name: str, target: torch.Tensor) -> bool:
    """Reads `name` straight into `target` if it has the tensor's dtype and shape, saving the
    temporary copy (262 MB for TinyLlama's embedding); False if it does not."""
    import torch  # pylint: disable=g-import-not-at-top
    entry = self._entries[name]
    if (target.dtype != getattr(torch, TORCH_DTYPES[entry.dtype])
        or tuple(target.shape) != entry.shape or not target.is_contiguous()):
      return False
    with open(self._where[name], "rb") as f:
      f.seek(entry.begin)
      if f.readinto(target.detach().view(-1).view(torch.uint8).numpy()) != entry.end - entry.begin:
        raise CheckpointError(f"{self._where[name]}: tensor {name!r} is cut short; the file "
                              "changed while it was read")
    return True

  @property
  def files(self) -> list[pathlib.Path]:
    return list(self._files)

  def config(self) -> Mapping[str, Any] | None:
    """The directory's config.json, if it has one."""
    return read_config(self.path)


# Real config.json files are a few KiB (a few hundred with a large id2label); each is parsed whole
# and copied into every manifest and scaffold, so one of many megabytes is a mistake or an attack.
MAX_CONFIG_BYTES = 4 << 20
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_config(path: pathlib.Path) -> dict[str, Any] | None:
  """The config.json of checkpoint directory `path`, or None if it has none (or `path` is a
  file). Raises CheckpointError when it is not a readable JSON object of at most
  MAX_CONFIG_BYTES."""
  found = path / "config.json" if path.is_dir() else None
  if found is None or not os.path.lexists(found):
    return None
  try:
    with validate.open_regular(found) as f:  # a directory, FIFO or symlink loop is named
      text = f.read(MAX_CONFIG_BYTES + 1)
  except validate.FileCheckError as e:
    raise CheckpointError(str(e)) from e
  except OSError as e:
    raise CheckpointError(f"{found} cannot be read ({e.strerror or e})") from e
  if len(text) > MAX_CONFIG_BYTES:
    raise CheckpointError(f"{found} is over {MAX_CONFIG_BYTES >> 20} MiB, where a model's "
                          "config.json is a few KiB: check that it is the model's config")
  try:
    config = json.loads(text)
  except ValueError as e:
    raise CheckpointError(f"{found} is not readable JSON ({e})") from e
  except RecursionError as e:  # json's decoder recurses once per level
    raise CheckpointError(f"{found} is not readable JSON (nested too deeply)") from e
  if not isinstance(config, dict):
    raise CheckpointError(f"{found} holds a JSON {_JSON_KINDS.get(type(config), 'value')}, not "
                          "an object: a Hugging Face config.json is one {...} of the model's "
                          "settings")
  return config
