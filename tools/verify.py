"""Verifies any registered model against the original (transformers) from the same checkpoint:
the re-authored PyTorch model and the converted .tflite, prefill and decode, optionally per layer.

  bazel run //tools:verify -- --model=phi2 --variant=tiny --per_layer

Exits 1 when a difference is past the stated tolerance.
"""

import tempfile

import numpy as np
from absl import flags

from litezoo.core import checkpoint as checkpoint_lib
from litezoo.core import convert as convert_lib
from litezoo.core import loader, reference, tokenizer
from litezoo.core import verify as verify_lib
from litezoo.core.registry import default_registry
from litezoo.core.spec import Signatures
from litezoo.tools import common

_MODEL = flags.DEFINE_string("model", None, "Registered model name.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint directory (default: the "
                                  "variant's pinned source; tiny variants write a random one).")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False,
                                  "Load pickled checkpoints with torch.load(weights_only=True).")
_QUANTIZE = flags.DEFINE_string("quantize", "none", "Recipe of the converted model to check.")
_NO_TFLITE = flags.DEFINE_bool("no_tflite", False, "Check the PyTorch model only.")
_PROMPTS = flags.DEFINE_integer("prompts", 3, "Number of prompts.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 12,
                                   "Tokens per prompt, for models without a tokenizer.")
_DECODE_STEPS = flags.DEFINE_integer(
    "decode_steps", None, "Decode steps after each prefill (default: 32 on real weights, else 8).")

# Prompts for real checkpoints, tokenized with the model's own tokenizer.
TEXT_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a village by the sea, there lived",
    "Water boils at a temperature of",
    "The three primary colors are",
)
_PER_LAYER = flags.DEFINE_bool("per_layer", False, "Also compare every block's hidden state.")
_KV = flags.DEFINE_integer("kv_cache_max_len", 128, "KV cache length.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prompts and of tiny random checkpoints.")


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  variant = _VARIANT.value or spec.default_variant
  config = spec.variant(variant).config
  with tempfile.TemporaryDirectory(prefix="litezoo-verify-") as work:
    path = convert_lib.checkpoint_path(
        spec, variant, common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None)
    real = path is not None
    steps = _DECODE_STEPS.value if _DECODE_STEPS.value is not None else (32 if real else 8)
    if _PROMPTS.value < 1 or _PROMPT_LEN.value < 1 or steps < 0:
      raise common.ZooError("--prompts and --prompt_len must be at least 1, --decode_steps >= 0")
    if _PROMPT_LEN.value + steps > _KV.value:
      raise common.ZooError(f"--prompt_len + --decode_steps ({_PROMPT_LEN.value + steps}) "
                            f"exceeds --kv_cache_max_len ({_KV.value})")
    signatures = Signatures((8, 32), _KV.value)
    if path is None:  # a synthetic variant: transformers writes a random checkpoint
      path = f"{work}/checkpoint"
      reference.write_random_checkpoint(config, path, seed=_SEED.value)
      print(f"wrote a random {spec.name}-{variant} checkpoint with transformers (seed "
            f"{_SEED.value})")
    original = reference.load(path, config)
    model = spec.build(config, _KV.value)
    loader.load(model, spec.tensor_names, checkpoint_lib.open_checkpoint(path, _ALLOW_PICKLE.value))
    tflite = None
    if not _NO_TFLITE.value:
      tflite = convert_lib.convert(spec, variant, checkpoint=path, recipe=_QUANTIZE.value,
                                   signatures=signatures, output_dir=work,
                                   allow_pickle=_ALLOW_PICKLE.value).path
    if real:
      tok = tokenizer.load(path)
      prompts = [tok.encode(TEXT_PROMPTS[i % len(TEXT_PROMPTS)]) for i in range(_PROMPTS.value)]
    else:
      rng = np.random.default_rng(_SEED.value)
      prompts = [[int(t) for t in rng.integers(3, config["vocab_size"], _PROMPT_LEN.value)]
                 for _ in range(_PROMPTS.value)]
    report = verify_lib.verify(model, original, prompts, steps, _KV.value, tflite_path=tflite,
                               recipe=_QUANTIZE.value, layers=_PER_LAYER.value)
  rel = ", ".join(f"{k} {v:g}" for k, v in report.rel_tolerance.items())
  print(f"\n{spec.name}-{variant}: max |diff| / max |original logit| allowed: {rel}; float "
        "stages must agree on every greedy token\n")
  print(report.table())
  print("\nPASS" if report.ok else "\nFAIL")
  return 0 if report.ok else 1


if __name__ == "__main__":
  common.run(main)
