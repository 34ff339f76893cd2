"""Conformance: every registered plugin's tiny variant, and a tiny checkpoint of every model type
the zoo imports without a plugin (tests/family_configs.py, imported by its config.json alone as
`--checkpoint=DIR` does), end to end, against their references.

For each model: the re-authored PyTorch model matches transformers on a checkpoint written by
transformers (architecture + tensor names); the float .tflite matches PyTorch through every prefill
signature and decode steps (conversion); the int8 .tflite keeps the greedy tokens. A new plugin gets
all of it for free. LITEZOO_CONFORMANCE_MODELS=a,b limits the run to some models.

The imported model types share the configurable decoder's conversion path, so the default suite
(//tests:conformance_test) checks their PyTorch models against transformers and converts only the
registered plugins; //tests:conformance_imported_test (integration tier) converts the imported
ones. LITEZOO_CONFORMANCE_CONVERT=plugins|imported picks the converted set (unset: all).
"""

import functools
import os

import numpy as np
import pytest

from litezoo import pipeline
from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.runtime import runner
from litezoo.sources import random_weights
from litezoo.tests import family_configs, testing

REGISTRY = registry.Registry()


def _models(convert: str) -> tuple[list[str], list[str]]:
  """The models to check, and of them the ones to convert: this shard's, if Bazel shards."""
  chosen = os.environ.get("LITEZOO_CONFORMANCE_MODELS")
  models = [m for m in [*REGISTRY.names(), *family_configs.TINY]
            if not chosen or m in chosen.split(",")]
  # Bazel shards this suite by model (shard_count in tests/BUILD), so models run in parallel.
  if os.environ.get("TEST_TOTAL_SHARDS"):
    models = models[int(os.environ["TEST_SHARD_INDEX"])::int(os.environ["TEST_TOTAL_SHARDS"])]
    if os.environ.get("TEST_SHARD_STATUS_FILE"):
      open(os.environ["TEST_SHARD_STATUS_FILE"], "w").close()  # sharding is understood
  if convert not in ("", "plugins", "imported"):
    raise ValueError(f"LITEZOO_CONFORMANCE_CONVERT={convert!r}: use plugins, imported or unset")
  converted = [m for m in models if not convert
               or (m in family_configs.TINY) == (convert == "imported")]
  return models, converted


MODELS, CONVERTED = _models(os.environ.get("LITEZOO_CONFORMANCE_CONVERT", ""))
# Every kind of signature once: prefill 16, decode, verify_8, and a window of 32 (prefill and
# decode) that the decode steps below cross into the full cache. The tiny TinyLlama takes the suites' shared set
# instead (two of each kind; converted once for every suite, //tests:tinyllama_tiny_float). The
# int8 file is the float one quantized.
SIGNATURES = Signatures((16,), 64, verify_lengths=(8,), decode_windows=(32,),
                        prefill_windows=(32,), verify_windows=(32,))
SHARED = {"tinyllama": testing.TINY_SIGNATURES}
KV_CACHE = SIGNATURES.kv_cache_max_len
assert all(s.kv_cache_max_len == KV_CACHE for s in SHARED.values())
FLOAT_ATOL = 1e-4  # float32 .tflite vs PyTorch, on logits of magnitude ~1
INT8_ATOL = 0.25   # dynamic_int8 vs float, measured ~0.02-0.05 on these tiny models
DECODE_STEPS = 6


class Case:
  """One model's tiny variant: checkpoint, re-authored model, converted files."""

  def __init__(self, name):
    if name in family_configs.TINY:  # no plugin: a checkpoint transformers writes, read by config
      directory = random_weights.checkpoint(f"conformance-{name}", family_configs.TINY[name], 0,
                                            log=lambda _: None)
      self.spec = pipeline.checkpoint_spec(directory, log=lambda _: None)
      self.variant = pipeline.CHECKPOINT_VARIANT
      weights = pipeline.weights(self.spec, self.variant, directory, log=lambda _: None)
    else:
      self.spec = REGISTRY.get(name)
      self.variant = next(v for v, var in self.spec.variants.items() if var.random_weights)
      # The one pipeline every tool takes: transformers writes the random checkpoint, both
      # models load it, the artifact cache converts it.
      weights = pipeline.weights(self.spec, self.variant, log=lambda _: None)
    self.config = self.spec.variant(self.variant).config
    self.signatures = SHARED.get(name, SIGNATURES)
    self.reference, self.model = pipeline.original_and_ours(
        self.spec, self.variant, weights, KV_CACHE, log=lambda _: None)
    self.weights = weights
    vocab = self.config["vocab_size"]
    self.prompt = [int(t) for t in np.random.default_rng(0).integers(3, vocab, 16)]

  @functools.cached_property
  def artifacts(self):
    """The float and int8 conversions, made on first use (the artifact cache keeps them)."""
    return {recipe: pipeline.artifact(self.spec, self.variant, self.weights, recipe=recipe,
                                      signatures=self.signatures, log=lambda _: None)
            for recipe in ("none", "dynamic_int8")}

  @property
  def files(self):
    return {recipe: a.path for recipe, a in self.artifacts.items()}

  def torch_logits(self, tokens):
    return testing.zoo_logits(self.model, tokens, KV_CACHE)

  def torch_greedy(self, prompt, steps):
    tokens = list(prompt)
    for _ in range(steps):
      tokens.append(int(self.torch_logits(tokens)[-1].argmax()))
    return tokens[len(prompt):]


