"""The zoo's plugin hooks. A plugin implements them with `litezoo.core.hookimpl`."""

from typing import Callable

import pluggy

from litezoo.core.spec import ModelSpec

PROJECT = "litezoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def litezoo_register_models(register: Callable[[ModelSpec], None]) -> None:
  """Register model specs: call `register(spec)` once per model the plugin provides."""
