"""The registry: in-tree and entry-point plugins by one path, duplicates refused, broken plugins
reported by name without hiding the others."""

import os
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
  """Only the name two plugins register is refused; the other models keep working."""
  site("zoo-impostor", "zoo_impostor_plugin", FAKE_PLUGIN.format(name="tinyllama"))
  reg = registry.Registry()
  assert "smollm2" in reg.names() and "tinyllama" not in reg.names()
  assert reg.get("smollm2").name == "smollm2"
  with pytest.raises(registry.DuplicateModelError) as e:
    reg.get("tinyllama")
  assert str(e.value) == (
      "model 'tinyllama' is registered by two plugins: 'tinyllama' and 'zoo-impostor'; uninstall "
      "one of them, or set LITEZOO_PLUGINS to a comma-separated list of the plugins to load, "
      "leaving one out")
  with pytest.raises(registry.DuplicateModelError):
    reg.owner("tinyllama")
  assert [str(e) for e in reg.errors] == [
      "plugin 'zoo-impostor' clashes with plugin 'tinyllama': both register model 'tinyllama', "
      "so neither one's is usable; uninstall one of them, or set LITEZOO_PLUGINS to a "
      "comma-separated list of the plugins to load, leaving one out"]
  with pytest.raises(registry.UnknownModelError, match="plugin 'zoo-impostor' clashes with"):
    reg.get("nope")


def test_duplicate_model_name_leaves_the_tools_working_for_other_models(site, tmp_path):
  site("zoo-impostor", "zoo_impostor_plugin", FAKE_PLUGIN.format(name="tinyllama"))
  env = {"PYTHONPATH": f"{testing.RUNFILES_ROOT}{os.pathsep}{tmp_path}"}
  # Refused past the registry, by the variant: smollm2 itself was found.
  run = testing.run_tool("generate", "--model=smollm2", "--variant=nosuch", "--prompt=hi", env=env)
  assert testing.one_line_error(run, "generate").startswith(
      "generate: error: unknown variant 'nosuch' of model 'smollm2'")
  run = testing.run_tool("generate", "--model=tinyllama", "--prompt=hi", env=env)
  assert testing.one_line_error(run, "generate").startswith(
      "generate: error: model 'tinyllama' is registered by two plugins: 'tinyllama' and "
      "'zoo-impostor'; uninstall one of them, or set LITEZOO_PLUGINS")


def test_plugin_registering_one_name_twice_is_reported(site):
  """None of its models is registered: not the ones before the failure either."""
  site("zoo-twice", "zoo_twice_plugin", FAKE_PLUGIN.format(name="extra").replace(
      "  register(ModelSpec(", "  for _ in range(2):\n    register(ModelSpec("))
  reg = registry.Registry()
  assert "extra" not in reg.names() and "tinyllama" in reg.names()
  assert [str(e) for e in reg.errors] == [
      "plugin 'zoo-twice' failed to load: ValueError: it registers model 'extra' twice; register "
      "each model once"]


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
  assert "did you mean" not in str(e.value)  # nothing is close to it


def test_a_misspelled_model_gets_the_close_name():
  with pytest.raises(registry.UnknownModelError) as e:
    registry.Registry().get("tinylama")
  assert str(e.value).startswith("unknown model 'tinylama'; did you mean 'tinyllama'? "
                                 "registered models: ")


WRONG_ARGUMENT = textwrap.dedent("""
    from litezoo.core import hookimpl

    @hookimpl
    def litezoo_register_models(registr):
      pass
""")


def test_plugin_whose_hook_has_a_wrong_argument_is_reported(site):
  site("zoo-wrongarg", "zoo_wrongarg_plugin", WRONG_ARGUMENT)
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert [str(e) for e in reg.errors] == [
      "plugin 'zoo-wrongarg' failed to load: its hook does not match core/hookspecs.py: hookimpl "
      "definition: litezoo_register_models(registr); Argument(s) {'registr'} are declared in the "
      "hookimpl but can not be found in the hookspec; write it as "
      "litezoo_register_models(register)"]


def test_plugin_with_a_misspelled_hook_is_reported(site):
  site("zoo-misspelled", "zoo_misspelled_plugin", WRONG_ARGUMENT.replace(
      "litezoo_register_models(registr)", "litezoo_register_model(register)"))
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert [str(e) for e in reg.errors] == [
      "plugin 'zoo-misspelled' failed to load: 'litezoo_register_model' is marked @hookimpl but "
      "is no litezoo hook; did you mean litezoo_register_models(register)?"]
  reg._pm.check_pending()  # pylint: disable=protected-access  (it was left out, not half in)


