"""Scaffolds an in-tree model plugin: module, test, BUILD, and its place in plugins/plugins.bzl.

  bazel run //tools:new_plugin -- --name=mymodel --family=llama
  bazel run //tools:new_plugin -- --name=mymodel --from_checkpoint=/path/to/hf/dir

From a family, the config is that of the family's registered plugin (its real size and its tiny
variant), for the contributor to replace; from a checkpoint, it is the checkpoint's config.json,
checked by its family. The scaffold passes the conformance suite as is; its size test fails until
the published parameter count is filled in.
"""

from __future__ import annotations

import copy
import importlib.util
import keyword
import math
import os
import pathlib
import pprint
import re
import shutil
import string
import sys
import tempfile
from typing import Any, Callable, Mapping

from absl import flags

from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec
from litezoo.sources import CheckpointError, safetensors
from litezoo.tools import common, console

TEMPLATES = pathlib.Path(__file__).absolute().parent / "templates"
# Keys the scaffold leaves out of a config: bookkeeping, not architecture.
_NOT_CONFIG = ("architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path",
               "use_cache", "initializer_range")


class ScaffoldError(ZooError, ValueError):
  pass


_NAME = flags.DEFINE_string("name", None, "Model and plugin name: a lowercase Python identifier.")
_FAMILY = flags.DEFINE_string("family", None, "Family the model belongs to (families/).")
_FROM_CHECKPOINT = flags.DEFINE_string(
    "from_checkpoint", None, "A Hugging Face checkpoint directory whose config.json the plugin "
    "takes (its family comes from model_type).")
_PLUGINS_DIR = flags.DEFINE_string("plugins_dir", None, "Where to create the plugin "
                                   "(default: the repository's plugins/).")


def repo_root() -> pathlib.Path:
  """The checkout: the workspace under `bazel run`, else the tree this file is in."""
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  return pathlib.Path(workspace) if workspace else pathlib.Path(__file__).absolute().parents[1]


# Targets the zoo_plugin macro (bazel/defs.bzl) makes in every plugin's package besides <name>
# and <name>_test: a plugin of one of these names would define it twice, and every build fails.
MACRO_TARGETS = ("artifact_tool", "release", "release_tool", "weights")
_NAME_REQUIRED = ("--name is required: the model's and its plugin's name, a lowercase Python "
                  "identifier, e.g. --name=mymodel")


def check_name(name: str | None, plugins_dir: pathlib.Path, registered: Mapping[str, str]) -> None:
  """Raises ScaffoldError for a missing name, one that is no lowercase identifier, one the
  zoo_plugin macro takes, one already registered, or one whose directory exists."""
  if name is None:
    raise ScaffoldError(_NAME_REQUIRED)
  if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
    raise ScaffoldError(f"--name={name!r} is not a lowercase Python identifier (letters, digits "
                        "and underscores, starting with a letter), e.g. --name=mymodel")
  if name in MACRO_TARGETS:
    raise ScaffoldError(f"--name={name!r} is the name of a target the zoo_plugin macro makes in "
                        f"every plugin's package ({', '.join(MACRO_TARGETS)}); choose another "
                        f"--name, e.g. --name=my_{name}")
  if name in registered:
    raise ScaffoldError(f"model {name!r} is already registered by plugin {registered[name]!r}; "
                        "choose another --name")
  if (plugins_dir / name).exists():
    bzl_file = plugins_dir / "plugins.bzl"
    if name in listed(bzl_file.read_text() if bzl_file.is_file() else ""):
      # Its directory alone removed, the list names a package that is gone: every build fails.
      raise ScaffoldError(f"{plugins_dir / name} already exists; choose another --name, or remove "
                          f"it and its \"{name}\" line from {bzl_file}")
    raise ScaffoldError(f"{plugins_dir / name} already exists; choose another --name or remove it")


def representatives(specs: list[ModelSpec]) -> dict[str, ModelSpec]:
  """Family name -> the first registered plugin of that family (by name)."""
  found = {}
  for spec in sorted(specs, key=lambda s: s.name):
    found.setdefault(spec.family.name, spec)
  return found


class _Code:
  """Python source that pprint writes as is (repr)."""

  def __init__(self, code: str):
    self.code = code

  def __repr__(self) -> str:
    return self.code


