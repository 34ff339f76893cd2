"""ExecuTorch as a peer: PyTorch's own on-device runtime, installed into a venv of its own by
tools/setup_executorch.sh (opt-in: its wheel pins torch, torchao, coremltools and hydra).

`executorch`: the shared checkpoint exported by ExecuTorch's own Llama export (export_llama_lib,
what its export_llama CLI runs): XNNPACK delegate, KV cache with the custom SDPA op, fp32 compute,
at the qmode matching the recipe (8da8w per channel against int8, 8da4w in blocks against the int4
block recipes, the embedding table at the same width). The HF -> ExecuTorch checkpoint remap is
the zoo's (executorch_child.py): the wheel's converters need torchtune and tie the head. Measured
by the same protocol as the zoo (measure.measure_session) in a fresh process of the ExecuTorch
venv, which drives the .pte's forward through ExecuTorch's Python runtime bindings.
"""

import json
import os
import pathlib
import re

from litezoo.artifacts import files
from litezoo.tools.bench import executorch_child, measure
from litezoo.tools.bench.target import Skipped, Target, artifact_info, converted

VERSION = "1.5.1"  # what tools/setup_executorch.sh installs
SETUP = "tools/setup_executorch.sh"
_CHILD = "litezoo.tools.bench.executorch_child"


def default_dir() -> pathlib.Path:
  return files.cache_root() / "executorch" / VERSION


def venv_python(root: pathlib.Path | None = None) -> pathlib.Path:
  """The ExecuTorch venv's python; raises Skipped, naming the setup command, when it is missing."""
  root = root or default_dir()
  python = root / "venv" / "bin" / "python"
  if not (root / "DONE").exists() or not python.exists():
    raise Skipped(f"ExecuTorch {VERSION} is not installed in {root}: run {SETUP} (opt-in, its own "
                  "venv from PyPI, about 2 minutes and 1.5 GB)")
  return python


def quant_mode(recipe: str) -> dict | None:
  """ExecuTorch's export quantization matching a zoo recipe, or None. Like llamacpp.gguf_type,
  the base recipe decides (levels16, gptq, ... change values, not the layout):
  {"qmode", "group_size" (0: per channel), "embedding_quantize" ("bits,group"), "tag"}."""
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  base = recipes.parse(recipe).base
  if base == "none":
    return {"qmode": None, "group_size": None, "embedding_quantize": None, "tag": "fp32"}
  if base == "dynamic_int8":  # int8 dynamic activations, int8 per-channel weights: XNNPACK's QD8
    return {"qmode": "8da8w", "group_size": 0, "embedding_quantize": "8,0", "tag": "8da8w"}
  if base == "weight_only_int8":
    return {"qmode": "int8", "group_size": None, "embedding_quantize": "8,0", "tag": "int8"}
  block = re.fullmatch(r"dynamic_int4_block(\d+)", base)
  if block:
    group = int(block.group(1))
    return {"qmode": "8da4w", "group_size": group, "embedding_quantize": f"4,{group}",
            "tag": f"8da4w-g{group}"}
  return None  # fp16: ExecuTorch advises against fp16 on XNNPACK; no like-for-like export


def _env() -> dict:
  # The project's package alone: the ExecuTorch venv must not see the project venv's packages.
  return {**os.environ, "PYTHONPATH": str(measure.PACKAGE_ROOT)}


def run_job(python: pathlib.Path, job: str, args: dict, cwd: pathlib.Path,
            progress: bool = True) -> tuple[dict | None, str, measure.Finished]:
  """Runs executorch_child's `job` in the ExecuTorch venv; (result, error text, the run)."""
  os.sync()  # files an earlier step wrote are flushed now, not while this one is timed
  # cwd is never tools/bench, where `import executorch` would find this file, nor a directory
  # named executorch (see pte_path).
  done = measure.run_measured([str(python), "-m", _CHILD, job, json.dumps(args)], env=_env(),
                              cwd=str(cwd), progress=progress)
  for line in reversed(done.stdout.splitlines()):
    if line.startswith(measure.RESULT_MARK):
      result = json.loads(line[len(measure.RESULT_MARK):])
      if "error" in result:
        return None, result["error"], done
      return result, "", done
  tail = " | ".join(done.stdout.strip().splitlines()[-3:])
  return None, f"the ExecuTorch process exited with {done.returncode}: {tail}", done


def pte_path(target: Target, mode: dict, max_seq_len: int) -> pathlib.Path:
  # Not a directory named `executorch`: the export runs there, and ExecuTorch's model factory
  # imports `examples.models...` instead of `executorch.examples...` when the cwd ends so.
  return (target.work / "et" /
          f"{target.name}-{mode['tag']}-s{max_seq_len}-kv{target.kv_cache_max_len}.pte")


def run(target: Target, root: pathlib.Path | None = None) -> dict:
  python = venv_python(root)
  mode = quant_mode(target.recipe)
  if mode is None:
    raise Skipped(f"no ExecuTorch export matches {target.recipe} (int8, int4 blocks and float "
                  "recipes have one)")
  try:
    executorch_child.params(target.config)
  except ValueError as e:
    raise Skipped(str(e)) from e
  # One call takes the zoo's longest prefill signature (ExecuTorch's dynamic token dimension ends
  # at max_seq_len - 1); longer prompts (the decode depths' context) go in chunks of it.
  max_seq_len = max(target.prefill_lengths) + 1
  pte = pte_path(target, mode, max_seq_len)
  pte.parent.mkdir(parents=True, exist_ok=True)
  args = {"checkpoint": str(target.checkpoint), "out": str(pte), "max_seq_len": max_seq_len,
          "max_context_len": target.kv_cache_max_len,
          **{k: mode[k] for k in ("qmode", "group_size", "embedding_quantize")}}

  def convert() -> measure.Finished:
    _, error, done = run_job(python, "export", args, pte.parent)
    if error:
      target.log(f"  executorch: export failed: {error}")
    return done

  what = (f"ExecuTorch {VERSION} export_llama (XNNPACK, KV cache + custom SDPA, qmode "
          f"{mode['qmode'] or 'none'}" + (f", group {mode['group_size']}" if mode["group_size"]
                                          else "") + ")")
  record = converted(target, pte, convert, what)
  measured, error, done = run_job(python, "measure", {
      "pte": str(pte), "vocab": target.vocab(), "plan": target.plan.to_json()}, pte.parent)
  if measured is None:
    raise RuntimeError(error)
  measured.setdefault("process_peak_rss_bytes", done.peak_rss_bytes)
  quant = mode["qmode"] or "fp32"
  if mode["group_size"]:
    quant += f" g{mode['group_size']}"
  return {"engine": f"ExecuTorch {VERSION} (XNNPACK, {quant})", "artifact": artifact_info(pte, "pte"),
          "conversion": {**record, **{k: mode[k] for k in ("qmode", "group_size",
                                                             "embedding_quantize")},
                         "max_seq_len": max_seq_len}, **measured}
