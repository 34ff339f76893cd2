"""The Llama-like family (TinyLlama, SmolLM2, Gemma): RMSNorm before attention and MLP, RoPE,
grouped-query attention, gated MLP. Quirks of members are explicit arguments, never name checks.

Turns a Hugging Face `config.json` dict into litert-torch building blocks.
"""

from typing import Any, Mapping

from torch import nn

from litezoo.core.families import hf as hf_config
from litezoo.core.spec import TensorNames

TENSOR_NAMES = TensorNames(
    embedding="model.embed_tokens",
    final_norm="model.norm",
    lm_head="lm_head",
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
# For checkpoints whose LM head is the embedding (tie_word_embeddings).
TIED_TENSOR_NAMES = TensorNames(**{**TENSOR_NAMES.__dict__, "lm_head": None})


def model_config(hf: Mapping[str, Any], *, activation: str | None = None,
                 zero_centered_norm: bool = False, embedding_scale: float | None = None):
  """The litert-torch ModelConfig of a Llama-like `config.json`.

  activation: overrides `hidden_act` (Gemma names its MLP activation `hidden_activation`).
  zero_centered_norm: RMSNorm scales by (1 + weight), as Gemma stores it.
  embedding_scale: multiplies token embeddings (Gemma: sqrt(hidden_size)).
  """
  # Imported here, not at the top: the Generative API takes seconds to import, and listing the
  # registry's models should not pay for it.
  from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
  norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"],
                                 zero_centered=zero_centered_norm)
  heads = hf["num_attention_heads"]
  block = cfg.TransformerBlockConfig(
      attn_config=cfg.AttentionConfig(
          num_heads=heads,
          head_dim=hf_config.head_dim(hf),
          num_query_groups=hf.get("num_key_value_heads") or heads,
          rotary_base=hf_config.rope_theta(hf),
          rotary_percentage=1.0,
          qkv_use_bias=hf.get("attention_bias", False),
          output_proj_use_bias=hf.get("attention_bias", False),
      ),
      ff_config=cfg.FeedForwardConfig(
          type=cfg.FeedForwardType.GATED,
          activation=hf_config.activation(activation or hf.get("hidden_act", "silu")),
          intermediate_size=hf["intermediate_size"],
          use_bias=hf.get("mlp_bias", False),
      ),
      pre_attention_norm_config=norm,
      post_attention_norm_config=norm,
  )
  return cfg.ModelConfig(
      **hf_config.sizes(hf),
      embedding_scale=embedding_scale,
      block_configs=block,
      final_norm_config=norm,
      lm_head_share_weight_with_embedding=hf.get("tie_word_embeddings", False),
  )


def decoder(config, kv_cache_max_len: int) -> nn.Module:
  """The re-authored module for a ModelConfig, with its causal-mask cache sized to the KV cache."""
  from litezoo.core.litert_api import model_builder  # pylint: disable=g-import-not-at-top
  model = model_builder.DecoderOnlyModel(config, mask_cache_size=kv_cache_max_len).eval()
  if config.lm_head_share_weight_with_embedding:
    # One Parameter, not two sharing storage: counted, loaded and exported once.
    model.lm_head.weight = model.tok_embedding.weight
  return model


def build(hf: Mapping[str, Any], kv_cache_max_len: int) -> nn.Module:
  return decoder(model_config(hf), kv_cache_max_len)
