"""Windows against the full cache: one .tflite, one process.

    bazel run //tools/bench:windows -- --tflite=PATH.tflite [--lengths=32,128,256] [--repeats=5]
    bazel run //tools/bench:windows -- --tflite=PATH.tflite --lengths=none --decode_depths=16,512

Runs `Runner.prefill` from an empty cache with the file's `w<W>_prefill_<n>` signatures and
without them, and with --decode_depths `Runner.decode` after a prompt of each depth in the
file's `decode_w<W>` windows and without them (the runner told to ignore them, so over the whole
cache), interleaved, so a machine whose speed drifts within minutes (shared VMs) moves both sides
alike; prints markdown tables of medians (tok/s) and their ratio, the machine noted, and writes
the JSON with --output.
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

_TFLITE = flags.DEFINE_string("tflite", None, "A zoo .tflite with w<W>_prefill_<n> (prefill) or "
                             "decode_w<W> (decode) signatures.")
_LENGTHS = flags.DEFINE_list("lengths", ["32", "128", "256"],
                             "Prompt lengths (tokens) of the prefill comparison; 'none' skips it.")
_DEPTHS = flags.DEFINE_list("decode_depths", None, "Context depths (tokens) of the decode "
                            "comparison, e.g. 16,256,512,800; 'none' skips it (the default).")
_STEPS = flags.DEFINE_integer("decode_steps", 32, "Timed decode steps at each depth.")
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


def compare_decode(run, depths: list[int], steps: int, repeats: int, vocab: int) -> dict:
  """{depth: {"window", "window_tps", "full_tps", "speedup"}} for `run` (a Runner whose file has
  decode windows): tokens per second of `steps` decode steps after a prompt of `depth` tokens, in
  the window the runner picks (`window`: its length, None for the full cache) and over the full
  cache; medians of `repeats`. The first step after the prompt, which may copy the cache into
  another set, is not timed. Both sides feed the same tokens."""
  windows, rng, seconds, used = list(run.windows), np.random.default_rng(0), {}, {}
  for _ in range(repeats):
    for side in ("window", "full"):
      run.windows = windows if side == "window" else []
      for depth in depths:
        tokens = [int(t) for t in rng.integers(3, vocab, depth + 1 + steps)]
        run.reset()
        run.prefill(tokens[:depth])
        run.decode(tokens[depth])
        start = time.perf_counter()
        for token in tokens[depth + 1:]:
          run.decode(token)
        seconds.setdefault((side, depth), []).append(time.perf_counter() - start)
        if side == "window":
          used[depth] = run.window
  run.windows = windows
  result = {}
  for depth in depths:
    window, full = (statistics.median(seconds[(side, depth)]) for side in ("window", "full"))
    result[str(depth)] = {"window": used[depth], "window_tps": steps / window,
                          "full_tps": steps / full, "speedup": full / window}
  return result


def _list(values, flag: str) -> list[int]:
  if values is None or [v.strip().lower() for v in values] == ["none"]:
    return []
  found = list(zoo_flags.int_list(values, flag, none_ok=True))
  if min(found) < 1:
    raise FlagError(f"--{flag} must be positive token counts, got {min(found)}")
  if len(set(found)) < len(found):
    raise FlagError(f"--{flag} repeats a value: give each once")
  return found


def main(argv):
  del argv
  from litezoo.runtime import runner  # pylint: disable=g-import-not-at-top
  if _TFLITE.value is None:
    raise FlagError("give --tflite=PATH.tflite (a zoo file with prefill or decode windows)")
  lengths, depths = _list(_LENGTHS.value, "lengths"), _list(_DEPTHS.value, "decode_depths")
  if not lengths and not depths:
    raise FlagError("nothing to compare: give --lengths (prefill) or --decode_depths (decode)")
  zoo_flags.check_threads(_THREADS.value)
  for name, value in (("repeats", _REPEATS.value), ("decode_steps", _STEPS.value)):
    if value < 1:
      raise FlagError(f"--{name} must be at least 1, got {value}")
  output = common.user_path(_OUTPUT.value) if _OUTPUT.value else None
  if output is not None and (output.is_dir() or not output.parent.is_dir()):
    raise FlagError(f"--output={_OUTPUT.value} must be a file in an existing directory")
  path = common.user_path(_TFLITE.value)
  if not path.is_file():
    raise FlagError(f"--tflite={_TFLITE.value} is not a file")
  files.check_tflite(path)  # before the runtime parses it
  try:
    run = runner.Runner(path, num_threads=_THREADS.value)
  except (ValueError, RuntimeError) as e:
    raise FlagError(f"--tflite={_TFLITE.value} cannot be run as a zoo model ({e})") from e
  if lengths and not run.prefill_windows:
    raise FlagError(f"{path.name} has no w<W>_prefill_<n> signatures: convert it with "
                    "--prefill_windows, or pass --lengths=none")
  too_long = [n for n in lengths if n > run.prefill_windows[-1]]
  if too_long:
    raise FlagError(f"--lengths {too_long} do not fit the largest prefill window "
                    f"{run.prefill_windows[-1]}: use lengths up to it")
  if depths and not run.windows:
    raise FlagError(f"{path.name} has no decode_w<W> signatures: convert it with "
                    "--decode_windows")
  room = run.kv_cache_max_len - 1 - _STEPS.value
  if depths and room < 1:
    raise FlagError(f"--decode_steps={_STEPS.value} do not fit the KV cache of "
                    f"{run.kv_cache_max_len}: use at most {run.kv_cache_max_len - 2}")
  if depths and max(depths) > room:
    raise FlagError(f"--decode_depths {[d for d in depths if d > room]} leave no room for "
                    f"{_STEPS.value} decode steps in the KV cache of {run.kv_cache_max_len}: use "
                    f"depths up to {room}, or fewer --decode_steps")
  vocab = run.vocab_size
  results = {"file": path.name, "prefill_windows": run.prefill_windows,
             "decode_windows": run.windows, "repeats": _REPEATS.value, "threads": _THREADS.value,
             "machine": measure.machine(), "load_average_start": measure.load_average()}
  lines = [f"{path.name}, {_THREADS.value} threads, medians of {_REPEATS.value}, "
           f"{results['machine']['cpu']}:"]
  if lengths:
    results["prefill"] = compare(run, lengths, _REPEATS.value, vocab)
    lines += ["", "| prompt | into a window | full cache | speed-up |", "|---|---|---|---|"]
    lines += [f"| {n} tokens | {r['window_tps']:.1f} tok/s | {r['full_tps']:.1f} tok/s | "
              f"{r['speedup']:.2f}x |" for n, r in results["prefill"].items()]
  if depths:
    results["decode_steps"] = _STEPS.value
    results["decode"] = compare_decode(run, depths, _STEPS.value, _REPEATS.value, vocab)
    lines += ["", f"| depth | window | in the window | full cache ({run.kv_cache_max_len}) | "
              "speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {d} | {r['window'] or 'full'} | {r['window_tps']:.2f} tok/s | "
              f"{r['full_tps']:.2f} tok/s | {r['speedup']:.2f}x |"
              for d, r in results["decode"].items()]
  results["load_average_end"] = measure.load_average()
  console.out("\n".join(lines))
  if output is not None:
    files.write_json(output, results)
    console.out(f"wrote {output}")


if __name__ == "__main__":
  common.run(main)
