"""Quantization recipes: a named default plus per-component overrides, resolved for one model.

Users write a recipe as one string, the default first, then `component=recipe` overrides; each
recipe may carry `:option`s (the algorithm, int4 levels):

    dynamic_int8
    dynamic_int8:hadamard                          # int8 of weights rotated by blocks of 32
    dynamic_int8:gptq:hadamard                     # GPTQ of the rotated int8 weights
    dynamic_int4_block32:levels16,embedding=int8   # int4 blocks on 16 levels, tied table int8
    dynamic_int4_block64:octav,attention=dynamic_int8,feedforward=dynamic_int4_block32
    dynamic_int4_block32:gptq,embedding=int8       # GPTQ on calibration text (conversion/gptq.py)
    dynamic_int4_block32:gptq:hadamard,embedding=int8   # GPTQ of Hadamard-rotated weights
    dynamic_int4_channel:gptq:hadamard,embedding=int8   # the same, one scale per row

Resolving gives the ai-edge-quantizer recipe (a list of JSON entries) that conversion/export.py
applies to the float .tflite. The zoo writes it itself rather than through litert-torch's
GenerativeQuantRecipe translation, whose LM head and block regexes do not match the zoo's files
(the tied table was written once per consumer, and attention=/feedforward= matched nothing).
"""

import dataclasses
import re

from litezoo.core.errors import ZooError
from litezoo.quant import calibration

# name -> what it does
RECIPES: dict[str, str] = {
    "none": "float32, no quantization",
    "fp16": "float16 weights",
    "dynamic_int8": "int8 per-channel weights, int8 dynamic-range activations",
    "weight_only_int8": "int8 per-channel weights, float compute",
    "dynamic_int4_block32": "int4 weights in blocks of 32, int8 dynamic-range activations",
    "dynamic_int4_block64": "int4 weights in blocks of 64, int8 dynamic-range activations",
    "dynamic_int4_block128": "int4 weights in blocks of 128, int8 dynamic-range activations",
    "dynamic_int4_block256": "int4 weights in blocks of 256, int8 dynamic-range activations",
    # One scale per row: XNNPACK's per-channel int4 kernels (qc4w), several times faster than its
    # blockwise ones (qb4w) at prefill on AVX2/AVX-512 CPUs; usable with gptq:hadamard.
    "dynamic_int4_channel": "int4 per-channel weights, int8 dynamic-range activations",
}
# Short names, accepted wherever a recipe name is (the recipe and its overrides).
ALIASES = {"int8": "dynamic_int8", "int4": "dynamic_int4_block32", "float16": "fp16"}
# The building blocks' parts a recipe can treat differently, broadest first: a later one wins
# where they overlap (down_proj is part of feedforward). A tied LM head is the embedding.
COMPONENTS = ("embedding", "attention", "feedforward", "down_proj")
# Options a quantized recipe can take; at most one algorithm, or gptq with hadamard (GPTQ of the
# rotated weights). minmax is the default (and dropped from canonical names).
ALGORITHMS = {
    "minmax": "min_max_uniform_quantize",
    "octav": "OCTAV",  # data-free optimal clipping per channel/block (Sakr et al., ICML 2022)
    "hadamard": "DECOMPOSED_HADAMARD_ROTATION",  # rotate the input dimension, then OCTAV
    "gptq": "min_max_uniform_quantize",  # the zoo's GPTQ on the recipe's grid (conversion/gptq.py)
}
OPTIONS = {
    "minmax": "min-max scales (the default)",
    "octav": "optimal clipping (OCTAV), data-free",
    "hadamard": "Hadamard rotation of the input dimension (DECOMPOSED_HADAMARD_ROTATION), then "
                "OCTAV; dynamic recipes only",  # the manifest adds the block size (describe)
    "levels16": "int4 min-max using all 16 levels (-8..7), see conversion/int4_levels.py",
    "gptq": "GPTQ (Frantar et al. 2023) on calibration text, on the recipe's grid (int4 on 16 "
            "levels, int8 per channel), see conversion/gptq.py",
}
# What an allowed pair of options does together (the manifest's description of it).
PAIRS = {("gptq", "hadamard"): "GPTQ of the weights rotated along their input dimension by "
                               "block-diagonal Hadamard matrices of size up to {size} (the "
                               "same rotation inserted on each layer's input at run time), on "
                               "calibration text, {grid}"}
# Bumped when the same recipe name starts giving different bytes: part of quantized cache keys.
# 3: dynamic_int8:hadamard rotates by blocks of 32, not whole rows.
# 4: dynamic_int4_blockN:hadamard rotates by blocks of N, as with gptq (it rotated whole rows).
FORMAT = 4

