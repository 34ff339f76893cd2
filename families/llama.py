"""The Llama family (TinyLlama, SmolLM2, and Gemma 1 with its quirks): RMSNorm before attention and
MLP, RoPE, grouped-query attention, gated MLP, from litert-torch's building blocks.

Quirks of members are explicit config fields, never checks on a model's name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from litezoo.core.spec import TensorNames
from litezoo.families import base


@dataclasses.dataclass(frozen=True)
class Config:
  """A Llama-like model, fields named as in its `config.json` (sizes in elements)."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  max_position_embeddings: int  # tokens
  rms_norm_eps: float
  rope_theta: float
  hidden_act: str  # transformers' name of the MLP's gate activation
  tie_word_embeddings: bool  # the LM head is the embedding matrix
  attention_bias: bool = False  # q/k/v/o projections have biases
  mlp_bias: bool = False
  # Gemma's quirks (not config.json keys: implied by its model_type).
  zero_centered_norm: bool = False  # RMSNorm scales by (1 + weight)
  embedding_scale: float | None = None  # token embeddings times this (Gemma: sqrt(hidden_size))


def read_config(hf: Mapping[str, Any]) -> Config:
  """A Llama `config.json` dict as a Config; raises UnsupportedConfigError naming the field."""
  r = base.Reader("llama", hf, ("llama",))
  if base.rope_parameters(r).get("rope_type", "default") != "default":
    # Llama 3.1+ (RoPE scaled): the configurable decoder computes the scaled RoPE.
    from litezoo.families import decoder  # pylint: disable=g-import-not-at-top
    bias = bool(r("attention_bias", False))
    scaled = decoder.Config(**decoder.common(r, windows=False), attention_bias=bias,
                            attention_out_bias=bias, mlp_bias=bool(r("mlp_bias", False)))
    r("pretraining_tp")
    r.finish()
    return scaled
  heads, kv_heads = base.check_heads(r)
  config = Config(
      vocab_size=r.required("vocab_size"), hidden_size=r.required("hidden_size"),
      intermediate_size=r.required("intermediate_size"),
      num_hidden_layers=r.required("num_hidden_layers"), num_attention_heads=heads,
      num_key_value_heads=kv_heads, head_dim=base.head_dim(r),
      max_position_embeddings=r.required("max_position_embeddings"),
      rms_norm_eps=float(r.required("rms_norm_eps")), rope_theta=base.rope_theta(r),
      hidden_act=base.activation(r, "hidden_act", "silu"),
      tie_word_embeddings=bool(r("tie_word_embeddings", False)),
      attention_bias=bool(r("attention_bias", False)), mlp_bias=bool(r("mlp_bias", False)))
  r("pretraining_tp")  # a sharding hint for training: the same model whatever its value
  r.finish()
  return config


def tensor_names(config: Config) -> TensorNames:
  if not isinstance(config, Config):  # a decoder.Config (Llama 3.1+)
    from litezoo.families import decoder  # pylint: disable=g-import-not-at-top
    return decoder.tensor_names(config)
  return TensorNames(
      embedding="model.embed_tokens",
      final_norm="model.norm",
      lm_head=None if config.tie_word_embeddings else "lm_head",
      pre_attn_norm="model.layers.{}.input_layernorm",
      post_attn_norm="model.layers.{}.post_attention_layernorm",
      attn_query_proj="model.layers.{}.self_attn.q_proj",
      attn_key_proj="model.layers.{}.self_attn.k_proj",
      attn_value_proj="model.layers.{}.self_attn.v_proj",
      attn_output_proj="model.layers.{}.self_attn.o_proj",
      ff_gate_proj="model.layers.{}.mlp.gate_proj",
      ff_up_proj="model.layers.{}.mlp.up_proj",
      ff_down_proj="model.layers.{}.mlp.down_proj",
  )


def model_config(config: Config):
  """The litert-torch ModelConfig of a Llama-like Config."""
  # Imported here, not at the top: the Generative API takes seconds to import, and listing the
  # registry's models should not pay for it.
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  from litezoo.families import blocks  # pylint: disable=g-import-not-at-top
  norm = blocks.norm_config("rms", config.rms_norm_eps, config.zero_centered_norm)
  block = cfg.TransformerBlockConfig(
      attn_config=cfg.AttentionConfig(
          num_heads=config.num_attention_heads,
          head_dim=config.head_dim,
          num_query_groups=config.num_key_value_heads,
          rotary_base=config.rope_theta,
          rotary_percentage=1.0,
          qkv_use_bias=config.attention_bias,
          output_proj_use_bias=config.attention_bias,
      ),
      ff_config=cfg.FeedForwardConfig(
          type=cfg.FeedForwardType.GATED,
          activation=litert_activation(config.hidden_act),
          intermediate_size=config.intermediate_size,
          use_bias=config.mlp_bias,
      ),
      pre_attention_norm_config=norm,
      post_attention_norm_config=norm,
  )
  return cfg.ModelConfig(
      vocab_size=config.vocab_size, num_layers=config.num_hidden_layers,
      max_seq_len=config.max_position_embeddings, embedding_dim=config.hidden_size,
      embedding_scale=config.embedding_scale,
      block_configs=block,
      final_norm_config=norm,
      lm_head_share_weight_with_embedding=config.tie_word_embeddings,
  )


