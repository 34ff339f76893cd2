# The measurement of docs/speed.md "A long prompt prefills through the windows" (2026-12-07),
# chat turns whose padded chunk does not fit the window they end in:
#   python turns.py FILE.tflite /tmp/old_runner.py [START+TOKENS,...]
# A prompt of START tokens, then (timed) a turn of TOKENS more and one decode step; the runner
# before (the tail token by token through decode) against this one (a padded chunk in a larger
# set, then decode moves back), alternating, each side first in every other repeat; medians of 5.
import importlib.util, os, statistics, sys, time
import numpy as np
from litezoo.runtime import runner as new

spec = importlib.util.spec_from_file_location("old_runner", sys.argv[2])
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
cases = [tuple(int(x) for x in c.split("+")) for c in (sys.argv[3] if len(sys.argv) > 3 else
         "250+3,250+4,248+6,240+14,228+22,100+150,490+20,700+40").split(",")]
runners = {"before": old.Runner(sys.argv[1]), "after": new.Runner(sys.argv[1])}
rng, seconds, diff = np.random.default_rng(0), {}, {}
for repeat in range(6):
  for start, n in cases:
    prompt = rng.integers(3, runners["after"].vocab_size, start + n).tolist()
    got = {}
    for side, run in sorted(runners.items(), reverse=repeat % 2 == 1):  # either first
      run.reset()
      run.prefill(prompt[:start])
      t = time.perf_counter()
      logits = run.prefill(prompt[start:])
      got[side] = np.concatenate([logits[-1], run.decode(int(logits[-1].argmax()))])
      if repeat:  # the first repeat makes every set's signatures run once
        seconds.setdefault((side, start, n), []).append(time.perf_counter() - t)
    diff[start, n] = max(diff.get((start, n), 0.0), float(np.abs(got["before"] - got["after"]).max()))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{os.path.basename(sys.argv[1])}; {cpu}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}; medians of 5")
print("| cached | turn tokens | before s | after s | speed-up | max |logit diff| |")
print("|---|---|---|---|---|---|")
for start, n in cases:
  b, a = (statistics.median(seconds[(side, start, n)]) for side in ("before", "after"))
  print(f"| {start} | {n} | {b:.4f} | {a:.4f} | {b / a:.2f}x | {diff[start, n]:.1e} |")
