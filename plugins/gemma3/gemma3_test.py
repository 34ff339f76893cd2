"""Gemma 3 270M against the original (transformers' Gemma3ForCausalLM)."""

import pytest

from litezoo.core.families import gemma3 as family
from litezoo.plugins.gemma3 import gemma3
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  # 10 tokens through a window of 4: local layers must hide what global layers see.
  assert gemma3.CONFIG_TINY["sliding_window"] < 10
  testing.check_matches_transformers(gemma3.SPEC, tmp_path)


def test_270m_has_the_parameters_of_the_original():
  ours, theirs = testing.parameter_counts(gemma3.SPEC, "270m")
  assert ours == theirs and 2.68e8 < ours < 2.69e8


def test_layer_types_follow_the_pattern_when_not_listed():
  config = {**gemma3.CONFIG_270M, "layer_types": None, "sliding_window_pattern": 6}
  assert family.layer_types(config) == gemma3.CONFIG_270M["layer_types"]


def test_rope_bases_read_transformers_5_rope_parameters():
  config = {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}}}
  assert family.rope_bases(config) == {family.GLOBAL: 5e5, family.LOCAL: 2e4}
  assert family.rope_bases(gemma3.CONFIG_270M) == {family.GLOBAL: 1e6, family.LOCAL: 1e4}


def test_unsupported_fields_are_refused():
  with pytest.raises(ValueError, match="query_pre_attn_scalar"):
    family.model_config({**gemma3.CONFIG_TINY, "query_pre_attn_scalar": 256})
  with pytest.raises(ValueError, match="RoPE scaling"):
    family.model_config({**gemma3.CONFIG_TINY, "rope_scaling": {"rope_type": "linear",
                                                                "factor": 8.0}})
