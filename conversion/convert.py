"""The conversion: config check -> build -> load weights -> export -> quantize -> write, with a
manifest.

Memory-frugal by design: the float export runs with litert-torch's lightweight conversion and
writes a temp file; the PyTorch model is freed before ai-edge-quantizer quantizes that file.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import pathlib
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch

from litezoo.artifacts import cache, files, flatbuffer
from litezoo.artifacts.manifest import Artifact, Manifest, versions
from litezoo.conversion import loader
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec, Signatures, UnsupportedConfigError
from litezoo.quant import recipes
from litezoo.runtime.memory import peak_rss_bytes
from litezoo.sources import Source
from litezoo.sources.weights import Weights


class ConvertError(ZooError, ValueError):
  pass


class ConfigMismatchError(ConvertError):
  """The checkpoint carries hyper-parameters that differ from the plugin's config."""


def _same(a: Any, b: Any) -> bool:
  """Equal hyper-parameters, floats (also inside tuples, e.g. LongRoPE's factors) to float32."""
  if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, float) or isinstance(b, float):
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(
        a, b, rel_tol=1e-6)  # GGUF keeps floats in float32
  return a == b


def _show(value: Any) -> str:
  return f"{value:.7g}" if isinstance(value, float) else repr(value)  # float32 files: 7 digits


def model_config(spec: ModelSpec, variant: str, source: Source | None,
                 where: str = "the checkpoint", log: Callable[[str], None] = print) -> dict:
  """The Hugging Face config to build: the plugin's variant config, checked against every
  hyper-parameter the checkpoint itself carries (its config.json, or a GGUF's metadata).

  A disagreement raises ConfigMismatchError naming the key and both values. Where the file stores
  its own LM head (or none), the head is taken from the file: that is how the weights are stored,
  and transformers and llama.cpp do the same.
  """
  plugin = dict(spec.variant(variant).config)
  carried = source.config() if source is not None else None
  if not carried:
    return plugin
  family = spec.family
  try:
    ours = family.config(plugin)
    theirs = family.config({**plugin, **carried})
  except UnsupportedConfigError as e:
    raise ConfigMismatchError(f"{where}: {e}") from e
  # A family may read two configs into different types (Llama with and without RoPE scaling).
  names = dict.fromkeys(f.name for c in (ours, theirs) for f in dataclasses.fields(c))
  for name in names:
    mine, its = getattr(ours, name, None), getattr(theirs, name, None)
    if name != "tie_word_embeddings" and not _same(mine, its):
      raise ConfigMismatchError(
          f"{where} has {name}={_show(its)}, but {spec.name}-{variant} has "
          f"{name}={_show(mine)}: it holds a different model; pass a checkpoint of "
          f"{spec.name}-{variant}")
  tied = getattr(theirs, "tie_word_embeddings", None)
  if tied is not None and tied != getattr(ours, "tie_word_embeddings", tied):
    log(f"note: {where} stores {'no' if tied else 'its own'} LM head; converting with "
        f"{'the embedding as the head' if tied else 'that head'}, as transformers and llama.cpp "
        "read the file")
    plugin["tie_word_embeddings"] = tied
  return plugin


def open_checked(spec: ModelSpec, variant: str, weights: Weights,
                 log: Callable[[str], None] = print) -> tuple[Source, dict]:
  """The checkpoint opened, and the HF config to build from it (checked by `model_config`)."""
  source = weights.open(spec.family.gguf)
  return source, model_config(spec, variant, source, str(weights.path), log)


def build_loaded(spec: ModelSpec, config: dict, source: Source,
                 kv_cache_max_len: int) -> torch.nn.Module:
  """The re-authored model built from `config`, with the weights of `source` loaded. Raises
  loader.LoadError when the checkpoint does not fit the config, before allocating the model."""
  family_config = spec.family.config(config)
  names = spec.family.tensor_names(family_config)
  is_weight = getattr(spec.family, "is_weight", lambda _: True)
  # The shapes alone first: a size that does not fit the checkpoint costs no memory.
  loader.check(meta_build(spec, config, kv_cache_max_len), names, source, is_weight)
  model = spec.family.build(family_config, kv_cache_max_len)
  loader.load(model, names, source, is_weight)
  return model


def meta_build(spec: ModelSpec, config: dict, kv_cache_max_len: int) -> torch.nn.Module:
  """The model of `config` on the meta device (shapes, no memory). Raises loader.LoadError
  when its sizes make a tensor too large to exist (torch's "Storage size calculation
  overflowed", a traceback before)."""
  try:
    with torch.device("meta"):
      return spec.family.build(spec.family.config(config), kv_cache_max_len)
  except RuntimeError as e:
    if "overflow" not in str(e):
      raise
    raise loader.LoadError(f"the config's sizes make a tensor too large to exist ({e}): check "
                           "hidden_size, intermediate_size and vocab_size in config.json") from e


