"""The original model, through Hugging Face transformers: what every re-authored model is
verified against. Also writes the tiny random checkpoints that tests and `verify --variant=tiny` use.
"""

import os
import pathlib
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn


def random_model(config: Mapping[str, Any], seed: int = 0) -> nn.Module:
  """The original architecture from a plugin's config dict, with seeded random weights."""
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  hf_config = transformers.AutoConfig.for_model(**config)
  model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
  with torch.no_grad():  # norm weights start at exactly 1 (or 0): perturb so the map is tested
    for name, param in model.named_parameters():
      if "norm" in name:
        param.add_(torch.randn_like(param) * 0.1)
  return model.eval()


def write_random_checkpoint(config: Mapping[str, Any], directory: str | os.PathLike, seed: int = 0,
                            **save_kwargs) -> nn.Module:
  """Writes a random checkpoint with transformers' own save_pretrained (safetensors)."""
  model = random_model(config, seed)
  model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
  return model


def load(directory: str | os.PathLike, config: Mapping[str, Any]) -> nn.Module:
  """The original model from a checkpoint: a directory, with its own config.json when it has one
  (so a wrong plugin config shows up as a difference) else the plugin's; or a GGUF file, which
  transformers reads and dequantizes with its own code (independent of core/gguf.py)."""
  import transformers  # pylint: disable=g-import-not-at-top
  if str(directory).endswith(".gguf"):
    path = pathlib.Path(directory)
    return transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval()
  hf_config = (None if os.path.exists(os.path.join(directory, "config.json"))
               else transformers.AutoConfig.for_model(**config))
  return transformers.AutoModelForCausalLM.from_pretrained(
      directory, config=hf_config, dtype=torch.float32).eval()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
  """The transformer blocks of a transformers causal LM, in order."""
  return list(model.model.layers)


class Session:
  """Greedy generation with transformers' own KV cache; logits as float32 numpy."""

  def __init__(self, model: nn.Module):
    self.model = model
    self.past = None

  @torch.no_grad()
  def feed(self, tokens: list[int]) -> np.ndarray:
    out = self.model(torch.tensor([tokens]), past_key_values=self.past, use_cache=True)
    self.past = out.past_key_values
    return out.logits[0].float().numpy()
