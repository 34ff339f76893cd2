"""Micro-benchmark of core/runner.py: the CompiledModel path against the Interpreter reference.

  cd /tmp/pp && PYTHONPATH=/tmp/pp python litezoo/tools/runner_bench.py --model=/tmp/tl11/M.tflite

Each measurement runs in a fresh subprocess (so ru_maxrss and the first call are its own), the
configurations take turns round after round (the machine is shared: load drifts), and the table
reports medians. Configurations:
  interpreter      the Interpreter signature runners (the reference)
  compiled-cold    CompiledModel, empty weight cache directory (packs and writes the cache)
  compiled-warm    CompiledModel, the cache written by a previous start
"""

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "A converted zoo .tflite.", required=True)
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Fresh processes per configuration.")
_DEPTHS = flags.DEFINE_list("depths", ["16", "256", "512"], "Context depths to decode at.")
_DECODE_STEPS = flags.DEFINE_integer("decode_steps", 16, "Timed decode steps per depth.")
_CONFIGS = flags.DEFINE_list("configs", ["interpreter", "compiled-cold", "compiled-warm"],
                             "Configurations to compare.")
_CHILD = flags.DEFINE_string("child", None, "Internal: measure one configuration, print JSON.")


def _measure(config: str) -> dict:
  """Runs in the child process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from litezoo.core import runner  # pylint: disable=g-import-not-at-top
  backend = "interpreter" if config == "interpreter" else "compiled"
  # What the process holds before the model (Python, numpy, torch via litezoo.core): the runtime's
  # own cost is the peak minus this.
  baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  start = time.perf_counter()
  run = runner.Runner(_MODEL.value, num_threads=_THREADS.value, backend=backend)
  created = time.perf_counter() - start
  vocab = len(run.decode(1))
  first = time.perf_counter() - start
  rng = np.random.default_rng(0)
  result = {"config": config, "create_s": created, "first_call_s": first}

  longest = run.prefill_lengths[-1]
  prefill, cpu = [], []
  for _ in range(3):
    run.reset()
    tokens = [int(t) for t in rng.integers(3, min(vocab, 1000), longest)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    run.prefill(tokens)
    prefill.append(longest / (time.perf_counter() - t0))
    cpu.append(1000 * (time.process_time() - cpu0) / longest)
  result[f"prefill_{longest}_tps"] = statistics.median(prefill)
  result[f"prefill_{longest}_best_tps"] = max(prefill)
  result[f"prefill_{longest}_cpu_ms"] = statistics.median(cpu)

  for depth in (int(d) for d in _DEPTHS.value):
    if depth + _DECODE_STEPS.value > run.kv_cache_max_len:
      continue
    run.reset()
    context = [int(t) for t in rng.integers(3, min(vocab, 1000), depth)]
    token = int(run.prefill(context)[-1].argmax())
    steps, cpu0 = [], time.process_time()
    for _ in range(_DECODE_STEPS.value):
      t0 = time.perf_counter()
      token = int(run.decode(token).argmax())
      steps.append(time.perf_counter() - t0)
    result[f"decode@{depth}_tps"] = 1 / statistics.median(steps)
    # Less sensitive to other processes on a shared machine: the fastest step, and CPU time (at
    # one thread, CPU time per token hardly depends on how long the process waited for a core).
    result[f"decode@{depth}_best_tps"] = 1 / min(steps)
    result[f"decode@{depth}_cpu_ms"] = 1000 * (time.process_time() - cpu0) / len(steps)
  result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  result["runtime_rss_gib"] = result["peak_rss_gib"] - baseline
  return result


def _child(config: str, cache_root: pathlib.Path) -> dict:
  env = {**os.environ, "LITEZOO_CACHE": str(cache_root)}
  if config == "compiled-cold":
    for f in (cache_root / "xnnpack").glob("*"):
      f.unlink()
  out = subprocess.run(
      [sys.executable, __file__, f"--model={_MODEL.value}", f"--threads={_THREADS.value}",
       f"--depths={','.join(_DEPTHS.value)}", f"--decode_steps={_DECODE_STEPS.value}",
       f"--child={config}"], env=env, capture_output=True, text=True, check=False)
  lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
  if out.returncode or not lines:
    raise RuntimeError(f"{config} failed:\n{out.stderr[-3000:]}")
  return json.loads(lines[-1])


def _load() -> str:
  return " ".join(open("/proc/loadavg").read().split()[:3])


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(_measure(_CHILD.value)), flush=True)
    return
  size = os.path.getsize(_MODEL.value)
  print(f"model {_MODEL.value}: {size / 2**30:.3f} GiB, {_THREADS.value} threads, "
        f"{os.cpu_count()} CPUs; load average before {_load()}", flush=True)
  results: dict[str, list[dict]] = {c: [] for c in _CONFIGS.value}
  with tempfile.TemporaryDirectory(prefix="runner_bench_") as cache_root:
    cache_root = pathlib.Path(cache_root)
    for round_ in range(_ROUNDS.value):
      for config in _CONFIGS.value:
        r = _child(config, cache_root)
        results[config].append(r)
        print(f"round {round_ + 1} {config}: " + ", ".join(
            f"{k}={v:.3g}" for k, v in r.items() if k != "config") + f"  load {_load()}",
              flush=True)
  keys = [k for k in results[_CONFIGS.value[0]][0] if k != "config"]
  print(f"\nmedians of {_ROUNDS.value} fresh processes (load average after {_load()}):")
  print("| metric | " + " | ".join(_CONFIGS.value) + " |")
  print("|---|" + "---|" * len(_CONFIGS.value))
  for k in keys:
    print(f"| {k} | " + " | ".join(
        f"{statistics.median(r[k] for r in results[c]):.3g}" for c in _CONFIGS.value) + " |")
  for key in ("peak_rss_gib", "runtime_rss_gib"):
    rss = {c: statistics.median(r[key] for r in results[c]) for c in _CONFIGS.value}
    print(f"{key} / model file: " + ", ".join(
        f"{c} {rss[c] * 2**30 / size:.2f}x" for c in _CONFIGS.value))


if __name__ == "__main__":
  app.run(main)
