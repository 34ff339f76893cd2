"""Pinned releases. Users build one with Bazel; this tool is what its actions run.

  bazel build //plugins/smollm2:release          # .tflite, .task, .litertlm, manifest, model card
  bazel run //tools:release -- --model=smollm2 --update_pins   # record pins after a version bump
  bazel run //tools:release -- --model=smollm2 --check_pins
"""

import os
import pathlib

from absl import flags

from litezoo.artifacts import files
from litezoo.quant import recipes
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags
from litezoo.tools.releases import pins as release

_SELECT = zoo_flags.define(weights=False, recipe=False, signatures=False)
_UPDATE_PINS = flags.DEFINE_bool("update_pins", False,
                                 "Record the plugin's version and pins in its release_pins.json.")
_CHECK_PINS = flags.DEFINE_bool("check_pins", False,
                                "Fail if pins changed without a version bump.")
_STEP = flags.DEFINE_enum("step", None, ["convert", "quantize", "bundle", "describe"],
                          "One release action (run by bazel/release.bzl).")
_RECIPE = flags.DEFINE_string("recipe", None, "--step=convert/quantize: the recipe (default: the "
                              "plugin's; none: float32).")
_FLOAT = flags.DEFINE_string("float", None, "--step=quantize: the float .tflite to quantize.")
_EXTRA = flags.DEFINE_multi_string("extra_tflite", [], "--step=describe: more shipped .tflite "
                                   "files (other recipes).")
_WEIGHTS = flags.DEFINE_multi_string("weights", [], "Declared weight files of the variant.")
_LOCK = flags.DEFINE_string("lock", None, "requirements.lock (default: the workspace's).")
_TFLITE = flags.DEFINE_string("tflite", None, "The release's .tflite (output of convert).")
_TASK = flags.DEFINE_string("task", None, "The .task bundle.")
_LITERTLM = flags.DEFINE_string("litertlm", None, "The .litertlm bundle.")
_MANIFEST = flags.DEFINE_string("manifest", None, "manifest.json to write.")
_CARD = flags.DEFINE_string("card", None, "MODEL_CARD.md to write.")
_FIGURES = flags.DEFINE_multi_string(
    "figures", [], "docs/ JSON files; docs/quality/<model>-<variant>.json (tools/evaluate) and "
    "docs/bench/<model>-<variant>.json (tools/benchmark) go into the model card.")


def _workspace() -> pathlib.Path:
  return pathlib.Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or
                      pathlib.Path(__file__).resolve().parents[1])


def _path(flag) -> pathlib.Path | None:
  return pathlib.Path(flag.value) if flag.value else None


# Per step: the flags naming files it reads, and those naming files it writes.
_IO = {"convert": ((), ("tflite",)), "quantize": (("float",), ("tflite",)),
       "bundle": (("tflite",), ("task", "litertlm")),
       "describe": (("tflite", "extra_tflite", "task", "litertlm"), ("manifest", "card"))}


def _check_paths(step: str) -> None:
  """Refuses a step whose outputs name one file twice or overwrite one of its inputs (the input
  would be gone before it is read whole), and makes the outputs' directories."""
  def named(flag_names):
    for name in flag_names:
      value = flags.FLAGS[name].value
      for one in (value if isinstance(value, list) else [value] if value else []):
        yield name, pathlib.Path(one)

  reads, writes = _IO[step]
  written: dict[pathlib.Path, str] = {}
  for name, path in named(writes):
    other = written.setdefault(path.resolve(), name)
    if other != name:
      raise zoo_flags.FlagError(f"--{other} and --{name} both name {path}: give each its own file")
    files.ensure_writable_dir(path.parent, flag=name)
  for name, path in named((*reads, "weights")):
    if path.resolve() in written:
      raise zoo_flags.FlagError(f"--{written[path.resolve()]}={path} would overwrite the "
                                f"--{name} input: write it elsewhere")


