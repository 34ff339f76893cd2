"""Runs one measurement or conversion in a fresh process: `child PEER JSON_ARGS`.

Progress goes to stderr; the result is the last stdout line, `BENCH_RESULT {json}`."""

import json
import sys

from litezoo.tools.bench import litertlm, llamacpp, measure, reference, torch_eager, weights, zoo

JOBS = {
    "zoo": zoo.measure_child,
    "zoo-convert": zoo.convert_child,
    "torch": torch_eager.measure_child,
    "reference": reference.measure_child,
    "convert-reference": reference.convert_child,
    "litertlm-engine": litertlm.engine_child,
    "bundle-zoo": litertlm.bundle_child,
    "llamacpp": llamacpp.measure_child,
    "bandwidth": lambda a: measure.memory_bandwidth(a["threads"], a["mib"]),
    "checkpoint": lambda a: {"checkpoint": str(weights.random_checkpoint(
        a["name"], a["config"], a["seed"], log=measure.log))},
}


def main(argv: list[str]) -> int:
  job, args = argv[1], json.loads(argv[2])
  try:
    result = JOBS[job](args)
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
