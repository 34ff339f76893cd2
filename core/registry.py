"""Finds model plugins: in-tree ones under `litezoo/plugins/` and pip-installed ones through the
`litezoo` entry-point group, by one path, once, lazily.

Set LITEZOO_PLUGINS to a comma-separated allow-list of plugin names for hermetic runs.
"""

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class PluginError:
  """A plugin that could not be loaded or failed while registering; the others still load."""

  plugin: str
  error: str

  def __str__(self):
    return f"plugin {self.plugin!r} failed to load: {self.error}"


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


def plugin_manager(allow: Iterable[str] | None = None,
                   errors: list[PluginError] | None = None) -> pluggy.PluginManager:
  """A plugin manager with every in-tree and entry-point plugin registered.

  A plugin that fails to import is appended to `errors` by name instead of hiding the others.
  """
  allowed = set(allow) if allow is not None else None
  errors = errors if errors is not None else []
  pm = pluggy.PluginManager(hookspecs.PROJECT)
  pm.add_hookspecs(hookspecs)

  def add(name: str, load) -> None:
    if allowed is not None and name not in allowed:
      return
    try:
      plugin = load()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(PluginError(name, f"{type(e).__name__}: {e}"))
      return
    if pm.get_plugin(name) is not None:
      errors.append(PluginError(name, "a plugin of this name is already registered"))
      return
    pm.register(plugin, name=name)

  for name, module in _in_tree_plugins():
    add(name, lambda module=module: importlib.import_module(module))
  for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
    add(entry_point.name, entry_point.load)
  pm.check_pending()
  return pm


class Registry:
  """Model specs by name, collected from every plugin on first use."""

  def __init__(self, pm: pluggy.PluginManager | None = None, allow: Iterable[str] | None = None):
    self._pm = pm
    self._allow = allow
    self._models: dict[str, ModelSpec] | None = None
    self._owner: dict[str, str] = {}
    self.errors: list[PluginError] = []
    self._lock = threading.Lock()

  def _collect(self) -> dict[str, ModelSpec]:
    with self._lock:
      if self._models is not None:
        return self._models
      if self._pm is None:
        allow = self._allow
        if allow is None and os.environ.get(ALLOW_LIST_ENV):
          allow = [n.strip() for n in os.environ[ALLOW_LIST_ENV].split(",") if n.strip()]
        self._pm = plugin_manager(allow, self.errors)
      models: dict[str, ModelSpec] = {}
      for plugin, _ in self._pm.list_name_plugin():
        others = [p for name, p in self._pm.list_name_plugin() if name != plugin]
        # Called plugin by plugin, so each spec is attributed to the plugin that registered it.
        hook = self._pm.subset_hook_caller("litezoo_register_models", remove_plugins=others)

        def register(spec: ModelSpec, plugin=plugin) -> None:
          if not isinstance(spec, ModelSpec):
            raise TypeError(f"plugin {plugin!r} registered {type(spec).__name__}, not a ModelSpec")
          if spec.name in models:
            raise DuplicateModelError(
                f"model {spec.name!r} is registered by two plugins: {self._owner[spec.name]!r} "
                f"and {plugin!r}; rename one of them or uninstall one plugin")
          models[spec.name] = spec
          self._owner[spec.name] = plugin

        try:
          hook(register=register)
        except DuplicateModelError:
          raise
        except Exception as e:  # pylint: disable=broad-except
          self.errors.append(PluginError(plugin, f"{type(e).__name__}: {e}"))
      self._models = models
      return models

  def names(self) -> list[str]:
    return sorted(self._collect())

  def get(self, name: str) -> ModelSpec:
    models = self._collect()
    if name not in models:
      known = ", ".join(sorted(models)) or "none"
      message = f"unknown model {name!r}; registered models: {known}"
      if self.errors:
        message += "; " + "; ".join(str(e) for e in self.errors)
      raise UnknownModelError(message)
    return models[name]

  def owner(self, name: str) -> str:
    self._collect()
    return self._owner[name]


_default: Registry | None = None


def default_registry() -> Registry:
  global _default
  if _default is None:
    _default = Registry()
  return _default
