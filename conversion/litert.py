"""The one place the zoo imports litert-torch's Generative API.

The snag: litert-torch 0.10.0's `generative/layers/lora.py` does
`from tensorflow.lite.python import schema_py_generated`, and lora.py is imported by
`layers.attention`, `utilities.model_builder` and `utilities.converter`, i.e. by everything we use.
litert-torch does not depend on TensorFlow, and nothing else on the zoo's path needs it.

Importing TensorFlow for that one module costs 9 s of every process that builds a model (every
tool start, every test). So the import is served by a stand-in whether TensorFlow is installed or
not: the same flatbuffer schema bindings ship in `ai_edge_litert.schema_py_generated`, and lora.py
only uses them to read LoRA tensors. The stand-in packages are removed from `sys.modules` once
litert-torch is imported, so a later `import tensorflow` (setup.sh installs tensorflow-cpu, which
the design card lists) loads the real package. If TensorFlow is already imported, it serves the
import itself.
"""

import importlib
import importlib.machinery
import sys
import types

_STAND_IN = ("tensorflow", "tensorflow.lite", "tensorflow.lite.python",
             "tensorflow.lite.python.schema_py_generated")


def _install_schema_stand_in() -> None:
  """Makes `from tensorflow.lite.python import schema_py_generated` resolve without TensorFlow."""
  schema = importlib.import_module("ai_edge_litert.schema_py_generated")
  parent = None
  for name in _STAND_IN[:-1]:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so the submodule import machinery accepts it
    # A spec, because other libraries probe `importlib.util.find_spec("tensorflow")`.
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    if parent is not None:
      setattr(parent, name.rsplit(".", 1)[1], module)
    sys.modules[name] = module
    parent = module
  parent.schema_py_generated = schema
  sys.modules[_STAND_IN[-1]] = schema


def _remove_schema_stand_in() -> None:
  for name in _STAND_IN:
    sys.modules.pop(name, None)


STAND_IN = "tensorflow" not in sys.modules  # TensorFlow already loaded serves the import itself
if STAND_IN:
  _install_schema_stand_in()
try:
  # pylint: disable=g-import-not-at-top,wrong-import-position
  from litert_torch._convert import interface as converter  # noqa: E402
  from litert_torch.generative.layers import attention  # noqa: E402
  from litert_torch.generative.layers import builder  # noqa: E402
  from litert_torch.generative.layers import kv_cache  # noqa: E402
  from litert_torch.generative.layers import model_config as cfg  # noqa: E402
  from litert_torch.generative.quantize import quant_attrs  # noqa: E402
  from litert_torch.generative.quantize import quant_recipe  # noqa: E402
  from litert_torch.generative.quantize import quant_recipes  # noqa: E402
  from litert_torch.generative.utilities import export_config  # noqa: E402
  from litert_torch.generative.utilities import model_builder  # noqa: E402
  from litert_torch.quantize import translate_recipe  # noqa: E402
finally:
  if STAND_IN:
    _remove_schema_stand_in()

__all__ = [
    "STAND_IN", "attention", "builder", "cfg", "converter", "export_config", "kv_cache", "model_builder",
    "quant_attrs", "quant_recipe", "quant_recipes", "translate_recipe",
]
