"""Scaffolds an in-tree model plugin from a family: module, test, BUILD, and its place in
plugins/BUILD's `all` list. The scaffold passes the plugin tests and the conformance suite as is.

  bazel run //tools:new_plugin -- --name=mymodel --family=llama
"""

import importlib
import importlib.util
import keyword
import os
import pathlib
import re
import shutil
import string
import sys
import tempfile
from typing import Callable

from absl import flags

from litezoo.core import artifacts
from litezoo.core.spec import ModelSpec
from litezoo.tools import common

TEMPLATES = pathlib.Path(__file__).absolute().parent / "templates"


class ScaffoldError(common.ZooError, ValueError):
  pass


def families() -> list[str]:
  """The families a plugin can be scaffolded from: one config skeleton each."""
  return sorted(p.name.removesuffix(".py.tmpl") for p in (TEMPLATES / "families").glob("*.py.tmpl"))


_NAME = flags.DEFINE_string("name", None, "Model and plugin name: a lowercase Python identifier.",
                            required=True)
_FAMILY = flags.DEFINE_string("family", None, "Family the model belongs to (core/families/): "
                              f"{', '.join(families())}.", required=True)
_PLUGINS_DIR = flags.DEFINE_string("plugins_dir", None, "Where to create the plugin "
                                   "(default: the repository's plugins/).")


def repo_root() -> pathlib.Path:
  """The checkout: the workspace under `bazel run`, else the tree this file is in."""
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  return pathlib.Path(workspace) if workspace else pathlib.Path(__file__).absolute().parents[1]


def check_name(name: str, plugins_dir: pathlib.Path, registered: dict[str, str]) -> None:
  if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
    raise ScaffoldError(f"--name={name!r} is not a lowercase Python identifier (letters, digits "
                        "and underscores, starting with a letter), e.g. --name=mymodel")
  if name in registered:
    raise ScaffoldError(f"model {name!r} is already registered by plugin {registered[name]!r}; "
                        "choose another --name")
  if (plugins_dir / name).exists():
    raise ScaffoldError(f"{plugins_dir / name} already exists; choose another --name or remove it")


def check_family(family: str) -> None:
  if family not in families():
    raise ScaffoldError(f"unknown family {family!r}; choose one of: {', '.join(families())}")


# TensorNames fields in the order a block reads them, for the scaffold's table.
READING_ORDER = ("embedding", "pre_attn_norm", "attn_query_proj", "attn_key_proj",
                 "attn_value_proj", "attn_fused_qkv_proj", "attn_query_norm", "attn_key_norm",
                 "attn_output_proj", "post_attn_norm", "pre_ff_norm", "ff_gate_proj", "ff_up_proj",
                 "ff_down_proj", "post_ff_norm", "final_norm", "lm_head")


def tensor_names_source(family: str) -> str:
  """The family's tensor names as `field="name",` lines, for the contributor to edit."""
  names = vars(importlib.import_module(f"litezoo.core.families.{family}").TENSOR_NAMES)
  lines = []
  for field in READING_ORDER:
    value = f'"{names[field]}"' if names[field] is not None else "None"
    if field == "lm_head":
      lines.append(f"    lm_head={value},  # None when it is the embedding (tie_word_embeddings)")
    elif names[field] is not None:
      lines.append(f"    {field}={value},")
  return "\n".join(lines)


def render(name: str, family: str) -> dict[str, str]:
  """File name -> text of the plugin's files."""
  values = dict(name=name, family=family,
                config=(TEMPLATES / "families" / f"{family}.py.tmpl").read_text(),
                tensor_names=tensor_names_source(family))

  def fill(template: str) -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute(values)

  return {f"{name}.py": fill("plugin.py.tmpl"), f"{name}_test.py": fill("plugin_test.py.tmpl"),
          "BUILD": fill("BUILD.tmpl"), "__init__.py": ""}


_ALL_DEPS = re.compile(r'(name = "all",.*?deps = \[)(.*?)(\n *\],)', re.S)


