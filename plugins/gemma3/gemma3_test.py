"""Gemma 3 270M: its published size, and the config fields its family reads or refuses."""

import pytest

from litezoo.core.spec import UnsupportedConfigError
from litezoo.families import gemma3 as family
from litezoo.plugins.gemma3 import gemma3
from litezoo.tests import testing


def test_270m_has_the_published_parameter_count():
  testing.check_parameter_count(gemma3.SPEC, "270m")


def test_tiny_keeps_both_layer_kinds_and_a_window_shorter_than_the_test_prompts():
  config = family.read_config(gemma3.CONFIG_TINY)
  assert set(config.layer_types) == {family.GLOBAL, family.LOCAL}
  assert config.sliding_window < len(testing.PROMPT)


def test_layer_types_follow_the_pattern_when_not_listed():
  config = {**gemma3.CONFIG_270M, "layer_types": None, "sliding_window_pattern": 6}
  assert family.read_config(config).layer_types == tuple(gemma3.CONFIG_270M["layer_types"])


def test_rope_bases_read_transformers_5_rope_parameters():
  config = {**gemma3.CONFIG_270M, "rope_theta": None, "rope_local_base_freq": None,
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 5e5},
                "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}}}
  read = family.read_config(config)
  assert (read.rope_theta, read.rope_local_base_freq) == (5e5, 2e4)
  read = family.read_config(gemma3.CONFIG_270M)
  assert (read.rope_theta, read.rope_local_base_freq) == (1e6, 1e4)


@pytest.mark.parametrize("field, value", [
    ("query_pre_attn_scalar", 256), ("rope_scaling", {"rope_type": "linear", "factor": 8.0}),
    ("final_logit_softcapping", 30.0), ("tie_word_embeddings", False)])
def test_unsupported_fields_are_refused_by_name(field, value):
  with pytest.raises(UnsupportedConfigError, match=f"^{field}="):
    family.read_config({**gemma3.CONFIG_TINY, field: value})
