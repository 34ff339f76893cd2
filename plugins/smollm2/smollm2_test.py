"""SmolLM2 against the original (transformers' LlamaForCausalLM), and its packaged GGUF."""

from litezoo.core import checkpoint
from litezoo.plugins.smollm2 import smollm2
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  testing.check_matches_transformers(smollm2.SPEC, tmp_path)


def test_135m_has_the_parameters_of_the_original():
  ours, theirs = testing.parameter_counts(smollm2.SPEC, "135m")
  assert ours == theirs and 134e6 < ours < 135e6


def test_packaged_gguf_matches_the_config():
  from litezoo.core import gguf  # pylint: disable=g-import-not-at-top
  path = checkpoint.fetch_packaged(smollm2.SOURCE)
  source = gguf.GGUFSource(path)
  source.check_config(smollm2.CONFIG_135M, "smollm2-135m")
  assert source.architecture == "llama"
  assert source.shape("model.layers.0.self_attn.k_proj.weight") == (192, 576)
