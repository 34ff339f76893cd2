"""Prefill into a window against prefill into the full cache: one .tflite, one process.

    bazel run //tools/bench:windows -- --tflite=PATH.tflite [--lengths=32,128,256] [--repeats=5]

Runs `Runner.prefill` from an empty cache with the file's `w<W>_prefill_<n>` signatures and
without them (the runner told to ignore them), interleaved, so a machine whose speed drifts
within minutes (shared VMs) moves both sides alike; prints a markdown table of medians (tok/s)
and their ratio, the machine noted, and writes the JSON with --output.
"""

import statistics
import time

from absl import flags
import numpy as np

from litezoo.artifacts import files
from litezoo.tools import common, console
from litezoo.tools.bench import measure
from litezoo.tools import flags as zoo_flags
from litezoo.tools.flags import FlagError

_TFLITE = flags.DEFINE_string("tflite", None, "A zoo .tflite with w<W>_prefill_<n> signatures.")
_LENGTHS = flags.DEFINE_list("lengths", ["32", "128", "256"], "Prompt lengths (tokens).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Repeats of each length and side; medians.")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the results JSON.")


def compare(run, lengths: list[int], repeats: int, vocab: int) -> dict:
  """{length: {"window_tps", "full_tps", "speedup"}} for `run` (a runtime.runner.Runner whose
  file has prefill windows): tokens per second of an empty-cache prefill, medians of `repeats`."""
  windows, rng, seconds = list(run.prefill_windows), np.random.default_rng(0), {}
  for _ in range(repeats):
    for side in ("window", "full"):
      run.prefill_windows = windows if side == "window" else []
      for n in lengths:
        tokens = [int(t) for t in rng.integers(3, vocab, n)]
        run.reset()
        start = time.perf_counter()
        run.prefill(tokens)
        seconds.setdefault((side, n), []).append(time.perf_counter() - start)
  run.prefill_windows = windows
  result = {}
  for n in lengths:
    window, full = (statistics.median(seconds[(side, n)]) for side in ("window", "full"))
    result[str(n)] = {"window_tps": n / window, "full_tps": n / full, "speedup": full / window}
  return result


def main(argv):
  del argv
  from litezoo.runtime import runner  # pylint: disable=g-import-not-at-top
  if _TFLITE.value is None:
    raise FlagError("give --tflite=PATH.tflite (a zoo file with prefill windows)")
  lengths = zoo_flags.int_list(_LENGTHS.value, "lengths")
  if not lengths or min(lengths) < 1 or _REPEATS.value < 1:
    raise FlagError("--lengths must be positive token counts and --repeats at least 1")
  path = common.user_path(_TFLITE.value)
  if not path.is_file():
    raise FlagError(f"--tflite={_TFLITE.value} is not a file")
  run = runner.Runner(path, num_threads=_THREADS.value)
  if not run.prefill_windows:
    raise FlagError(f"{path.name} has no w<W>_prefill_<n> signatures: convert it with "
                            "--prefill_windows")
  too_long = [n for n in lengths if n > run.prefill_windows[-1]]
  if too_long:
    raise FlagError(f"--lengths {too_long} do not fit the largest prefill window "
                            f"{run.prefill_windows[-1]}")
  vocab = int(run.prefill([1]).shape[-1])
  results = {"file": path.name, "windows": run.prefill_windows, "repeats": _REPEATS.value,
             "threads": _THREADS.value, "machine": measure.machine(),
             "prefill": compare(run, lengths, _REPEATS.value, vocab)}
  lines = [f"{path.name}, {_THREADS.value} threads, medians of {_REPEATS.value}, "
           f"{results['machine']['cpu']}:", "",
           "| prompt | into a window | full cache | speed-up |", "|---|---|---|---|"]
  lines += [f"| {n} tokens | {r['window_tps']:.1f} tok/s | {r['full_tps']:.1f} tok/s | "
            f"{r['speedup']:.2f}x |" for n, r in results["prefill"].items()]
  console.out("\n".join(lines))
  if _OUTPUT.value:
    out = common.user_path(_OUTPUT.value)
    files.write_json(out, results)
    console.out(f"wrote {out}")


if __name__ == "__main__":
  common.run(main)
