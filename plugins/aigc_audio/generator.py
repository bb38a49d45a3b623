"""The ``audio`` generator: WaveNet sampled one sample at a time with conv queues.

Every step draws the next mu-law sample of all ``n`` clips at once with the
fused sampler (``aigc_sdk.ops.sample``: temperature, top-k, top-p, min-p and
the draw in one pass, Philox-seeded per row and step), so the same seed gives
the same audio on every machine and device.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aigc_sdk import GenerationResult, Generator, RequestError, resolve_seed
from aigc_sdk.ops import has_kernel, sample

from .model import START, ConvQueues, NumpyConvQueues, QueuePlan, WaveNet, mu_law_decode
from .request import WaveNetRequest
from .spectrogram import spectrogram_png
from .weights import load_wavenet


def resolve_labels(
    model: WaveNet, label: str | int | None, n: int, rng: torch.Generator
) -> torch.Tensor | None:
    """The label index of each clip, or None for an unconditional model."""
    names = model.cfg.labels
    if not names:
        if label is not None:
            raise RequestError("label: this model is unconditional; leave label unset")
        return None
    if label is None:
        counts = model.label_counts.float().cpu()
        weights = counts if counts.sum() > 0 else torch.ones(len(names))
        return torch.multinomial(weights, n, replacement=True, generator=rng)
    if isinstance(label, str) and label in names:
        index = names.index(label)
    elif isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
        index = int(label)
        if not 0 <= index < len(names):
            raise RequestError(f"label must be in [0, {len(names)}), got {index}")
    else:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise RequestError(f"label must be one of {shown} or an index, got {label!r}")
    return torch.full((n,), index, dtype=torch.int64)


class StepSampler:
    """``aigc_sdk.ops.sample`` for one generation, with its per-call overhead paid once.

    The wrapper checks and converts six parameters on every call, which costs
    several times the kernel on 256 logits. Here the first step goes through
    the wrapper, which validates everything; later steps
    call the compiled op with the same per-row tensors and only the offset
    (the step number) changed. Without a compiled kernel every step uses the
    wrapper, and so its reference fallback.
    """

    def __init__(self, n: int, device: torch.device, **params) -> None:
        self.params = params
        self.fast = has_kernel("sample", device.type)
        rows = dict(
            temperature=torch.full((n,), float(params["temperature"])),
            top_k=torch.full((n,), int(params["top_k"]), dtype=torch.int64),
            top_p=torch.full((n,), float(params["top_p"])),
            min_p=torch.full((n,), float(params["min_p"])),
            seed=torch.full((n,), (params["seed"] + 2**63) % 2**64 - 2**63, dtype=torch.int64),
        )
        self.rows = [t.to(device) for t in rows.values()]
        self.offset = torch.zeros(n, dtype=torch.int64, device=device)

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        if step == 0 or not self.fast:
            return sample(logits, **self.params, offset=step)
        self.offset.fill_(step)
        return torch.ops.aigc.sample(logits, *self.rows, self.offset, None, None)


@torch.no_grad()
def generate_classes(
    model: WaveNet,
    samples: int,
    labels: torch.Tensor | None,
    *,
    n: int,
    seed: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    queues_type: type[ConvQueues] | None = None,
    plan: QueuePlan | None = None,
) -> torch.Tensor:
    """``samples`` mu-law classes for each of ``n`` clips: [n, samples] int64.

    The clips start after a receptive field of START marks, as the training
    crops do. ``queues_type`` defaults to the NumPy step on the CPU, torch elsewhere;
    ``plan`` is the model's ``QueuePlan`` (made here when not given).

    No step enters a parallel region (NumPy matmuls of a few rows, 256 logits a
    row for the sampler) and the start is gathers from the plan, so the speed
    does not hang on torch's thread settings; this never changes them either:
    they are the host's, and a generate() may run beside others.
    """
    device = model.embed.weight.device
    labels = labels.to(device) if labels is not None else None
    if queues_type is None:
        queues_type = NumpyConvQueues if device.type == "cpu" else ConvQueues
    queues = queues_type(model, n, labels, steady=START, plan=plan)
    draw = StepSampler(
        n, device, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed
    )
    x = torch.full((n,), START, dtype=torch.int64, device=device)
    out = torch.empty(n, samples, dtype=torch.int64, device=device)
    for t in range(samples):
        x = draw(queues.step(x), t)
        out[:, t] = x
    return out


class WaveNetGenerator(Generator):
    modality = "audio"
    Request = WaveNetRequest
    thread_safe = True  # generate() keeps its state (the queues) local

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        self.model, self.config = load_wavenet(weights, device)
        self.sample_rate = self.model.cfg.sample_rate
        self.plan = QueuePlan(self.model)  # shared read-only by concurrent generations

    def generate(self, request: WaveNetRequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        rng = torch.Generator().manual_seed(seed)
        labels = resolve_labels(self.model, request.label, request.n, rng)
        samples = max(1, round(request.seconds * self.sample_rate))
        classes = generate_classes(
            self.model,
            samples,
            labels,
            n=request.n,
            seed=seed,
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            plan=self.plan,
        )
        audio = mu_law_decode(classes).cpu()
        names = self.model.cfg.labels
        titles = [names[i] for i in labels.tolist()] if labels is not None else None
        result = GenerationResult("audio", audio=audio, sample_rate=self.sample_rate, seed=seed)
        result.tensors["mu_law"] = classes.cpu()
        if labels is not None:
            result.tensors["labels"] = labels
        result.attachments[".png"] = spectrogram_png(audio, self.sample_rate, titles)
        return result
