"""Converts any registered model to a LiteRT .tflite with a JSON manifest.

  bazel run //tools:convert -- --model=tinyllama --variant=tiny --output_dir=out
"""

from absl import flags

from litezoo.core import convert as convert_lib
from litezoo.core.registry import default_registry
from litezoo.tools import common

_MODEL = flags.DEFINE_string("model", None, "Registered model name, e.g. tinyllama.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Safetensors checkpoint: a file or a directory (sharded ok).")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Load a pickled .bin/.pt checkpoint with torch.load(weights_only=True).")
_RANDOM = flags.DEFINE_bool("random_weights", False,
                            "Convert a real-size variant with random weights (speed/memory runs).")
_QUANTIZE = flags.DEFINE_string("quantize", None, "Quantization recipe (default: the plugin's).")
_PREFILL = flags.DEFINE_list("prefill_seq_lens", None, "Prefill lengths, e.g. 32,128.")
_KV = flags.DEFINE_integer("kv_cache_max_len", None, "KV cache length (default: the plugin's).")
_KV_LAYOUT = flags.DEFINE_string("kv_layout", None, "KV cache layout, transposed or default "
                                 "(litert-torch's [1, seq, heads, dim]); default: the plugin's.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the .tflite and manifest.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for random weights.")


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  signatures = common.signatures(spec, _PREFILL.value, _KV.value, _KV_LAYOUT.value)
  convert_lib.convert(
      spec, _VARIANT.value,
      output_dir=common.user_path(_OUTPUT_DIR.value),
      checkpoint=common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None,
      random_weights=_RANDOM.value,
      allow_pickle=_ALLOW_PICKLE.value,
      recipe=_QUANTIZE.value,
      signatures=signatures,
      seed=_SEED.value)
  return 0


if __name__ == "__main__":
  common.run(main)
