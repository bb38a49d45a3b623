"""What a trainer plugin implements; the loop (``loop.fit``) does everything else.

A trainer supplies its configuration, datasets, models and the logic of one
step. Seeding, devices, data loading, accumulation, mixed precision, gradient
clipping, EMA, data-parallel sync, evaluation, logging, samples, checkpoints
and exact resume belong to the loop, so every plugin gets them the same way::

    class AutoencoderTrainer(Trainer):
        @dataclass
        class Config(TrainConfig):
            data: str | None = option("digits", "images: a folder or 'digits'")
            latent: int = option(16, "latent size", min=1)

        def datasets(self, data):
            return image_dataset(data, size=32)

        def build(self):
            self.net = Autoencoder(self.config.latent)
            return {"net": self.net}

        def training_step(self, batch, ctx):
            images, _ = batch
            return ctx.optimize(lambda mb: F.mse_loss(self.net(mb[0]), mb[0]))

A GAN declares two optimizers and alternates them; each ``ctx.optimize``
runs forward/backward over the step's micro-batches, syncs gradients across
processes, unscales, clips and steps that optimizer alone::

        def configure_optimizers(self):
            return {"d": self.adamw(self.d.parameters(), lr=self.config.lr_d),
                    "g": self.adamw(self.g.parameters())}

        def training_step(self, batch, ctx):
            d = ctx.optimize(self.discriminator_loss, "d")
            g = ctx.optimize(self.generator_loss, "g")
            return {"d_loss": d["loss"], "g_loss": g["loss"]}
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import PluginError
from .config import TrainConfig

if TYPE_CHECKING:
    from ..data import Splits
    from ..generation import GenerationResult


class Trainer:
    """Base class of every trainer plugin.

    Implement ``datasets``, ``build`` and ``training_step``; optionally
    ``configure_optimizers`` (default: one AdamW over every model),
    ``evaluation_step``, ``samples``, ``export``, ``collate(samples)`` (a
    method replacing torch's default collate) and, for extra state that must
    survive a resume, ``state_dict`` / ``load_state_dict``.

    While a run is going, the loop sets: ``device``, ``rank``, ``world_size``,
    ``step`` (steps done), ``run_dir``, ``splits`` (what ``datasets``
    returned), ``models`` (what ``build`` returned) and ``ema`` (EMA copies
    by model name, when ``ema_decay > 0``; ``ema_models`` limits which).

    Exact resume covers everything the loop owns (weights, optimizers,
    schedulers, loss scale, RNG streams, data order). Datasets should be
    deterministic per index: random augmentation belongs in the step (it
    draws from the restored RNG), not in a data worker.
    """

    Config: ClassVar[type[TrainConfig]] = TrainConfig
    description: ClassVar[str] = ""
    ema_models: ClassVar[tuple[str, ...] | None] = None  # None: every model

    def __init__(self, config: TrainConfig | dict[str, Any] | None = None, **overrides: Any):
        if isinstance(config, dict):
            config = self.Config.from_dict(config)
        elif config is None:
            config = self.Config()
        elif not isinstance(config, self.Config):
            raise PluginError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        if overrides:
            config = config.replace(**overrides)
        self.config = config
        self.name: str = type(self).__name__
        self.device = torch.device("cpu")
        self.rank, self.world_size, self.step = 0, 1, 0
        self.run_dir: Path | None = None
        self.models: dict[str, torch.nn.Module] = {}
        self.ema: dict[str, torch.nn.Module] = {}

    # -- what a plugin implements ----------------------------------------------

    def datasets(self, data: str | None) -> Splits:
        """``Splits(train, eval)`` for ``--data`` (see ``aigc_sdk.data``)."""
        raise NotImplementedError(f"{type(self).__name__}.datasets")

    def build(self) -> dict[str, torch.nn.Module]:
        """Creates the models; returns them by name (all are checkpointed and exported).

        Called after seeding, on every process, before the models are moved to
        ``self.device``; keep references as attributes for ``training_step``.
        """
        raise NotImplementedError(f"{type(self).__name__}.build")

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizers by name: an optimizer, or ``(optimizer, lr_scheduler or None)``.

        The default is one AdamW over every model's trainable parameters, with
        the config's lr, betas, weight decay and schedule.
        """
        params = [p for m in self.models.values() for p in m.parameters() if p.requires_grad]
        return {"main": self.adamw(params)}

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, Any] | None:
        """One training step on ``batch`` (this process's ``batch_size * grad_accum`` samples).

        Call ``ctx.optimize(loss_fn, name)`` once per optimizer update; return
        the metrics to log (tensors or floats), e.g. what ``optimize`` returned.
        """
        raise NotImplementedError(f"{type(self).__name__}.training_step")

    def evaluation_step(self, batch: Any) -> dict[str, Any] | None:
        """Metrics of one held-out batch (the loop averages them, weighted by batch size).

        Runs under ``torch.no_grad`` with the models in eval mode. Use
        ``self.inference_model(name)`` to evaluate the EMA weights.
        """
        return None

    def samples(self) -> GenerationResult | None:
        """Sample artefacts of the current model (image grid, text, audio), or None.

        Runs with the models in eval mode and the RNG seeded with the run's
        seed, so successive samples show the same latents as training goes on.
        """
        return None

    def export(self, directory: Path) -> None:
        """Writes the trained weights for the generator plugin (``save_pretrained``)."""

    def state_dict(self) -> dict[str, Any]:
        """Extra trainer state (tensors, numbers, strings, lists, dicts) kept in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what ``state_dict`` returned."""

    # -- running -------------------------------------------------------------------

    def fit(self, out: str | Path, *, resume: bool = False, sdk: Any = None, quiet: bool = True):
        """Trains into run directory ``out`` (see ``aigc_sdk.training.fit``); a ``FitResult``.

        From a host: ``sdk.trainer("tiny", steps=200).fit("runs/tiny", sdk=sdk)``.
        """
        from .loop import fit

        return fit(self, out, resume=resume, sdk=sdk, quiet=quiet)

    # -- helpers for plugins -----------------------------------------------------

    def adamw(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        weight_decay: float | None = None,
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """AdamW plus the config's warm-up and schedule (arguments override the config)."""
        cfg = self.config
        optimizer = torch.optim.AdamW(
            list(params),
            lr=cfg.lr if lr is None else lr,
            betas=(cfg.beta1, cfg.beta2) if betas is None else betas,
            weight_decay=cfg.weight_decay if weight_decay is None else weight_decay,
        )
        return optimizer, self.lr_scheduler(optimizer)

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """The config's schedule: linear warm-up, then constant, cosine or linear decay."""
        cfg = self.config
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda i: lr_factor(i, cfg.steps, cfg.warmup_steps, cfg.lr_schedule, cfg.min_lr_ratio),
        )

    def inference_model(self, name: str) -> torch.nn.Module:
        """The EMA copy of model ``name`` when EMA is on, else the model itself."""
        return self.ema[name] if name in self.ema else self.models[name]

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - (1 - min_ratio) * progress


