"""The zoo's core: the plugin interface (hookimpl, ModelSpec) and the pipeline plugins feed."""

from litezoo.core.checkpoint import HubPin
from litezoo.core.hookspecs import hookimpl
from litezoo.core.spec import ModelSpec, Signatures, TensorNames, Variant

__all__ = ["HubPin", "ModelSpec", "Signatures", "TensorNames", "Variant", "hookimpl"]
