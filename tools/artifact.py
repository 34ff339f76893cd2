"""What a zoo_artifact's action runs (bazel/artifact.bzl): one conversion into declared outputs.

  bazel build //tests:tinyllama_tiny_float        # a .tflite and its manifest under bazel-bin

Each plugin has its own copy of this tool (`//plugins/<name>:artifact_tool`), so an artifact
depends on no other plugin's code. Everything the action reads is declared: the code, the lock
(through the Python toolchain), the variant's pinned weight files; random-weight variants need
nothing else. Caches go to a scratch directory among the outputs, removed before the action ends.
"""

import pathlib

from absl import flags

from litezoo.quant import recipes
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags
from litezoo.tools.releases import pins as release

_SELECT = zoo_flags.define(weights=False)
_WEIGHTS = flags.DEFINE_multi_string("weights", [], "Declared weight files of the variant.")
_FLOAT = flags.DEFINE_string("float", None, "A converted float artifact of the same variant and "
                             "signatures: quantize it (--quantize) instead of converting; a "
                             "calibrated recipe also reads --weights.")
_OUT = flags.DEFINE_string("out", None, "The .tflite to write; its manifest goes beside it.")


def main(argv):
  del argv
  selection = _SELECT.selection()
  if not _OUT.value:
    raise zoo_flags.FlagError("give --out=PATH.tflite (bazel/artifact.bzl does)")
  out = pathlib.Path(_OUT.value)
  if out.is_dir() or not out.parent.is_dir():
    raise zoo_flags.FlagError(f"--out={out} must be a file path in an existing directory")
  if _FLOAT.value:
    source = zoo_flags.float_tflite(_FLOAT.value)
    if source.resolve() == out.resolve():
      raise zoo_flags.FlagError("--out is the --float file: write the quantized artifact "
                                "elsewhere")
    if zoo_flags.given("prefill_seq_lens") or zoo_flags.given("kv_cache_max_len") or \
        zoo_flags.given("kv_layout"):
      raise zoo_flags.FlagError("--float quantizes an artifact as it was converted: signatures "
                                "cannot apply")
    if _WEIGHTS.value and not recipes.calibrated(selection.recipe):
      raise zoo_flags.FlagError(f"--weights cannot apply with --float and {selection.recipe}: "
                                "only a calibrated recipe (gptq) reads the weights again")
    release.quantize_step(selection.spec, selection.variant, pathlib.Path(_FLOAT.value),
                          selection.recipe, out, [pathlib.Path(w) for w in _WEIGHTS.value],
                          log=console.log)
  else:
    release.convert_step(selection.spec, selection.variant,
                         [pathlib.Path(w) for w in _WEIGHTS.value], out,
                         recipe=selection.recipe, signatures=selection.signatures,
                         log=console.log)
  return 0


if __name__ == "__main__":
  common.run(main)
