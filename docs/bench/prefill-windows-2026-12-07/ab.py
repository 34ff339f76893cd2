# The measurement of docs/speed.md "A long prompt prefills through the windows" (2026-12-07):
#   git show e19c90c:runtime/runner.py > /tmp/old_runner.py
#   python ab.py FILE.tflite /tmp/old_runner.py [LENGTHS]
# One process, one file, two runners on it: the runner before (each prompt into the smallest
# window that holds it all, else the full cache) and this one (each chunk into the smallest
# window that holds it). Prompts of random tokens from an empty cache, the two sides alternating (each first
# in every other repeat); medians of the time to the last token's logits, and the largest difference
# between the two sides' logits.
import importlib.util, os, statistics, sys, time
import numpy as np
from litezoo.runtime import runner as new


def load(path):
  spec = importlib.util.spec_from_file_location("old_runner", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


model, old = sys.argv[1], load(sys.argv[2])
lengths = [int(n) for n in (sys.argv[3] if len(sys.argv) > 3 else
                            "100,200,300,400,500,600,800,1000").split(",")]
runners = {"before": old.Runner(model), "after": new.Runner(model)}
rng, seconds, diff = np.random.default_rng(0), {}, {}
for side, run in runners.items():  # first calls of every signature (arenas, weight cache)
  for n in lengths:
    run.reset()
    run.prefill(rng.integers(3, run.vocab_size, n).tolist())
for repeat in range(5):
  for n in lengths:
    tokens = rng.integers(3, runners["after"].vocab_size, n).tolist()
    got = {}
    for side, run in sorted(runners.items(), reverse=repeat % 2 == 1):  # either first
      run.reset()
      start = time.perf_counter()
      got[side] = run.prefill(tokens)
      seconds.setdefault((side, n), []).append(time.perf_counter() - start)
    diff[n] = max(diff.get(n, 0.0), float(np.abs(got["before"] - got["after"]).max()))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
print(f"{os.path.basename(model)}; {cpu}, {os.cpu_count()} CPUs, avx512_vnni={'avx512_vnni' in flags}; "
      f"load {os.getloadavg()[0]:.2f}; medians of 5")
print("| prompt tokens | before s | after s | before tok/s | after tok/s | speed-up | max |logit diff| |")
print("|---|---|---|---|---|---|---|")
for n in lengths:
  b, a = (statistics.median(seconds[(side, n)]) for side in ("before", "after"))
  print(f"| {n} | {b:.3f} | {a:.3f} | {n / b:.0f} | {n / a:.0f} | {b / a:.2f}x | {diff[n]:.1e} |")