def main(argv):
  del argv
  selection = _SELECT.selection()
  spec, variant = selection.spec, selection.variant
  for flag, steps in ((_RECIPE, ("convert", "quantize")), (_FLOAT, ("quantize",)),
                      (_EXTRA, ("describe",))):
    if flag.value and _STEP.value not in steps:
      raise zoo_flags.FlagError(f"--{flag.name} cannot apply without --step="
                                f"{' or '.join(steps)}")
  actions = [name for name, given in (("--update_pins", _UPDATE_PINS.value),
                                       ("--check_pins", _CHECK_PINS.value),
                                       (f"--step={_STEP.value}", _STEP.value)) if given]
  if len(actions) > 1:
    raise zoo_flags.FlagError(f"choose one of {' and '.join(actions)}")
  if (_UPDATE_PINS.value or _CHECK_PINS.value) and flags.FLAGS["variant"].present:
    # A trial: --variant=tiny was taken, and the pins of every variant checked as ever.
    raise zoo_flags.FlagError(f"--variant cannot apply to {actions[0]}: a plugin's pins cover "
                              "all its variants at once; drop it")
  if _RECIPE.value is not None:  # before the step looks for its inputs
    recipes.check(_RECIPE.value)
  if _STEP.value and not _TFLITE.value:
    raise zoo_flags.FlagError(f"--step={_STEP.value} needs --tflite=PATH.tflite")
  if _FLOAT.value:
    zoo_flags.float_tflite(_FLOAT.value)
  if _STEP.value == "bundle" and not (_TASK.value or _LITERTLM.value):
    raise zoo_flags.FlagError("--step=bundle needs --task=PATH.task, --litertlm=PATH.litertlm "
                              "or both")
  if _STEP.value:
    _check_paths(_STEP.value)
  lock = _path(_LOCK) or _workspace() / "requirements.lock"
  plugin_dir = _workspace() / "plugins" / spec.name
  if _UPDATE_PINS.value:
    console.out(f"wrote {release.update_pins(spec, plugin_dir, lock)} for {release.tag(spec)}")
  elif _CHECK_PINS.value:
    release.check_pins(spec, plugin_dir, lock)
    console.out(f"{release.tag(spec)}: pins match {release.PINS_FILE}")
  elif _STEP.value == "convert":
    release.convert_step(spec, variant, [pathlib.Path(w) for w in _WEIGHTS.value],
                         _path(_TFLITE), recipe=_RECIPE.value, log=console.log)
  elif _STEP.value == "quantize":
    if not _FLOAT.value:
      raise zoo_flags.FlagError("--step=quantize needs --float=PATH.tflite")
    release.quantize_step(spec, variant, _path(_FLOAT), _RECIPE.value or spec.default_recipe,
                          _path(_TFLITE), [pathlib.Path(w) for w in _WEIGHTS.value],
                          log=console.log)
  elif _STEP.value == "bundle":
    outputs = {fmt: _path(flag) for fmt, flag in (("task", _TASK), ("litertlm", _LITERTLM))
               if flag.value}
    release.bundle_step(spec, variant, [pathlib.Path(w) for w in _WEIGHTS.value],
                        _path(_TFLITE), outputs, log=console.log)
  elif _STEP.value == "describe":
    released = [p for p in (_path(_TFLITE), *map(pathlib.Path, _EXTRA.value), _path(_TASK),
                            _path(_LITERTLM)) if p]
    figures = {(p.parent.name, p.stem): p for p in map(pathlib.Path, _FIGURES.value)}
    release.describe_step(spec, variant, lock, released, _path(_MANIFEST), _path(_CARD),
                          quality=figures.get(("quality", f"{spec.name}-{variant}")),
                          speed=figures.get(("bench", f"{spec.name}-{variant}")))
  else:
    raise zoo_flags.FlagError("nothing to do: pass --update_pins, --check_pins, or build a release "
                          f"with `bazel build //plugins/{spec.name}:release`")
  return 0


if __name__ == "__main__":
  common.run(main)
