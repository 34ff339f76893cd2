"""The zoo's plugin interface: what a plugin imports (besides its family) and nothing more.

Importing it costs neither torch nor LiteRT nor transformers (tests/core_test.py checks).
"""

from litezoo.core.errors import ZooError
from litezoo.core.hookspecs import hookimpl
from litezoo.core.spec import (Family, HubPin, ModelSpec, PackagedFile, Signatures, TensorNames,
                               UnsupportedConfigError, Variant)

__all__ = ["Family", "HubPin", "ModelSpec", "PackagedFile", "Signatures", "TensorNames",
           "UnsupportedConfigError", "Variant", "ZooError", "hookimpl"]
