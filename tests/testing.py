"""Helpers the suites share: tiny checkpoints written by transformers, reference logits."""

import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Mapping

import numpy as np
import torch
import transformers

from litezoo.core import reference

# The directory holding the `litezoo` package: the Bazel runfiles root, or the checkout's parent.
RUNFILES_ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks


# The original model and tiny checkpoints come from core, which verify uses too.
hf_model = reference.random_model  # noqa
write_checkpoint = reference.write_random_checkpoint


def hf_logits(model, tokens: list[int]) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor([tokens])).logits[0].numpy()


def zoo_logits(model, tokens: list[int], kv_cache_max_len: int) -> np.ndarray:
  """The re-authored model's logits on `tokens`, from an empty KV cache."""
  from litezoo.core import verify  # pylint: disable=g-import-not-at-top
  return verify.TorchSession(model, kv_cache_max_len).feed(tokens)


def check_matches_transformers(spec, tmp_path, variant: str = "tiny") -> None:
  """The re-authored model, loaded through the plugin's tensor names from a checkpoint written by
  transformers, gives transformers' logits: architecture and names checked at once."""
  from litezoo.core import checkpoint, loader  # pylint: disable=g-import-not-at-top
  config = spec.variant(variant).config
  reference = write_checkpoint(config, tmp_path)
  model = spec.build(config, 64)
  loader.load(model, spec.tensor_names, checkpoint.open_checkpoint(tmp_path), log=lambda _: None)
  tokens = [1, 15, 200, 7, 42, 99, 3, 128, 5, 77]
  np.testing.assert_allclose(zoo_logits(model, tokens, 64), hf_logits(reference, tokens),
                             atol=1e-4, rtol=0)


def parameter_counts(spec, variant: str) -> tuple[int, int]:
  """(re-authored, transformers) parameter counts of a real-size variant, built on the meta
  device so nothing is allocated."""
  config = spec.variant(variant).config
  with torch.device("meta"):
    reference = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config))
    model = spec.build(config, 16)
  return (sum(p.numel() for p in model.parameters()),
          sum(p.numel() for p in reference.parameters()))


def run_tool(tool: str, *args: str, cwd: os.PathLike | None = None) -> subprocess.CompletedProcess:
  """Runs `python -m litezoo.tools.<tool>` the way `bazel run` would, capturing its output."""
  env = {**os.environ, "PYTHONPATH": str(RUNFILES_ROOT)}
  if cwd is not None:
    env["BUILD_WORKING_DIRECTORY"] = str(cwd)
  return subprocess.run([sys.executable, "-m", f"litezoo.tools.{tool}", *args], env=env,
                        capture_output=True, text=True, timeout=900, check=False)


def torch_modules_imported_by(*modules: str) -> list[str]:
  """The torch modules a fresh interpreter has loaded after importing `modules`."""
  code = (f"import json, sys; import {', '.join(modules)}; "
          "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(RUNFILES_ROOT)}, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])
