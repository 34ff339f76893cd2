"""TinyLlama against the original (transformers' LlamaForCausalLM)."""

from litezoo.plugins.tinyllama import tinyllama
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  testing.check_matches_transformers(tinyllama.SPEC, tmp_path)


def test_1_1b_has_the_parameters_of_the_original():
  ours, theirs = testing.parameter_counts(tinyllama.SPEC, "1.1b")
  assert ours == theirs and 1.09e9 < ours < 1.11e9
