"""Markdown table of the round-trip A/B: speed-up per task, new against old runner, per pair.

    python docs/bench/round-trip-2026-12-06/summary.py docs/bench/round-trip-2026-12-06
"""
import glob
import json
import os
import sys

root = sys.argv[1]
runs = {}
for d in sorted(glob.glob(f"{root}/nvw-*")):
  who, pair = os.path.basename(d).split("-")[1:]
  with open(f"{d}/speculative-smollm2-135m.json") as f:
    runs[(who, int(pair))] = json.load(f)["results"]
pairs = sorted({pair for _, pair in runs})
print("| task | decoding | " + " | ".join(f"pair {i}: new / old" for i in pairs) + " |")
print("|---|---|" + "---|" * len(pairs))
for task in ("repeat", "quote_and_explain", "free"):
  for mode in ("greedy", "sampled"):
    cells = [f"{runs[('new', i)][task][mode]['speedup']:.2f}x / "
             f"{runs[('old', i)][task][mode]['speedup']:.2f}x" for i in pairs]
    print(f"| {task} | {mode} | " + " | ".join(cells) + " |")
