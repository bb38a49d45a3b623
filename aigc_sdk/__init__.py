"""aigc-sdk: a plugin-based content-generation SDK for PyTorch.

    import aigc_sdk
    sdk = aigc_sdk.SDK()
    result = sdk.generate("gan", seed=3, n=16)
    result.save("grid.png")

Importing this package is cheap: torch and model code load on first use.

``__all__`` is the public API, the names plugins and hosts may import (see
docs/api.md): the classes and helpers below, and the public modules
``batching``, ``checkpoint``, ``data``, ``media``, ``nn``, ``ops``,
``testing`` and ``training``, each with its own ``__all__``. Everything else
is internal and may change in any release.
"""

import importlib
import logging

from .errors import (
    AigcError,
    CheckpointError,
    PluginError,
    RequestError,
    UnknownNameError,
    UserError,
)
from .generation import (
    AudioRequest,
    GenerationResult,
    Generator,
    ImageRequest,
    Request,
    SamplingRequest,
    TextRequest,
    TextStream,
    check,
    check_device,
    request_field,
    request_schema,
    resolve_seed,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

# A library never prints: hosts see plugin problems as warnings (PluginWarning)
# and may attach a handler to the "aigc_sdk" logger; the CLI does.
logging.getLogger("aigc_sdk").addHandler(logging.NullHandler())

# Public modules, imported on first use: most of them import torch.
PUBLIC_MODULES = ("batching", "checkpoint", "data", "media", "nn", "ops", "testing", "training")

__all__ = [
    # embedding
    "SDK",
    "PluginWarning",
    # errors
    "AigcError",
    "CheckpointError",
    "PluginError",
    "RequestError",
    "UnknownNameError",
    "UserError",
    # generators, requests and results
    "AudioRequest",
    "GenerationResult",
    "Generator",
    "ImageRequest",
    "Request",
    "SamplingRequest",
    "TextRequest",
    "TextStream",
    "check",
    "check_device",
    "request_field",
    "request_schema",
    "resolve_seed",
    # plugins and trainers
    "hookimpl",
    "Trainer",
    # public modules
    *PUBLIC_MODULES,
]


def __getattr__(name: str):
    # The SDK class pulls in pluggy and importlib.metadata; keep `import aigc_sdk` instant.
    if name == "SDK":
        from .sdk import SDK

        return SDK
    if name == "PluginWarning":
        from .plugins import PluginWarning

        return PluginWarning
    if name == "Trainer":  # imports torch: only when asked for
        from .training import Trainer

        return Trainer
    if name in PUBLIC_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'aigc_sdk' has no attribute {name!r}")
