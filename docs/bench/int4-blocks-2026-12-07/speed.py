# prefill 128 from an empty cache (window 256) and decode at depth 16, one file per process:
#   python speed.py FILE.tflite  (docs/quality.md, "Block size: quality against prefill speed")
import statistics, sys, time, os
import numpy as np
from litezoo.runtime import runner as rt
r = rt.Runner(sys.argv[1])
rng = np.random.default_rng(0)
r.prefill(rng.integers(3, r.vocab_size, 128).tolist()); r.decode(5)
pre, dec = [], []
for _ in range(5):
  r.reset()
  t = time.perf_counter(); r.prefill(rng.integers(3, r.vocab_size, 128).tolist()); pre.append(time.perf_counter() - t)
  r.reset(); r.prefill(rng.integers(3, r.vocab_size, 16).tolist())
  t = time.perf_counter()
  for _ in range(16): r.decode(7)
  dec.append((time.perf_counter() - t) / 16)
print(f"{os.path.basename(sys.argv[1])}: prefill128 {128 / statistics.median(pre):.1f} tok/s, decode@16 {1 / statistics.median(dec):.2f} tok/s, load {os.getloadavg()[0]:.1f}")
