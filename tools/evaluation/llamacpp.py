"""llama.cpp's rows in tools/evaluate's table: the same GGUF source, the same text.

The model's GGUF is requantized with `llama-quantize --allow-requantize` to F16 (llama.cpp's float
baseline of these weights), and F16 to Q8_0, Q4_0 and Q4_K_M; each is scored by `llama-perplexity
-c <window> --chunks <n>` on the evaluation text and reported relative to that F16. llama-perplexity
scores the second half of each chunk (its own protocol), so only the relative change compares with
the zoo's rows, not the absolute perplexity. The binaries come from the opt-in
tools/setup_llamacpp.sh; without them, or without a GGUF source, the rows are skipped with the
reason. GGUFs and scores are cached under the cache root by source sha256, text and chunks.
"""

import hashlib
import json
import os
import pathlib
import re
import subprocess
from typing import Callable

from litezoo.artifacts import files

VERSION = "0.3.36"  # the llama-cpp-python sdist tools/setup_llamacpp.sh builds
TYPES = ("Q8_0", "Q4_0", "Q4_K_M")
_FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


class Skipped(Exception):
  """llama.cpp's rows cannot be made here; the message says why."""


def binaries(root: pathlib.Path | None = None) -> pathlib.Path:
  """The directory of llama-quantize and llama-perplexity; raises Skipped if not built."""
  root = root or files.cache_root() / "llama.cpp" / VERSION
  for tool in ("llama-quantize", "llama-perplexity"):
    if not (root / "bin" / tool).exists():
      raise Skipped(f"llama.cpp's {tool} is not built in {root}: run tools/setup_llamacpp.sh "
                    "(opt-in, builds it from the llama-cpp-python source on PyPI)")
  return root / "bin"


def _run(args: list, bin_dir: pathlib.Path) -> str:
  env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
      [str(bin_dir)] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])}
  done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True,
                        check=False)
  if done.returncode:
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"{pathlib.Path(args[0]).name} failed ({done.returncode}): {tail[0]}")
  return done.stdout + done.stderr


def evaluate(source: pathlib.Path, text: pathlib.Path, window: int, chunks: int, threads: int,
             parameters: int, log: Callable[[str], None]) -> list[dict]:
  """One row per GGUF type (F16 first): file size, bits/weight (over `parameters`, the same count
  as the zoo's rows), llama-perplexity's figure and its change vs F16. Raises Skipped."""
  bin_dir = binaries()
  if source.suffix != ".gguf":
    raise Skipped(f"llama.cpp's rows need a GGUF source; these weights are {source.name}")
  digest = hashlib.sha256(f"{files.sha256_file(source)}".encode()).hexdigest()[:16]
  work = files.cache_root() / "llamacpp-eval" / f"{source.stem}-{digest}"
  work.mkdir(parents=True, exist_ok=True)
  text_sha = files.sha256_file(text)[:12]
  rows, baseline = [], None
  for kind in ("F16", *TYPES):
    gguf = work / f"{kind}.gguf"
    if not gguf.exists():
      log(f"llama.cpp: llama-quantize to {kind}")
      with files.atomic_path(gguf) as tmp:
        if kind == "F16":
          _run([bin_dir / "llama-quantize", "--allow-requantize", source, tmp, kind, threads],
               bin_dir)
        else:
          _run([bin_dir / "llama-quantize", work / "F16.gguf", tmp, kind, threads], bin_dir)
    scored = work / f"{kind}.ppl-{text_sha}-c{window}-n{chunks}.json"
    if not scored.exists():
      log(f"llama.cpp: llama-perplexity {kind} ({chunks} chunks of {window})")
      out = _run([bin_dir / "llama-perplexity", "-m", gguf, "-f", text, "-c", window,
                  "--chunks", chunks, "-t", threads], bin_dir)
      found = _FINAL.search(out)
      if not found:
        raise RuntimeError(f"llama-perplexity printed no final estimate for {kind}")
      files.write_json(scored, {"perplexity": float(found.group(1)),
                                "stderr": float(found.group(2))})
    score = json.loads(scored.read_text())
    baseline = baseline or score["perplexity"]
    size = gguf.stat().st_size
    rows.append({
        "recipe": f"llama.cpp {kind}", "engine": "llama.cpp", "size_bytes": size,
        "bits_per_weight": size * 8 / parameters, "perplexity": score["perplexity"],
        "perplexity_stderr": score["stderr"], "perplexity_change": score["perplexity"] / baseline - 1,
        "top1_agreement": None, "mean_kl": None, "tokens": chunks * (window - window // 2 - 1),
    })
  return rows
