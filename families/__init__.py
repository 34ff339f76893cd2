"""Architectures, each the one home of its quirks: a typed config read from `config.json`, the
re-authored model from litert-torch's building blocks, tensor names, llama.cpp's GGUF map.

`by_model_type` finds the family of a checkpoint by its `config.json` model_type.
"""

from litezoo.core.spec import UnsupportedConfigError
# pylint: disable=g-bad-import-order
from litezoo.families import (gemma, gemma2, gemma3, granite, llama, mistral, olmo2,  # noqa: E402
                              phi, phi3, qwen2, qwen3, smollm3)  # (no torch: see tests)

FAMILIES = (llama.FAMILY, gemma.FAMILY, gemma2.FAMILY, gemma3.FAMILY, phi.FAMILY, phi3.FAMILY,
            mistral.FAMILY, qwen2.FAMILY, qwen3.FAMILY, smollm3.FAMILY, olmo2.FAMILY,
            granite.FAMILY)


def by_model_type(model_type: str):
  """The family that builds `model_type`; raises UnsupportedConfigError listing those it can."""
  for family in FAMILIES:
    if model_type in family.model_types:
      return family
  known = sorted(t for f in FAMILIES for t in f.model_types)
  if model_type is None:  # "model_type None is not one the zoo can build" read as a zoo bug
    raise UnsupportedConfigError(f"the config has no model_type, which names the architecture; "
                                 f"the zoo builds: {', '.join(known)}")
  raise UnsupportedConfigError(f"model_type {model_type!r} is not one the zoo can build; "
                               f"it builds: {', '.join(known)}")
