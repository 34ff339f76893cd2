"""Converts any registered model to a LiteRT .tflite with a JSON manifest, in --output_dir.

The conversion goes through the artifact cache (~/.cache/litezoo, $LITEZOO_CACHE) as every tool's
does: the same settings are converted once, whichever tool asked first.

  bazel run //tools:convert -- --model=tinyllama --variant=tiny --output_dir=out
"""

from absl import flags

from litezoo import pipeline
from litezoo.artifacts import cache, manifest
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the .tflite and manifest.")


def main(argv):
  del argv
  s = _SELECT.selection()
  output_dir = zoo_flags.output_dir(_OUTPUT_DIR)  # before any work
  # Through the cache, as every tool converts: settings converted before (by generate, serve, an
  # earlier convert) are copied in seconds; a quantized recipe whose float32 conversion is cached
  # quantizes that file (the same bytes); and what this run converts, generate then finds.
  cached = pipeline.cached_artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                                    signatures=s.signatures)
  if cached is None and s.recipe != "none":
    cached_float = pipeline.cached_artifact(s.spec, s.variant, s.weights, recipe="none",
                                            signatures=s.signatures)
    if cached_float is not None:
      console.log(f"quantizing the cached float32 conversion {cached_float.path}")
  artifact = cached or pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                                         signatures=s.signatures, log=console.log)
  final = output_dir / artifact.path.name
  if final.resolve() == artifact.path.resolve():
    console.log(f"{final} is the cached conversion of these settings already: nothing to do")
    return 0
  earlier = manifest.find(final)
  if earlier is not None and earlier.manifest.sha256 != artifact.manifest.sha256:
    # The name holds model, recipe and cache length: other signatures or weights share it.
    console.log(f"replacing {final}, which held a different conversion of that name")
  _, linked = cache.fill_from(artifact, final, link=True)
  how = "a hard link to" if linked else "a copy of"  # a link: the same bytes are not kept twice
  console.log(f"wrote {final} ({final.stat().st_size / 2**20:.1f} MiB) and its manifest: {how} "
              f"{'the cached conversion' if cached else 'the conversion cached as'} "
              f"{artifact.path}")
  return 0


if __name__ == "__main__":
  common.run(main)