def test_plugin_implementing_no_hook_is_reported(site):
  site("zoo-nohook", "zoo_nohook_plugin", "MODELS = ['forgot the hook']\n")
  reg = registry.Registry()
  assert "tinyllama" in reg.names()
  assert [str(e) for e in reg.errors] == [
      "plugin 'zoo-nohook' registers no models: it implements no litezoo hook; define "
      "litezoo_register_models(register) in it, marked @litezoo.core.hookimpl"]


def test_a_plugin_with_a_bad_hook_leaves_the_tools_working(site, tmp_path):
  """It was a pluggy traceback from every tool."""
  site("zoo-wrongarg", "zoo_wrongarg_plugin", WRONG_ARGUMENT)
  run = testing.run_tool("generate", "--model=gpt-17", "--prompt=hi",
                         env={"PYTHONPATH": f"{testing.RUNFILES_ROOT}{os.pathsep}{tmp_path}"})
  line = testing.one_line_error(run, "generate")
  assert line.startswith("generate: error: unknown model 'gpt-17'; registered models: gemma, ")
  assert "tinyllama; plugin 'zoo-wrongarg' failed to load: its hook does not match " in line
  # A run that works says so too, not only a failed lookup: the plugin's models are missing.
  run = testing.run_tool("generate", "--model=tinyllama", "--variant=tiny", "--prompt=hi",
                         "--max_new_tokens=2", "--kv_cache_max_len=32", "--prefill_seq_lens=8",
                         "--verify_lengths=none",
                         env={"PYTHONPATH": f"{testing.RUNFILES_ROOT}{os.pathsep}{tmp_path}"})
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stderr.startswith("warning: plugin 'zoo-wrongarg' failed to load: its hook does not "
                               "match ")
  assert "(its models are left out; the others work)\n" in run.stderr


def test_listing_names_every_plugin_problem(site):
  site("zoo-broken", "zoo_broken_plugin", "import a_module_that_does_not_exist\n")
  reg = registry.Registry()
  listing = reg.listing()
  assert listing.startswith(", ".join(reg.names()) + "; plugin 'zoo-broken' failed to load: ")
  assert "a_module_that_does_not_exist" in listing


def test_allow_list_keeps_runs_hermetic(site, monkeypatch):
  site("zoo-extra", "zoo_extra_plugin", FAKE_PLUGIN.format(name="extra"))
  monkeypatch.setenv(registry.ALLOW_LIST_ENV, "zoo-extra")
  assert registry.Registry().names() == ["extra"]


def test_allow_list_naming_no_installed_plugin_says_so(monkeypatch):
  monkeypatch.setenv(registry.ALLOW_LIST_ENV, "nosuch")
  reg = registry.Registry()
  with pytest.raises(registry.NoModelsError) as e:
    reg.names()
  assert str(e.value).startswith(
      "no models are registered: plugin 'nosuch' is not installed: LITEZOO_PLUGINS=nosuch names "
      "it, but the installed plugins are gemma, gemma3, ")
  assert str(e.value).endswith(
      "tinyllama; set LITEZOO_PLUGINS to a comma-separated list of some of those, or unset it to "
      "load them all")
  with pytest.raises(registry.UnknownModelError, match=r"registered models: none; plugin 'nosuch' "
                     r"is not installed: LITEZOO_PLUGINS=nosuch names it"):
    reg.get("tinyllama")


def test_allow_list_naming_one_missing_plugin_keeps_the_others(monkeypatch):
  monkeypatch.setenv(registry.ALLOW_LIST_ENV, "tinyllama, nosuch")
  reg = registry.Registry()
  assert reg.names() == ["tinyllama"]
  assert [(e.plugin, e.problem) for e in reg.errors] == [("nosuch", "is not installed")]
  assert "LITEZOO_PLUGINS=tinyllama,nosuch names it" in str(reg.errors[0])


def test_empty_allow_list_tells_the_tools_which_variable_to_fix():
  run = testing.run_tool("generate", "--prompt=hi", env={registry.ALLOW_LIST_ENV: "nosuch"})
  assert testing.one_line_error(run, "generate").startswith(
      "generate: error: give --model=NAME or --checkpoint=DIR (a Hugging Face directory or a .gguf "
      "file); registered models: none; plugin 'nosuch' is not installed: LITEZOO_PLUGINS=nosuch "
      "names it")


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
