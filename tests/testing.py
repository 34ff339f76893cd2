"""Helpers the suites share: tiny checkpoints written by transformers, the re-authored model
built and loaded through the real pipeline, reference logits, tools run as users run them."""

import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Mapping

import numpy as np
import pytest
import torch
import transformers

from litezoo import pipeline
from litezoo.artifacts import manifest as manifest_lib
from litezoo.conversion import loader
from litezoo.core.spec import Signatures
from litezoo.reference.reauthored import TorchDecoder
from litezoo.sources import open_checkpoint
from litezoo.sources.random_weights import random_model

# The directory holding the `litezoo` package: the Bazel runfiles root, or the checkout's parent.
RUNFILES_ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks
# Tokens every suite can feed a tiny (256-token vocabulary) model.
PROMPT = [1, 15, 200, 7, 42, 99, 3, 128, 5, 77]
# The tiny variants' signatures in every suite that converts one: every kind (two prefill
# lengths, decode, verify_4 and verify_8, windows 16 and 32, for decode, prefill and verify, that
# a session crosses into the full cache). //tests:tinyllama_tiny_float is the tiny TinyLlama converted with them, once,
# as a Bazel action: the suites that name it in `artifacts` (and the tools they start) take it
# from the artifact cache's prebuilt layer instead of converting it again.
TINY_SIGNATURES = Signatures((8, 16), 64, verify_lengths=(4, 8), decode_windows=(16, 32),
                             prefill_windows=(16, 32), verify_windows=(16, 32))
TINY_FLAGS = ("--prefill_seq_lens=8,16", "--kv_cache_max_len=64", "--verify_lengths=4,8",
              "--decode_windows=16,32", "--prefill_windows=16,32", "--verify_windows=16,32")


def zoo_artifact(label: str, weights: pipeline.Weights | None = None,
                 required: bool = True) -> manifest_lib.Artifact | None:
  """The zoo_artifact `label` ("//tests:tinyllama_tiny_float", bazel/artifact.bzl) that Bazel
  converted and gave this test as `data`, opened with its manifest and checked (sha256, size, the
  LiteRT verifier). Tests share these instead of converting the same tiny model each.

  With `weights`, also asserts the artifact was converted from them (its manifest's checkpoint
  identity: for random weights, config and seed), so a PyTorch twin loaded from `weights` holds
  the artifact's weights.

  Missing (a test run outside Bazel, or a target without the `data`): AssertionError naming the
  target to add, or None when not `required` (the caller converts through the pipeline).
  """
  package, _, name = label.removeprefix("//").partition(":")
  path = RUNFILES_ROOT / "litezoo" / package / f"{name}.tflite"
  if not path.exists():
    assert not required, (f"{label} is not in this test's runfiles: add it to the test's `data` "
                          "in its BUILD file and run the test with `bazel test`")
    return None
  artifact = manifest_lib.open_verified(path)
  if weights is not None:
    assert dict(artifact.manifest.checkpoint) == dict(weights.identity), (
        f"{label} was converted from {dict(artifact.manifest.checkpoint)}, not from {weights}")
  return artifact


@pytest.fixture(scope="module", autouse=True)
def module_artifact_cache(tmp_path_factory):
  """A fresh artifact cache (LITEZOO_CACHE) for the whole module that imports this fixture: tools
  a test starts find the float files the module's fixtures converted and only quantize them."""
  with pytest.MonkeyPatch.context() as patch:
    root = tmp_path_factory.mktemp("cache")
    patch.setenv("LITEZOO_CACHE", str(root))
    yield root


def write_checkpoint(config: Mapping[str, Any], directory, seed: int = 0, **save_kwargs):
  """A random checkpoint written by transformers' own save_pretrained (safetensors); returns the
  transformers model it holds."""
  model = random_model(config, seed)
  model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
  return model


def family_config(spec, config: Mapping[str, Any]):
  return spec.family.config(config)


def build(spec, config: Mapping[str, Any], kv_cache_max_len: int):
  """The re-authored model of `config` (random weights)."""
  return spec.family.build(spec.family.config(config), kv_cache_max_len)


def names(spec, config: Mapping[str, Any]):
  return spec.family.tensor_names(spec.family.config(config))


