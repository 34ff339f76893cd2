"""The configurable decoder's pieces against transformers': RoPE scalings computed the same way,
every config switch read from the key that sets it, and the published sizes of the two
benchmark shapes (docs/bench/configs)."""

import pytest
import torch
import transformers
from transformers import modeling_rope_utils

from litezoo import families, pipeline
from litezoo.families import blocks, decoder
from litezoo.tests import family_configs, testing


@pytest.mark.parametrize("name", ["llama3", "phi3_longrope"])
def test_scaled_rope_frequencies_are_transformers_own(name):
  config = family_configs.TINY[name]
  hf = transformers.AutoConfig.for_model(**config)
  ours = families.by_model_type(config["model_type"]).config(config)
  spec = blocks.RopeSpec(ours.rope_theta, int(ours.head_dim * ours.partial_rotary_factor),
                         ours.rope_type, dict(ours.rope_scaling))
  inv_freq, scaling = blocks.inverse_frequencies(spec)
  expected, expected_scaling = modeling_rope_utils.ROPE_INIT_FUNCTIONS[ours.rope_type](hf, None)
  assert torch.equal(inv_freq, expected.float())
  assert scaling == pytest.approx(expected_scaling, rel=1e-12)


def test_linear_rope_scaling_is_transformers_own():
  config = {**family_configs.TINY["qwen2"], "rope_scaling": {"rope_type": "linear", "factor": 4.0}}
  ours = families.by_model_type("qwen2").config(config)
  inv_freq, _ = blocks.inverse_frequencies(
      blocks.RopeSpec(ours.rope_theta, ours.head_dim, ours.rope_type, dict(ours.rope_scaling)))
  expected, _ = modeling_rope_utils.ROPE_INIT_FUNCTIONS["linear"](
      transformers.AutoConfig.for_model(**config), None)
  assert torch.equal(inv_freq, expected.float())


@pytest.mark.parametrize("name, fields", [
    ("qwen2", dict(attention_bias=True, attention_out_bias=False, tie_word_embeddings=True)),
    ("qwen2_sliding", dict(sliding_windows=(None, 5))),
    ("mistral", dict(sliding_windows=(6, 6))),
    ("ministral", dict(sliding_windows=(6, None))),
    ("qwen3", dict(qk_norm="head", head_dim=32)),
    ("gemma2", dict(norm_placement="sandwich", zero_centered_norm=True,
                    attn_logit_softcapping=0.05, final_logit_softcapping=3.0,
                    attention_multiplier=24**-0.5, embedding_multiplier=8.0,
                    sliding_windows=(6, None))),
    ("phi3", dict(fused_qkv=True, fused_gate_up=True, sliding_windows=(6, 6))),
    ("phi3_longrope", dict(rope_type="longrope", partial_rotary_factor=0.75)),
    ("smollm3", dict(no_rope_layers=(1, 0))),
    ("olmo2", dict(qk_norm="full", norm_placement="post")),
    ("granite", dict(embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=8.0,
                     attention_multiplier=0.015625)),
    ("llama3", dict(rope_type="llama3", rope_theta=500000.0)),
])
def test_each_switch_comes_from_the_key_that_sets_it(name, fields):
  config = family_configs.TINY[name]
  read = families.by_model_type(config["model_type"]).config(config)
  assert isinstance(read, decoder.Config)
  for field, value in fields.items():
    assert getattr(read, field) == (pytest.approx(value) if isinstance(value, float) else value), \
        field


def test_the_tensor_names_follow_the_switches():
  names = decoder.tensor_names(families.by_model_type("olmo2").config(
      family_configs.TINY["olmo2"]))
  assert names.pre_attn_norm is None and names.pre_ff_norm is None
  assert names.post_ff_norm == "model.layers.{}.post_feedforward_layernorm"
  assert names.attn_query_norm == "model.layers.{}.self_attn.q_norm"
  phi3 = decoder.tensor_names(families.by_model_type("phi3").config(
      family_configs.TINY["phi3"]))
  assert phi3.attn_fused_qkv_proj == "model.layers.{}.self_attn.qkv_proj"
  assert phi3.ff_fused_gate_up_proj == "model.layers.{}.mlp.gate_up_proj"
  assert phi3.attn_query_proj is None and phi3.ff_gate_proj is None


@pytest.mark.parametrize("shape, published", [("qwen2.5-0.5b", 494_032_768),
                                              ("llama-3.2-1b", 1_235_814_400)])
def test_the_benchmark_shapes_have_their_published_sizes(shape, published):
  spec = pipeline.checkpoint_spec(
      testing.RUNFILES_ROOT / "litezoo" / "docs" / "bench" / "configs" / shape,
      log=lambda _: None)
  ours, theirs = testing.parameter_counts(spec, pipeline.CHECKPOINT_VARIANT)
  assert ours == theirs == published


def test_a_query_scale_with_a_query_norm_is_refused():
  config = decoder.Config(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=4,
                          max_position_embeddings=16, rms_norm_eps=1e-6, hidden_act="silu",
                          tie_word_embeddings=True, rope_theta=10000.0, qk_norm="head",
                          attention_multiplier=0.1)
  with pytest.raises(ValueError, match="a query scale with a query norm is not implemented"):
    decoder.build(config, 8)
