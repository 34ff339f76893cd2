"""Gemma 2B against the original (transformers' GemmaForCausalLM)."""

from litezoo.plugins.gemma import gemma
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  testing.check_matches_transformers(gemma.SPEC, tmp_path)


def test_2b_has_the_parameters_of_the_original():
  ours, theirs = testing.parameter_counts(gemma.SPEC, "2b")
  assert ours == theirs and 2.5e9 < ours < 2.52e9
