"""The one place the zoo imports litert-torch's Generative API.

The snag: litert-torch 0.10.0's `generative/layers/lora.py` does
`from tensorflow.lite.python import schema_py_generated`, and lora.py is imported by
`layers.attention`, `utilities.model_builder` and `utilities.converter`, i.e. by everything we use.
litert-torch does not depend on TensorFlow, so without it those imports fail.

setup.sh installs tensorflow-cpu (the design card lists it), which makes the import work as is. When
TensorFlow is absent we register a stand-in for that one module: the same flatbuffer schema bindings
ship in `ai_edge_litert.schema_py_generated`, and lora.py only uses them to read LoRA tensors.
Every other zoo module imports the Generative API from here, never from litert_torch directly.
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import types

_SCHEMA_MODULE = "tensorflow.lite.python.schema_py_generated"


def _tensorflow_importable() -> bool:
  try:
    return importlib.util.find_spec("tensorflow") is not None
  except (ImportError, ValueError):
    return False


def _install_schema_stand_in() -> None:
  """Makes `from tensorflow.lite.python import schema_py_generated` resolve without TensorFlow."""
  schema = importlib.import_module("ai_edge_litert.schema_py_generated")
  parent = None
  for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python"):
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so the submodule import machinery accepts it
    # A spec, because other libraries probe `importlib.util.find_spec("tensorflow")`.
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    if parent is not None:
      setattr(parent, name.rsplit(".", 1)[1], module)
    sys.modules[name] = module
    parent = module
  parent.schema_py_generated = schema
  sys.modules[_SCHEMA_MODULE] = schema


USING_TENSORFLOW = _tensorflow_importable()
if not USING_TENSORFLOW:
  _install_schema_stand_in()

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

__all__ = [
    "USING_TENSORFLOW", "attention", "builder", "cfg", "converter", "export_config", "kv_cache", "model_builder",
    "quant_attrs", "quant_recipe", "quant_recipes", "translate_recipe",
]
