"""What XNNPACK's FORCE_FP16 flag does to a model's numbers and decode speed.

    python docs/bench/decode-depth-2026-12-06/fp16.py MODEL.tflite TOKENIZER_DIR [--tokens N]

Two runners on the same file, one with the CPU options' XNNPACK flags at 0x7 (QS8 | QU8 |
FORCE_FP16: attention, softmax and the element-wise ops in fp16 where the CPU has the kernels;
the int8 weight matmuls stay qd8-f32), one with the defaults. Each decodes the first N tokens of
quant/data/alice_in_wonderland.txt one at a time (teacher-forced: each is fed the text's tokens,
whatever it predicted), and the script prints the perplexity of each, top-1 agreement and mean KL of
the fp16 runner against the default one, the largest logit difference, and decode ms per step
for each (depths 0 to N). TOKENIZER_DIR is a saved Hugging Face tokenizer (the zoo keeps each
checkpoint's under $LITEZOO_CACHE/tokenizers/).
"""
import argparse
import pathlib
import sys
import time

import numpy as np
from ai_edge_litert import options

from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.runtime import tokenizer
from litezoo.runtime.runner import Runner
from litezoo.tools.evaluation.perplexity import Score, log_softmax

TEXT = pathlib.Path(__file__).resolve().parents[3] / "quant" / "data" / "alice_in_wonderland.txt"


def runner_with_flags(model: str, flags: int | None) -> Runner:
  init = options.CpuOptions.__init__

  def with_flags(self, *a, **k):
    init(self, *a, **k)
    self.xnnpack_flags = flags

  options.CpuOptions.__init__ = with_flags
  try:
    return Runner(model, num_threads=2, weight_cache=False)
  finally:
    options.CpuOptions.__init__ = init


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model")
  parser.add_argument("tokenizer")
  parser.add_argument("--tokens", type=int, default=900)
  args = parser.parse_args()
  try:
    files.check_tflite(args.model)  # a clear refusal, before the runtime parses it
    tokens = tokenizer.load(args.tokenizer).encode(TEXT.read_text())[:args.tokens]
    runs = {"default": runner_with_flags(args.model, None),
            "fp16": runner_with_flags(args.model, 0x7)}
  except (ZooError, ValueError) as e:  # ValueError: a LiteRT file that is not a zoo LLM
    sys.exit(f"fp16.py: error: {e}")
  if len(tokens) > runs["default"].kv_cache_max_len:
    sys.exit(f"fp16.py: error: {len(tokens)} tokens do not fit the "
             f"{runs['default'].kv_cache_max_len}-entry KV cache; give a smaller --tokens")
  logits = {}
  for name, run in runs.items():
    out, start = [], time.perf_counter()
    for t in tokens[:-1]:
      out.append(run.decode(t))
    seconds = time.perf_counter() - start
    logits[name] = log_softmax(np.stack(out).reshape(len(out), -1))
    print(f"{name}: {seconds / len(out) * 1e3:.2f} ms per decode step over depths 0-{len(out)}")
  targets = np.array(tokens[1:])
  scores = {}
  for name in runs:
    scores[name] = Score()
    scores[name].add(logits[name], targets, logits["default"] if name == "fp16" else None)
  print(f"perplexity: default {scores['default'].perplexity:.4f}, fp16 "
        f"{scores['fp16'].perplexity:.4f} ({scores['fp16'].perplexity / scores['default'].perplexity - 1:+.3%})")
  print(f"fp16 against default: top-1 agreement {scores['fp16'].top1_agreement:.2%}, mean KL "
        f"{scores['fp16'].mean_kl:.2e} nats, largest log-prob difference "
        f"{np.abs(logits['fp16'] - logits['default']).max():.3f}")


if __name__ == "__main__":
  main()
