"""Converts any registered model to a LiteRT .tflite with a JSON manifest.

  bazel run //tools:convert -- --model=tinyllama --variant=tiny --output_dir=out
"""

from absl import flags

from litezoo import pipeline
from litezoo.artifacts import cache
from litezoo.quant import recipes
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the .tflite and manifest.")


def main(argv):
  del argv
  s = _SELECT.selection()
  output_dir = zoo_flags.output_dir(_OUTPUT_DIR)  # before any work
  # The same settings already converted (by generate, serve, evaluate, ...): their bytes are
  # what a conversion would write (one cache key, one file), so copy them instead of minutes.
  cached = pipeline.cached_artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                                    signatures=s.signatures)
  if cached is not None:
    final = output_dir / cached.path.name
    if final.resolve() == cached.path.resolve():
      console.log(f"{final} is the cached conversion of these settings already: nothing to do")
      return 0
    cache.fill_from(cached, final)
    console.log(f"wrote {final} ({final.stat().st_size / 2**20:.1f} MiB) and its manifest: a "
                f"copy of the cached conversion {cached.path}")
    return 0
  # A quantized recipe whose float conversion is cached: quantizing that file writes the bytes a
  # conversion would (convert.convert quantizes its own float export the same way), in seconds.
  cached_float = (pipeline.cached_artifact(s.spec, s.variant, s.weights, recipe="none",
                                           signatures=s.signatures)
                  if s.recipe != "none" else None)
  windows = (pipeline.calibration_windows(s.spec, s.variant, s.weights, console.log)
             if recipes.calibrated(s.recipe) else None)
  from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top  (torch: seconds)
  if cached_float is not None:
    console.log(f"quantizing the cached float32 conversion {cached_float.path}")
    convert.quantize(s.spec, cached_float, s.recipe, output_dir=output_dir, calibration=windows,
                     weights=s.weights, log=console.log)
    return 0
  convert.convert(s.spec, s.variant, s.weights, output_dir=output_dir, recipe=s.recipe,
                  signatures=s.signatures, calibration=windows, log=console.log)
  return 0


if __name__ == "__main__":
  common.run(main)
