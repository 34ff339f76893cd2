"""Decode speed and peak RSS of one file at the benchmark's depths, for comparing window sets.

    python docs/bench/decode-depth-2026-12-06/windows.py MODEL.tflite LABEL

Prefills 16, 256 and 512 random tokens (after a reset each), decodes 32 more after each (the
benchmark's protocol, so 512 + 32 runs in the window above 544), and prints tok/s at each depth
and the process's peak RSS. Run it alternately on the files being compared.
"""
import resource
import sys
import time

import numpy as np

from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.runtime.runner import Runner

if len(sys.argv) != 3:
  sys.exit("windows.py: error: give MODEL.tflite and a label")
try:
  files.check_tflite(sys.argv[1])  # a clear refusal, before the runtime parses it
  runner = Runner(sys.argv[1], num_threads=2, weight_cache=False)
except (ZooError, ValueError) as e:  # ValueError: a LiteRT file that is not a zoo LLM
  sys.exit(f"windows.py: error: {e}")
if runner.kv_cache_max_len < 512 + 32:
  sys.exit(f"windows.py: error: the {runner.kv_cache_max_len}-entry KV cache cannot hold 544 tokens")
tokens = np.random.default_rng(0).integers(0, runner.vocab_size, 544).tolist()
speeds = []
for depth in (16, 256, 512):
  runner.reset()
  runner.prefill(tokens[:depth])
  start = time.perf_counter()
  for t in tokens[depth:depth + 32]:
    runner.decode(t)
  speeds.append(32 / (time.perf_counter() - start))
print(f"{sys.argv[2]}: decode @16 / @256 / @512 {' / '.join(f'{s:.1f}' for s in speeds)} tok/s, "
      f"windows {runner.windows}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB",
      flush=True)