def load_model(spec: ModelSpec, variant: str, weights: Weights, kv_cache_max_len: int,
               log: Callable[[str], None] = print) -> tuple[torch.nn.Module, dict]:
  """The re-authored model with the weights loaded, and the HF config it was built from."""
  source, config = open_checked(spec, variant, weights, log)
  return build_loaded(spec, config, source, kv_cache_max_len), config


_CALIBRATED: dict[tuple, dict] = {}  # the last calibration: a process making several gptq files


def calibrate(spec: ModelSpec, variant: str, weights: Weights,
              windows: Sequence[Sequence[int]],
              log: Callable[[str], None] = lambda _: None) -> dict:
  """The Hessians of every linear layer (conversion/gptq.py) as the model built from `weights`
  reads the calibration `windows` (token ids), each from an empty KV cache. The last result is
  kept for the same model, weights and windows (evaluate quantizes several gptq recipes)."""
  from litezoo.conversion import gptq  # pylint: disable=g-import-not-at-top
  key = (spec.name, spec.version, variant, json.dumps(dict(weights.identity), sort_keys=True),
         tuple(tuple(int(t) for t in w) for w in windows))
  if key not in _CALIBRATED:
    length = max(len(w) for w in windows)
    model, _ = load_model(spec, variant, weights, length, log=lambda _: None)
    _CALIBRATED.clear()
    _CALIBRATED[key] = gptq.hessians(model, windows, length, log)
  return _CALIBRATED[key]


