"""The Generative API import snag is handled in conversion/litert.py: litert-torch's one
TensorFlow import is served by ai_edge_litert's schema bindings, with or without TensorFlow
installed, and TensorFlow is left importable for whoever really needs it."""

import subprocess
import sys
import textwrap

from litezoo.tests import testing


# Makes Python behave as if TensorFlow were not installed: its imports fail as for a missing package.
NO_TENSORFLOW = """
import sys

class NoTensorFlow:
  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return None

sys.meta_path.insert(0, NoTensorFlow())
"""


def _python(code: str) -> subprocess.CompletedProcess:
  code = NO_TENSORFLOW + textwrap.dedent(code)
  return subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, env={"PYTHONPATH": str(testing.RUNFILES_ROOT)}, timeout=300,
                        check=False)


def _plain_python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                        text=True, env={"PYTHONPATH": str(testing.RUNFILES_ROOT)}, timeout=300,
                        check=False)


def test_tensorflow_installed_is_not_imported_yet_stays_importable():
  # 9 s of every tool start went to importing TensorFlow for lora.py's schema bindings.
  result = _plain_python("""
      import sys, types
      from litezoo.conversion import litert as litert_api
      from litert_torch.generative.layers import lora
      import ai_edge_litert.schema_py_generated as schema
      assert litert_api.STAND_IN and lora.schema_fb is schema
      assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
      # No module kept a reference to a stand-in package.
      held = [name for name, module in list(sys.modules.items()) if module is not None
              for value in list(vars(module).values())
              if isinstance(value, types.ModuleType) and value.__name__.startswith("tensorflow")]
      assert not held, held
      import tensorflow as tf  # the real package, loaded now
      assert tf.constant([1, 2]).numpy().tolist() == [1, 2]
      print(tf.__version__)
  """)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().startswith("2.")


def test_tensorflow_imported_first_serves_the_import_itself():
  result = _plain_python("""
      import tensorflow
      from tensorflow.lite.python import schema_py_generated
      from litezoo.conversion import litert as litert_api
      from litert_torch.generative.layers import lora
      assert not litert_api.STAND_IN and lora.schema_fb is schema_py_generated
      print("ok")
  """)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "ok"


def test_without_tensorflow_litert_torch_alone_fails():
  # The snag itself, so this test notices the day litert-torch fixes it and the shim can go.
  result = _python("""
      from litert_torch.generative.layers import attention
  """)
  assert result.returncode != 0
  assert "No module named 'tensorflow'" in result.stderr


def test_without_tensorflow_the_stand_in_makes_the_api_work():
  result = _python("""
      from litezoo.conversion import litert as litert_api
      from litert_torch.generative.layers import lora
      import ai_edge_litert.schema_py_generated as schema
      assert litert_api.STAND_IN
      assert lora.schema_fb is schema
      config = litert_api.cfg.ModelConfig
      print("ok")
  """)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "ok"