# Scopes (output tensor names) of the ops each component covers, as ai-edge-quantizer matches
# them (re.search) in the zoo's float files.
_EMBEDDING = "Embedding_tok_embedding"
_LM_HEAD = "logits_output"  # the LM head FC of every signature: `<signature>_logits_output`
_REGEX = {
    "attention": r"layers\.attention\.CausalSelfAttention",
    "feedforward": r"layers\.feed_forward\.",
    # The MLP's output projection (litert-torch's w2): its inputs carry the largest activations,
    # so it loses most at 4 bits (llama.cpp's Q4_K_M gives ffn_down more bits for the same reason).
    "down_proj": r"layers\.feed_forward\.\w+/torch\.nn\.modules\.linear\.Linear_w2;",
}


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
  def base(self) -> str:
    """The default's recipe name without its options: what decides the file's layout (levels16,
    gptq, ... change the values only)."""
    return self.default.split(":")[0]

  def part(self, component: str | None) -> str:
    """The recipe `component` gets (None: a part only the default covers); down_proj, inside
    feedforward, gets feedforward's unless it is overridden itself."""
    overrides = dict(self.overrides)
    if component == "down_proj" and component not in overrides:
      component = "feedforward"
    return overrides.get(component, self.default)

  @property
  def file_tag(self) -> str:
    """The name as it appears in an artifact's file name."""
    return self.name.replace(",", "+").replace("=", "-").replace(":", "@")


def _part(text: str, where: str) -> str:
  """The canonical spelling of one `name[:option...]`, checked."""
  name, *options = [p.strip() for p in text.split(":")]
  name = ALIASES.get(name, name)
  if name not in RECIPES:
    raise UnknownRecipeError(f"unknown quantization recipe {name!r}{where}; valid recipes: "
                             f"{', '.join(RECIPES)} (short names: "
                             f"{', '.join(f'{a} = {n}' for a, n in ALIASES.items())})")
  for option in options:
    if option not in OPTIONS:
      raise UnknownRecipeError(f"unknown option {option!r} in {text!r}{where}; valid options: "
                               f"{', '.join(OPTIONS)}")
  repeated = sorted({o for o in options if options.count(o) > 1})
  if repeated:
    raise UnknownRecipeError(f"option {repeated[0]} is repeated in {text!r}{where}; give it once")
  if options and name in ("none", "fp16"):
    raise UnknownRecipeError(f"{name} takes no options ({text!r}{where}): options apply to the "
                             "int8 and int4 recipes")
  algorithms = [o for o in options if o in ALGORITHMS]
  rotated = set(algorithms) == {"gptq", "hadamard"}  # GPTQ solves the rotated weights
  if len(algorithms) > 1 and not rotated:
    raise UnknownRecipeError(f"choose one algorithm in {text!r}{where}, not "
                             f"{' and '.join(algorithms)} (gptq:hadamard is the one pair)")
  algorithm = "gptq" if rotated else algorithms[0] if algorithms else "minmax"
  if "levels16" in options and (algorithm != "minmax" or "int4" not in name):
    why = ("int8 has its own 255 levels" if "int4" not in name else
           "gptq already uses all 16 levels" if algorithm == "gptq" else
           f"{algorithm} sets its own scales")
    raise UnknownRecipeError(f"levels16 applies to min-max int4 recipes only ({text!r}{where}): "
                             f"drop it ({why})")
  if "hadamard" in options and not name.startswith("dynamic_"):
    raise UnknownRecipeError(f"hadamard applies to the dynamic recipes only ({text!r}{where}): "
                             "the rotation needs integer compute")
  canonical = ([algorithm] if algorithm != "minmax" else []) + (["hadamard"] if rotated else []) + (
      sorted(o for o in options if o not in ALGORITHMS))
  return ":".join([name, *canonical])


def parse(text: str) -> Recipe:
  """Parses `default[:option...][,component=recipe[:option...]...]` into its canonical form
  (an override giving a component what it gets anyway is dropped); errors list what is valid."""
  default, overrides = _written(text)
  recipe = Recipe(default, tuple(sorted(overrides.items())))
  # Both spellings name the same file, so they share one name (and cache entry). down_proj last:
  # it follows feedforward.
  for component in sorted(overrides, key=COMPONENTS.index):
    without = Recipe(default, tuple(o for o in recipe.overrides if o[0] != component))
    if without.part(component) == overrides[component]:
      recipe = without
  return recipe


