"""Runs one measurement or conversion in a fresh process: `child PEER JSON_ARGS`.

Progress goes to stderr; the result is the last stdout line, `BENCH_RESULT {json}`."""

import importlib
import json
import os
import sys
from typing import Callable

from litezoo.tools import console
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
  from litezoo.sources import weights  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench.target import spec_of  # pylint: disable=g-import-not-at-top
  spec = spec_of(args)
  found = weights.resolve(spec, args["variant"], random=True, seed=args["seed"], log=measure.log)
  return {"checkpoint": str(found.path),
          "decode_read_fraction": decode_read_fraction(spec, args["variant"])}


def decode_read_fraction(spec, variant: str) -> float:
  """The share of the weights a decode step reads: all but the embedding table (of which it
  reads one row), unless the LM head is that table. Counted on the re-authored model, built on
  the meta device (nothing allocated), so every family's own layers count."""
  import torch  # pylint: disable=g-import-not-at-top
  family = spec.family
  with torch.device("meta"):
    model = family.build(family.config(spec.variant(variant).config), 16)
  params = dict(model.named_parameters())  # a tied head appears once
  total = sum(p.numel() for p in params.values())
  embedding = model.tok_embedding.weight.numel()
  tied = "lm_head.weight" not in params
  return (total - (0 if tied else embedding)) / total


def report(job: Callable[[dict], dict], args: dict) -> int:
  """Runs `job(args)` and prints its result as the last stdout line, `BENCH_RESULT {json}`; an
  exception becomes `{"error": ...}` (the traceback goes to stderr) for the parent to record."""
  if not os.environ.get("LITEZOO_VERBOSE"):
    console.capture()  # the libraries' output stays aside; measure.log reaches the real stderr
  try:
    result = job(args)
  except Exception as e:  # pylint: disable=broad-except
    import traceback  # pylint: disable=g-import-not-at-top
    traceback.print_exc()
    result = {"error": f"{type(e).__name__}: {e}"}
  console.out(measure.RESULT_MARK + json.dumps(result))
  return 0


def main(argv: list[str]) -> int:
  job, args = argv[1], json.loads(argv[2])
  module, function = JOBS[job]
  return report(
      lambda a: getattr(importlib.import_module(f"litezoo.tools.bench.{module}"), function)(a),
      args)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
