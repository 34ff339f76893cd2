"""The one interface every token-feeding model implements: the LiteRT runner
(runtime/runner.py), the re-authored PyTorch model and transformers' original
(reference/). verify, evaluate, generate and the benchmark take any of them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Decoder(Protocol):
  """One sequence at a time, with a KV cache between calls.

  `position` is how many tokens the cache holds. Logits are float32 numpy arrays.
  """

  position: int
  kv_cache_max_len: int  # tokens the cache holds at most

  def reset(self) -> None:
    """Empties the cache (position 0)."""

  def prefill(self, tokens: list[int], all_logits: bool = False) -> np.ndarray:
    """Feeds `tokens` after what is cached; returns the logits of the last one [1, vocab] (all
    that generation reads), or of every one [len(tokens), vocab] with `all_logits` (scoring,
    verification)."""

  def decode(self, token: int) -> np.ndarray:
    """Feeds one token; returns its logits [vocab]."""
