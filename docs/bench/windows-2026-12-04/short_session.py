"""Resident memory after a short session (a 100-token prompt and 50 decode steps) on one .tflite,
with whichever runner PYTHONPATH gives: the measurement behind docs/speed.md's "Cache sets made on
first use" (2026-12-04). Prints JSON: the peak (VmHWM) and the anonymous memory at the end, MiB.

    PYTHONPATH=... python short_session.py MODEL.tflite
"""
import json
import sys

import numpy as np

from litezoo.runtime import runner


def status(field: str) -> float:
  for line in open("/proc/self/status"):
    if line.startswith(field + ":"):
      return int(line.split()[1]) / 1024
  raise KeyError(field)


run = runner.Runner(sys.argv[1])
tokens = [int(t) for t in np.random.default_rng(0).integers(3, 1000, 100)]
token = int(run.prefill(tokens).argmax())
for _ in range(50):
  token = int(run.decode(token).argmax())
print(json.dumps({"position": run.position, "peak_mib": round(status("VmHWM"), 1),
                  "anonymous_mib": round(status("RssAnon"), 1)}))
