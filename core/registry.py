"""Finds model plugins: in-tree ones under `litezoo/plugins/` and pip-installed ones through the
`litezoo` entry-point group, by one path, once, lazily.

Set LITEZOO_PLUGINS to a comma-separated allow-list of plugin names for hermetic runs.
"""

import dataclasses
import difflib
import importlib
import importlib.metadata
import os
import pkgutil
import threading
from typing import Iterable

import pluggy

from litezoo.core import hookspecs
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec

ENTRY_POINT_GROUP = hookspecs.PROJECT
ALLOW_LIST_ENV = "LITEZOO_PLUGINS"
IN_TREE_PACKAGE = "litezoo.plugins"


class UnknownModelError(ZooError, KeyError):
  pass


class DuplicateModelError(ZooError, ValueError):
  pass


class NoModelsError(ZooError, LookupError):
  pass


# The fix every clash or allow-list problem shares.
_CHOOSE_PLUGINS = (f"uninstall one of them, or set {ALLOW_LIST_ENV} to a comma-separated list of "
                   "the plugins to load, leaving one out")


@dataclasses.dataclass(frozen=True)
class PluginError:
  """A plugin that could not be loaded, or failed while registering; the others still load."""

  plugin: str
  error: str
  problem: str = "failed to load"

  def __str__(self):
    return f"plugin {self.plugin!r} {self.problem}: {self.error}"


def _in_tree_plugins() -> Iterable[tuple[str, str]]:
  """(plugin name, module name) for each `plugins/<name>/<name>.py`."""
  try:
    package = importlib.import_module(IN_TREE_PACKAGE)
  except ImportError:
    return []
  found = []
  for info in pkgutil.iter_modules(package.__path__):
    if info.ispkg:
      found.append((info.name, f"{IN_TREE_PACKAGE}.{info.name}.{info.name}"))
  return sorted(found)


def _allow_list() -> list[str] | None:
  """The plugin names in LITEZOO_PLUGINS, or None (every plugin) when it is unset or empty."""
  value = os.environ.get(ALLOW_LIST_ENV, "")
  names = [n.strip() for n in value.split(",") if n.strip()]
  return names or None


def _hooks(pm: pluggy.PluginManager) -> dict[str, str]:
  """Each hook of core/hookspecs.py by name, with its signature as a plugin writes it."""
  return {name: f"{name}({', '.join(caller.spec.argnames)})"
          for name, caller in vars(pm.hook).items()
          if not name.startswith("_") and caller.has_spec()}


def _mismatch(pm: pluggy.PluginManager, e: pluggy.PluginValidationError) -> str:
  """One line for pluggy's several: a hook whose arguments are not the spec's."""
  lines = str(e).splitlines()
  detail = "; ".join(lines[1:]) or str(e)  # line 0 repeats the plugin's name
  return (f"its hook does not match core/hookspecs.py: {detail}; write it as "
          f"{' or '.join(_hooks(pm).values())}")


def _hook_problem(pm: pluggy.PluginManager, plugin) -> tuple[str, str] | None:
  """(problem, error) when a registered plugin's hooks are no litezoo hooks; None if they are.

  Checked plugin by plugin: pluggy's check_pending raises for the first, hiding every plugin.
  """
  hooks = _hooks(pm)
  callers = pm.get_hookcallers(plugin) or []
  for caller in callers:
    mine = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
    if not caller.has_spec() and any(not impl.optionalhook for impl in mine):
      close = difflib.get_close_matches(caller.name, hooks, n=1)
      fix = (f"did you mean {hooks[close[0]]}?" if close
             else f"the hooks are {', '.join(hooks.values())}")
      return ("failed to load",
              f"{caller.name!r} is marked @hookimpl but is no litezoo hook; {fix}")
  if not any(caller.has_spec() for caller in callers):
    return ("registers no models",
            f"it implements no litezoo hook; define {' or '.join(hooks.values())} in it, marked "
            "@litezoo.core.hookimpl")
  return None


def plugin_manager(allow: Iterable[str] | None = None,
                   errors: list[PluginError] | None = None) -> pluggy.PluginManager:
  """A plugin manager with every in-tree and entry-point plugin registered, or those in `allow`.

  A plugin that fails to import, whose hooks do not match core/hookspecs.py or that implements
  none is appended to `errors` by name, and left out, instead of hiding the others; so is a name
  in `allow` (the LITEZOO_PLUGINS allow-list) that no plugin has. Raises nothing for a plugin.
  """
  allowed = list(allow) if allow is not None else None
  errors = errors if errors is not None else []
  pm = pluggy.PluginManager(hookspecs.PROJECT)
  pm.add_hookspecs(hookspecs)
  installed = []

  def add(name: str, load) -> None:
    installed.append(name)
    if allowed is not None and name not in allowed:
      return
    if pm.get_plugin(name) is not None:
      errors.append(PluginError(name, "a plugin of this name is already registered"))
      return
    try:
      plugin = load()
      pm.register(plugin, name=name)  # validates the hooks' arguments, touching nothing if wrong
    except pluggy.PluginValidationError as e:
      errors.append(PluginError(name, _mismatch(pm, e)))
      return
    except Exception as e:  # pylint: disable=broad-except
      errors.append(PluginError(name, f"{type(e).__name__}: {e}"))
      return
    bad = _hook_problem(pm, plugin)
    if bad is not None:
      pm.unregister(plugin)  # left out like a plugin that fails to import: check_pending passes
      errors.append(PluginError(name, bad[1], problem=bad[0]))

  for name, module in _in_tree_plugins():
    add(name, lambda module=module: importlib.import_module(module))
  for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
    add(entry_point.name, entry_point.load)
  for name in [n for n in dict.fromkeys(allowed or []) if n not in installed]:
    errors.append(PluginError(
        name, f"{ALLOW_LIST_ENV}={','.join(allowed)} names it, but the installed plugins are "
        f"{', '.join(sorted(set(installed))) or 'none'}; set {ALLOW_LIST_ENV} to a "
        "comma-separated list of some of those, or unset it to load them all",
        problem="is not installed"))
  return pm


