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

from litezoo.artifacts import files
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_CORRUPT = flags.DEFINE_integer("corrupt_layer", None,
                                "Perturb this layer's weights in the re-authored model (a demo "
                                "fault: the layer should light up red).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (loopback by default).")
_PORT = flags.DEFINE_integer("port", 8080, "Port (8080: the first free one from 8080 up).")
_NO_BROWSER = flags.DEFINE_bool("no_browser", False, "Print the address, do not open a browser.")
_NODE_DATA_DIR = flags.DEFINE_string("node_data_dir", None,
                                     "Also write the overlays as Model Explorer node-data JSON.")


def _write_node_data(directory: pathlib.Path, found) -> None:
  for graph in ("pytorch", "tflite"):
    for kind, data in (("divergence", found.divergence), ("quant_error", found.quant_error)):
      with files.atomic_path(directory / f"{graph}_{kind}.json") as tmp:
        tmp.write_text(data[graph].to_json_string(indent=1))
  console.log(f"wrote the node data to {directory}")


def main(argv):
  del argv
  if not 0 < _PORT.value < 65536:
    raise zoo_flags.FlagError(f"--port={_PORT.value} is not a TCP port: give 1 to 65535 (Model "
                              "Explorer takes the first free port from there up, so there is no "
                              "0 for any free port, as serve has)")
  if not _HOST.value.strip():  # an empty host binds every address, and Model Explorer then spun
    raise zoo_flags.FlagError("--host is empty: give an address (127.0.0.1, the default)")
  s = _SELECT.selection()
  from litezoo.tools.explorer import overlays as explore  # pylint: disable=g-import-not-at-top
  explore.check_host(_HOST.value)  # both before the minutes of converting
  node_data = zoo_flags.output_dir(_NODE_DATA_DIR) if _NODE_DATA_DIR.value else None
  with tempfile.TemporaryDirectory(prefix="litezoo-explore-") as work:
    found = explore.prepare(s, work_dir=pathlib.Path(work), corrupt=_CORRUPT.value,
                            log=console.log)
    console.out("")
    console.out(found.report.table())
    if found.weight_errors:
      worst = max(found.parameter_errors.items(), key=lambda kv: kv[1], default=None)
      console.out(f"\nweight quantization error ({s.recipe}): {len(found.weight_errors)} weight "
                  f"tensors, largest {max(found.weight_errors.values()):.2e}"
                  + (f" ({worst[0]})" if worst else ""))
    if node_data is not None:
      _write_node_data(node_data, found)
    config = explore.config(s.spec, s.variant, found)
    console.log(f"starting Model Explorer on http://{_HOST.value}:{_PORT.value} (or the next "
                "free port) ...")
    explore.serve(config, _HOST.value, _PORT.value, open_browser=not _NO_BROWSER.value,
                  log=console.log, out=console.out)
    console.handled()  # Model Explorer stops on Ctrl-C by design; that is not an interruption
    console.log("server stopped")
  return 0


if __name__ == "__main__":
  common.run(main)
