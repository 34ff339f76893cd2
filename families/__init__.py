"""Architectures, each the one home of its quirks: a typed config read from `config.json`, the
re-authored model from litert-torch's building blocks, tensor names, llama.cpp's GGUF map.

`by_model_type` finds the family of a checkpoint by its `config.json` model_type.
"""

from litezoo.core.spec import UnsupportedConfigError
from litezoo.families import gemma, gemma3, llama, phi  # noqa: E402  (no torch: see tests)

FAMILIES = (llama.FAMILY, gemma.FAMILY, gemma3.FAMILY, phi.FAMILY)


def by_model_type(model_type: str):
  """The family that builds `model_type`; raises UnsupportedConfigError listing those it can."""
  for family in FAMILIES:
    if model_type in family.model_types:
      return family
  known = sorted(t for f in FAMILIES for t in f.model_types)
  raise UnsupportedConfigError(f"model_type {model_type!r} is not one the zoo can build; "
                               f"it builds: {', '.join(known)}")
