"""Training: one loop for every trainer plugin.

A plugin subclasses ``Trainer`` (config dataclass, datasets, models, one
step); ``fit`` runs it with seeding, accumulation, mixed precision, EMA,
evaluation, metrics (JSONL + PNG), samples, checkpoints with exact resume,
lifecycle hooks and data parallelism under torchrun. ``cli_main`` is
``aigc train NAME ...``; ``python -m aigc_sdk.training NAME ...`` runs it too.
"""

from .cli import cli_main
from .config import ConfigError, TrainConfig, option
from .loop import FitResult, fit
from .trainer import StepContext, Trainer

__all__ = [
    "ConfigError",
    "FitResult",
    "StepContext",
    "TrainConfig",
    "Trainer",
    "cli_main",
    "fit",
    "option",
]