_CASES: dict[str, Case] = {}


def _case(name: str) -> Case:
  if name not in _CASES:
    _CASES[name] = Case(name)
  return _CASES[name]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
  """Every model of the run, for the checks that convert nothing."""
  return _case(request.param)


@pytest.fixture(scope="module", params=CONVERTED)
def case(request):
  """The models the run converts."""
  return _case(request.param)


def test_pytorch_matches_transformers(model):
  np.testing.assert_allclose(model.torch_logits(model.prompt),
                             testing.hf_logits(model.reference, model.prompt), atol=FLOAT_ATOL,
                             rtol=0)


@pytest.mark.parametrize("prompt_len", [5, 8, 13, 30])  # padded, (exact), padded, chunked 16+14
def test_float_tflite_matches_pytorch_through_prefill_verify_and_decode(case, prompt_len):
  """Every position through verify_8 in window 32 and on the full cache, the last one through
  prefill into window 32, then decode steps through the windows (30..35 from window 32 into the full cache; with the shared set's windows 16 and
  32 also 13..18 from 16 into 32)."""
  rng = np.random.default_rng(prompt_len)
  prompt = [int(t) for t in rng.integers(3, case.config["vocab_size"], prompt_len)]
  run = runner.Runner(case.files["none"])
  want = case.torch_logits(prompt)
  np.testing.assert_allclose(run.prefill(prompt, all_logits=True), want, atol=FLOAT_ATOL, rtol=0)
  assert run.window in case.signatures.verify_windows  # a verify window's cache
  run.reset()
  run.verify_windows = []  # the full cache's verify_8
  np.testing.assert_allclose(run.prefill(prompt, all_logits=True), want, atol=FLOAT_ATOL, rtol=0)
  assert run.window is None
  run.reset()
  np.testing.assert_allclose(run.prefill(prompt), want[-1:], atol=FLOAT_ATOL, rtol=0)
  tokens = list(prompt)
  for _ in range(DECODE_STEPS):
    tokens.append(int(rng.integers(3, case.config["vocab_size"])))
    np.testing.assert_allclose(run.decode(tokens[-1]), case.torch_logits(tokens)[-1],
                               atol=FLOAT_ATOL, rtol=0)


def test_every_signature_is_exercised(case):
  run = runner.Runner(case.files["none"])
  assert run.prefill_lengths == sorted(case.signatures.prefill_seq_lens)
  assert run.verify_lengths == sorted(case.signatures.verify_lengths)
  assert run.windows == sorted(case.signatures.decode_windows)
  assert run.prefill_windows == sorted(case.signatures.prefill_windows)
  assert run.verify_windows == sorted(case.signatures.verify_windows)
  assert run.kv_cache_max_len == KV_CACHE


def test_int8_keeps_greedy_tokens_and_logits_within_tolerance(case):
  run = runner.Runner(case.files["dynamic_int8"])
  logits = run.prefill(case.prompt)
  np.testing.assert_allclose(logits, case.torch_logits(case.prompt)[-1:], atol=INT8_ATOL, rtol=0)
  tokens = [int(logits[-1].argmax())]
  for _ in range(DECODE_STEPS - 1):
    tokens.append(int(run.decode(tokens[-1]).argmax()))
  assert tokens == case.torch_greedy(case.prompt, DECODE_STEPS)


def test_int8_file_really_holds_int8_weights(case):
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  weights = {}
  for recipe, path in case.files.items():
    details = litert.Interpreter(model_path=str(path)).get_tensor_details()
    # The weight matrices: every 2-D tensor of at least 64x64 (activations here are 3-D or smaller).
    weights[recipe] = sorted(np.dtype(t["dtype"]).name for t in details
                             if len(t["shape"]) == 2 and t["shape"][0] * t["shape"][1] >= 4096)
  assert set(weights["none"]) == {"float32"}
  assert weights["dynamic_int8"] == ["int8"] * len(weights["none"])


# Storage type of the weight matrices each named recipe must produce.
RECIPE_TYPES = {
    "none": {"FLOAT32"},
    "fp16": {"FLOAT16"},
    "dynamic_int8": {"INT8"},
    "weight_only_int8": {"INT8"},
    "dynamic_int4_block32": {"INT4"},
    "dynamic_int4_block128": {"INT4"},
    "dynamic_int4_block32,embedding=int8": {"INT4", "INT8"},
}


@pytest.mark.parametrize("recipe", sorted(RECIPE_TYPES))
def test_every_recipe_quantizes_every_weight_matrix(case, recipe, tmp_path):
  from litezoo.artifacts import flatbuffer as weights  # pylint: disable=g-import-not-at-top
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  block = 128 if "block128" in recipe else 32 if "block32" in recipe else 1
  dims = (case.config["hidden_size"], case.config["intermediate_size"])
  if any(d % block for d in dims):  # the quantizer needs whole blocks: a clear error, no file
    with pytest.raises(export.QuantizeError, match=f"its blocks of {block} do not divide"):
      convert.quantize(case.spec, case.artifacts["none"], recipe, output_dir=tmp_path,
                       log=lambda _: None)
    assert not list(tmp_path.glob("*.tflite"))
    return
  path = (case.files["none"] if recipe == "none" else convert.quantize(
      case.spec, case.artifacts["none"], recipe, output_dir=tmp_path, log=lambda _: None).path)
  found = weights.weights(path)
  assert set(found.params_by_type) == RECIPE_TYPES[recipe]  # nothing left float by accident
