"""Bundles a converted model for Google's runtimes: MediaPipe `.task` and LiteRT-LM `.litertlm`.

  bazel run //tools:bundle -- --model=smollm2 --output_dir=out
  bazel run //tools:bundle -- --model=smollm2 --quantize=none --format=litertlm --output_dir=out

The .tflite comes from the artifact cache (converted on first use), the tokenizer from the
model's checkpoint.
"""

from absl import flags

from litezoo.core import bundle, cache, convert as convert_lib
from litezoo.core.checkpoint import sha256_file
from litezoo.core.registry import default_registry
from litezoo.tools import common

_MODEL = flags.DEFINE_string("model", None, "Registered model name.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint (default: the variant's source).")
_QUANTIZE = flags.DEFINE_string("quantize", None, "Recipe (default: the plugin's).")
_FORMAT = flags.DEFINE_list("format", list(bundle.FORMATS),
                            f"Bundle formats: {', '.join(bundle.FORMATS)}.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the bundles.")
_PREFILL = flags.DEFINE_list("prefill_seq_lens", None, "Prefill lengths (default: the plugin's).")
_KV = flags.DEFINE_integer("kv_cache_max_len", None, "KV cache length (default: the plugin's).")


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  variant = _VARIANT.value or spec.default_variant
  spec.variant(variant)
  formats = [f.strip() for f in _FORMAT.value if f.strip()]
  unknown = [f for f in formats if f not in bundle.FORMATS]
  if unknown or not formats:  # checked before any conversion starts
    raise common.ZooError(f"unknown --format {','.join(unknown) or '(empty)'}; formats: "
                          f"{', '.join(bundle.FORMATS)}")
  output_dir = common.user_path(_OUTPUT_DIR.value)
  signatures = common.signatures(spec, _PREFILL.value, _KV.value)
  weights = convert_lib.checkpoint_path(
      spec, variant, common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None)
  tflite = cache.artifact(spec, variant, recipe=_QUANTIZE.value, signatures=signatures,
                          checkpoint=weights)
  written = bundle.write_bundles(spec, variant, tflite, weights, output_dir, formats=formats)
  for fmt, path in written.items():
    print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB  sha256 {sha256_file(path)}")
  return 0


if __name__ == "__main__":
  common.run(main)