def _written(text: str) -> tuple[str, dict[str, str]]:
  """The default and the overrides as written (each part canonical), checked."""
  parts = [p.strip() for p in (text or "").split(",")]
  default = _part(parts[0], "")
  overrides = {}
  for part in parts[1:]:
    component, sep, value = part.partition("=")
    component = component.strip()
    if not sep or component not in COMPONENTS:
      raise UnknownRecipeError(f"bad override {part!r} in {text!r}: write component=recipe with "
                               f"a component among {', '.join(COMPONENTS)}")
    if component in overrides:
      raise UnknownRecipeError(f"{component} is overridden twice in {text!r}: give each "
                               "component once")
    value = _part(value, f" for {component}")
    if value == "none" and default != "none" and component != "down_proj":  # that one: below
      raise UnknownRecipeError(
          f"{component}=none: keeping one component float under a quantized default is not "
          "something the quantizer's recipe can express; pick a float default with quantized "
          "overrides instead, e.g. none,feedforward=dynamic_int8")
    overrides[component] = value
  if overrides.get("down_proj") == "none" and overrides.get("feedforward", default) != "none":
    raise UnknownRecipeError(
        f"down_proj=none inside a quantized feedforward ({text!r}) is not something the "
        "quantizer's recipe can express (an entry can add quantization, not take it away); "
        "keep the down projections at 8 bits instead: down_proj=int8")
  return default, overrides


def calibrated(text: str) -> bool:
  """Whether the recipe needs calibration statistics from the model (the `gptq` option)."""
  recipe = parse(text)
  return any("gptq" in part.split(":")[1:]
             for part in [recipe.default, *(r for _, r in recipe.overrides)])


def check(text: str) -> str:
  """The canonical name of a recipe string (raises on an invalid one)."""
  return parse(text).name


def _entry(regex: str, part: str) -> dict | None:
  """One ai-edge-quantizer recipe entry applying `part` (canonical) to the ops matching `regex`;
  None for float32."""
  name, *options = part.split(":")
  if name == "none":
    return None
  algorithm = "hadamard" if "hadamard" in options else next(
      (o for o in options if o in ALGORITHMS), "minmax")
  if name == "fp16":
    weights = {"num_bits": 16, "symmetric": True, "granularity": "TENSORWISE", "dtype": "FLOAT"}
    algorithm_key, integer = "float_casting", False
  else:
    block = re.fullmatch(r"dynamic_int4_block(\d+)", name)
    weights = {"num_bits": 4 if "int4" in name else 8, "symmetric": True, "dtype": "INT",
               "granularity": f"BLOCKWISE_{block.group(1)}" if block else "CHANNELWISE"}
    if "levels16" in options:  # read by conversion/int4_levels.py; ignored by the quantizer
      weights["algorithm_params"] = {"levels": 16}
    if "gptq" in options:  # idem, codes and scales from conversion/gptq.py (rotated first
      # with hadamard: int4_levels.py)
      weights["algorithm_params"] = {"levels": 16, "gptq": True} if "int4" in name else {
          "gptq": True}
    if "hadamard" in options:
      # Rotating within each block (an int4 recipe's own block, else 32) scored as well as rotating
      # whole rows (Gemma 3 270M, simulated: mean KL 0.059 vs 0.058, docs/quality.md) for a
      # fraction of the run-time cost: the inserted rotation does 32 multiply-adds per input, not
      # up to 2048 (whole rows halved dynamic_int8's decode speed on TinyLlama 1.1B). With or
      # without gptq, so `:hadamard` (data-free OCTAV) writes the same ops as `:gptq:hadamard`:
      # what the benchmark times without a calibration.
      weights.setdefault("algorithm_params", {})["max_hadamard_size"] = (
          int(block.group(1)) if block else 32)
    algorithm_key, integer = ALGORITHMS[algorithm], name.startswith("dynamic_")
  return {"regex": regex, "operation": "*", "algorithm_key": algorithm_key,
          "op_config": {"weight_tensor_config": weights,
                        "compute_precision": "INTEGER" if integer else "FLOAT",
                        "explicit_dequantize": not integer}}


def resolve(text: str, tied_embedding: bool) -> list[dict] | None:
  """The ai-edge-quantizer recipe (JSON entries) of a recipe string, or None for float32.

  The quantizer matches each op against the entries' regexes, the last match winning. A weight
  buffer stays one buffer only if every op reading it gets the same parameters, so with a tied
  embedding (`tied_embedding`: the LM head FC of every signature reads the lookup's table) the
  embedding entry covers the head too: one table, quantized once, read by all of them.
  """
  recipe = parse(text)
  if recipe.default == "none" and not recipe.overrides:
    return None
  entries = [_entry(".*", recipe.default)]
  overrides = dict(recipe.overrides)
  for component in (c for c in COMPONENTS if c in overrides):
    part = overrides[component]
    if component == "embedding":
      regex = f"{_EMBEDDING}|{_LM_HEAD}" if tied_embedding else _EMBEDDING
    else:
      regex = _REGEX[component]
    entries.append(_entry(regex, part))
  return [e for e in entries if e is not None]


