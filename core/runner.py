"""Drives a converted .tflite in the LiteRT interpreter: prefill, decode, KV cache.

Every tool that runs a model (convert's check, verify, generate, evaluate, benchmark) goes through
this class, so a speed-up or a fix reaches all of them.
"""

import os
import re

import numpy as np
from ai_edge_litert import interpreter as litert


class Runner:
  """One sequence at a time; the KV cache lives here between calls."""

  def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 2):
    if isinstance(model, (bytes, bytearray)):
      self.interpreter = litert.Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
      self.interpreter = litert.Interpreter(model_path=str(model), num_threads=num_threads)
    signatures = self.interpreter.get_signature_list()
    self.prefill_lengths = sorted(
        int(m.group(1)) for name in signatures if (m := re.fullmatch(r"prefill_(\d+)", name)))
    if not self.prefill_lengths or "decode" not in signatures:
      raise ValueError(f"not a zoo LLM: signatures are {sorted(signatures)}, expected "
                       "prefill_<n> and decode")
    self._runners = {name: self.interpreter.get_signature_runner(name) for name in signatures}
    decode_inputs = self._runners["decode"].get_input_details()
    self._cache_names = sorted(n for n in decode_inputs if n.startswith("kv_cache_"))
    self._cache_spec = {n: (decode_inputs[n]["shape"], decode_inputs[n]["dtype"])
                        for n in self._cache_names}
    k0 = self._cache_spec[self._cache_names[0]][0]
    self.kv_cache_max_len = int(k0[1])  # [batch, seq, kv_heads, head_dim]
    self.reset()

  def reset(self) -> None:
    self.cache = {n: np.zeros(shape, dtype) for n, (shape, dtype) in self._cache_spec.items()}
    self.position = 0

  def _run(self, signature: str, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = self._runners[signature](tokens=tokens, input_pos=positions, **self.cache)
    for name in self._cache_names:
      self.cache[name] = out[name]
    return out["logits"]

  def prefill(self, tokens: list[int]) -> np.ndarray:
    """Feeds `tokens` after what is cached; returns their logits [len(tokens), vocab].

    Uses the smallest prefill signature that fits, and several chunks if none does. Padding slots
    write cache entries past the sequence, which the causal mask hides and decode overwrites.
    """
    if not tokens:
      raise ValueError("prefill needs at least one token")
    if self.position + len(tokens) > self.kv_cache_max_len:
      raise ValueError(f"{self.position + len(tokens)} tokens do not fit the KV cache of "
                       f"{self.kv_cache_max_len}")
    logits = []
    rest = list(tokens)
    while rest:
      # A padded slot past the cache end would make the cache update clamp and shift: only use
      # signatures that fit the room left; near the end, feed tokens one by one through decode.
      usable = [n for n in self.prefill_lengths if n <= self.kv_cache_max_len - self.position]
      if not usable:
        logits.extend(self.decode(t)[None] for t in rest)
        break
      fitting = [n for n in usable if n >= len(rest)]
      length = fitting[0] if fitting else usable[-1]
      chunk, rest = rest[:length], rest[length:]
      padded = np.zeros((1, length), np.int32)
      padded[0, :len(chunk)] = chunk
      positions = np.arange(self.position, self.position + length, dtype=np.int32)
      out = self._run(f"prefill_{length}", padded, positions)
      logits.append(out[0, :len(chunk)])
      self.position += len(chunk)
    return np.concatenate(logits)

  def decode(self, token: int) -> np.ndarray:
    """Feeds one token; returns its logits [vocab]."""
    if self.position >= self.kv_cache_max_len:
      raise ValueError(f"the KV cache of {self.kv_cache_max_len} tokens is full")
    out = self._run("decode", np.array([[token]], np.int32),
                    np.array([self.position], np.int32))
    self.position += 1
    return out[0, -1]
