"""The zoo's own path: tools/convert on the shared checkpoint, run by runtime/runner.py.

Peers: `zoo` (the default CompiledModel backend: a cold start packs the weights into a new XNNPACK
weight cache, the measured session maps them) and `zoo-interpreter` (the Interpreter backend, the
same file)."""

import pathlib
import shutil
import time

from litezoo.tools.bench import measure
from litezoo.tools.bench.target import Target, artifact_info


def convert(target: Target) -> tuple[pathlib.Path, dict]:
  """The zoo's pipeline (litezoo.pipeline.artifact, as every tool) on the shared random weights,
  in its own process; the artifact cache reuses a conversion while nothing that shapes the file
  changed."""
  args = {"model": target.spec.name, "variant": target.variant, "recipe": target.recipe,
          "seed": target.seed, "signatures": target.zoo_signatures,
          "config_source": target.config_source}
  target.log("zoo conversion")
  done, error = measure.run_child("zoo-convert", args)
  if done is None:
    raise RuntimeError(f"zoo conversion failed: {error}")
  return pathlib.Path(done["path"]), done["conversion"]


def convert_child(args: dict) -> dict:
  """Converts unless an earlier run did; the time and peak RSS come from the manifest."""
  # pylint: disable=g-import-not-at-top
  from litezoo import pipeline
  from litezoo.artifacts import manifest
  from litezoo.core.spec import Signatures
  from litezoo.tools.bench.target import spec_of
  spec = spec_of(args)
  signatures = Signatures.from_dict(args["signatures"])
  weights = pipeline.weights(spec, args["variant"], random=True, seed=args["seed"],
                             log=measure.log)
  converted = []
  artifact = pipeline.artifact(spec, args["variant"], weights, recipe=args["recipe"],
                               signatures=signatures, log=lambda m: (converted.append(m),
                                                                     measure.log(m)))
  conversion = artifact.manifest.conversion
  float_record = {}
  if "quantized_from" in conversion:  # the float conversion and the quantization, added up
    float_record = dict(conversion["quantized_from"]["conversion"])
  del manifest
  if "seconds" not in conversion:  # a release's or zoo_artifact's file: built without timings
    return {"path": str(artifact.path), "conversion": None}
  return {"path": str(artifact.path), "conversion": {
      "seconds": round(conversion["seconds"] + float_record.get("seconds", 0), 2),
      # The float export's two processes run at once: the machine needs both peaks.
      "peak_rss_bytes": max(_machine_peak(conversion), _machine_peak(float_record)),
      "export_processes": max(r.get("export_processes", 1) for r in (conversion, float_record)),
      "stage_seconds": {**float_record.get("stage_seconds", {}), **conversion["stage_seconds"]},
      "reused": not converted}}


def _machine_peak(record: dict) -> int:
  """A conversion's peak RSS, with the second export process's added where there was one (an
  upper bound: the forked process shares the parent's pages until it writes them)."""
  return record.get("peak_rss_bytes", 0) + record.get("export_child_peak_rss_bytes", 0)


def run(target: Target, backend: str) -> dict:
  path, record = convert(target)
  args = {"model": str(path), "backend": backend, "plan": target.plan.to_json(),
          "vocab": target.vocab()}
  result = {"engine": f"litezoo runtime/runner.py ({backend})", "artifact": artifact_info(path, "tflite"),
            "conversion": record}
  if backend != "compiled":
    measured, error = measure.run_child("zoo", args)
    if measured is None:
      raise RuntimeError(error)
    return {**result, **measured}
  # A fresh weight-cache directory: a cold start packs the weights and writes it (its load, first
  # call, prompt and peak RSS are recorded), then the measured session starts the way every later
  # run does, mapping the packed weights. Speed is measured warm, so flushing the freshly written
  # 1 GB cache does not overlap the timed steps.
  cache_root = target.work / "zoo-weight-cache"
  shutil.rmtree(cache_root, ignore_errors=True)
  env = {"LITEZOO_CACHE": str(cache_root)}
  cold, error = measure.run_child("zoo", {**args, "start_only": True}, env)
  if cold is None:
    raise RuntimeError(f"cold start: {error}")
  cache_files = list((cache_root / "xnnpack").glob("*.xnnpack"))
  cold["weight_cache_bytes"] = sum(f.stat().st_size for f in cache_files)
  measured, error = measure.run_child("zoo", args, env)
  if measured is None:
    raise RuntimeError(error)
  return {**result, **measured, "cold_start": cold}


def measure_child(args: dict) -> dict:
  from litezoo.runtime import runner  # pylint: disable=g-import-not-at-top
  plan = measure.Plan.from_json(args["plan"])

  class Session:
    def __init__(self):
      self.runner = runner.Runner(args["model"], num_threads=plan.threads,
                                  backend=args["backend"])
      self.kv_cache_max_len = self.runner.kv_cache_max_len

    def reset(self):
      self.runner.reset()

    def prefill(self, tokens):
      return self.runner.prefill(tokens)[-1]

    def decode(self, token):
      return self.runner.decode(token)

  if args.get("start_only"):
    return start_only(Session, plan, args["vocab"])
  return measure.measure_session(Session, plan, args["vocab"], f"zoo-{args['backend']}")


def start_only(make, plan: measure.Plan, vocab: int) -> dict:
  """A start: load, first call and one prompt, and the peak RSS they take."""
  start = time.perf_counter()
  session = make()
  load_s = time.perf_counter() - start
  t0 = time.perf_counter()
  session.decode(1)
  first_call_s = time.perf_counter() - t0
  session.reset()
  t0 = time.perf_counter()
  session.prefill([5] * min(plan.ttft_prompt, session.kv_cache_max_len))
  ttft = time.perf_counter() - t0
  measure.log(f"  cold start: load {load_s:.2f} s, first call {first_call_s:.2f} s")
  return {"load_s": load_s, "first_call_s": first_call_s, "ttft_s": ttft,
          "runtime_peak_rss_bytes": measure.peak_rss_bytes()}
