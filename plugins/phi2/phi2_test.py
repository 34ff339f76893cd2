"""Phi-2 against the original (transformers' PhiForCausalLM)."""

from litezoo.plugins.phi2 import phi2
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  testing.check_matches_transformers(phi2.SPEC, tmp_path)


def test_2_7b_has_the_parameters_of_the_original():
  ours, theirs = testing.parameter_counts(phi2.SPEC, "2.7b")
  assert ours == theirs and 2.7e9 < ours < 2.8e9
