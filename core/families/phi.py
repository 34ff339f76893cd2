"""Phi-2: attention and MLP in parallel from one LayerNorm, partial rotary embedding, GELU MLP,
biases everywhere, an untied LM head with bias."""

from typing import Any, Mapping

from torch import nn

from litezoo.core.families import hf as hf_config
from litezoo.core.families import llama
from litezoo.core.spec import TensorNames

TENSOR_NAMES = TensorNames(
    embedding="model.embed_tokens",
    final_norm="model.final_layernorm",
    lm_head="lm_head",
    pre_attn_norm="model.layers.{}.input_layernorm",
    attn_query_proj="model.layers.{}.self_attn.q_proj",
    attn_key_proj="model.layers.{}.self_attn.k_proj",
    attn_value_proj="model.layers.{}.self_attn.v_proj",
    attn_output_proj="model.layers.{}.self_attn.dense",
    ff_up_proj="model.layers.{}.mlp.fc1",
    ff_down_proj="model.layers.{}.mlp.fc2",
)


def model_config(hf: Mapping[str, Any]):
  from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
  norm = cfg.NormalizationConfig(type=cfg.NormalizationType.LAYER_NORM,
                                 epsilon=hf["layer_norm_eps"])
  heads = hf["num_attention_heads"]
  block = cfg.TransformerBlockConfig(
      attn_config=cfg.AttentionConfig(
          num_heads=heads,
          head_dim=hf_config.head_dim(hf),
          num_query_groups=hf.get("num_key_value_heads") or heads,
          rotary_base=hf_config.rope_theta(hf),
          rotary_percentage=hf["partial_rotary_factor"],
          qkv_use_bias=True,
          output_proj_use_bias=True,
      ),
      ff_config=cfg.FeedForwardConfig(
          type=cfg.FeedForwardType.SEQUENTIAL,
          activation=hf_config.activation(hf["hidden_act"]),
          intermediate_size=hf["intermediate_size"],
          use_bias=True,
      ),
      pre_attention_norm_config=norm,
      parallel_residual=True,
  )
  return cfg.ModelConfig(
      **hf_config.sizes(hf),
      block_configs=block,
      final_norm_config=norm,
      lm_head_use_bias=True,
      lm_head_share_weight_with_embedding=False,
  )


def build(hf: Mapping[str, Any], kv_cache_max_len: int) -> nn.Module:
  return llama.decoder(model_config(hf), kv_cache_max_len)
