"""Named quantization recipes, resolved against a model's config.

A recipe name is what users type (`--quantize=dynamic_int8`); resolving it gives litert-torch's
GenerativeQuantRecipe, which core/export.py applies to the float .tflite.
"""

from typing import Callable

from litezoo.core.errors import ZooError

# name -> what it does
RECIPES: dict[str, str] = {
    "none": "float32, no quantization",
    "fp16": "float16 weights",
    "dynamic_int8": "int8 per-channel weights, int8 dynamic-range activations",
    "weight_only_int8": "int8 per-channel weights, float compute",
    "dynamic_int4_block32": "int4 weights in blocks of 32, int8 dynamic-range activations",
    "dynamic_int4_block128": "int4 weights in blocks of 128, int8 dynamic-range activations",
}


class UnknownRecipeError(ZooError, ValueError):
  pass


def check(name: str) -> str:
  if name not in RECIPES:
    raise UnknownRecipeError(f"unknown quantization recipe {name!r}; valid recipes: "
                             f"{', '.join(RECIPES)}")
  return name


def resolve(name: str, model_config):
  """The GenerativeQuantRecipe for `name`, or None for float32."""
  check(name)
  from litezoo.core.litert_api import quant_attrs, quant_recipes  # pylint: disable=g-import-not-at-top
  int4 = quant_attrs.Dtype.INT4
  builders: dict[str, Callable] = {
      "none": lambda: None,
      "fp16": quant_recipes.full_fp16_recipe,
      "dynamic_int8": lambda: quant_recipes.full_dynamic_recipe(mcfg=model_config),
      "weight_only_int8": lambda: quant_recipes.full_weight_only_recipe(mcfg=model_config),
      "dynamic_int4_block32": lambda: quant_recipes.full_dynamic_recipe(
          mcfg=model_config, weight_dtype=int4,
          granularity=quant_attrs.Granularity.BLOCKWISE_32),
      "dynamic_int4_block128": lambda: quant_recipes.full_dynamic_recipe(
          mcfg=model_config, weight_dtype=int4,
          granularity=quant_attrs.Granularity.BLOCKWISE_128),
  }
  config = builders[name]()
  return None if config is None else config.generative_recipe


def describe(name: str) -> dict:
  """What the manifest records about a recipe."""
  return {"name": check(name), "description": RECIPES[name]}
