"""TinyLlama against the original: the tiny variant's logits match transformers' LlamaForCausalLM
loaded from the same checkpoint, and the 1.1b config has the size transformers gives it."""

import numpy as np
import torch
import transformers

from litezoo.core import checkpoint, loader
from litezoo.plugins.tinyllama import tinyllama
from litezoo.tests import testing


def test_tiny_matches_transformers(tmp_path):
  spec = tinyllama.SPEC
  config = spec.variant("tiny").config
  reference = testing.write_checkpoint(config, tmp_path)
  model = spec.build(config, 64)
  loader.load(model, spec.tensor_names, checkpoint.open_checkpoint(tmp_path))
  tokens = [1, 15, 200, 7, 42, 99, 3, 128]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 64),
                             testing.hf_logits(reference, tokens), atol=1e-4, rtol=0)


def test_real_size_has_the_published_parameter_count():
  config = tinyllama.SPEC.variant("1.1b").config
  with torch.device("meta"):
    reference = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config))
    model = tinyllama.SPEC.build(config, 16)
  count = sum(p.numel() for p in model.parameters())
  assert count == sum(p.numel() for p in reference.parameters())
  assert 1.09e9 < count < 1.11e9  # "1.1B"
