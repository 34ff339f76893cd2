"""Opens any registered model in Model Explorer: the re-authored PyTorch graph (torch.export) and
the converted .tflite side by side, overlaid with the zoo's own numbers: per-layer divergence
against the original (verify --per_layer) and per-weight quantization error of the recipe.

  bazel run //tools:explore -- --model=tinyllama --variant=tiny
  bazel run //tools:explore -- --model=tinyllama --variant=tiny --corrupt_layer=1 --no_browser

Serves on loopback until Ctrl-C.
"""

import pathlib
import tempfile

from absl import flags

from litezoo.core import explore
from litezoo.core.registry import default_registry
from litezoo.tools import common

_MODEL = flags.DEFINE_string("model", None, "Registered model name.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint directory (default: the "
                                  "variant's pinned source; tiny variants write a random one).")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False,
                                  "Load pickled checkpoints with torch.load(weights_only=True).")
_QUANTIZE = flags.DEFINE_string("quantize", None, "Recipe to convert with (default: the plugin's).")
_CORRUPT = flags.DEFINE_integer("corrupt_layer", None,
                                "Perturb this layer's weights in the re-authored model (a demo "
                                "fault: the layer should light up red).")
_PREFILL = flags.DEFINE_integer("prefill_len", 16, "Prefill length of the exported graphs.")
_KV = flags.DEFINE_integer("kv_cache_max_len", 128, "KV cache length.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 12, "Tokens of the verification prompt "
                                   "(random weights; real checkpoints use a text prompt).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prompt, random checkpoints and the fault.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (loopback by default).")
_PORT = flags.DEFINE_integer("port", 8080, "Port (8080: the first free one from 8080 up).")
_NO_BROWSER = flags.DEFINE_bool("no_browser", False, "Print the address, do not open a browser.")
_NODE_DATA_DIR = flags.DEFINE_string("node_data_dir", None,
                                     "Also write the overlays as Model Explorer node-data JSON.")


def _write_node_data(directory: pathlib.Path, found: explore.Exploration) -> None:
  from litezoo.core import artifacts  # pylint: disable=g-import-not-at-top
  directory = artifacts.ensure_writable_dir(directory)
  for graph in ("pytorch", "tflite"):
    for kind, data in (("divergence", found.divergence), ("quant_error", found.quant_error)):
      with artifacts.atomic_path(directory / f"{graph}_{kind}.json") as tmp:
        tmp.write_text(data[graph].to_json_string(indent=1))
  print(f"wrote the node data to {directory}")


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  variant = _VARIANT.value or spec.default_variant
  spec.variant(variant)  # an unknown variant fails here, before any work
  recipe = _QUANTIZE.value or spec.default_recipe
  if _PREFILL.value < 1 or _PROMPT_LEN.value < 1:
    raise common.ZooError("--prefill_len and --prompt_len must be at least 1")
  if not 0 < _PORT.value < 65536:
    raise common.ZooError(f"--port={_PORT.value} is not a TCP port")
  with tempfile.TemporaryDirectory(prefix="litezoo-explore-") as work:
    found = explore.prepare(
        spec, variant, work_dir=pathlib.Path(work), recipe=recipe, prefill_len=_PREFILL.value,
        kv_cache_max_len=_KV.value, prompt_len=_PROMPT_LEN.value, seed=_SEED.value,
        checkpoint=common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None,
        allow_pickle=_ALLOW_PICKLE.value, corrupt=_CORRUPT.value)
    print()
    print(found.report.table())
    if found.weight_errors:
      worst = max(found.parameter_errors.items(), key=lambda kv: kv[1], default=None)
      print(f"\nweight quantization error ({recipe}): {len(found.weight_errors)} weight tensors, "
            f"largest {max(found.weight_errors.values()):.2e}"
            + (f" ({worst[0]})" if worst else ""))
    if _NODE_DATA_DIR.value:
      _write_node_data(common.user_path(_NODE_DATA_DIR.value), found)
    config = explore.config(spec, variant, found)
    print(f"\nstarting Model Explorer on http://{_HOST.value}:{_PORT.value} (or the next free "
          "port) ...", flush=True)
    explore.serve(config, _HOST.value, _PORT.value, open_browser=not _NO_BROWSER.value)
  return 0


if __name__ == "__main__":
  common.run(main)
