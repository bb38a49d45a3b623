"""Training: one loop for every trainer plugin.

A plugin subclasses ``Trainer`` (config dataclass, datasets, models, one
step); ``fit`` runs it with seeding, accumulation, mixed precision, EMA,
evaluation, metrics (JSONL + PNG), samples, checkpoints with exact resume,
lifecycle hooks and data parallelism under torchrun. Its command line,
``aigc train NAME ...`` (also ``python -m aigc_sdk.training NAME ...``), is
the CLI's: aigc_sdk/cli/train.py.
"""

from .config import ConfigError, TrainConfig, option
from .loop import FitResult, fit
from .trainer import StepContext, Trainer

__all__ = [
    "ConfigError",
    "FitResult",
    "StepContext",
    "TrainConfig",
    "Trainer",
    "fit",
    "option",
]


def __getattr__(name: str):
    # Deprecated in 0.1: the command line moved to the CLI (aigc_sdk/cli/train.py). This
    # alias, the one place the library reaches into the CLI (and only when asked for it),
    # goes away in the next minor release (docs/api.md, Stability).
    if name == "cli_main":
        import warnings

        warnings.warn(
            "aigc_sdk.training.cli_main is deprecated: run `aigc train NAME ...` or "
            "`python -m aigc_sdk.training NAME ...`",
            DeprecationWarning,
            stacklevel=2,
        )
        from ..cli.train import cli_main

        return cli_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
