"""The Generative API import snag is handled in core/litert_api.py: with TensorFlow it imports
as is; without it, a stand-in schema module from ai_edge_litert makes the same imports work."""

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


def test_uses_tensorflow_when_installed():
  from litezoo.conversion import litert as litert_api  # pylint: disable=g-import-not-at-top
  import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  assert litert_api.USING_TENSORFLOW


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
      assert not litert_api.USING_TENSORFLOW
      assert lora.schema_fb is schema
      config = litert_api.cfg.ModelConfig
      print("ok")
  """)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "ok"
