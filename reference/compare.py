"""Numeric verification of a re-authored model against the original (transformers).

On each prompt: prefill logits, then decode steps through the KV cache, teacher-forced with the
original's greedy tokens so one early difference does not hide the rest. Stages are compared
separately so a failure names its stage: `pytorch` (re-authoring and tensor names) and `tflite`
(conversion, and quantization when a recipe is given). `per_layer` compares each block's output.
"""

import dataclasses
from typing import Callable

import numpy as np
from torch import nn

from litezoo.reference import hf
from litezoo.reference.reauthored import TorchDecoder
from litezoo.runtime.decoder import Decoder

# Max |difference| relative to the largest |logit| of the original, and the share of greedy tokens

# Max |difference| relative to the largest |logit| of the original, and the share of greedy tokens
# that must agree, per recipe family. Float is exact up to accumulation order.
TOLERANCES = {
    "none": (1e-3, 1.0),
    "fp16": (2e-2, 0.9),
    "quantized": (0.2, 0.75),
}


def tolerance(recipe: str) -> tuple[float, float]:
  return TOLERANCES.get(recipe, TOLERANCES["quantized"])


@dataclasses.dataclass
class Row:
  stage: str
  prompt: int | str  # a prompt's index, or "@p" for a row starting at position p
  prefill_abs: float
  decode_abs: float
  rel: float
  greedy: int
  steps: int
  ok: bool


@dataclasses.dataclass
class LayerRow:
  layer: int
  max_abs: float
  rel: float
  ok: bool


@dataclasses.dataclass
class Report:
  rows: list[Row]
  layers: list[LayerRow]
  rel_tolerance: dict[str, float]

  @property
  def ok(self) -> bool:
    return all(r.ok for r in self.rows) and all(l.ok for l in self.layers)

  @property
  def first_bad_layer(self) -> int | None:
    return next((l.layer for l in self.layers if not l.ok), None)

  def table(self) -> str:
    lines = ["| stage | prompt or @position | prefill max abs | decode max abs | max rel | "
             "greedy agree | ok |",
             "|---|---|---|---|---|---|---|"]
    for r in self.rows:
      lines.append(f"| {r.stage} | {r.prompt} | {r.prefill_abs:.2e} | {r.decode_abs:.2e} | "
                   f"{r.rel:.2e} | {r.greedy}/{r.steps} | {'yes' if r.ok else 'NO'} |")
    if self.layers:
      lines += ["", "| layer | max abs | rel | ok |", "|---|---|---|---|"]
      lines += [f"| {l.layer} | {l.max_abs:.2e} | {l.rel:.2e} | {'yes' if l.ok else 'NO'} |"
                for l in self.layers]
      bad = self.first_bad_layer
      lines.append("" if bad is None else f"\nfirst layer past tolerance: layer {bad}")
    return "\n".join(lines)


def _feed(decoder: Decoder, tokens: list[int]) -> np.ndarray:
  return (decoder.prefill(tokens, all_logits=True) if len(tokens) > 1 or decoder.position == 0
          else decoder.decode(tokens[0])[None])


def _compare(stage: str, index: int, decoder: Decoder, expected_prefill: np.ndarray,
             expected_steps: list[np.ndarray], tokens: list[int], prompt: list[int],
             rel_tol: float, greedy_share: float) -> Row:
  """Every position of the prompt when the decoder can score them all (a .tflite needs verify_<k>
  signatures or all-position prefill for that), then the last position again through plain
  prefill (what generation runs), then decode steps continuing from it."""
  scale = max(float(np.abs(expected_prefill).max()), 1e-6)
  prefill_abs = 0.0
  if getattr(decoder, "scores_all_positions", True):
    decoder.reset()
    prefill_abs = float(np.abs(_feed(decoder, prompt) - expected_prefill).max())
  decoder.reset()
  got = decoder.prefill(prompt)
  prefill_abs = max(prefill_abs, float(np.abs(got[-1] - expected_prefill[-1]).max()))
  agree = int(got[-1].argmax() == tokens[0])
  decode_abs = 0.0
  for step, expected in enumerate(expected_steps):
    got = decoder.decode(tokens[step])
    decode_abs = max(decode_abs, float(np.abs(got - expected).max()))
    agree += int(got.argmax() == tokens[step + 1])
  steps = len(expected_steps) + 1
  rel = max(prefill_abs, decode_abs) / scale
  ok = rel <= rel_tol and agree >= greedy_share * steps
  return Row(stage, index, prefill_abs, decode_abs, rel, agree, steps, ok)


