"""Google's LiteRT-LM engine (litert-lm-api) as a peer, on two `.litertlm` files:
- `litertlm`: the zoo's own bundle (core/bundle.py write_bundles) of the zoo's conversion;
- `export_hf`: litert-torch's direct Hugging Face export (`litert_torch.generative.export_hf`) of
  the same checkpoint, bundled by that exporter.
The engine's own benchmark mode reports init time, time to first token, prefill and decode tok/s.
"""

import json
import pathlib
import shutil
import statistics
import sys

from litezoo.tools.bench import measure, zoo
from litezoo.tools.bench.target import Skipped, Target, artifact_info, converted

# The zoo's recipes as ai-edge-quantizer recipe functions, export_hf's --quantization_recipe.
EXPORT_HF_RECIPES = {"dynamic_int8": "dynamic_wi8_afp32", "weight_only_int8": "weight_only_wi8_afp32",
                     "dynamic_int4_block32": "dynamic_wi4_afp32",
                     "dynamic_int4_block128": "dynamic_wi4_afp32",
                     "dynamic_int4_channel": "dynamic_wi4_afp32"}


def run_zoo_bundle(target: Target) -> dict:
  tflite, zoo_record = zoo.convert(target)
  out = target.work / "litertlm"
  out.mkdir(parents=True, exist_ok=True)
  bundle = out / (tflite.stem + ".litertlm")
  args = {"model": target.spec.name, "variant": target.variant, "tflite": str(tflite),
          "checkpoint": str(target.checkpoint), "output_dir": str(out),
          "config_source": target.config_source}
  cmd = [sys.executable, "-m", "litezoo.tools.bench.child", "bundle-zoo", json.dumps(args)]
  record = converted(target, bundle, lambda: measure.run_measured(cmd, env=measure.child_env(),
                                                                 progress=True),
                     "zoo .litertlm bundle")
  record = {**record, "tflite_conversion": zoo_record}
  return {"engine": "LiteRT-LM (litert-lm-api)", "artifact": artifact_info(bundle, "litertlm"),
          "conversion": record, **_engine(target, bundle, "litertlm")}


def run_export_hf(target: Target) -> dict:
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  base = recipes.parse(target.recipe).base
  if base == "none":
    quant = []
  elif base in EXPORT_HF_RECIPES:
    quant = [f"--quantization_recipe={EXPORT_HF_RECIPES[base]}"]
  else:
    raise Skipped(f"no export_hf quantization recipe matches {target.recipe}")
  out = target.work / "export_hf"
  bundle = out / "model.litertlm"
  cmd = [sys.executable, "-m", "litert_torch.generative.export_hf", str(target.checkpoint),
         str(out), f"--prefill_lengths=[{','.join(map(str, target.prefill_lengths))}]",
         f"--cache_length={target.kv_cache_max_len}", "--bundle_litert_lm=True", *quant]
  record = converted(target, bundle, lambda: measure.run_measured(cmd, env=measure.child_env()),
                     "litert_torch.generative.export_hf")
  return {"engine": "LiteRT-LM (litert-lm-api)", "artifact": artifact_info(bundle, "litertlm"),
          "conversion": {**record, "recipe": quant[0].split("=")[1] if quant else "none"},
          **_engine(target, bundle, "export_hf")}


def _engine(target: Target, bundle: pathlib.Path, peer: str) -> dict:
  cache_dir = target.work / f"{peer}-engine-cache"
  shutil.rmtree(cache_dir, ignore_errors=True)  # the first start packs weights, later ones map
  cache_dir.mkdir(parents=True)
  measured, error = measure.run_child("litertlm-engine", {
      "model": str(bundle), "plan": target.plan.to_json(), "cache_dir": str(cache_dir),
      "kv_cache_max_len": target.kv_cache_max_len})
  if measured is None:
    raise RuntimeError(error)
  return measured


