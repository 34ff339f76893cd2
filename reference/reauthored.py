"""The re-authored PyTorch model (before conversion) as a Decoder: the stage between the original
and the .tflite, so a difference is pinned on re-authoring or on conversion."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchDecoder:
  """Drives the re-authored model like the LiteRT runner: prefill, then decode, through
  litert-torch's KV cache. Logits are float32 numpy arrays."""

  def __init__(self, model: nn.Module, kv_cache_max_len: int):
    self.model = model
    self.kv_cache_max_len = kv_cache_max_len
    self.reset()

  def reset(self) -> None:
    from litezoo.conversion.litert import kv_cache  # pylint: disable=g-import-not-at-top
    self.cache = kv_cache.KVCache.from_model_config(self.kv_cache_max_len, self.model.config)
    self.position = 0

  @torch.no_grad()
  def prefill(self, tokens: list[int], all_logits: bool = False) -> np.ndarray:
    """Logits of `tokens`, fed after what the cache holds: [len(tokens), vocab] with
    `all_logits`, else the last row [1, vocab] (runtime/decoder.py)."""
    if self.position + len(tokens) > self.kv_cache_max_len:
      raise ValueError(f"{self.position + len(tokens)} tokens do not fit the KV cache of "
                       f"{self.kv_cache_max_len}")
    positions = torch.arange(self.position, self.position + len(tokens), dtype=torch.int32)
    out = self.model(torch.tensor([tokens], dtype=torch.int32), positions, self.cache)
    self.cache = out["kv_cache"]
    self.position += len(tokens)
    logits = out["logits"][0].numpy()
    return logits if all_logits else logits[-1:]

  def decode(self, token: int) -> np.ndarray:
    return self.prefill([token])[0]
