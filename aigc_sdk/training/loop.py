"""The training loop every trainer plugin shares: ``fit(trainer, out)``.

One run directory holds everything a run makes::

    run.json                     resolved config, data, devices, versions
    metrics.jsonl / metrics.png  logged metrics and their plot
    samples/step-000500.png      sample artefacts (image grid, text, audio)
    checkpoints/step-000500/     weights, optimizer state, RNG, data position
    checkpoints/latest           name of the newest checkpoint
    model/                       the trainer's export (save_pretrained)

A step is: next batch -> ``trainer.training_step`` (which calls
``ctx.optimize`` per optimizer) -> EMA -> metrics -> hooks -> evaluation,
samples and checkpoint when due. Everything that decides the next step
(weights, optimizer, scheduler, loss scale, RNG streams, data position)
is checkpointed, so a resumed run is bitwise identical to an uninterrupted
one on the CPU.
"""

from __future__ import annotations

import contextlib
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_into
from ..data import DataError, Splits
from ..errors import AigcError, CheckpointError, PluginError
from ..media import MEDIA_SUFFIX, atomic_write
from . import checkpointing
from .batches import batch_size, split_batch, to_device
from .config import ConfigError
from .distributed import Distributed, rng_from_json, rng_to_json
from .ema import EMA
from .metrics import MetricsLog, plot_metrics
from .progress import Progress, format_metrics
from .sampler import DataPosition, StepBatches
from .state import (
    DATA_WORKER_STREAM,
    EVALUATION_STREAM,
    INIT_STREAM,
    TRAINING_STREAM,
    derived_seed,
    digest_tensors,
    dumps,
    flatten,
    preserved_rng,
    rng_state,
    seed_everything,
    set_rng_state,
    unflatten,
)
from .trainer import StepContext, Trainer

CHECKPOINT_FORMAT = 1
PLOT_INTERVAL = 60.0  # seconds: metrics.png is redrawn at checkpoints at most this often


@dataclass
class FitResult:
    """What a finished run produced."""

    run_dir: Path
    step: int
    checkpoint: Path | None = None
    export: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    stopped: bool = False  # by SIGTERM, after checkpointing: continue with resume=True


def fit(
    trainer: Trainer,
    out: str | Path,
    *,
    resume: bool = False,
    sdk: Any = None,
    quiet: bool = False,
) -> FitResult:
    """Trains ``trainer`` for ``trainer.config.steps`` steps into the run directory ``out``.

    ``resume=True`` continues from the newest checkpoint in ``out`` (or starts
    fresh when there is none). ``sdk`` receives the lifecycle hooks
    (``aigc_train_step_end`` and friends). Under ``torchrun`` every process
    calls this; rank 0 logs, samples, checkpoints and exports.
    """
    if not isinstance(trainer, Trainer):
        raise PluginError(f"{type(trainer).__name__} is not an aigc_sdk.training.Trainer")
    loop = Loop(trainer, Path(out), sdk=sdk, quiet=quiet)
    finished = False
    try:
        result = loop.run(resume)
        finished = True
        return result
    finally:
        loop.close(finished=finished)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "config key 'precision': fp16 needs a CUDA device (loss scaling); use bf16 on the CPU"
        )
    return precision, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _overrides(trainer: Trainer, method: str) -> bool:
    return getattr(type(trainer), method) is not getattr(Trainer, method)