def signature_details(path: str | pathlib.Path) -> dict:
  """Each signature's input and output names, dtypes and shapes, read back from the file."""
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  # No XNNPACK: reading the signatures must not pack (and so copy) every weight.
  interp = litert.Interpreter(
      model_path=str(path),
      experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  details = {}
  for name in interp.get_signature_list():
    runner = interp.get_signature_runner(name)

    def describe(tensors):
      return {n: {"dtype": np.dtype(t["dtype"]).name, "shape": [int(d) for d in t["shape"]]}
              for n, t in sorted(tensors.items())}

    details[name] = {"inputs": describe(runner.get_input_details()),
                     "outputs": describe(runner.get_output_details())}
  return details


def weights_report(path: pathlib.Path, recipe: str, log: Callable[[str], None]) -> dict:
  """The storage types of the weight matrices in `path`; says so when a recipe left some float."""
  found = flatbuffer.weights(path)
  if recipes.parse(recipe).default != "none" and found.float32_matrices:
    names = found.float32_matrices
    log(f"warning: {recipe} left {len(names)} weight matrices in float32 (the quantizer does not "
        f"apply it to their ops): {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
  return {"params_by_type": found.params_by_type, "float32_matrices": found.float32_matrices,
          "largest_matrix": found.largest_matrix}


def _processes(exported: dict) -> str:
  """How export_float ran, for its stage's done line (a run in one process takes twice as long;
  in two, both processes' memory counts: the line's own peak RSS is this process's)."""
  if exported["export_processes"] != 2:
    return "in one process"
  return (f"in two processes (the second's peak RSS "
          f"{exported['export_child_peak_rss_bytes'] / 2**30:.2f} GiB)")


class _Stages:
  """Prints each stage as it starts and ends, with its time, and every `heartbeat` seconds while
  it runs (exporting a 1B model takes minutes with nothing else to show)."""

  def __init__(self, log: Callable[[str], None], total: int, heartbeat: float = 60.0):
    self.log, self.total, self.index, self.seconds = log, total, 0, {}
    self.heartbeat = heartbeat

  def run(self, name: str, fn: Callable, *args, detail: Callable | None = None, **kwargs):
    """fn(*args, **kwargs), logged; `detail(result)`, when given, is added to the done line."""
    self.index += 1
    label = f"[{self.index}/{self.total}] {name}"
    self.log(f"{label} ...")
    start = time.monotonic()
    done = threading.Event()

    def beat():
      while not done.wait(self.heartbeat):
        minutes, seconds = divmod(int(time.monotonic() - start), 60)
        self.log(f"{label}: still running, {minutes} min {seconds:02d} s so far")

    thread = threading.Thread(target=beat, name="litezoo-stage-heartbeat", daemon=True)
    thread.start()
    try:
      result = fn(*args, **kwargs)
    finally:
      done.set()
      thread.join()
    self.seconds[name] = round(time.monotonic() - start, 2)
    said = f", {detail(result)}" if detail is not None else ""
    self.log(f"{label} done in {self.seconds[name]:.1f} s{said} "
             f"(peak RSS {peak_rss_bytes() / 2**30:.2f} GiB)")
    return result


def convert(spec: ModelSpec, variant: str, weights: Weights, *, output_dir: str | pathlib.Path,
            recipe: str | None = None, signatures: Signatures | None = None,
            transform=None, calibration: Sequence[Sequence[int]] | None = None,
            log: Callable[[str], None] = print) -> Artifact:
  """Converts one model variant to `<model>-<variant>_<recipe>_ekv<N>.tflite` plus manifest.

  `transform` (pipeline.Transform) changes the loaded model before export. A calibrated recipe
  (gptq) needs the `calibration` windows (token ids, quant/calibration.py). Raises
  ConfigMismatchError / LoadError before any export work when the checkpoint does not fit the
  model, SignatureError for impossible signatures, OutputError for an unwritable directory,
  ConvertError for a calibrated recipe without windows or with a transform.
  """
  recipe = recipes.check(recipe or spec.default_recipe)
  signatures = signatures or spec.signatures
  spec.check_signatures(variant, signatures)
  if recipes.calibrated(recipe) and (calibration is None or transform is not None):
    raise ConvertError(f"{recipe} is calibrated: it needs calibration windows and an untransformed "
                       "model (pipeline.artifact gives the windows)")
  output_dir = files.ensure_writable_dir(output_dir)
  # Imported only now: the Generative API takes seconds to import, bad input should not wait for it.
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  final = output_dir / files.artifact_name(spec.name, variant, recipes.parse(recipe).file_tag,
                                           signatures.kv_cache_max_len)
  start = time.monotonic()
  # The checkpoint's own config is checked before any stage starts: a mismatch is bad input.
  source, config = open_checked(spec, variant, weights, log)
  refuse_unfit_recipe(spec, config, signatures.kv_cache_max_len, recipe)
  stages = _Stages(log, total=4)
  hessians = None
  if recipes.calibrated(recipe):
    # On a model of its own, built at the windows' length, exactly as convert.quantize does:
    # both paths give one cache key, so they must give the same bytes.
    stages.total += 1
    hessians = stages.run("calibrate", calibrate, spec, variant, weights, calibration, log)
  model = stages.run("build and load weights", build_loaded, spec, config, source,
                     signatures.kv_cache_max_len)
  if transform is not None:
    transform.apply(model)
  tied = model.config.lm_head_share_weight_with_embedding
  quant_recipe = recipes.resolve(recipe, tied)
  with files.atomic_path(final) as tmp:
    if quant_recipe is None:  # the float export is the artifact: written in place, never moved
      exported = stages.run("export float", export.export_float, model, signatures, str(tmp),
                            detail=_processes)
      del model
      gc.collect()
      stages.run("quantize (none)", lambda: None)
      stages.run("write (in place)", lambda: None)
    else:
      with files.scratch_path(output_dir, f".{final.stem}.float.tflite") as float_file:
        exported = stages.run("export float", export.export_float, model, signatures,
                              str(float_file), detail=_processes)
        del model
        gc.collect()
        data = stages.run(f"quantize {recipe}", export.quantize_file, str(float_file),
                          quant_recipe, hessians)
        stages.run("write", tmp.write_bytes, data)
        del data
    artifact = Artifact(final, Manifest(
        model=spec.name, variant=variant, plugin_version=spec.version, file=final.name,
        sha256=files.sha256_file(tmp), size_bytes=tmp.stat().st_size,
        recipe=recipes.describe(recipe, tied), signatures=signatures,
        signature_details=signature_details(tmp), weights=weights_report(tmp, recipe, log),
        config=config,
        checkpoint={**weights.identity,
                    **({"transform": transform.name} if transform is not None else {})},
        versions=versions(),
        cache_key=cache.key(spec, variant, recipe, signatures, weights,
                            transform.name if transform is not None else None),
        conversion={"seconds": round(time.monotonic() - start, 2),
                    "stage_seconds": stages.seconds, "peak_rss_bytes": peak_rss_bytes(),
                    **(exported or {})}))
    # The manifest lands first: an artifact is never visible without one.
    artifact.write_manifest()
  log(f"wrote {final} ({artifact.manifest.size_bytes / 2**20:.1f} MiB) and its manifest in "
      f"{artifact.manifest.conversion['seconds']:.1f} s, peak RSS "
      f"{artifact.manifest.conversion['peak_rss_bytes'] / 2**30:.2f} GiB")
  return artifact


def check_recipes(spec: ModelSpec, variant: str, weights: Weights, recipes_: Sequence[str],
                  kv_cache_max_len: int,
                  log: Callable[[str], None] = print) -> dict[str, Exception]:
  """Why each of `recipes_` cannot apply to the model `weights` hold (see refuse_unfit_recipe),
  from the checkpoint's config alone, read once (seconds: a GGUF's metadata takes ~3 s), before
  any conversion starts or lock is taken: {recipe: export.QuantizeError} for those refused."""
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  _, config = open_checked(spec, variant, weights, log)
  refused = {}
  for recipe in recipes_:
    try:
      refuse_unfit_recipe(spec, config, kv_cache_max_len, recipe)
    except export.QuantizeError as e:
      refused[recipe] = e
  return refused


def refuse_unfit_recipe(spec: ModelSpec, config: dict, kv_cache_max_len: int, recipe: str):
  """Refuses a recipe whose int4 block size does not divide a layer's input width, naming the
  layer, or that asks gptq of an untied embedding table, before any export or calibration (the
  quantizer would say so only after them, in its own terms, about a tensor). Returns the model's
  config (built on the meta device: no memory). Raises export.QuantizeError."""
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  meta_model = meta_build(spec, config, kv_cache_max_len)  # the shapes only: allocates nothing
  try:
    recipes.check_blocks(recipe, {
        name: int(m.weight.shape[1]) for name, m in meta_model.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))},
        meta_model.config.lm_head_share_weight_with_embedding)
    recipes.check_tied(recipe, meta_model.config.lm_head_share_weight_with_embedding)
  except recipes.UnknownRecipeError as e:  # as the quantizer's refusal is, for the callers
    raise export.QuantizeError(f"the recipe cannot be applied to this model: {e}") from e
  return meta_model.config