def load(spec, config: Mapping[str, Any], checkpoint, kv_cache_max_len: int = 64):
  """The re-authored model with `checkpoint`'s weights, through the family's tensor names."""
  model = build(spec, config, kv_cache_max_len)
  loader.load(model, names(spec, config), open_checkpoint(checkpoint, gguf=spec.family.gguf),
              getattr(spec.family, "is_weight", lambda _: True))
  return model


def hf_logits(model, tokens: list[int]) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor([tokens])).logits[0].numpy()


def zoo_logits(model, tokens: list[int], kv_cache_max_len: int) -> np.ndarray:
  """The re-authored model's logits on `tokens`, from an empty KV cache."""
  return TorchDecoder(model, kv_cache_max_len).prefill(tokens, all_logits=True)


def check_matches_transformers(spec, variant: str = "tiny") -> None:
  """The re-authored model, loaded through the family's tensor names from the variant's random
  checkpoint (written by transformers), gives transformers' logits on the same files:
  architecture and names checked at once."""
  weights = pipeline.weights(spec, variant, random=True, log=lambda _: None)
  original, ours = pipeline.original_and_ours(spec, variant, weights, 64, log=lambda _: None)
  np.testing.assert_allclose(zoo_logits(ours, PROMPT, 64), hf_logits(original, PROMPT),
                             atol=1e-4, rtol=0)


def parameter_counts(spec, variant: str) -> tuple[int, int]:
  """(re-authored, transformers) parameter counts of a real-size variant, built on the meta
  device so nothing is allocated."""
  config = spec.variant(variant).config
  with torch.device("meta"):
    reference = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config))
    model = build(spec, config, 16)
  return (sum(p.numel() for p in model.parameters()),
          sum(p.numel() for p in reference.parameters()))


def check_parameter_count(spec, variant: str) -> None:
  """The variant's re-authored model has transformers' parameter count, and that is the
  published one (`Variant.params`, within 1% for rounding): a wrong size in the config (heads,
  layers) fails here even though both sides are built from it."""
  published = spec.variant(variant).params
  assert published, (f"{spec.name}-{variant}: fill in the published parameter count "
                     "(Variant(params=...)) from the model card")
  ours, theirs = parameter_counts(spec, variant)
  assert ours == theirs, f"re-authored {ours:,} parameters, transformers {theirs:,}"
  assert abs(ours - published) <= 0.01 * published, (
      f"{spec.name}-{variant} has {ours:,} parameters, but the model card says {published:,}: "
      "a size in the config is wrong")


def run_tool(tool: str, *args: str, cwd: os.PathLike | None = None,
             stdin: str | None = None, env: Mapping[str, str] | None = None,
             timeout: int = 900) -> subprocess.CompletedProcess:
  """Runs `python -m litezoo.tools.<tool>` the way `bazel run` would, capturing its output."""
  full_env = {**os.environ, "PYTHONPATH": str(RUNFILES_ROOT), **(env or {})}
  if cwd is not None:
    full_env["BUILD_WORKING_DIRECTORY"] = str(cwd)
  return subprocess.run([sys.executable, "-m", f"litezoo.tools.{tool}", *args], env=full_env,
                        capture_output=True, text=True, timeout=timeout, check=False,
                        input=stdin)


def one_line_error(run: subprocess.CompletedProcess, tool: str) -> str:
  """The tool's error line, asserting it failed as bad input does: exit 2, the error on one line
  of stderr (after the tool's own progress lines, if it had started work), no traceback, nothing
  on stdout."""
  assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
  lines = run.stderr.strip().splitlines()
  errors = [line for line in lines if f"{tool}: error" in line]
  assert errors == lines[-1:] and lines[-1].startswith(f"{tool}: error: "), run.stderr[-2000:]
  assert not run.stdout.strip(), run.stdout[-2000:]
  assert "Traceback" not in run.stderr
  return lines[-1]


def torch_modules_imported_by(*modules: str) -> list[str]:
  """The torch modules a fresh interpreter has loaded after importing `modules`."""
  return modules_imported_by("torch", *modules)


def modules_imported_by(package: str, *modules: str) -> list[str]:
  """The modules of `package` a fresh interpreter has loaded after importing `modules`."""
  code = (f"import json, sys; import {', '.join(modules)}; "
          f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == {package!r})))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(RUNFILES_ROOT)}, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])
