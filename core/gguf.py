"""GGUF checkpoints (llama.cpp's format), read with the `gguf` package and dequantized to float.

A GGUF file names tensors its own way (`blk.3.attn_q.weight`) and stores some of them changed for
llama.cpp's kernels: Llama q/k rows permuted for its RoPE layout, Gemma norm weights with the +1 of
(1 + weight) folded in. This source undoes both and exposes Hugging Face names, so a plugin's
tensor-name map works on a GGUF file exactly as on a safetensors checkpoint.
"""

import os
import pathlib
from typing import Any, Callable, Mapping

import numpy as np
import torch

from litezoo.core import validate
from litezoo.core.checkpoint import CheckpointError, sha256_file

# GGUF name (without .weight/.bias) -> HF name, `{}` standing for the layer index.
_COMMON = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{}.attn_norm": "model.layers.{}.input_layernorm",
    "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
    "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj",
    "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
    "blk.{}.attn_output": "model.layers.{}.self_attn.o_proj",
    "blk.{}.ffn_gate": "model.layers.{}.mlp.gate_proj",
    "blk.{}.ffn_up": "model.layers.{}.mlp.up_proj",
    "blk.{}.ffn_down": "model.layers.{}.mlp.down_proj",
}
NAMES = {
    "llama": {**_COMMON, "blk.{}.ffn_norm": "model.layers.{}.post_attention_layernorm"},
    "gemma3": {
        **_COMMON,
        "blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
        "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm",
        "blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
        "blk.{}.ffn_norm": "model.layers.{}.pre_feedforward_layernorm",
        "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm",
    },
}
# HF config field -> GGUF metadata key (after `<arch>.`), checked against the plugin's config.
CONFIG_KEYS = {
    "num_hidden_layers": "block_count",
    "hidden_size": "embedding_length",
    "intermediate_size": "feed_forward_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
}


class GGUFError(CheckpointError):
  pass


def _unpermute(weight: torch.Tensor, heads: int) -> torch.Tensor:
  """Undoes llama.cpp's q/k row permutation (interleaved RoPE pairs -> HF's rotate-half halves).

  weight: [heads * head_dim, in] with each head's rows stored as (head_dim / 2, 2) pairs.
  """
  rows = weight.shape[0]
  return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
          .transpose(1, 2).reshape(weight.shape))


class GGUFSource:
  """Tensors of one GGUF file under Hugging Face names, dequantized to float32 on demand."""

  def __init__(self, path: str | os.PathLike, sha256: str | None = None):
    import gguf  # pylint: disable=g-import-not-at-top
    self.path = pathlib.Path(path)
    self._sha256 = sha256
    try:
      # The reader trusts every count and length in the file: bounds are checked first.
      validate.check_gguf(self.path)
      self.reader = gguf.GGUFReader(self.path)
    except validate.FileCheckError as e:
      raise GGUFError(f"{self.path}: not a readable GGUF file: {e.detail}") from e
    except Exception as e:  # the reader raises ValueError, struct errors, IndexError...
      raise GGUFError(f"{self.path}: not a readable GGUF file ({type(e).__name__}: {e})") from e
    self.architecture = self.metadata("general.architecture")
    if not isinstance(self.architecture, str) or self.architecture not in NAMES:
      raise GGUFError(f"{self.path}: GGUF architecture {self.architecture!r} is not supported; "
                      f"supported: {', '.join(NAMES)}")
    self._tensors = {}
    for tensor in self.reader.tensors:
      hf_name = self._hf_name(tensor.name)
      if hf_name is None:
        raise GGUFError(f"{self.path}: tensor {tensor.name!r} has no Hugging Face name for "
                        f"architecture {self.architecture!r}")
      self._tensors[hf_name] = tensor

  def _hf_name(self, name: str) -> str | None:
    base, _, kind = name.rpartition(".")
    parts = base.split(".")
    layer = None
    if len(parts) >= 2 and parts[0] == "blk" and parts[1].isdigit():
      layer = parts[1]
      base = ".".join(["blk", "{}", *parts[2:]])
    hf = NAMES[self.architecture].get(base)
    if hf is None:
      return None
    return f"{hf.format(layer) if layer is not None else hf}.{kind}"

  def metadata(self, key: str, default: Any = None) -> Any:
    field = self.reader.fields.get(key)
    if field is None:
      return default
    try:
      return field.contents()
    except (UnicodeDecodeError, ValueError, IndexError) as e:
      raise GGUFError(f"{self.path}: metadata {key!r} is unreadable ({e})") from e

  def int_metadata(self, key: str) -> int | None:
    """An integer architecture field, or None if absent; anything else is refused."""
    value = self.arch_metadata(key)
    if value is None:
      return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise GGUFError(f"{self.path}: {self.architecture}.{key} is {value!r}, not an integer")
    return int(value)

  def arch_metadata(self, key: str, default: Any = None) -> Any:
    return self.metadata(f"{self.architecture}.{key}", default)

  def check_config(self, config: Mapping[str, Any], what: str) -> None:
    """Refuses a file whose shape metadata disagrees with the plugin's config."""
    for field, key in CONFIG_KEYS.items():
      found = self.int_metadata(key)
      if found is not None and field in config and found != int(config[field]):
        raise GGUFError(f"{self.path}: {self.architecture}.{key} is {found}, but {what} has "
                        f"{field}={config[field]}; this file holds a different model")

  def names(self) -> list[str]:
    return list(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(self._tensors[name].shape))  # GGUF lists dims inner-first

  def load(self, name: str) -> torch.Tensor:
    import gguf  # pylint: disable=g-import-not-at-top
    tensor = self._tensors[name]
    try:
      array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
      raise GGUFError(f"{self.path}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, "
                      f"which the gguf package cannot dequantize ({e})") from e
    # np.array copies: the file is mapped read-only and torch wants writable memory.
    weight = torch.from_numpy(np.array(array, dtype=np.float32)).reshape(self.shape(name))
    return self._transform(name)(weight)

  def _transform(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if self.architecture == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
      key = "attention.head_count" if "q_proj" in name else "attention.head_count_kv"
      heads, rows = self.int_metadata(key), self.shape(name)[0]
      if not heads or heads < 0 or rows % (2 * heads):
        raise GGUFError(f"{self.path}: {self.architecture}.{key} is {heads}, which does not "
                        f"split the {rows} rows of {name} into heads of pairs")
      return lambda w: _unpermute(w, heads)
    if self.architecture == "gemma3" and "norm" in name:
      return lambda w: w - 1.0  # llama.cpp stores Gemma's (1 + weight) as one number
    return lambda w: w

  def identity(self) -> dict:
    return {"kind": "gguf", "path": str(self.path.resolve()),
            "files": {self.path.name: self._sha256 or sha256_file(self.path)}}

  @property
  def tensor_types(self) -> dict[str, str]:
    return {name: t.tensor_type.name for name, t in self._tensors.items()}