def quantize(spec: ModelSpec, float_artifact: Artifact, recipe: str, *,
             output_dir: str | pathlib.Path, calibration: Sequence[Sequence[int]] | None = None,
             weights: Weights | None = None, log: Callable[[str], None] = print) -> Artifact:
  """Quantizes an already converted float32 artifact: a recipe costs seconds, not a conversion.

  The quantizer's output is the same whether its input was just exported or came from disk. A
  calibrated recipe (gptq) also needs the `weights` the float file was converted from and the
  `calibration` windows (quant/calibration.py): the model reads them again to collect its
  layers' statistics. Raises ConvertError when those are missing.
  """
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  source = float_artifact.manifest
  if source.recipe_name != "none" or not float_artifact.intact():
    raise ConvertError(f"{float_artifact.path} is not an intact float32 artifact")
  recipe = recipes.check(recipe)
  if recipe == "none":
    raise ConvertError(f"{float_artifact.path.name} is already the float32 (none) artifact: "
                       "quantize it with a quantized recipe")
  identity = {k: v for k, v in source.checkpoint.items() if k != "transform"}
  model_config = refuse_unfit_recipe(spec, source.config, source.signatures.kv_cache_max_len,
                                      recipe)
  output_dir = files.ensure_writable_dir(output_dir)
  final = output_dir / files.artifact_name(spec.name, source.variant,
                                           recipes.parse(recipe).file_tag,
                                           source.signatures.kv_cache_max_len)
  start = time.monotonic()
  stages = _Stages(log, total=2)
  hessians = None
  if recipes.calibrated(recipe):
    if calibration is None or weights is None:
      raise ConvertError(f"{recipe} is calibrated: quantizing it needs the weights and the "
                         "calibration windows (pipeline.artifact gives both)")
    if "transform" in source.checkpoint:
      raise ConvertError(f"{recipe} is calibrated, and {float_artifact.path.name} was converted "
                         "from a transformed model: quantize it with an uncalibrated recipe")
    if cache.content_identity(weights.identity) != cache.content_identity(identity):
      raise ConvertError(f"{float_artifact.path.name} was not converted from {weights.path}: "
                         "calibrate with the weights it was converted from")
    stages.total += 1
    hessians = stages.run("calibrate", calibrate, spec, source.variant, weights, calibration, log)
  with files.atomic_path(final) as tmp:
    data = stages.run(f"quantize {recipe}", export.quantize_file, str(float_artifact.path),
                      recipes.resolve(recipe, model_config.lm_head_share_weight_with_embedding),
                      hessians)
    stages.run("write", tmp.write_bytes, data)
    del data
    artifact = Artifact(final, dataclasses.replace(
        source, file=final.name, sha256=files.sha256_file(tmp), size_bytes=tmp.stat().st_size,
        recipe=recipes.describe(recipe, model_config.lm_head_share_weight_with_embedding),
        signature_details=signature_details(tmp),
        weights=weights_report(tmp, recipe, log), versions=versions(),
        cache_key=cache.key(spec, source.variant, recipe, source.signatures, identity,
                            source.checkpoint.get("transform")),
        conversion={"seconds": round(time.monotonic() - start, 2),
                    "stage_seconds": stages.seconds, "peak_rss_bytes": peak_rss_bytes(),
                    "quantized_from": {"file": source.file, "sha256": source.sha256,
                                       "conversion": dict(source.conversion)}}))
    artifact.write_manifest()
  log(f"wrote {final} ({artifact.manifest.size_bytes / 2**20:.1f} MiB) from "
      f"{float_artifact.path.name}")
  return artifact
