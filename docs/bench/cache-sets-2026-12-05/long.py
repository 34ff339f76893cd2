# The measurement of docs/speed.md "One cache set at a time" (2026-12-05): python long.py F.
# One process: a 100-token prompt, greedy decode to 1,000 tokens (through every decode window and
# into the full cache), then a reset and a second 100-token session; peak RSS (ru_maxrss) and
# the resident anonymous memory after each phase.
import resource, sys, time
import numpy as np
from litezoo.runtime import runner as rt


def anonymous_mib():
  total, anon = 0, False
  for line in open("/proc/self/smaps"):
    p = line.split()
    if "-" in p[0] and ":" not in p[0]:
      anon = len(p) <= 5 or p[5] in ("[heap]", "[anon]")
    elif p[0] == "Rss:" and anon:
      total += int(p[1])
  return total // 1024


def session(r, rng, length):
  logits = r.prefill(rng.integers(0, 1000, 100).tolist())
  start = time.perf_counter()
  while r.position < length:
    logits = r.decode(int(logits.argmax()))
  return time.perf_counter() - start


r = rt.Runner(sys.argv[1])
rng = np.random.default_rng(0)
print(f"loaded: anonymous {anonymous_mib()} MiB")
seconds = session(r, rng, 1000)
print(f"after 1,000 tokens (windows {r.windows} then the full cache): anonymous "
      f"{anonymous_mib()} MiB, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}"
      f" MiB, decode {900 / seconds:.1f} tok/s")
r.reset()
session(r, rng, 150)
print(f"reset, then a 150-token session: anonymous {anonymous_mib()} MiB")
