"""The Llama family (TinyLlama, SmolLM2, ...): RMSNorm, RoPE, grouped-query attention, SwiGLU.

Turns a Hugging Face Llama `config.json` dict into litert-torch building blocks.
"""

from typing import Any, Mapping

from torch import nn

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
TIED_TENSOR_NAMES = TensorNames(**{**TENSOR_NAMES.__dict__, "lm_head": None})


def rope_theta(hf: Mapping[str, Any]) -> float:
  """RoPE base, from `rope_theta` or transformers 5's `rope_parameters`."""
  return float(hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0))


def model_config(hf: Mapping[str, Any]):
  """The litert-torch ModelConfig of a Llama `config.json`."""
  # Imported here, not at the top: the Generative API takes seconds to import, and listing the
  # registry's models should not pay for it.
  from litezoo.core.litert_api import cfg  # pylint: disable=g-import-not-at-top
  activations = {"silu": cfg.ActivationType.SILU, "gelu": cfg.ActivationType.GELU}
  heads = hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
  norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"])
  block = cfg.TransformerBlockConfig(
      attn_config=cfg.AttentionConfig(
          num_heads=heads,
          head_dim=head_dim,
          num_query_groups=hf.get("num_key_value_heads") or heads,
          rotary_base=rope_theta(hf),
          rotary_percentage=1.0,
          qkv_use_bias=hf.get("attention_bias", False),
          output_proj_use_bias=hf.get("attention_bias", False),
      ),
      ff_config=cfg.FeedForwardConfig(
          type=cfg.FeedForwardType.GATED,
          activation=cfg.ActivationConfig(activations[hf.get("hidden_act", "silu")]),
          intermediate_size=hf["intermediate_size"],
          use_bias=hf.get("mlp_bias", False),
      ),
      pre_attention_norm_config=norm,
      post_attention_norm_config=norm,
  )
  return cfg.ModelConfig(
      vocab_size=hf["vocab_size"],
      num_layers=hf["num_hidden_layers"],
      max_seq_len=hf["max_position_embeddings"],
      embedding_dim=hf["hidden_size"],
      block_configs=block,
      final_norm_config=norm,
      lm_head_share_weight_with_embedding=hf.get("tie_word_embeddings", False),
  )


def build(hf: Mapping[str, Any], kv_cache_max_len: int) -> nn.Module:
  from litezoo.core.litert_api import model_builder  # pylint: disable=g-import-not-at-top
  return model_builder.DecoderOnlyModel(model_config(hf), mask_cache_size=kv_cache_max_len).eval()
