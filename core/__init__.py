"""The zoo's core: the plugin interface (hookimpl, ModelSpec) and the pipeline plugins feed."""

from litezoo.core.checkpoint import HubPin, PackagedFile
from litezoo.core.hookspecs import hookimpl
from litezoo.core.spec import ModelSpec, Signatures, TensorNames, Variant

__all__ = ["HubPin", "ModelSpec", "PackagedFile", "Signatures", "TensorNames", "Variant", "hookimpl"]