class Loop:
    def __init__(self, trainer: Trainer, run_dir: Path, sdk: Any, quiet: bool) -> None:
        self.trainer, self.config, self.run_dir, self.sdk = trainer, trainer.config, run_dir, sdk
        self.dist = Distributed()
        self.device = self.dist.device(self.config.device)
        self.precision, self.amp_dtype = resolve_precision(self.config.precision, self.device)
        self.quiet = quiet or not self.dist.is_main
        self.progress: Progress | None = None
        self.metrics_log: MetricsLog | None = None
        self.step = 0
        self.position = DataPosition()
        self.window: dict[str, list[float]] = {}  # metric -> [sum, count] since the last log
        self.step_metrics: dict[str, torch.Tensor] = {}
        self.last_metrics: dict[str, float] = {}
        self.eval_metrics: dict[str, float] = {}
        self.last_checkpoint: Path | None = None
        self.started = self.last_plot = time.perf_counter()
        self.sigterm = self.stopped = False
        self.was_deterministic: bool | None = None

    # -- setup -------------------------------------------------------------------

    def run(self, resume: bool) -> FitResult:
        checkpoint = self._find_checkpoint(resume)
        self.dist.start(self.device)
        if self.config.deterministic:
            self.was_deterministic = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._prepare()
        if checkpoint is not None:
            self._load(checkpoint)
        if self.dist.is_main:
            self._start_outputs(resume=checkpoint is not None)
        try:
            with self._graceful_sigterm():
                self._train()
        except KeyboardInterrupt:
            self._say(
                f"interrupted at step {self.step}; the last checkpoint is "
                f"{self.last_checkpoint or 'none'}: continue with --resume"
            )
            raise
        return self._finish()

    def _find_checkpoint(self, resume: bool) -> Path | None:
        existing = checkpointing.latest_checkpoint(self.run_dir)
        if existing is not None and not resume:
            raise AigcError(
                f"{self.run_dir} already holds a training run (checkpoint {existing.name}); "
                f"pass --resume to continue it, or choose another --out"
            )
        if resume and existing is None:
            self._say(
                f"no checkpoint in {self.run_dir / checkpointing.CHECKPOINTS}: starting fresh"
            )
        return existing

    def _prepare(self) -> None:
        cfg, t = self.config, self.trainer
        t.device, t.rank, t.world_size = self.device, self.dist.rank, self.dist.world_size
        t.run_dir, t.step = self.run_dir, 0
        # Initialisation draws from a stream shared by every rank; training from one per rank.
        seed_everything(derived_seed(cfg.seed, INIT_STREAM))
        self.splits = t.datasets(cfg.data)
        if not isinstance(self.splits, Splits):
            raise PluginError(
                f"{type(t).__name__}.datasets must return aigc_sdk.data.Splits, "
                f"got {type(self.splits).__name__}"
            )
        if not hasattr(self.splits.train, "__len__") or not hasattr(
            self.splits.train, "__getitem__"
        ):
            raise PluginError(
                f"{type(t).__name__}.datasets: the training set must be map-style "
                f"(__len__ and __getitem__), so that its order can be resumed exactly"
            )
        t.splits = self.splits
        self.models = self._build_models()
        t.models = self.models
        ema_names = t.ema_models if t.ema_models is not None else tuple(self.models)
        self.emas = (
            {n: EMA(self.models[n], cfg.ema_decay) for n in ema_names} if cfg.ema_decay > 0 else {}
        )
        t.ema = {name: ema.model for name, ema in self.emas.items()}
        self.optimizers = self._build_optimizers()
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.sampler = StepBatches(
            len(self.splits.train),
            cfg.batch_size * cfg.grad_accum,
            self.dist.world_size,
            self.dist.rank,
            cfg.seed,
        )
        self.batches = None
        self.wants_step_hook = self._has_hook("aigc_train_step_end")
        seed_everything(derived_seed(cfg.seed, TRAINING_STREAM, self.dist.rank))

    def _build_models(self) -> dict[str, torch.nn.Module]:
        models = self.trainer.build()
        name = type(self.trainer).__name__
        if not isinstance(models, dict) or not models:
            raise PluginError(f"{name}.build must return a non-empty dict of name: nn.Module")
        for key, model in models.items():
            if not isinstance(model, torch.nn.Module):
                raise PluginError(f"{name}.build: {key!r} is {type(model).__name__}, not nn.Module")
            if key == "ema" or "." in key:
                raise PluginError(f"{name}.build: model name {key!r} is reserved or has a dot")
            model.to(self.device)
            self.dist.broadcast_(list(model.parameters()) + list(model.buffers()))
        return models

    def _build_optimizers(self) -> dict[str, tuple[Any, Any, list[torch.nn.Parameter]]]:
        name = type(self.trainer).__name__
        declared = self.trainer.configure_optimizers()
        if not isinstance(declared, dict) or not declared:
            raise PluginError(f"{name}.configure_optimizers must return a non-empty dict")
        optimizers = {}
        for key, value in declared.items():
            optimizer, scheduler = value if isinstance(value, tuple) else (value, None)
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise PluginError(
                    f"{name}.configure_optimizers: {key!r} is {type(optimizer).__name__}, "
                    f"not a torch optimizer"
                )
            params = [p for group in optimizer.param_groups for p in group["params"]]
            optimizers[key] = (optimizer, scheduler, params)
        return optimizers

    def _start_outputs(self, resume: bool) -> None:
        cfg, t = self.config, self.trainer
        info = {
            "trainer": t.name,
            "trainer_class": f"{type(t).__module__}:{type(t).__qualname__}",
            "config": cfg.to_dict(),
            "data": self.splits.info,
            "world_size": self.dist.world_size,
            "global_batch": self.sampler.global_batch,
            "device": str(self.device),
            "precision": self.precision,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        checkpointing.remove_leftovers(self.run_dir)
        atomic_write(self.run_dir / "run.json", (dumps(info) + "\n").encode())
        self.metrics_log = MetricsLog(self.run_dir / "metrics.jsonl", self.step if resume else None)
        self.progress = Progress(
            cfg.steps, self.step, enabled=not self.quiet, desc=t.name, stream=sys.stderr
        )
        processes = self.dist.world_size
        self._say(
            f"{t.name}: {self.splits.describe()} | steps {self.step}->{cfg.steps} | global batch "
            f"{self.sampler.global_batch} = {cfg.batch_size} x {cfg.grad_accum} accum x "
            f"{processes} process{'es' if processes > 1 else ''} | {self.device} {self.precision}"
            f" | {self.run_dir}"
        )

    # -- the loop ------------------------------------------------------------------

    def _train(self) -> None:
        cfg = self.config
        while self.step < cfg.steps:
            batch = self._next_batch()
            for model in self.models.values():
                model.train()
            self.step_metrics = {}
            ctx = StepContext(self, batch, self.step, self.position.epoch)
            returned = self.trainer.training_step(batch, ctx) or {}
            self.position.offset += self.sampler.global_batch
            self.step += 1
            self.trainer.step = self.step
            if self.dist.enabled:
                # Buffers (batch-norm statistics) follow rank 0, as DDP's broadcast_buffers
                # makes them, and before the EMA copies them: every rank then holds one state.
                self.dist.broadcast_(b for m in self.models.values() for b in m.buffers())
            for name, ema in self.emas.items():
                ema.update(self.models[name])
            step_metrics = {**dict(returned), **self.step_metrics}
            self._accumulate(step_metrics)
            logged = self._log() if self._due(cfg.log_every) else None
            if self.dist.is_main and self.wants_step_hook:
                self._notify(
                    "aigc_train_step_end", step=self.step, metrics=self._floats(step_metrics)
                )
            if self.progress is not None:
                self.progress.step(self.step, logged)
            if self._due(cfg.eval_every):
                self._evaluate()
            if self._due(cfg.sample_every):
                self._samples()
            checkpointed = self._due(cfg.checkpoint_every)
            if checkpointed:
                self._checkpoint()
            if self._stop_requested():
                if not checkpointed:
                    self._checkpoint()
                self.stopped = True
                return

    @contextlib.contextmanager
    def _graceful_sigterm(self):
        """SIGTERM (a scheduler preempting the job) ends the run at a step boundary.

        The loop checkpoints and returns instead of dying mid-step; the same
        command with --resume continues exactly.
        """
        self.sigterm = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self.sigterm = True

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _stop_requested(self) -> bool:
        if not self.dist.enabled:
            return self.sigterm
        # Ranks must agree on the step they stop at; asking costs a collective, so not every step.
        return self._due(self.config.log_every) and self.dist.any(self.sigterm)

    def _due(self, every: int) -> bool:
        """Every ``every`` steps (0: never) and always at the last step."""
        if self.step == self.config.steps:
            return True
        return every > 0 and self.step % every == 0

    def _next_batch(self) -> Any:
        if not self.sampler.fits(self.position.offset):
            self.position = DataPosition(self.position.epoch + 1, 0)
            self.batches = None
        if self.batches is None:
            self.batches = self._epoch_iterator()
        try:
            batch = next(self.batches)
        except AigcError as exc:
            raise _unwrap_worker_error(exc) from None
        return to_device(batch, self.device)

    def _epoch_iterator(self):
        cfg, t = self.config, self.trainer
        self.sampler.position = DataPosition(self.position.epoch, self.position.offset)
        generator = torch.Generator().manual_seed(
            derived_seed(cfg.seed, DATA_WORKER_STREAM, self.position.epoch, self.dist.rank)
        )
        loader = torch.utils.data.DataLoader(
            self.splits.train,
            batch_sampler=self.sampler,
            num_workers=cfg.num_workers,
            collate_fn=t.collate if _overrides_collate(t) else None,
            pin_memory=self.device.type == "cuda",
            generator=generator,  # worker seeds come from here, never from the global RNG
        )
        return iter(loader)

    # -- one optimizer update ------------------------------------------------------------

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def optimize(self, loss_fn: Any, name: str | None, batch: Any) -> dict[str, torch.Tensor]:
        name = self._optimizer_name(name)
        optimizer, scheduler, params = self.optimizers[name]
        micro_batches = split_batch(batch, self.config.grad_accum)
        total = batch_size(batch) or len(micro_batches)
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        for micro in micro_batches:
            weight = (batch_size(micro) or 1) / total
            with self.autocast():
                loss, extras = self._loss(loss_fn(micro), name)
            scaled = loss.float() * weight
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            for key, value in {"loss": loss, **extras}.items():
                value = torch.as_tensor(value).detach().float() * weight
                sums[key] = sums[key] + value if key in sums else value
        self.dist.average_gradients_(params)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.config.clip_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm)
            self.step_metrics[self._per_optimizer("grad_norm", name)] = norm.detach()
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return sums

    def _optimizer_name(self, name: str | None) -> str:
        if name is None:
            if len(self.optimizers) != 1:
                raise PluginError(
                    f"ctx.optimize needs the optimizer's name: {type(self.trainer).__name__} "
                    f"has {', '.join(self.optimizers)}"
                )
            return next(iter(self.optimizers))
        if name not in self.optimizers:
            raise PluginError(
                f"ctx.optimize: no optimizer {name!r}; configure_optimizers returned "
                f"{', '.join(self.optimizers)}"
            )
        return name

    def _loss(self, value: Any, name: str) -> tuple[torch.Tensor, dict[str, Any]]:
        extras: dict[str, Any] = {}
        if isinstance(value, dict):
            if "loss" not in value:
                raise PluginError(f"the loss function of optimizer {name!r} returned no 'loss'")
            extras = {k: v for k, v in value.items() if k != "loss"}
            value = value["loss"]
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise PluginError(
                f"the loss of optimizer {name!r} must be a scalar tensor, got {shape}"
            )
        return value.reshape(()), extras

    def _per_optimizer(self, key: str, name: str) -> str:
        return key if len(self.optimizers) == 1 else f"{key}/{name}"

    # -- metrics ---------------------------------------------------------------------------

    def _accumulate(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().double()
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            total = self.window.get(key)
            self.window[key] = [value, 1] if total is None else [total[0] + value, total[1] + 1]

    def _log(self) -> dict[str, float]:
        means = {k: float(total) / count for k, (total, count) in self.window.items()}
        means = self.dist.mean(means)
        self.window = {}
        for name, (optimizer, _, _) in self.optimizers.items():
            means[self._per_optimizer("lr", name)] = float(optimizer.param_groups[0]["lr"])
        self.last_metrics = means
        if self.metrics_log is not None:
            record = {
                "step": self.step,
                "epoch": self.position.epoch,
                "seconds": round(time.perf_counter() - self.started, 3),
                **means,
            }
            self.metrics_log.append(record)
        return means

    @staticmethod
    def _floats(metrics: dict[str, Any]) -> dict[str, float]:
        out = {}
        for key, value in metrics.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number or (isinstance(value, torch.Tensor) and value.numel() == 1):
                out[key] = float(value)
        return out

    # -- evaluation and samples --------------------------------------------------------------

    @contextlib.contextmanager
    def _inference(self, seed: int):
        """Eval mode, no grad, autocast and a fixed seed; the training RNG is left untouched."""
        with preserved_rng(), torch.no_grad(), self.autocast():
            seed_everything(seed)
            for model in self.models.values():
                model.eval()
            try:
                yield
            finally:
                for model in self.models.values():
                    model.train()

    def _evaluate(self) -> None:
        held_out = self.splits.eval
        if not self.dist.is_main or held_out is None:
            return
        if not _overrides(self.trainer, "evaluation_step"):
            return
        cfg = self.config
        loader = torch.utils.data.DataLoader(
            held_out,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            collate_fn=self.trainer.collate if _overrides_collate(self.trainer) else None,
        )
        sums: dict[str, float] = {}
        count = 0
        with self._inference(derived_seed(cfg.seed, EVALUATION_STREAM)):
            for index, batch in enumerate(loader):
                if cfg.eval_batches and index >= cfg.eval_batches:
                    break
                batch = to_device(batch, self.device)
                metrics = self._floats(self.trainer.evaluation_step(batch) or {})
                size = batch_size(batch) or 1
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value * size
                count += size
        if not sums:
            return
        self.eval_metrics = {f"eval/{k}": v / count for k, v in sums.items()}
        if self.metrics_log is not None:
            self.metrics_log.append({"step": self.step, **self.eval_metrics})
        self._say(f"step {self.step}: {format_metrics(self.eval_metrics)}")
        self._notify("aigc_evaluation_end", step=self.step, metrics=dict(self.eval_metrics))

    def _samples(self) -> None:
        if not self.dist.is_main or not _overrides(self.trainer, "samples"):
            return
        with self._inference(self.config.seed):
            result = self.trainer.samples()
        if result is None:
            return
        samples = self.run_dir / "samples"
        samples.mkdir(exist_ok=True)
        result.save(samples / f"step-{self.step:06d}{MEDIA_SUFFIX[result.modality]}")
        self._notify("aigc_training_samples", step=self.step, samples=result)

    # -- checkpoints -------------------------------------------------------------------------

    def _model_parts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each model's and each EMA copy's state dict, by the prefix its keys get on disk."""
        parts = {name: model.state_dict() for name, model in self.models.items()}
        parts.update({f"ema.{name}": ema.model.state_dict() for name, ema in self.emas.items()})
        return parts

    def _checkpoint(self) -> None:
        parts = self._model_parts()
        model_tensors = {f"{p}.{k}": v for p, tensors in parts.items() for k, v in tensors.items()}
        optimizer_tensors: dict[str, torch.Tensor] = {}
        optimizers = {}
        for name, (optimizer, scheduler, _) in self.optimizers.items():
            optimizers[name] = {
                "optimizer": flatten(
                    optimizer.state_dict(), f"{name}.optimizer", optimizer_tensors
                ),
                "scheduler": None
                if scheduler is None
                else flatten(scheduler.state_dict(), f"{name}.scheduler", optimizer_tensors),
            }
        rng = self.dist.gather_json(rng_to_json(rng_state()))
        digests = None
        if self.dist.enabled:
            digests = self.dist.gather_json(
                self._state_digests(parts, optimizers, optimizer_tensors)
            )
            self._check_in_sync(digests)
        if not self.dist.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "trainer": self.trainer.name,
            "trainer_class": f"{type(self.trainer).__module__}:{type(self.trainer).__qualname__}",
            "step": self.step,
            "epoch": self.position.epoch,
            "offset": self.position.offset,
            "global_batch": self.sampler.global_batch,
            "world_size": self.dist.world_size,
            "config": self.config.to_dict(),
            "data": self.splits.info,
            "rng": rng,
            "rank_state_sha256": digests,
            "optimizers": optimizers,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "ema_updates": {name: ema.updates for name, ema in self.emas.items()},
            "window": {k: [float(total), count] for k, (total, count) in self.window.items()},
            "metrics": self.last_metrics,
            "eval_metrics": self.eval_metrics,
            "trainer_state": flatten(self.trainer.state_dict(), "trainer", optimizer_tensors),
        }
        path = checkpointing.write_checkpoint(
            self.run_dir, self.step, model_tensors, optimizer_tensors, state
        )
        checkpointing.prune(self.run_dir, self.config.keep_checkpoints)
        self.last_checkpoint = path
        self._notify("aigc_checkpoint_saved", step=self.step, path=path)
        if time.perf_counter() - self.last_plot > PLOT_INTERVAL:
            self._plot()

    def _state_digests(
        self,
        parts: dict[str, dict[str, torch.Tensor]],
        optimizers: dict[str, Any],
        optimizer_tensors: dict[str, torch.Tensor],
    ) -> dict[str, str]:
        """A fingerprint of each part of the state every rank must agree on.

        Models and EMA copies (weights and buffers) and each optimizer with its
        scheduler; the RNG streams are left out, since they differ by design.
        """
        digests = {name: digest_tensors(tensors) for name, tensors in parts.items()}
        for name, structure in optimizers.items():
            prefix = f"{name}."
            tensors = {k: v for k, v in optimizer_tensors.items() if k.startswith(prefix)}
            digests[f"optimizer.{name}"] = digest_tensors(tensors, extra=dumps(structure))
        return digests

    def _check_in_sync(self, digests: list[dict[str, str]]) -> None:
        """Stops the run on every rank when a rank's state differs from rank 0's."""
        differing = {
            rank: [part for part, digest in theirs.items() if digests[0].get(part) != digest]
            for rank, theirs in enumerate(digests)
        }
        differing = {rank: parts for rank, parts in differing.items() if parts}
        if differing:
            where = "; ".join(f"rank {r}: {', '.join(p)}" for r, p in differing.items())
            raise AigcError(
                f"training state diverged across processes at step {self.step} "
                f"(differs from rank 0 in {where})"
            )

    def _load(self, path: Path) -> None:
        state, model_tensors, optimizer_tensors = checkpointing.read_checkpoint(path)
        t = self.trainer
        this_class = f"{type(t).__module__}:{type(t).__qualname__}"
        if state.get("trainer") != t.name and state.get("trainer_class") != this_class:
            raise CheckpointError(
                f"{path} is a checkpoint of trainer {state.get('trainer')!r}, not {t.name!r}"
            )
        self._note_config_changes(state.get("config", {}))
        source = path / checkpointing.MODEL_FILE
        for name, model in self.models.items():
            load_into(model, _prefixed(model_tensors, f"{name}."), f"{source} (model {name!r})")
        for name, ema in self.emas.items():
            tensors = _prefixed(model_tensors, f"ema.{name}.")
            if tensors:
                load_into(ema.model, tensors, f"{source} (EMA of {name!r})")
                ema.updates = state.get("ema_updates", {}).get(name, 0)
            else:
                ema.model.load_state_dict(self.models[name].state_dict())
        for name, (optimizer, scheduler, _) in self.optimizers.items():
            saved = state.get("optimizers", {}).get(name)
            if saved is None:
                raise CheckpointError(f"{path} has no state for optimizer {name!r}")
            try:
                optimizer.load_state_dict(unflatten(saved["optimizer"], optimizer_tensors))
                if scheduler is not None and saved.get("scheduler") is not None:
                    scheduler.load_state_dict(unflatten(saved["scheduler"], optimizer_tensors))
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(
                    f"{path}: the state of optimizer {name!r} does not fit: {exc}"
                ) from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        t.load_state_dict(unflatten(state.get("trainer_state", {}), optimizer_tensors))
        self.step = t.step = int(state["step"])
        self.position = DataPosition(int(state["epoch"]), int(state["offset"]))
        self.window = {k: [torch.tensor(v[0], dtype=torch.float64), v[1]] for k, v in
                       state.get("window", {}).items()}  # fmt: skip
        self.last_metrics = state.get("metrics", {})
        self.eval_metrics = state.get("eval_metrics", {})
        self.last_checkpoint = path
        self._restore_rng(state.get("rng") or [])

    def _restore_rng(self, saved: list[dict[str, Any]]) -> None:
        if len(saved) == self.dist.world_size:
            set_rng_state(rng_from_json(saved[self.dist.rank]))
            return
        self._say(
            f"the checkpoint was written by {len(saved)} processes, this run has "
            f"{self.dist.world_size}: random streams restart (the run is no longer exact)"
        )
        seed_everything(derived_seed(self.config.seed, TRAINING_STREAM, self.dist.rank, self.step))

    def _note_config_changes(self, saved: dict[str, Any]) -> None:
        current = self.config.to_dict()
        changed = [
            f"{k} {saved[k]!r} -> {current[k]!r}"
            for k in current
            if k in saved and saved[k] != current[k]
        ]
        if changed:
            self._say("resuming with a changed config: " + ", ".join(changed))

    # -- the end ---------------------------------------------------------------------------

    def _finish(self) -> FitResult:
        rate = self.progress.rate(self.step) if self.progress is not None else 0.0
        export = None
        if self.stopped:
            if self.progress is not None:
                self.progress.close()
            self._say(
                f"stopped by SIGTERM at step {self.step}; checkpoint {self.last_checkpoint}: "
                f"continue with --resume"
            )
            return FitResult(
                self.run_dir, self.step, self.last_checkpoint, None, dict(self.last_metrics),
                dict(self.eval_metrics), stopped=True,
            )  # fmt: skip
        if self.dist.is_main and _overrides(self.trainer, "export"):
            export = self.run_dir / "model"
            with self._inference(self.config.seed):
                self.trainer.export(export)
        if self.dist.is_main:
            self._plot()
            if self.progress is not None:
                self.progress.close()
            summary = format_metrics({**self.last_metrics, **self.eval_metrics}, limit=8)
            self._say(
                f"done at step {self.step} ({rate:.1f} steps/s): {summary}"
                + (f" | model: {export}" if export else "")
                + f" | checkpoint: {self.last_checkpoint}"
            )
        return FitResult(
            self.run_dir,
            self.step,
            self.last_checkpoint,
            export,
            dict(self.last_metrics),
            dict(self.eval_metrics),
        )

    def _plot(self) -> None:
        self.last_plot = time.perf_counter()
        if self.dist.is_main and self.metrics_log is not None:
            plot_metrics(
                self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png", self.trainer.name
            )

    def close(self, *, finished: bool) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.metrics_log is not None:
            self.metrics_log.close()
        if self.was_deterministic is not None:
            torch.use_deterministic_algorithms(self.was_deterministic)
        self.dist.close(synchronize=finished)

    # -- plumbing ----------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.write(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def _has_hook(self, name: str) -> bool:
        if self.sdk is None:
            return False
        return bool(getattr(self.sdk.plugin_manager.hook, name).get_hookimpls())

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if self.sdk is not None and self.dist.is_main:
            self.sdk.notify(hook, trainer=self.trainer, **kwargs)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _overrides_collate(trainer: Trainer) -> bool:
    return callable(getattr(type(trainer), "collate", None))


def _unwrap_worker_error(exc: AigcError) -> AigcError:
    """A data worker's error, re-raised by the DataLoader with a traceback, as one line."""
    message = str(exc)
    if "Original Traceback" not in message:
        return exc
    last = message.strip().splitlines()[-1]
    _, _, text = last.partition(": ")
    return DataError(text or last)