def litert_activation(name: str):
  from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
  return cfg.ActivationConfig(getattr(cfg.ActivationType, base.ACTIVATIONS[name]))


def decoder(model_config_, kv_cache_max_len: int):
  """litert-torch's DecoderOnlyModel for a ModelConfig, its causal-mask cache sized to the KV
  cache; a tied head is one Parameter (counted, loaded and exported once)."""
  from litezoo.conversion.litert import model_builder  # pylint: disable=g-import-not-at-top
  model = model_builder.DecoderOnlyModel(model_config_, mask_cache_size=kv_cache_max_len).eval()
  if model_config_.lm_head_share_weight_with_embedding:
    model.lm_head.weight = model.tok_embedding.weight
  return model


def build(config: Config, kv_cache_max_len: int):
  """The re-authored model: `forward(tokens [1, T] int32, input_pos [T] int32, kv_cache)` ->
  {"logits": [1, T, vocab_size] float32, "kv_cache"}."""
  if not isinstance(config, Config):  # a decoder.Config (Llama 3.1+)
    from litezoo.families import decoder as configurable  # pylint: disable=g-import-not-at-top
    return configurable.build(config, kv_cache_max_len)
  return decoder(model_config(config), kv_cache_max_len)


def _unpermute(name: str, weight, hf: Mapping[str, Any]):
  """Undoes llama.cpp's q/k row permutation (interleaved RoPE pairs -> transformers' rotate-half
  halves): each head's rows are stored as (head_dim / 2, 2) pairs."""
  if not name.endswith(("q_proj.weight", "k_proj.weight")):
    return weight
  heads = hf["num_attention_heads"] if "q_proj" in name else hf.get(
      "num_key_value_heads") or hf["num_attention_heads"]
  rows = weight.shape[0]
  if heads <= 0 or rows % (2 * heads):
    raise base.UnsupportedConfigError(
        f"{'num_attention_heads' if 'q_proj' in name else 'num_key_value_heads'}={heads} does "
        f"not split the {rows} rows of {name} into heads of pairs")
  return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
          .transpose(1, 2).reshape(weight.shape))


# Llama 3.1 and 3.2's published RoPE scalings (factor, low_freq_factor, high_freq_factor,
# original_max_position_embeddings): llama.cpp stores the scaling as per-frequency factors only.
LLAMA3_SCALINGS = ((8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192))


def llama3_factors(theta: float, dim: int, factor: float, low: float, high: float,
                   original: int) -> list[float]:
  """The `rope_freqs` llama.cpp's convert_hf_to_gguf writes for a llama3 RoPE scaling: per
  frequency of a head_dim `dim` RoPE, what its wavelength is divided by."""
  low_wavelen, high_wavelen = original / low, original / high
  factors = []
  for i in range(0, dim, 2):
    wavelen = 2 * math.pi * theta**(i / dim)
    if wavelen < high_wavelen:
      factors.append(1.0)
    elif wavelen > low_wavelen:
      factors.append(factor)
    else:
      smooth = (original / wavelen - low) / (high - low)
      factors.append(1 / ((1 - smooth) / factor + smooth))
  return factors


def _rope_freqs(values, hf: Mapping[str, Any]) -> dict:
  """The llama3 rope_scaling whose factors a GGUF's rope_freqs holds (Llama 3.1+)."""
  theta = float(hf.get("rope_theta", 10000.0))
  dim = int(hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])
  for factor, low, high, original in LLAMA3_SCALINGS:
    expected = llama3_factors(theta, dim, factor, low, high, original)
    if len(expected) == len(values) and all(
        math.isclose(a, float(b), rel_tol=1e-5) for a, b in zip(expected, values)):
      return {"rope_scaling": {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                               "high_freq_factor": high,
                               "original_max_position_embeddings": original}}
  raise ValueError("holds RoPE frequency factors of no llama3 scaling the zoo knows (Llama 3.1's "
                   "or 3.2's); convert from the Hugging Face checkpoint instead")


GGUF = base.GGUFMap(
    architecture="llama",
    names=base.GGUF_LLAMA_NAMES,
    config_keys=base.GGUF_COMMON_CONFIG,
    transform=_unpermute,
    config_tensors={"rope_freqs.weight": _rope_freqs},
)

FAMILY = base.FamilyRecord(name="llama", model_types=("llama",), read_config=read_config,
                           build_model=build, names=tensor_names, gguf=GGUF)