def component_of(module: str, tied_embedding: bool = True) -> str | None:
  """The component a re-authored model's module (its `named_modules` name) belongs to, or None
  for the parts only the default covers: an LM head not tied to the table (`tied_embedding`
  False) is one of those (resolve's embedding entry matches the lookup alone)."""
  if "tok_embedding" in module or (module.startswith("lm_head") and tied_embedding):
    return "embedding"  # the lookup, and the LM head: a tied one reads the same table
  if ".atten_func." in module:
    return "attention"
  if ".ff." in module:
    return "down_proj" if module.endswith(".w2") else "feedforward"
  return None


def check_tied(text: str, tied_embedding: bool) -> None:
  """Refuses `embedding=...:gptq` for a model whose embedding table is not its LM head: no
  linear layer reads that table, so no calibration could move its values (it would get min-max
  while the manifest said GPTQ). Raises UnknownRecipeError."""
  part = _written(text)[1].get("embedding", "")  # as written: asked for, even if redundant
  if "gptq" in part.split(":")[1:] and not tied_embedding:
    base = part.split(":")[0]
    raise UnknownRecipeError(
        f"embedding={part} cannot apply: this model's embedding table is not tied to its LM "
        f"head, so no layer's inputs calibrate it; write "
        + (f"embedding={base}:levels16 (the same int4 grid, min-max) or embedding=int8"
           if "int4" in base else f"embedding={base} (min-max)"))


def check_blocks(text: str, inputs: dict[str, int], tied_embedding: bool = True) -> None:
  """Refuses a recipe whose int4 block size does not divide the input width of a matrix it would
  quantize, naming the component, before any calibration or quantization runs. `inputs` maps the
  model's module names (component_of) to their input widths (a table's: its rows' length).
  Raises UnknownRecipeError."""
  recipe = parse(text)
  for module, width in sorted(inputs.items()):
    component = component_of(module, tied_embedding)
    part = recipe.part(component)
    block = re.fullmatch(r"dynamic_int4_block(\d+)", part.split(":")[0])
    if block and width % int(block.group(1)):
      overrides = dict(recipe.overrides)
      written = component if component in overrides else (  # down_proj follows feedforward
          "feedforward" if component == "down_proj" and "feedforward" in overrides else None)
      where = f"{written}={part}" if written else f"the default {part}"
      instead = (f"or {component}=int8" if component is not None else
                 f"or an int8 default: no override reaches {module} on this model")
      raise UnknownRecipeError(
          f"{where} cannot apply: its blocks of {block.group(1)} do not divide the {width} "
          f"inputs of {module}; pick a block size that divides {width} (32 or 64 usually "
          f"do), {instead}")


def describe(text: str, tied_embedding: bool = True) -> dict:
  """What the manifest records: the full resolved recipe, component by component. With an
  untied table (`tied_embedding` False), a gptq default reaches the table as min-max (no layer's
  inputs calibrate it; int4_levels.py), and the table's description says so."""
  recipe = parse(text)
  components = {c: recipe.part(c) for c in COMPONENTS}

  def description(part: str) -> str:
    name, *options = part.split(":")
    texts = [OPTIONS[o] for o in options]
    grid = "int4 on 16 levels" if "int4" in name else "int8 per channel"
    size = ((_entry(".*", part) or {}).get("op_config", {}).get("weight_tensor_config", {})
            .get("algorithm_params", {}).get("max_hadamard_size"))
    if "gptq" in options:  # the grid this recipe's GPTQ solves on, not both
      texts[options.index("gptq")] = (f"GPTQ (Frantar et al. 2023) on calibration text "
                                      f"({grid}), see conversion/gptq.py")
    if "hadamard" in options and size:
      texts[options.index("hadamard")] = (
          f"Hadamard rotation of the input dimension by blocks of {size} "
          "(DECOMPOSED_HADAMARD_ROTATION), then OCTAV")
    if options[:2] == ["gptq", "hadamard"]:  # canonical order
      texts[:2] = [PAIRS[("gptq", "hadamard")].format(size=size, grid=grid)]
    return "; ".join([RECIPES[name], *texts])

  def component(c: str, part: str) -> str:
    text = description(part)
    if c == "embedding" and not tied_embedding and "gptq" in part.split(":")[1:]:
      text += ("; this table is not tied to the LM head, so no layer's inputs calibrate it: "
               "min-max on the same grid")
    return text

  return {
      "name": recipe.name,
      "default": recipe.default,
      "overrides": dict(recipe.overrides),
      "components": {c: {"recipe": r, "description": component(c, r)}
                     for c, r in components.items()},
      "description": description(recipe.default),
      **({"calibration": calibration.identity()} if calibrated(text) else {}),
  }
