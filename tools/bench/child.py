"""Runs one measurement or conversion in a fresh process: `child PEER JSON_ARGS`.

Progress goes to stderr; the result is the last stdout line, `BENCH_RESULT {json}`."""

import importlib
import json
import sys

from litezoo.tools.bench import measure

# Job -> (module in litezoo.tools.bench, function). Only the job's own module is imported: the zoo's
# measuring process must not pay for torch (180 MiB of RSS) because the torch peer needs it.
JOBS = {
    "zoo": ("zoo", "measure_child"),
    "zoo-convert": ("zoo", "convert_child"),
    "torch": ("torch_eager", "measure_child"),
    "reference": ("reference", "measure_child"),
    "convert-reference": ("reference", "convert_child"),
    "litertlm-engine": ("litertlm", "engine_child"),
    "bundle-zoo": ("litertlm", "bundle_child"),
    "llamacpp": ("llamacpp", "measure_child"),
    "bandwidth": ("child", "bandwidth_child"),
    "checkpoint": ("child", "checkpoint_child"),
}


def bandwidth_child(args: dict) -> dict:
  return measure.memory_bandwidth(args["threads"], args["mib"])


def checkpoint_child(args: dict) -> dict:
  from litezoo.tools.bench import weights  # pylint: disable=g-import-not-at-top
  return {"checkpoint": str(weights.random_checkpoint(args["name"], args["config"], args["seed"],
                                                       log=measure.log))}


def main(argv: list[str]) -> int:
  job, args = argv[1], json.loads(argv[2])
  try:
    module, function = JOBS[job]
    result = getattr(importlib.import_module(f"litezoo.tools.bench.{module}"), function)(args)
  except Exception as e:  # pylint: disable=broad-except
    # The parent records the peer as failed with this reason (the traceback is on stderr).
    import traceback  # pylint: disable=g-import-not-at-top
    traceback.print_exc()
    result = {"error": f"{type(e).__name__}: {e}"}
  sys.stdout.flush()
  print(measure.RESULT_MARK + json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