def add_to_all(build: str, label: str) -> str:
  """plugins/BUILD's text with `label` in the `all` library's deps, kept sorted."""
  match = _ALL_DEPS.search(build)
  if not match:
    raise ScaffoldError(f'no py_library(name = "all", deps = [...]) found to add {label} to')
  labels = re.findall(r'"([^"]+)"', match.group(2))
  indent = re.search(r"\n( *)\"", match.group(2))
  indent = indent.group(1) if indent else " " * 8
  body = "".join(f'\n{indent}"{l}",' for l in sorted(set(labels) | {label}))
  return build[:match.start(2)] + body + build[match.end(2):]


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


def write_pins(spec: ModelSpec, plugin_dir: pathlib.Path, log: Callable[[str], None]) -> None:
  """Records the release pins (release_pins.json) when the release support is there to do it."""
  try:
    from litezoo.core import release  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  if not hasattr(release, "update_pins"):
    return
  # The lock of the checkout the plugin is in, else of the one this tool runs from.
  lock = next((p for p in (plugin_dir.parents[1] / "requirements.lock",
                           repo_root() / "requirements.lock") if p.exists()), None)
  update = f"bazel run //tools:release -- --model={spec.name} --update_pins"
  if lock is None:
    log(f"note: no requirements.lock found, so no release pins written; run `{update}`")
    return
  try:
    log(f"wrote {release.update_pins(spec, plugin_dir, lock)}")
  except common.ZooError as e:
    log(f"note: release pins not written ({e}); run `{update}` once the plugin is filled in")


def scaffold(name: str, family: str, plugins_dir: pathlib.Path, registered: dict[str, str],
             log: Callable[[str], None] = print) -> pathlib.Path:
  """Writes plugins_dir/<name>/ whole or not at all, adds it to plugins_dir/BUILD if there is one,
  and returns the plugin's directory."""
  check_family(family)
  if not plugins_dir.is_dir():
    raise ScaffoldError(f"plugins directory {plugins_dir} does not exist; pass --plugins_dir")
  check_name(name, plugins_dir, registered)
  build_file = plugins_dir / "BUILD"
  # Parsed before anything is written, so a BUILD it cannot edit leaves nothing behind.
  build = add_to_all(build_file.read_text(), f"//plugins/{name}") if build_file.exists() else None
  files = render(name, family)
  final = plugins_dir / name
  staging = pathlib.Path(tempfile.mkdtemp(dir=plugins_dir, prefix=f".{name}.", suffix=".partial"))
  try:
    for file, text in files.items():
      (staging / file).write_text(text)
    specs = load_specs(staging / f"{name}.py")  # the scaffold must import and register
    if [s.name for s in specs] != [name]:
      raise ScaffoldError(f"the scaffold registers {[s.name for s in specs]}, not [{name!r}]")
    staging.chmod(0o755)  # mkdtemp makes 0700
    os.rename(staging, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  log(f"wrote {final}/: {', '.join(sorted(files))}")
  if build is not None:
    with artifacts.atomic_path(build_file) as tmp:
      tmp.write_text(build)
    log(f"added //plugins/{name} to {build_file}")
  else:
    log(f"note: {plugins_dir} has no BUILD; add //plugins/{name} to the `all` list yourself")
  write_pins(specs[0], final, log)
  return final


def next_steps(name: str, plugin_dir: pathlib.Path) -> str:
  return f"""
Next steps (CONTRIBUTING.md has the details):
  1. Edit {plugin_dir}/{name}.py: every TODO. Your model's config.json in CONFIG_BASE,
     the variant named by its size, TENSOR_NAMES checked against your checkpoint, its source pinned.
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
  plugins_dir = (common.user_path(_PLUGINS_DIR.value) if _PLUGINS_DIR.value
                 else repo_root() / "plugins")
  registry = default_registry()
  registered = {model: registry.owner(model) for model in registry.names()}
  plugin_dir = scaffold(_NAME.value, _FAMILY.value, plugins_dir, registered)
  print(next_steps(_NAME.value, plugin_dir))
  return 0


if __name__ == "__main__":
  common.run(main)