def per_layer(model: nn.Module, original: nn.Module, prompt: list[int], kv_cache_max_len: int,
              rel_tol: float) -> list[LayerRow]:
  """Each block's output hidden state on `prompt`, re-authored vs original."""
  ours, theirs = {}, {}

  def keep(store, index):
    def hook(_, __, output):
      store[index] = (output[0] if isinstance(output, tuple) else output).detach().float()
    return hook

  handles = [b.register_forward_hook(keep(ours, i)) for i, b in enumerate(model.transformer_blocks)]
  handles += [l.register_forward_hook(keep(theirs, i))
              for i, l in enumerate(hf.decoder_layers(original))]
  try:
    TorchDecoder(model, kv_cache_max_len).prefill(prompt)
    hf.HFDecoder(original).prefill(prompt)
  finally:
    for h in handles:
      h.remove()
  rows = []
  for i in sorted(theirs):
    diff = float((ours[i] - theirs[i]).abs().max())
    rel = diff / max(float(theirs[i].abs().max()), 1e-6)
    rows.append(LayerRow(i, diff, rel, rel <= rel_tol))
  return rows


def _cache_rows(runner, original_decoder, prompts: list[list[int]], stage: str, rel_tol: float,
                greedy_share: float) -> list[Row]:
  """One row per KV cache set of a `runtime.Runner` with decode windows: each window, then the
  full cache. A sequence long enough to reach the set (the prompts' tokens, repeated) is
  prefilled up to the set's first position p (a decode at p runs there); then every verify
  length that fits runs from p (a verify signature of that set, where the file has them) and a
  decode step at p, each against the original on the whole sequence. The prompts alone reach the
  first window only."""
  pool = [t for p in prompts for t in p]
  caches = list(runner.windows) + [None]
  rows = []
  for low, cache in zip([0] + list(runner.windows), caches):
    high = cache or runner.kv_cache_max_len
    lengths = [k for k in (runner.verify_lengths if runner.scores_all_positions else [])
               if low + k <= high]
    seq = (pool * (low // len(pool) + 2))[:low + max(lengths + [1])]
    original_decoder.reset()
    expected = original_decoder.prefill(seq, all_logits=True)
    scale = max(float(np.abs(expected).max()), 1e-6)
    runner.reset()
    if low:
      runner.prefill(seq[:low])
    verify_abs, agree, steps = 0.0, 0, 0
    for k in lengths:
      runner.position = low
      got = runner.verify(seq[low:low + k])
      verify_abs = max(verify_abs, float(np.abs(got - expected[low:low + k]).max()))
      agree += int((got.argmax(-1) == expected[low:low + k].argmax(-1)).sum())
      steps += k
    runner.position = low
    got = runner.decode(seq[low])
    decode_abs = float(np.abs(got - expected[low]).max())
    agree, steps = agree + int(got.argmax() == expected[low].argmax()), steps + 1
    rel = max(verify_abs, decode_abs) / scale
    where = f"window {cache}" if cache else "full cache"
    checks = (f"verify {','.join(map(str, lengths))}, " if lengths else "") + "decode"
    rows.append(Row(f"{stage}, {where}: {checks}", f"@{low}", verify_abs,
                    decode_abs, rel, agree, steps, rel <= rel_tol and agree >= greedy_share * steps))
  return rows


def verify(model: nn.Module, original: nn.Module, prompts: list[list[int]], decode_steps: int,
           kv_cache_max_len: int, converted: Decoder | None = None, recipe: str = "none",
           layers: bool = False, log: Callable[[str], None] = print) -> Report:
  """Compares the re-authored `model` (and the `converted` one, e.g. a runtime.Runner on the
  .tflite, if given) with the `original` on every prompt: prefill logits, then `decode_steps`
  steps teacher-forced with the original's greedy tokens; for a converted file with decode
  windows, also a verify of each length and a decode step in every window and the full cache
  (`_cache_rows`)."""
  float_tol, float_greedy = tolerance("none")
  converted_tol, converted_greedy = tolerance(recipe)
  original_decoder = hf.HFDecoder(original)
  ours = TorchDecoder(model, kv_cache_max_len)
  rows = []
  for index, prompt in enumerate(prompts):
    log(f"prompt {index}: {len(prompt)} tokens, {decode_steps} decode steps")
    original_decoder.reset()
    expected_prefill = original_decoder.prefill(prompt, all_logits=True)
    tokens = [int(expected_prefill[-1].argmax())]
    expected_steps = []
    for _ in range(decode_steps):
      expected_steps.append(original_decoder.decode(tokens[-1]))
      tokens.append(int(expected_steps[-1].argmax()))
    rows.append(_compare("pytorch", index, ours, expected_prefill, expected_steps, tokens, prompt,
                         float_tol, float_greedy))
    if converted is not None:
      rows.append(_compare(f"tflite ({recipe})", index, converted, expected_prefill,
                           expected_steps, tokens, prompt, converted_tol, converted_greedy))
  if converted is not None and getattr(converted, "windows", None):
    rows += _cache_rows(converted, original_decoder, prompts, f"tflite ({recipe})",
                        converted_tol, converted_greedy)
  layer_rows = per_layer(model, original, prompts[0], kv_cache_max_len, float_tol) if layers else []
  return Report(rows, layer_rows, {"pytorch": float_tol, "tflite": converted_tol})
