"""The registry: in-tree and entry-point plugins by one path, duplicates refused, broken plugins
reported by name without hiding the others."""

import re
import sys
import textwrap

import pytest

from litezoo.core import hookspecs, registry
from litezoo.tests import testing

FAKE_PLUGIN = textwrap.dedent("""
    from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
    from litezoo.families import llama

    @hookimpl
    def litezoo_register_models(register):
      register(ModelSpec(
          name={name!r}, version="1.0.0", variants={{"tiny": Variant({{}}, random_weights=True)}},
          default_variant="tiny", family=llama.FAMILY, signatures=Signatures((8,), 16)))
""")


@pytest.fixture
def site(tmp_path, monkeypatch):
  """A directory on sys.path where tests 'pip install' plugins: a module plus dist-info metadata
  declaring its entry point, exactly what pip writes."""
  monkeypatch.syspath_prepend(str(tmp_path))
  added = []

  def install(dist: str, module: str, source: str, entry_name: str | None = None):
    (tmp_path / f"{module}.py").write_text(source)
    info = tmp_path / f"{dist}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\n{entry_name or dist} = {module}\n")
    added.append(module)

  yield install
  for module in added:
    sys.modules.pop(module, None)


def test_in_tree_plugins_are_found():
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert reg.owner("tinyllama") == "tinyllama"
  assert reg.errors == []


def test_hookspecs_validate_every_plugin():
  pm = registry.plugin_manager()
  pm.check_pending()  # raises if a plugin implements a hook that is not in the specs
  assert pm.hook.litezoo_register_models.spec.namespace is hookspecs


def test_entry_point_plugin_is_registered(site):
  site("zoo-extra", "zoo_extra_plugin", FAKE_PLUGIN.format(name="extra"))
  reg = registry.Registry()
  assert reg.get("extra").version == "1.0.0"
  assert reg.owner("extra") == "zoo-extra"
  assert "tinyllama" in reg.names()


def test_duplicate_model_name_is_refused_naming_both_plugins(site):
  site("zoo-impostor", "zoo_impostor_plugin", FAKE_PLUGIN.format(name="tinyllama"))
  with pytest.raises(registry.DuplicateModelError) as e:
    registry.Registry().names()
  assert "'tinyllama' is registered by two plugins" in str(e.value)
  assert "'tinyllama'" in str(e.value) and "'zoo-impostor'" in str(e.value)


def test_broken_plugin_is_reported_and_does_not_hide_the_others(site):
  site("zoo-broken", "zoo_broken_plugin", "import a_module_that_does_not_exist\n")
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert [e.plugin for e in reg.errors] == ["zoo-broken"]
  assert "a_module_that_does_not_exist" in reg.errors[0].error
  with pytest.raises(registry.UnknownModelError) as e:
    reg.get("nope")
  assert "plugin 'zoo-broken' failed to load" in str(e.value)


def test_plugin_failing_inside_its_hook_is_reported(site):
  site("zoo-raises", "zoo_raises_plugin", textwrap.dedent("""
      from litezoo.core import hookimpl

      @hookimpl
      def litezoo_register_models(register):
        raise RuntimeError("config file missing")
  """))
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert str(reg.errors[0]) == ("plugin 'zoo-raises' failed to load: "
                                "RuntimeError: config file missing")


def test_unknown_model_lists_the_registered_ones():
  with pytest.raises(registry.UnknownModelError) as e:
    registry.Registry().get("gpt-17")
  assert str(e.value).startswith("unknown model 'gpt-17'; registered models: ")
  assert "tinyllama" in str(e.value)


def test_allow_list_keeps_runs_hermetic(site, monkeypatch):
  site("zoo-extra", "zoo_extra_plugin", FAKE_PLUGIN.format(name="extra"))
  monkeypatch.setenv(registry.ALLOW_LIST_ENV, "zoo-extra")
  assert registry.Registry().names() == ["extra"]


def test_plugins_load_lazily_and_once(site):
  reg = registry.Registry()
  site("zoo-extra", "zoo_extra_plugin", FAKE_PLUGIN.format(name="extra"))
  assert "zoo_extra_plugin" not in sys.modules  # nothing imported before the first question
  assert "extra" in reg.names()
  first = reg.get("extra")
  assert reg.get("extra") is first


def test_core_and_every_plugin_import_without_torch_litert_or_transformers():
  """The plugin interface is plain data: listing the models costs none of the heavy stacks."""
  modules = ("litezoo.core", "litezoo.core.registry", "litezoo.families",
             "litezoo.plugins.tinyllama.tinyllama", "litezoo.plugins.gemma3.gemma3")
  for package in ("torch", "ai_edge_litert", "litert_torch", "transformers", "tensorflow"):
    assert testing.modules_imported_by(package, *modules) == [], package


def test_every_tool_binary_sees_every_in_tree_plugin():
  """`bazel run //tools:<tool>` finds plugins only among the binary's own deps (tests put every
  plugin on the path, so running a tool from a test cannot show a missing one): every tool
  binary depends on //plugins:all. (//tools:benchmark did not: "registered models: none".)"""
  build = (testing.RUNFILES_ROOT / "litezoo" / "tools" / "BUILD").read_text()
  binaries = dict(re.findall(r'py_binary\(\s*name = "(\w+)",(.*?)\n\)', build, re.S))
  assert {"convert", "generate", "serve", "benchmark", "bundle", "verify"} <= set(binaries)
  assert [name for name, body in binaries.items() if '"//plugins:all"' not in body] == []
