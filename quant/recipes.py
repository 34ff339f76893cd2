"""Quantization recipes: a named default plus per-component overrides, resolved for one model.

Users write a recipe as one string, the default first, then `component=recipe` overrides:

    dynamic_int8
    dynamic_int4_block32,embedding=int8            # int4 blocks, embedding (and tied LM head) int8
    dynamic_int4_block128,attention=dynamic_int8,feedforward=dynamic_int4_block32

Resolving gives litert-torch's GenerativeQuantRecipe, which core/export.py applies to the float
.tflite with ai-edge-quantizer.
"""

import dataclasses
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
# Short names accepted in overrides.
ALIASES = {"int8": "dynamic_int8", "int4": "dynamic_int4_block32", "float16": "fp16"}
# The building blocks' parts a recipe can treat differently. A tied LM head is the embedding.
COMPONENTS = ("embedding", "attention", "feedforward")


class UnknownRecipeError(ZooError, ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Recipe:
  default: str
  overrides: tuple[tuple[str, str], ...] = ()

  @property
  def name(self) -> str:
    """The canonical spelling: what the manifest records and the cache keys on."""
    return ",".join([self.default] + [f"{c}={r}" for c, r in self.overrides])

  @property
  def file_tag(self) -> str:
    """The name as it appears in an artifact's file name."""
    return self.name.replace(",", "+").replace("=", "-")


def parse(text: str) -> Recipe:
  """Parses `default[,component=recipe...]`; errors list what is valid."""
  parts = [p.strip() for p in (text or "").split(",")]

  def known(name: str, where: str) -> str:
    name = ALIASES.get(name, name)
    if name not in RECIPES:
      raise UnknownRecipeError(f"unknown quantization recipe {name!r}{where}; valid recipes: "
                               f"{', '.join(RECIPES)} (and in overrides: "
                               f"{', '.join(ALIASES)})")
    return name

  default = known(parts[0], "")
  overrides = {}
  for part in parts[1:]:
    component, sep, value = part.partition("=")
    if not sep or component not in COMPONENTS:
      raise UnknownRecipeError(f"bad override {part!r} in {text!r}: write component=recipe with "
                               f"a component among {', '.join(COMPONENTS)}")
    if component in overrides:
      raise UnknownRecipeError(f"{component} is overridden twice in {text!r}")
    value = known(value, f" for {component}")
    if value == "none" and default != "none":
      raise UnknownRecipeError(
          f"{component}=none: keeping one component float under a quantized default is not "
          "something litert-torch's recipe translation can express; pick a float default with "
          "quantized overrides instead, e.g. none,feedforward=dynamic_int8")
    overrides[component] = value
  return Recipe(default, tuple(sorted(overrides.items())))


def check(text: str) -> str:
  """The canonical name of a recipe string (raises on an invalid one)."""
  return parse(text).name


def _layer(name: str):
  """The LayerQuantRecipe of a named recipe, or None for float32."""
  # pylint: disable=g-import-not-at-top
  from litezoo.conversion.litert import quant_attrs
  from litert_torch.generative.quantize import quant_recipe_utils as utils
  g = quant_attrs.Granularity
  layers: dict[str, Callable] = {
      "none": lambda: None,
      "fp16": utils.create_layer_quant_fp16,
      "dynamic_int8": lambda: utils.create_layer_quant_dynamic(quant_attrs.Dtype.INT8,
                                                               g.CHANNELWISE),
      "weight_only_int8": lambda: utils.create_layer_quant_weight_only(quant_attrs.Dtype.INT8,
                                                                       g.CHANNELWISE),
      "dynamic_int4_block32": lambda: utils.create_layer_quant_dynamic(quant_attrs.Dtype.INT4,
                                                                       g.BLOCKWISE_32),
      "dynamic_int4_block128": lambda: utils.create_layer_quant_dynamic(quant_attrs.Dtype.INT4,
                                                                        g.BLOCKWISE_128),
  }
  return layers[name]()


def resolve(text: str, model_config):
  """The GenerativeQuantRecipe for a recipe string, or None when everything stays float32."""
  recipe = parse(text)
  if recipe.default == "none" and not recipe.overrides:
    return None
  from litezoo.conversion.litert import quant_recipe  # pylint: disable=g-import-not-at-top
  return quant_recipe.GenerativeQuantRecipe(
      default=_layer(recipe.default),
      **{component: _layer(name) for component, name in recipe.overrides},
      _model_config=model_config)


def describe(text: str) -> dict:
  """What the manifest records: the full resolved recipe, component by component."""
  recipe = parse(text)
  components = {c: dict(recipe.overrides).get(c, recipe.default) for c in COMPONENTS}
  return {
      "name": recipe.name,
      "default": recipe.default,
      "overrides": dict(recipe.overrides),
      "components": {c: {"recipe": r, "description": RECIPES[r]} for c, r in components.items()},
      "description": RECIPES[recipe.default],
  }