class StepContext:
    """What ``training_step`` gets besides the batch: the way to update an optimizer.

    Attributes: ``step`` (0-based index of this step), ``epoch``, ``device``,
    ``batch`` (the step's batch), ``grad_accum``.
    """

    def __init__(self, loop: Any, batch: Any, step: int, epoch: int) -> None:
        self._loop = loop
        self.batch, self.step, self.epoch = batch, step, epoch
        self.device = loop.device
        self.grad_accum = loop.config.grad_accum

    def optimize(
        self, loss_fn: Any, optimizer: str | None = None, batch: Any = None
    ) -> dict[str, torch.Tensor]:
        """One update of ``optimizer`` (name; may be omitted when there is only one).

        ``loss_fn(micro_batch)`` returns a scalar loss, or a dict with a
        ``"loss"`` key plus other scalars to report. It runs under autocast
        on each of the ``grad_accum`` micro-batches of ``batch`` (default:
        the step's batch); gradients are accumulated (weighted by micro-batch
        size), averaged across processes, unscaled, clipped, and the
        optimizer and its scheduler step. Returns the batch-averaged
        ``{"loss": ..., **others}`` as detached tensors.
        """
        return self._loop.optimize(loss_fn, optimizer, self.batch if batch is None else batch)

    def autocast(self):
        """The run's mixed-precision context, for forward passes outside ``optimize``."""
        return self._loop.autocast()

    def sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes of a data-parallel run (itself in one process).

        For state a step adds up from its batch, such as counts: each process
        sees its share of the global batch, and buffers follow rank 0 as under
        DDP, so a count of the local share alone would cover rank 0's share.
        Every process must call it at the same point of the step.
        """
        return self._loop.dist.sum(tensor)