class Registry:
  """Model specs by name, collected from every plugin on first use.

  A plugin that fails is left out and reported in `errors`, and in the errors the registry
  raises; a model name two plugins register is refused, alone, when asked for.
  """

  def __init__(self, pm: pluggy.PluginManager | None = None, allow: Iterable[str] | None = None):
    self._pm = pm
    self._allow = allow
    self._models: dict[str, ModelSpec] | None = None
    self._owner: dict[str, str] = {}
    self._clashes: dict[str, list[str]] = {}  # a model name two plugins register: those plugins
    self.errors: list[PluginError] = []
    self._lock = threading.Lock()

  def _specs_of(self, plugin: str) -> list[ModelSpec]:
    """The specs one plugin registers; raises whatever its hook raises, or TypeError/ValueError
    for what it registers."""
    others = [p for name, p in self._pm.list_name_plugin() if name != plugin]
    # Called plugin by plugin, so each spec is attributed to the plugin that registered it.
    hook = self._pm.subset_hook_caller("litezoo_register_models", remove_plugins=others)
    specs: dict[str, ModelSpec] = {}

    def register(spec: ModelSpec) -> None:
      if not isinstance(spec, ModelSpec):
        raise TypeError(f"plugin {plugin!r} registered {type(spec).__name__}, not a ModelSpec")
      if spec.name in specs:
        raise ValueError(f"it registers model {spec.name!r} twice; register each model once")
      specs[spec.name] = spec

    hook(register=register)
    return list(specs.values())

  def _add(self, models: dict[str, ModelSpec], spec: ModelSpec, plugin: str) -> None:
    """Adds `plugin`'s spec, or makes its name a clash when another plugin has it."""
    if spec.name in self._clashes:
      first = self._clashes[spec.name][0]
      self._clashes[spec.name].append(plugin)
    elif spec.name in models:
      # Neither is dropped silently, nor blocks the other models: the name alone is refused.
      first = self._owner.pop(spec.name)
      del models[spec.name]
      self._clashes[spec.name] = [first, plugin]
    else:
      models[spec.name] = spec
      self._owner[spec.name] = plugin
      return
    self.errors.append(PluginError(
        plugin, f"both register model {spec.name!r}, so neither one's is usable; "
        f"{_CHOOSE_PLUGINS}", problem=f"clashes with plugin {first!r}"))

  def _collect(self) -> dict[str, ModelSpec]:
    with self._lock:
      if self._models is not None:
        return self._models
      if self._pm is None:
        allow = self._allow if self._allow is not None else _allow_list()
        self._pm = plugin_manager(allow, self.errors)
      models: dict[str, ModelSpec] = {}
      for plugin, _ in self._pm.list_name_plugin():
        try:  # all of a plugin's models or, when it fails part way, none
          specs = self._specs_of(plugin)
        except Exception as e:  # pylint: disable=broad-except
          self.errors.append(PluginError(plugin, f"{type(e).__name__}: {e}"))
          continue
        for spec in specs:
          self._add(models, spec, plugin)
      self._models = models
      return models

  def listing(self) -> str:
    """The registered models, comma-separated, then each plugin problem: what tools show."""
    known = ", ".join(sorted(self._collect())) or "none"
    return "; ".join([known, *(str(e) for e in self.errors)])

  def names(self) -> list[str]:
    """The registered model names; raises NoModelsError when plugins failed and left none."""
    models = self._collect()
    if not models and self.errors:
      raise NoModelsError("no models are registered: " + "; ".join(str(e) for e in self.errors))
    return sorted(models)

  def get(self, name: str) -> ModelSpec:
    """The spec of `name`; raises UnknownModelError naming the registered models and every plugin
    problem, or DuplicateModelError when two plugins register it."""
    models = self._collect()
    if name in self._clashes:
      plugins = [repr(p) for p in self._clashes[name]]
      count = "two" if len(plugins) == 2 else str(len(plugins))
      raise DuplicateModelError(
          f"model {name!r} is registered by {count} plugins: {', '.join(plugins[:-1])} and "
          f"{plugins[-1]}; {_CHOOSE_PLUGINS}")
    if name not in models:
      close = difflib.get_close_matches(name, models, n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise UnknownModelError(f"unknown model {name!r}; {hint}registered models: {self.listing()}")
    return models[name]

  def owner(self, name: str) -> str:
    """The plugin that registers `name`; raises as get does."""
    self.get(name)
    return self._owner[name]


_default: Registry | None = None


def default_registry() -> Registry:
  global _default
  if _default is None:
    _default = Registry()
  return _default
