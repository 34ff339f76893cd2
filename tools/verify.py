"""Verifies any registered model against the original (transformers) from the same checkpoint:
the re-authored PyTorch model and the converted .tflite, prefill and decode, optionally per layer.

  bazel run //tools:verify -- --model=phi2 --variant=tiny --per_layer

Exits 1 when a difference is past the stated tolerance.
"""

from absl import flags

from litezoo import pipeline
from litezoo.runtime import runner
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define(recipe_default="none")
_NO_TFLITE = flags.DEFINE_bool("no_tflite", False, "Check the PyTorch model only.")
_PROMPTS = flags.DEFINE_integer("prompts", 3, "Number of prompts (at most 5).")
_DECODE_STEPS = flags.DEFINE_integer("decode_steps", 16, "Decode steps after each prefill.")
_PER_LAYER = flags.DEFINE_bool("per_layer", False, "Also compare every block's hidden state.")

# Tokenized with the checkpoint's own tokenizer (random weights carry one too).
PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a village by the sea, there lived",
    "Water boils at a temperature of",
    "The three primary colors are",
)


def main(argv):
  del argv
  if not 1 <= _PROMPTS.value <= len(PROMPTS):
    raise zoo_flags.FlagError(f"--prompts must be 1 to {len(PROMPTS)}, got {_PROMPTS.value}")
  if _DECODE_STEPS.value < 0:
    raise zoo_flags.FlagError(f"--decode_steps must be 0 or more, got {_DECODE_STEPS.value}")
  if _NO_TFLITE.value and zoo_flags.given("quantize"):
    raise zoo_flags.FlagError("--quantize picks the .tflite to check, and --no_tflite checks "
                              "none: drop one of them")
  # Only --kv_cache_max_len also shapes the PyTorch model; the others shape the .tflite alone.
  shaping = [f"--{name}" for name in ("prefill_seq_lens", "kv_layout", "prefill_logits",
                                      "verify_lengths", "decode_windows", "prefill_windows",
                                      "verify_windows")
             if zoo_flags.given(name)]
  if _NO_TFLITE.value and shaping:
    raise zoo_flags.FlagError(f"{', '.join(shaping)} shape the .tflite, and --no_tflite checks "
                              "none: drop one of them")
  s = _SELECT.selection()
  tok = pipeline.tokenizer(s.weights, console.log)
  prompts = [tok.encode(p) for p in PROMPTS[:_PROMPTS.value]]
  kv = s.signatures.kv_cache_max_len
  longest = max(map(len, prompts)) + _DECODE_STEPS.value
  if longest > kv:
    raise zoo_flags.FlagError(f"a prompt of {longest - _DECODE_STEPS.value} tokens plus "
                              f"--decode_steps={_DECODE_STEPS.value} exceeds the {kv}-token KV "
                              "cache: fewer steps, or a larger --kv_cache_max_len")
  from litezoo.reference import compare  # pylint: disable=g-import-not-at-top  (torch: seconds)
  converted = None
  if not _NO_TFLITE.value:
    artifact = pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                                 signatures=s.signatures, log=console.log)
    converted = runner.Runner(artifact.path)
  original, ours = pipeline.original_and_ours(s.spec, s.variant, s.weights, kv, console.log)
  report = compare.verify(ours, original, prompts, _DECODE_STEPS.value, kv, converted=converted,
                          recipe=s.recipe, layers=_PER_LAYER.value, log=console.log)
  rel = ", ".join(f"{k} {v:g}" for k, v in report.rel_tolerance.items())
  console.out(f"\n{s.name}: max |diff| / max |original logit| allowed: {rel}; float stages must "
              "agree on every greedy token\n")
  console.out(report.table())
  console.out("\nPASS" if report.ok else "\nFAIL")
  return 0 if report.ok else 1


if __name__ == "__main__":
  common.run(main)