def bundle_child(args: dict) -> dict:
  # pylint: disable=g-import-not-at-top
  from litezoo.artifacts import bundle
  from litezoo.artifacts.manifest import Artifact
  from litezoo.runtime import tokenizer
  from litezoo.tools.bench.target import spec_of
  spec = spec_of(args)
  checkpoint = pathlib.Path(args["checkpoint"])
  written = bundle.write_bundles(Artifact.read(args["tflite"]), tokenizer.load(checkpoint),
                                 checkpoint, pathlib.Path(args["output_dir"]),
                                 formats=("litertlm",), litertlm_type=spec.family.litertlm_type,
                                 log=measure.log)
  return {"written": str(written["litertlm"])}


def _greedy_sessions(litert_lm) -> None:
  """Benchmark sessions sample top-k 1 (greedy), as tests/bundle_test.py does: left to the bundle,
  the zoo's GREEDY sampler type fails on the CPU engine ("UNIMPLEMENTED: Sampler type: 3")."""
  from litert_lm import _ffi, utils  # pylint: disable=g-import-not-at-top
  lib = _ffi._get_lib()  # pylint: disable=protected-access
  create = lib.litert_lm_engine_create_session

  def create_session(engine, config):
    if config is None:
      config = lib.litert_lm_session_config_create()
      params = utils._sampler_config_to_params(lib, litert_lm.SamplerConfig(top_k=1))  # pylint: disable=protected-access
      lib.litert_lm_session_config_set_sampler_params(config, params)
      lib.litert_lm_sampler_params_delete(params)
    return create(engine, config)

  lib.litert_lm_engine_create_session = create_session


def engine_child(args: dict) -> dict:
  import litert_lm  # pylint: disable=g-import-not-at-top
  plan = measure.Plan.from_json(args["plan"])
  litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
  _greedy_sessions(litert_lm)

  def bench(prefill: int):
    return litert_lm.Benchmark(
        model_path=args["model"], backend=litert_lm.Backend.CPU(thread_count=plan.threads),
        prefill_tokens=prefill, decode_tokens=plan.decode_tokens, cache_dir=args["cache_dir"],
        max_num_tokens=args["kv_cache_max_len"]).run()

  cold = bench(plan.ttft_prompt)  # packs the weights into cache_dir
  measure.log(f"  litert-lm: first start {cold.init_time_in_second:.2f} s")
  result = {"load_s": cold.init_time_in_second, "first_call_s": None,
            "cold_ttft_s": cold.time_to_first_token_in_second,
            "prefill_tps": {}, "decode_tps": {}}
  runs = {}
  for length in sorted(set(plan.prefill_lengths) | set(plan.depths) | {plan.ttft_prompt}):
    if length + plan.decode_tokens > args["kv_cache_max_len"]:
      continue
    runs[length] = [bench(length) for _ in range(plan.repeats)]
    measure.log(f"  litert-lm: prefill {length}: "
                f"{statistics.median(r.last_prefill_tokens_per_second for r in runs[length]):.1f}"
                f" tok/s, then decode "
                f"{statistics.median(r.last_decode_tokens_per_second for r in runs[length]):.2f}"
                " tok/s")
  for length in plan.prefill_lengths:
    if length in runs:
      result["prefill_tps"][str(length)] = statistics.median(
          r.last_prefill_tokens_per_second for r in runs[length])
  for depth in plan.depths:
    if depth in runs:
      result["decode_tps"][str(depth)] = statistics.median(
          r.last_decode_tokens_per_second for r in runs[depth])
  result["ttft_s"] = statistics.median(r.time_to_first_token_in_second
                                       for r in runs.get(plan.ttft_prompt, [cold]))
  warm = [r.init_time_in_second for rs in runs.values() for r in rs]
  result["second_start"] = {"load_s": statistics.median(warm) if warm else None}
  result["decode_tokens_generated"] = min(
      (r.last_decode_token_count for rs in runs.values() for r in rs), default=None)
  if not result["decode_tokens_generated"]:
    raise RuntimeError("the engine decoded no tokens (see its log above)")
  result["runtime_peak_rss_bytes"] = measure.peak_rss_bytes()
  return result
