"""Quality of converted models: perplexity through the .tflite and its KV cache, and agreement with
the float PyTorch model (top-1 and KL divergence of next-token distributions).

The text is cut into consecutive windows of the same length for every recipe; each window starts
from an empty cache (after the model's BOS token, if it uses one: Gemma degrades badly without
it) and is fed through the runner's prefill signatures, so every scored token has the same context
in every model.
"""

import dataclasses
import math
from typing import Callable

import numpy as np

from litezoo.runtime.decoder import Decoder
from litezoo.core.errors import ZooError


class EvaluateError(ZooError, ValueError):
  pass


def log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64)
  z -= z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclasses.dataclass
class Score:
  """Running sums over scored tokens; the figures are their means."""

  tokens: int = 0
  nll: float = 0.0
  top1: int = 0
  kl: float = 0.0

  def add(self, logp: np.ndarray, targets: np.ndarray, reference: np.ndarray | None) -> None:
    self.tokens += len(targets)
    self.nll -= float(logp[np.arange(len(targets)), targets].sum())
    if reference is not None:
      self.top1 += int((logp.argmax(-1) == reference.argmax(-1)).sum())
      self.kl += float((np.exp(reference) * (reference - logp)).sum())

  @property
  def perplexity(self) -> float:
    return math.exp(self.nll / self.tokens)

  @property
  def top1_agreement(self) -> float:
    return self.top1 / self.tokens

  @property
  def mean_kl(self) -> float:
    return self.kl / self.tokens


def windows(tokens: list[int], length: int, prefix: list[int] = ()) -> list[list[int]]:
  """Consecutive windows of `length` tokens, each `prefix` + text (a shorter last one is dropped:
  the same text for every model)."""
  step = length - len(prefix)
  return [list(prefix) + tokens[i:i + step] for i in range(0, len(tokens) - step + 1, step)]


def evaluate(baseline_model: Decoder, runners: dict[str, Decoder], tokens: list[int], window: int,
             progress: Callable[[str], None] = print,
             prefix: list[int] = ()) -> tuple[Score, dict[str, Score]]:
  """Scores the float `baseline_model` and every runner on the same windows.

  Returns (baseline score, score per runner). Negative log-likelihoods and KL divergences are in
  nats; KL is KL(baseline || runner) of next-token distributions, averaged over scored tokens.
  Raises EvaluateError when a window does not fit a runner's KV cache or the text.
  """
  if window < 2 or window <= len(prefix):
    raise EvaluateError(f"a window of {window} tokens scores nothing: it needs at least "
                        f"{max(2, len(prefix) + 1)}")
  for name, run in runners.items():
    if window > run.kv_cache_max_len:
      raise EvaluateError(f"a window of {window} tokens does not fit the {run.kv_cache_max_len}"
                          f"-token KV cache of {name}: use --window={run.kv_cache_max_len} or "
                          "less, or convert with a larger --kv_cache_max_len")
  chunks = windows(tokens, window, prefix)
  if not chunks:
    raise EvaluateError(f"the text has {len(tokens)} tokens, fewer than one window of {window}")
  baseline, scores = Score(), {name: Score() for name in runners}
  for index, chunk in enumerate(chunks):
    targets = np.array(chunk[1:])
    baseline_model.reset()
    reference = log_softmax(baseline_model.prefill(chunk, all_logits=True))[:-1]
    baseline.add(reference, targets, None)
    for name, run in runners.items():
      run.reset()
      scores[name].add(log_softmax(run.prefill(chunk, all_logits=True))[:-1], targets, reference)
    progress(f"window {index + 1}/{len(chunks)}: perplexity float {baseline.perplexity:.3f}, " +
             ", ".join(f"{n} {s.perplexity:.3f}" for n, s in scores.items()))
  return baseline, scores
