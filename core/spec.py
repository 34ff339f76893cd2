"""What a plugin tells the zoo about one model: variants, tensor names, build, signatures, recipe.

A variant's config is the model's Hugging Face `config.json` as a dict (the real sizes link to the
published file); the `tiny` variant is the same dict shrunk, for tests. One dict serves both sides of
verification: the family builder turns it into the re-authored model, transformers into the original.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

from litezoo.core.checkpoint import HubPin, PackagedFile
from litezoo.core.errors import ZooError

if TYPE_CHECKING:  # torch costs 180 MiB and a second to import; running a model needs neither
  from torch import nn


@dataclasses.dataclass(frozen=True)
class TensorNames:
  """Checkpoint tensor names (without `.weight`/`.bias`), `{}` standing for the layer index.

  The fields are the building blocks' parts; a field left None is a part the model does not have.
  """

  embedding: str
  final_norm: str
  attn_output_proj: str
  ff_up_proj: str
  ff_down_proj: str
  attn_query_proj: str | None = None
  attn_key_proj: str | None = None
  attn_value_proj: str | None = None
  attn_fused_qkv_proj: str | None = None
  attn_query_norm: str | None = None
  attn_key_norm: str | None = None
  ff_gate_proj: str | None = None
  pre_attn_norm: str | None = None
  post_attn_norm: str | None = None
  pre_ff_norm: str | None = None
  post_ff_norm: str | None = None
  lm_head: str | None = None  # None: the LM head shares the embedding's weight


class SignatureError(ZooError, ValueError):
  pass


class UnknownVariantError(ZooError, KeyError):
  pass


@dataclasses.dataclass(frozen=True)
class Variant:
  """One size of a model: its HF config, where its weights come from, and whether random weights
  are fine by default."""

  config: Mapping[str, Any]
  source: HubPin | PackagedFile | None = None
  # True for test-sized variants: converting without a checkpoint then uses seeded random weights.
  # Real sizes need a checkpoint, or random weights asked for explicitly.
  synthetic: bool = False


@dataclasses.dataclass(frozen=True)
class Signatures:
  """Export signatures: prefill at each length plus decode, sharing one set of weights."""

  prefill_seq_lens: tuple[int, ...]
  kv_cache_max_len: int
  # How each layer's cache is stored (see KV_LAYOUTS). "transposed" keeps K as [1, kv_heads, seq,
  # head_dim] and V as [1, kv_heads, head_dim, seq], the operands attention multiplies without a
  # transpose: SmolLM2 135M decodes ~20% faster in XNNPACK than with litert-torch's default
  # (README, Speed notes).
  kv_layout: str = "transposed"

  def validate(self) -> None:
    if self.kv_layout not in KV_LAYOUTS:
      raise SignatureError(f"unknown kv cache layout {self.kv_layout!r}; choose one of "
                           f"{', '.join(KV_LAYOUTS)}")
    if not self.prefill_seq_lens:
      raise SignatureError("at least one prefill length is needed")
    if self.kv_cache_max_len <= 0:
      raise SignatureError(f"kv cache length must be positive, got {self.kv_cache_max_len}")
    for length in self.prefill_seq_lens:
      if length <= 0 or length > self.kv_cache_max_len:
        raise SignatureError(
            f"prefill length {length} must be between 1 and the kv cache length "
            f"{self.kv_cache_max_len}")
    if len(set(self.prefill_seq_lens)) != len(self.prefill_seq_lens):
      raise SignatureError(f"duplicate prefill lengths in {list(self.prefill_seq_lens)}")

  def check_layout(self, head_dim: int) -> None:
    """A transposed cache as long as a head is wide would give K [1, heads, seq, dim] and V
    [1, heads, dim, seq] one shape, and readers tell the layouts apart by comparing them
    (core/runner.py kv_sequence_axes)."""
    if self.kv_layout == "transposed" and self.kv_cache_max_len == head_dim:
      raise SignatureError(f"a transposed kv cache cannot be exactly as long as a head is wide "
                           f"({head_dim}): choose another kv cache length")

  @property
  def names(self) -> list[str]:
    return [f"prefill_{n}" for n in sorted(self.prefill_seq_lens)] + ["decode"]


# Cache shapes per layout: "default" is litert-torch's [1, seq, kv_heads, head_dim] for K and V.
KV_LAYOUTS = ("transposed", "default")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything the tools need to know about one model, and nothing about files or flags."""

  name: str
  version: str  # semantic version of the plugin's model definition
  variants: Mapping[str, Variant]
  default_variant: str
  # (HF config dict, kv cache length) -> re-authored nn.Module, usually one family-builder call.
  build: Callable[[Mapping[str, Any], int], nn.Module]
  tensor_names: TensorNames
  signatures: Signatures
  default_recipe: str = "dynamic_int8"
  description: str = ""
  url: str = ""      # the original model's page, for model cards
  license: str = ""  # the original weights' license, for model cards

  def __post_init__(self):
    if self.default_variant not in self.variants:
      raise ValueError(f"{self.name}: default variant {self.default_variant!r} is not one of "
                       f"{sorted(self.variants)}")

  def variant(self, name: str | None) -> Variant:
    name = name or self.default_variant
    if name not in self.variants:
      raise UnknownVariantError(f"unknown variant {name!r} of model {self.name!r}; "
                     f"variants: {', '.join(sorted(self.variants))}")
    return self.variants[name]
