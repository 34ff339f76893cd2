"""Fuzzes the zoo's readers of hostile files (GGUF, safetensors and sharded indexes) and its
recipe parser with atheris for a fixed budget, and reports executions, crashes and hangs.

  bazel run //fuzz:fuzz -- --target=gguf --seconds=600
  bazel run //fuzz:fuzz -- --target=all --seconds=120 --seed=7

Only the error type each target documents may escape (see fuzz/targets.py); a crash or hang
input is saved under --artifacts_dir and the run exits non-zero. The default test suite runs a
short fixed-seed slice of every target (tests/hardening_fuzz_test.py).
"""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from absl import app, flags

ROOT = pathlib.Path(__file__).absolute().parents[2]  # holds the `litezoo` package (runfiles too)
TARGETS = ("gguf", "safetensors", "recipe")


@dataclasses.dataclass
class Result:
  target: str
  executions: int
  seconds: float
  crashes: int
  hangs: int
  finding: str = ""  # the saved input of a crash or hang

  def line(self) -> str:
    return (f"{self.target}: {self.executions} executions in {self.seconds:.0f} s, "
            f"crashes {self.crashes}, hangs {self.hangs}" +
            (f" (input saved: {self.finding})" if self.finding else ""))


def write_seeds(target: str, directory: pathlib.Path) -> None:
  """Valid inputs for the fuzzer to start from, written by the formats' own libraries."""
  directory.mkdir(parents=True, exist_ok=True)
  if target == "gguf":
    import logging  # pylint: disable=g-import-not-at-top
    import gguf  # pylint: disable=g-import-not-at-top
    logging.getLogger("gguf").setLevel(logging.WARNING)  # a line per file otherwise
    import numpy as np  # pylint: disable=g-import-not-at-top
    q = gguf.GGMLQuantizationType
    for i, qtype in enumerate((q.F32, q.F16, q.Q8_0, q.Q4_0)):
      writer = gguf.GGUFWriter(str(directory / f"seed{i}.gguf"), "llama")
      writer.add_block_count(2)
      writer.add_head_count(4)
      writer.add_head_count_kv(2)
      weights = np.linspace(-1, 1, 2 * 32, dtype=np.float32).reshape(2, 32)
      if qtype in (q.F32, q.F16):
        writer.add_tensor("blk.0.attn_q.weight", weights.astype(
            np.float32 if qtype == q.F32 else np.float16))
      else:
        writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(weights, qtype),
                          raw_dtype=qtype)
      writer.add_tensor("output_norm.weight", np.ones(8, np.float32))
      writer.write_header_to_file()
      writer.write_kv_data_to_file()
      writer.write_tensors_to_file()
      writer.close()
  elif target == "safetensors":
    import torch  # pylint: disable=g-import-not-at-top
    from safetensors.torch import save  # pylint: disable=g-import-not-at-top
    shard = save({"a": torch.arange(4.0), "b": torch.ones(2, 2, dtype=torch.float16)})
    (directory / "single").write_bytes(b"\0" + shard)
    index = {"weight_map": {"a": "model-00001-of-00001.safetensors",
                            "b": "model-00001-of-00001.safetensors"}}
    (directory / "sharded").write_bytes(b"\1" + json.dumps(index).encode() + b"\0" + shard)
  else:
    for i, text in enumerate(("dynamic_int8", "dynamic_int4_block32,embedding=int8",
                              "none,feedforward=fp16,attention=int8", "int4")):
      (directory / f"seed{i}").write_text(text)


def run_target(target: str, *, seconds: int = 0, runs: int = 0, seed: int = 1,
               timeout: int = 10, artifacts_dir: pathlib.Path | None = None,
               log=print) -> Result:
  """Fuzzes one target in a subprocess for `seconds` (or exactly `runs` inputs)."""
  with tempfile.TemporaryDirectory(prefix=f"litezoo-fuzz-{target}-") as work:
    work = pathlib.Path(work)
    corpus, seeds = work / "corpus", work / "seeds"
    corpus.mkdir()
    write_seeds(target, seeds)
    found = pathlib.Path(artifacts_dir or work / "findings")
    found.mkdir(parents=True, exist_ok=True)
    budget = [f"-runs={runs}"] if runs else [f"-max_total_time={seconds}"]
    command = [sys.executable, "-m", "litezoo.fuzz.targets", target, *budget, f"-seed={seed}",
               f"-timeout={timeout}", "-rss_limit_mb=4096", "-print_final_stats=1",
               f"-artifact_prefix={found}/{target}-", str(corpus), str(seeds)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log(f"fuzzing {target} ({f'{runs} runs' if runs else f'{seconds} s'}, seed {seed})")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
  out = proc.stderr + proc.stdout
  executions = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
  elapsed = re.findall(r"Done \d+ runs in (\d+) second", out)
  hang = "libFuzzer: timeout" in out
  crash = proc.returncode != 0 and not hang
  finding = re.findall(r"Test unit written to (\S+)", out)
  if proc.returncode != 0 and not (crash or hang):
    crash = True
  result = Result(target, int(executions[-1]) if executions else 0,
                  float(elapsed[-1]) if elapsed else float(seconds), int(crash), int(hang),
                  finding[-1] if finding and (crash or hang) else "")
  if crash or hang:
    log(out[-4000:])  # the traceback or libFuzzer's report
  return result


_TARGET = flags.DEFINE_enum("target", "all", ["all", *TARGETS], "What to fuzz.")
_SECONDS = flags.DEFINE_integer("seconds", 60, "Budget per target.")
_RUNS = flags.DEFINE_integer("runs", 0, "Exactly this many inputs per target instead.")
_SEED = flags.DEFINE_integer("seed", 1, "libFuzzer's seed (a run is repeatable with --runs).")
_TIMEOUT = flags.DEFINE_integer("timeout", 10, "Seconds one input may take before it is a hang.")
_ARTIFACTS = flags.DEFINE_string("artifacts_dir", "fuzz-findings", "Where crash inputs go.")


def main(argv):
  del argv
  artifacts_dir = pathlib.Path(os.environ.get("BUILD_WORKING_DIRECTORY", ".")) / _ARTIFACTS.value
  results = [run_target(t, seconds=_SECONDS.value, runs=_RUNS.value, seed=_SEED.value,
                        timeout=_TIMEOUT.value, artifacts_dir=artifacts_dir)
             for t in (TARGETS if _TARGET.value == "all" else (_TARGET.value,))]
  for r in results:
    print(r.line())
  return 1 if any(r.crashes or r.hangs for r in results) else 0


if __name__ == "__main__":
  app.run(main)