def _literal(value: Any) -> Any:
  """`value` with its NaNs and infinities (json reads NaN, Infinity and 1e999 as floats) as
  `float("nan")` etc.: their repr, nan and inf, is no Python name."""
  if isinstance(value, float) and not math.isfinite(value):
    return _Code(f'float("{value}")')
  if isinstance(value, Mapping):
    return {k: _literal(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_literal(v) for v in value)
  return value


def _source(value: Mapping[str, Any]) -> str:
  """`value` as a dict literal, one key a line: quoted keys, since a config's keys need not be
  Python identifiers (`my-key`) and may be keywords (`lambda`), which keyword arguments cannot."""
  lines = []
  for key, item in value.items():
    prefix = f"    {key!r}: "
    text = pprint.pformat(_literal(item), width=max(90 - len(prefix), 40))
    lines.append(prefix + text.replace("\n", "\n" + " " * len(prefix)) + ",\n")
  return "{\n" + "".join(lines) + "}"


def _text(text: str) -> str:
  """`text` as it can stand in the scaffold's docstring and comments: escaped as in a string
  literal if it holds a line break, a backslash or a quote, which would end the comment or the
  docstring, or make the file not compile (a path's `\\u`)."""
  if text.isprintable() and not set(text) & set('\\"'):
    return text
  return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


# The scaffold's signatures: two prefill lengths and a 1024-token cache, where they fit.
KV_CACHE_MAX_LEN = 1024
PREFILL_SEQ_LENS = (32, 128)


def signatures_source(config: Mapping[str, Any]) -> str:
  """The scaffold's Signatures(...): a cache no longer than the model's context (a longer one is
  refused by every tool, ModelSpec.check_signatures), and the prefill lengths that fit in it."""
  context = config.get("max_position_embeddings")
  kv = KV_CACHE_MAX_LEN
  if isinstance(context, (int, float)) and not isinstance(context, bool) and context >= 1:
    kv = int(min(kv, context))
  prefill = tuple(n for n in PREFILL_SEQ_LENS if n <= kv) or (kv,)
  return f"Signatures(prefill_seq_lens={prefill!r}, kv_cache_max_len={kv})"


def from_family(family: str, specs: list[ModelSpec]) -> tuple[str, dict, dict, str]:
  """(family, config, tiny overrides, note) from the family's registered plugin."""
  found = representatives(specs)
  if family not in found:
    from litezoo import families  # pylint: disable=g-import-not-at-top
    if family in {f.name for f in families.FAMILIES}:
      raise ScaffoldError(f"family {family!r} has no registered plugin to copy a config from: "
                          "scaffold from its checkpoint's config.json with --from_checkpoint=DIR "
                          f"(families with a plugin: {', '.join(sorted(found))})")
    raise ScaffoldError(f"unknown family {family!r}; families with a registered plugin: "
                        f"{', '.join(sorted(found))}")
  spec = found[family]
  real = dict(spec.variant(None).config)
  tiny = next((v.config for v in spec.variants.values() if v.random_weights), real)
  overrides = {k: v for k, v in tiny.items() if real.get(k) != v}
  return family, real, overrides, (f"This is {spec.name}'s ({spec.url or 'the family'}): "
                                   "replace it with your model's.")


def from_checkpoint(directory: pathlib.Path) -> tuple[str, dict, dict, str]:
  """(family, config, tiny overrides, note) from a checkpoint's config.json, checked."""
  from litezoo import families  # pylint: disable=g-import-not-at-top
  if not directory.is_dir():
    raise ScaffoldError(f"--from_checkpoint: {directory} "
                        f"{'is not a directory' if directory.exists() else 'does not exist'}; "
                        "give a Hugging Face checkpoint directory (its config.json is enough)")
  try:
    config = safetensors.read_config(directory)
  except CheckpointError as e:
    raise ScaffoldError(str(e)) from e
  if config is None:
    raise ScaffoldError(f"--from_checkpoint: {directory} has no config.json; give a Hugging Face "
                        "checkpoint directory (its config.json is enough)")
  family = families.by_model_type(config.get("model_type"))
  config = {k: v for k, v in config.items() if k not in _NOT_CONFIG}
  family.config(config)  # refuses a field the family cannot build, naming it
  heads = int(config["num_attention_heads"])
  kv_heads = int(config.get("num_key_value_heads") or heads)
  tiny = {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 4 if kv_heads == heads else (2 if heads // kv_heads <= 2 else 1)}
  if "head_dim" in config:
    tiny["head_dim"] = 16
  tiny.update(_shrunk_per_layer(config, tiny["num_hidden_layers"]))
  tiny.update(_tiny_token_ids(config, tiny["vocab_size"]))
  for key in ("rope_scaling", "rope_parameters"):  # transformers' old and new names
    scaling = _shrunk_longrope(config, key, tiny.get("head_dim", 64 // 4))
    if scaling:
      tiny[key] = scaling
  return family.name, config, tiny, f"Read from {directory / 'config.json'}."


# The tiny variant's tokenizer (sources/random_weights.py) has <s> = 1 and </s> = 2 and no padding.
_TINY_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}


def _tiny_token_ids(config: Mapping[str, Any], vocab_size: int) -> dict:
  """Special token ids past the tiny vocabulary, as transformers' defaults fill them in, moved into
  it (an embedding's padding index must lie inside it)."""
  import transformers  # pylint: disable=g-import-not-at-top
  resolved = transformers.AutoConfig.for_model(**copy.deepcopy(dict(config))).to_dict()
  moved = {}
  for key, tiny in _TINY_IDS.items():
    value = resolved.get(key)
    ids = value if isinstance(value, list) else [value]
    if any(isinstance(i, int) and i >= vocab_size for i in ids):
      moved[key] = tiny
  return moved


# Per-layer lists (Ministral's and Gemma 3's layer_types, SmolLM3's no_rope_layers): one entry a
# layer, so the tiny variant keeps two, of both kinds when the real model has two.
_PER_LAYER = ("layer_types", "no_rope_layers")


def _shrunk_per_layer(config: Mapping[str, Any], layers: int) -> dict:
  shrunk = {}
  for key in _PER_LAYER:
    values = config.get(key)
    if isinstance(values, list) and len(values) > layers:
      kept = [values[0]] + [v for v in values if v != values[0]][:1]
      shrunk[key] = (kept + values[1:])[:layers]
  return shrunk


def _shrunk_longrope(config: Mapping[str, Any], key: str, head_dim: int) -> dict | None:
  """LongRoPE's factors, one per rotated frequency: the tiny head has fewer, so every k-th one."""
  scaling = config.get(key)
  if not isinstance(scaling, Mapping) or "short_factor" not in scaling:
    return None
  count = int(head_dim * float(config.get("partial_rotary_factor") or 1.0)) // 2
  shrunk = dict(scaling)
  for key in ("short_factor", "long_factor"):
    values = list(scaling[key])
    shrunk[key] = [values[i * len(values) // count] for i in range(count)]
  return shrunk


def render(name: str, family: str, config: dict, tiny: dict, note: str, origin: str) -> dict:
  """File name -> text of the plugin's files."""
  values = dict(name=name, family=family, config=_source(config), tiny=_source(tiny),
                signatures=signatures_source(config), config_note=_text(note),
                origin=_text(origin))

  def fill(template: str) -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute(values)

  return {f"{name}.py": fill("plugin.py.tmpl"), f"{name}_test.py": fill("plugin_test.py.tmpl"),
          "BUILD": fill("BUILD.tmpl"), "__init__.py": ""}


_LIST = re.compile(r"(ZOO_PLUGINS = \[)(.*?)(\n\])", re.S)


def listed(bzl: str) -> list[str]:
  """The names in plugins/plugins.bzl's ZOO_PLUGINS ([] for a text without the list)."""
  match = _LIST.search(bzl)
  return re.findall(r'"([^"]+)"', match.group(2)) if match else []


def add_to_list(bzl: str, name: str) -> str:
  """plugins/plugins.bzl's text with `name` in ZOO_PLUGINS, kept sorted."""
  match = _LIST.search(bzl)
  if not match:
    raise ScaffoldError(f"no ZOO_PLUGINS = [...] list found to add {name!r} to")
  names = sorted(set(re.findall(r'"([^"]+)"', match.group(2))) | {name})
  body = "".join(f'\n    "{n}",' for n in names)
  return bzl[:match.start(2)] + body + bzl[match.end(2):]


def load_specs(module_path: pathlib.Path) -> list[ModelSpec]:
  """The specs a plugin file registers, through its hook as the registry would call it."""
  module_name = f"_litezoo_scaffold_{module_path.stem}"
  spec = importlib.util.spec_from_file_location(module_name, module_path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  finally:
    sys.modules.pop(module_name, None)
  registered = []
  module.litezoo_register_models(register=registered.append)
  return registered


def scaffold(name: str, rendered: dict[str, str], plugins_dir: pathlib.Path,
             registered: Mapping[str, str], log: Callable[[str], None] = print) -> pathlib.Path:
  """Writes plugins_dir/<name>/ whole or not at all, adds it to plugins_dir/plugins.bzl if there
  is one, and returns the plugin's directory."""
  if not plugins_dir.is_dir():
    what = "is not a directory" if plugins_dir.exists() else "does not exist"
    raise ScaffoldError(f"plugins directory {plugins_dir} {what}; pass --plugins_dir=DIR, the "
                        "plugins/ folder of a checkout of the zoo")
  check_name(name, plugins_dir, registered)
  bzl_file = plugins_dir / "plugins.bzl"
  # Edited in memory before anything is written, so a list it cannot edit leaves nothing behind.
  bzl = add_to_list(bzl_file.read_text(), name) if bzl_file.exists() else None
  final = plugins_dir / name
  staging = pathlib.Path(tempfile.mkdtemp(dir=plugins_dir, prefix=f".{name}.", suffix=".partial"))
  try:
    for file, text in rendered.items():
      (staging / file).write_text(text, encoding="utf-8")  # Python's, whatever the locale
    specs = load_specs(staging / f"{name}.py")  # the scaffold must import and register
    if [s.name for s in specs] != [name]:
      raise ScaffoldError(f"the scaffold registers {[s.name for s in specs]}, not [{name!r}]")
    staging.chmod(0o755)  # mkdtemp makes 0700
    os.rename(staging, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  log(f"wrote {final}/: {', '.join(sorted(rendered))}")
  if bzl is not None:
    with files.atomic_path(bzl_file) as tmp:
      tmp.write_text(bzl)
    log(f"added {name!r} to {bzl_file}")
  else:
    log(f"note: {plugins_dir} has no plugins.bzl; add //plugins/{name} to //plugins:all yourself")
  return final


def next_steps(name: str, plugin_dir: pathlib.Path) -> str:
  return f"""
Next steps (CONTRIBUTING.md has the details):
  1. Edit {plugin_dir}/{name}.py: every TODO (the config, the variant's name, size and pin).
  2. bazel test //plugins/{name}:{name}_test
  3. bazel run //tools:verify -- --model={name} --variant=tiny --per_layer
     bazel run //tools:verify -- --model={name} --checkpoint=/path/to/checkpoint --per_layer
  4. bazel test //tests:conformance_test --test_env=LITEZOO_CONFORMANCE_MODELS={name}
  5. bazel run //tools:evaluate -- --model={name} --output_dir=docs/quality   (pick default_recipe)
  6. bazel run //tools:convert -- --model={name} --checkpoint=/path/to/checkpoint --output_dir=out
  7. Release: bazel run //tools:release -- --model={name} --update_pins
     bazel build //plugins/{name}:release"""


def main(argv):
  del argv
  from litezoo.core.registry import default_registry  # pylint: disable=g-import-not-at-top
  if _NAME.value is None:
    raise ScaffoldError(_NAME_REQUIRED)
  for flag in (_FAMILY, _FROM_CHECKPOINT, _PLUGINS_DIR):
    if flag.value is not None and not flag.value.strip():  # not the current directory, silently
      raise ScaffoldError(f"--{flag.name} is empty: give a value, or leave the flag out")
  if (_FAMILY.value is None) == (_FROM_CHECKPOINT.value is None):
    raise ScaffoldError("give --family=NAME or --from_checkpoint=DIR (one of them)")
  plugins_dir = (common.user_path(_PLUGINS_DIR.value) if _PLUGINS_DIR.value is not None
                 else repo_root() / "plugins")
  registry = default_registry()
  registered = {model: registry.owner(model) for model in registry.names()}
  check_name(_NAME.value, plugins_dir, registered)
  if _FAMILY.value is not None:
    family, config, tiny, note = from_family(
        _FAMILY.value, [registry.get(m) for m in registry.names()])
    origin = f"--family={family}"
  else:
    family, config, tiny, note = from_checkpoint(common.user_path(_FROM_CHECKPOINT.value))
    origin = f"--from_checkpoint={_FROM_CHECKPOINT.value}"
  plugin_dir = scaffold(_NAME.value, render(_NAME.value, family, config, tiny, note, origin),
                        plugins_dir, registered, log=console.log)
  console.out(next_steps(_NAME.value, plugin_dir))
  return 0


if __name__ == "__main__":
  common.run(main)
