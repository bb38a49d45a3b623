"""aigc-sdk: a plugin-based content-generation SDK for PyTorch.

    import aigc_sdk
    sdk = aigc_sdk.SDK()
    result = sdk.generate("gan", seed=3, n=16)
    result.save("grid.png")

Importing this package is cheap: torch and model code load on first use.
"""

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
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

# A library never prints: hosts see plugin problems as warnings (PluginWarning)
# and may attach a handler to the "aigc_sdk" logger; the CLI does.
logging.getLogger("aigc_sdk").addHandler(logging.NullHandler())

__all__ = [
    "SDK",
    "AigcError",
    "AudioRequest",
    "CheckpointError",
    "GenerationResult",
    "Generator",
    "ImageRequest",
    "PluginError",
    "Request",
    "RequestError",
    "SamplingRequest",
    "TextRequest",
    "Trainer",
    "UnknownNameError",
    "UserError",
    "hookimpl",
]


def __getattr__(name: str):
    # The SDK class pulls in pluggy and importlib.metadata; keep `import aigc_sdk` instant.
    if name == "SDK":
        from .sdk import SDK

        return SDK
    if name == "Trainer":  # imports torch: only when asked for
        from .training import Trainer

        return Trainer
    raise AttributeError(f"module 'aigc_sdk' has no attribute {name!r}")
