"""GGUF checkpoints (llama.cpp's format), read with the `gguf` package and dequantized to float32.

A GGUF file names tensors its own way (`blk.3.attn_q.weight`) and stores some of them changed for
llama.cpp's kernels. The family's GGUFMap (families/<name>.py) names them as Hugging Face does and
undoes the changes, so a family's tensor names work on a GGUF file exactly as on safetensors.
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from litezoo.sources import CheckpointError, validate

if TYPE_CHECKING:
  import torch

  from litezoo.families.base import GGUFMap


class GGUFError(CheckpointError):
  pass


def _header(path: pathlib.Path, weights: bool) -> validate.GGUFHeader:
  """The bounds check of the file (the gguf reader trusts every count and length in it); with
  `weights`, a file without tensors is refused before the reader parses its vocabulary."""
  try:
    header = validate.check_gguf(path)
  except validate.FileCheckError as e:
    raise GGUFError(f"{path}: not a readable GGUF file: {e.detail}") from e
  if weights and not header.tensors:
    raise GGUFError(f"{path} holds no tensors (a vocabulary-only GGUF, such as llama.cpp's "
                    "ggml-vocab-*.gguf?): pass a GGUF file with the model's weights")
  return header


def _reader(path: pathlib.Path, weights: bool):
  import gguf  # pylint: disable=g-import-not-at-top
  _header(path, weights)
  try:
    return gguf.GGUFReader(path)
  except Exception as e:  # the reader raises ValueError, struct errors, IndexError...
    raise GGUFError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def architecture(path: str | os.PathLike) -> str:
  """The architecture of a GGUF checkpoint (`general.architecture`, llama.cpp's name of the
  family: llama, gemma3, ...), from the bounds check's walk of the header: an architecture the
  zoo cannot import, or a file with no weights, is refused in about a second, not after the
  reader's 10-25 s over the vocabulary. Raises GGUFError."""
  path = pathlib.Path(path)
  found = _header(path, weights=True).architecture
  return found if found is not None else GGUFSource(path, None).architecture


def gguf_dequantize(tensor):
  import gguf  # pylint: disable=g-import-not-at-top
  return gguf.quants.dequantize(tensor.data, tensor.tensor_type)


class GGUFSource:
  """Tensors of one GGUF file under Hugging Face names, dequantized to float32 on demand.

  With `names=None` only the metadata is usable (to find the family of a file).
  """

  def __init__(self, path: str | os.PathLike, names: GGUFMap | None):
    self.path = pathlib.Path(path)
    self.reader = _reader(self.path, weights=names is not None)
    self.architecture = self.metadata("general.architecture")
    if not isinstance(self.architecture, str):
      raise GGUFError(f"{self.path}: general.architecture is {self.architecture!r}, not a name")
    self.map = names
    self._tensors = {}
    if names is None:
      return
    if names.architecture != self.architecture:
      raise GGUFError(f"{self.path} holds a {self.architecture!r} model, not {names.architecture!r}"
                      ": it is a checkpoint of another family")
    self._config_tensors = {}  # tensors that carry hyper-parameters, not weights (rope_freqs)
    for tensor in self.reader.tensors:
      if tensor.name in names.config_tensors:
        self._config_tensors[tensor.name] = tensor
        continue
      hf_name = names.hf_name(tensor.name)
      if hf_name is None:
        raise GGUFError(f"{self.path}: tensor {tensor.name!r} has no Hugging Face name in the "
                        f"{self.architecture} map; the zoo cannot place it")
      self._tensors[hf_name] = tensor
    self._config = self._read_config()

  def metadata(self, key: str, default: Any = None) -> Any:
    field = self.reader.fields.get(key)
    if field is None:
      return default
    try:
      return field.contents()
    except (UnicodeDecodeError, ValueError, IndexError) as e:
      raise GGUFError(f"{self.path}: metadata {key!r} is unreadable ({e})") from e

  def _read_config(self) -> dict[str, Any]:
    """The hyper-parameters the file carries, under config.json names: its `<arch>.*` metadata,
    the vocabulary from the embedding's shape, and a tied head unless the file has its own."""
    config: dict[str, Any] = {}
    for hf_key, gguf_key in self.map.config_keys.items():
      value = self.metadata(f"{self.architecture}.{gguf_key}")
      if value is None:
        continue
      if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise GGUFError(f"{self.path}: {self.architecture}.{gguf_key} is {value!r}, not a number")
      config[hf_key] = value.item() if isinstance(value, np.number) else value
    if "model.embed_tokens.weight" in self._tensors:
      config["vocab_size"] = self.shape("model.embed_tokens.weight")[0]
    config["tie_word_embeddings"] = "lm_head.weight" not in self._tensors
    for name, tensor in self._config_tensors.items():
      values = np.array(gguf_dequantize(tensor), dtype=np.float32).reshape(-1)
      try:
        config.update(self.map.config_tensors[name](values, config))
      except ValueError as e:
        raise GGUFError(f"{self.path}: tensor {name!r} {e}") from e
    # gguf_* keys are what llama.cpp writes that implied() turns into config.json keys.
    return {k: v for k, v in {**self.map.implied(config), **config}.items()
            if not k.startswith("gguf_")}

  def config(self) -> Mapping[str, Any]:
    return dict(self._config)

  def names(self) -> list[str]:
    return list(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(self._tensors[name].shape))  # GGUF lists dims inner-first

  def load(self, name: str) -> torch.Tensor:
    import gguf  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    tensor = self._tensors[name]
    try:
      array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
      raise GGUFError(f"{self.path}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, "
                      f"which the gguf package cannot dequantize ({e})") from e
    # np.array copies: the file is mapped read-only and torch wants writable memory.
    weight = torch.from_numpy(np.array(array, dtype=np.float32)).reshape(self.shape(name))
    try:
      return self.map.transform(name, weight, self._config)
    except CheckpointError:
      raise
    except Exception as e:  # a transform that does not fit the file is the file's fault
      raise GGUFError(f"{self.path}: tensor {tensor.name!r} does not fit the {self.architecture} "
                      f"layout ({e})") from e

  @property
  def tensor_types(self) -> dict[str, str]:
    return {name: t.tensor_type.name for name, t in self._tensors.items()}
