"""Helpers the suites share: tiny checkpoints written by transformers, reference logits."""

import os
import pathlib
import subprocess
import sys
from typing import Any, Mapping

import numpy as np
import torch
import transformers

# The directory holding the `litezoo` package: the Bazel runfiles root, or the checkout's parent.
RUNFILES_ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks


def hf_model(config: Mapping[str, Any], seed: int = 0) -> transformers.PreTrainedModel:
  """The original architecture, from the plugin's own config dict, with seeded random weights."""
  torch.manual_seed(seed)
  hf_config = transformers.AutoConfig.for_model(**config)
  model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
  with torch.no_grad():  # RMSNorm weights start at exactly 1; perturb them so the map is tested
    for name, param in model.named_parameters():
      if "norm" in name:
        param.add_(torch.randn_like(param) * 0.1)
  return model.eval()


def write_checkpoint(config: Mapping[str, Any], directory: os.PathLike, seed: int = 0,
                     **save_kwargs) -> transformers.PreTrainedModel:
  """Writes a random checkpoint with transformers' own save_pretrained (safetensors)."""
  model = hf_model(config, seed)
  model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
  return model


def hf_logits(model, tokens: list[int]) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor([tokens])).logits[0].numpy()


def zoo_logits(model, tokens: list[int], kv_cache_max_len: int) -> np.ndarray:
  from litezoo.core.litert_api import kv_cache  # pylint: disable=g-import-not-at-top
  cache = kv_cache.KVCache.from_model_config(kv_cache_max_len, model.config)
  out = model(torch.tensor([tokens], dtype=torch.int32),
              torch.arange(len(tokens), dtype=torch.int32), cache)
  return out["logits"][0].numpy()


def run_tool(tool: str, *args: str, cwd: os.PathLike | None = None) -> subprocess.CompletedProcess:
  """Runs `python -m litezoo.tools.<tool>` the way `bazel run` would, capturing its output."""
  env = {**os.environ, "PYTHONPATH": str(RUNFILES_ROOT)}
  if cwd is not None:
    env["BUILD_WORKING_DIRECTORY"] = str(cwd)
  return subprocess.run([sys.executable, "-m", f"litezoo.tools.{tool}", *args], env=env,
                        capture_output=True, text=True, timeout=900, check=False)
