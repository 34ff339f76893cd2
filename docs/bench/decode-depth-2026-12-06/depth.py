"""Decode time per step at each depth of one file, through the zoo's runner.

    python docs/bench/decode-depth-2026-12-06/depth.py MODEL.tflite

Prefills `depth` random tokens, decodes one (which moves into the window holding the sequence),
then times 24 decode steps; the window a step runs in is the smallest decode window above the
position (256, 512, 768 on the zoo's default files), else the full cache. Depths whose 25
steps do not fit the file's KV cache are left out.
"""
import sys
import time

import numpy as np

from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.runtime.runner import Runner

if len(sys.argv) != 2:
  sys.exit("depth.py: error: give one MODEL.tflite")
try:
  files.check_tflite(sys.argv[1])  # a clear refusal, before the runtime parses it
  runner = Runner(sys.argv[1], num_threads=2)
except (ZooError, ValueError) as e:  # ValueError: a LiteRT file that is not a zoo LLM
  sys.exit(f"depth.py: error: {e}")
print("decode windows", runner.windows)
STEPS = 24
tokens = np.random.default_rng(0).integers(0, runner.vocab_size, runner.kv_cache_max_len).tolist()
for depth in [d for d in (16, 200, 300, 480, 560, 730, 800, 980)
              if d + 1 + STEPS <= runner.kv_cache_max_len]:
  runner.reset()
  runner.prefill(tokens[:depth])
  runner.decode(tokens[depth])
  start = time.perf_counter()
  for i in range(STEPS):
    runner.decode(tokens[depth + 1 + i])
  step = (time.perf_counter() - start) / STEPS
  print(f"depth {depth}: {step * 1e3:.2f} ms/step, {1 / step:.1f} tok/s", flush=True)
