# The A/B of docs/speed.md "Norms as plain ops" (2026-12-05): python session.py MODEL.tflite.
# One process per run, the XNNPACK weight cache already built: load, a 100-token prompt, 60
# greedy decode steps (median of the last 50), two 128-token prefills into an empty cache (the
# faster kept); peak RSS (ru_maxrss) and resident memory by mapping at the end.
import collections, resource, sys, time
import numpy as np
from litezoo.runtime import runner as rt


def resident():
  cat, cur = collections.Counter(), None
  for line in open("/proc/self/smaps"):
    p = line.split()
    if "-" in p[0] and ":" not in p[0]:
      cur = p[5] if len(p) > 5 else "[anon]"
      cur = ("tflite" if cur.endswith(".tflite") else "xnnpack" if cur.endswith(".xnnpack")
             else "libs" if ".so" in cur else cur)
    elif p[0] == "Rss:":
      cat[cur] += int(p[1])
  return {k: v // 1024 for k, v in cat.most_common(5)}


r = rt.Runner(sys.argv[1])
heap_after_load = resident()
rng = np.random.default_rng(0)
logits = r.prefill(rng.integers(0, 1000, 100).tolist())
token, steps = int(logits.argmax()), []
for _ in range(60):
  start = time.perf_counter()
  logits = r.decode(token)
  steps.append(time.perf_counter() - start)
  token = int(logits.argmax())
prefill = []
for _ in range(2):
  r.reset()
  start = time.perf_counter()
  r.prefill(rng.integers(0, 1000, 128).tolist())
  prefill.append(time.perf_counter() - start)
print(f"decode {1 / np.median(steps[10:]):.1f} tok/s, prefill 128 {128 / min(prefill):.0f} tok/s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB; resident MiB "
      f"after load {heap_after_load}, at the end {resident()}", flush=True)
