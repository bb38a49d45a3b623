"""Data-parallel training under ``torchrun``: process group, gradient averaging, rank 0.

Gradients are averaged at each optimizer update (one flat all-reduce per
dtype), not during backward as DistributedDataParallel does. That keeps the
trainer's code free of wrappers and makes several optimizers per step (a
GAN's alternating updates) and gradient accumulation correct by
construction; the price is no overlap of communication with backward, which
is small for the models trained here. Buffers (batch-norm statistics) are
broadcast from rank 0 after each step, so like DDP's they are rank 0's, and
every rank ends each step with the same state, which checkpoints verify.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

from ..errors import AigcError
from ..generation import check_device


class Distributed:
    """This process's place in the run (a single process is rank 0 of 1)."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.cpu_group = None
        self._owns_group = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device for ``requested`` (cpu, cuda, cuda:N, auto) on this rank."""
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = check_device(requested)
        if device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", self.local_rank if self.enabled else 0)
            torch.cuda.set_device(device)
        return device

    def start(self, device: torch.device) -> None:
        """Joins the process group (gloo on the CPU, NCCL on CUDA) when under torchrun."""
        if not self.enabled:
            return
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)
            self._owns_group = True
        self.cpu_group = dist.new_group(backend="gloo") if device.type == "cuda" else None

    def close(self, *, synchronize: bool) -> None:
        """Leaves the process group; ``synchronize`` waits for every rank first.

        After a normal end the ranks meet at a barrier, so none tears down its
        gloo connections while rank 0 is still exporting or plotting: a peer
        vanishing under gloo's worker threads aborts the process
        ("terminate called without an active exception"). After an error
        there is no barrier, since the other ranks may never arrive.
        """
        if not (self._owns_group and dist.is_initialized()):
            return
        if synchronize:
            dist.barrier(group=self.cpu_group)
        dist.destroy_process_group()
        self._owns_group = False

    # -- collectives ---------------------------------------------------------------

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copies rank 0's values into every rank's tensors (in place).

        One broadcast per device and dtype, as DDP coalesces its buffers.
        """
        if not self.enabled:
            return
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for tensor in tensors:
            groups.setdefault((tensor.device, tensor.dtype), []).append(tensor.data)
        for (_, dtype), group in groups.items():
            # gloo has no bool type; the bytes travel as uint8.
            wire = [t.view(torch.uint8) if dtype == torch.bool else t for t in group]
            flat = torch.cat([t.reshape(-1) for t in wire])
            dist.broadcast(flat, src=0)
            if self.is_main:
                continue
            offset = 0
            for t in wire:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``tensor`` (a new tensor; ``tensor`` itself in one process)."""
        if not self.enabled:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def average_gradients_(self, params: list[torch.nn.Parameter]) -> None:
        """Replaces each gradient by its mean over ranks.

        A parameter that got a gradient on some rank but not on another gets
        zeros where missing; one that got none anywhere keeps ``None``, so the
        optimizer skips it exactly as a single process would.
        """
        if not self.enabled or not params:
            return
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
        dist.all_reduce(has)
        for p, count in zip(params, has.tolist(), strict=True):
            if count and p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params if p.grad is not None]
        for dtype in sorted({g.dtype for g in grads}, key=str):
            group = [g for g in grads if g.dtype == dtype]
            if any(g.is_sparse for g in group):
                raise AigcError("sparse gradients are not supported in data-parallel training")
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for g in group:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each metric (every rank passes the same keys)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor, group=self.cpu_group)
        return {k: v / self.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}

    def gather_json(self, obj: Any) -> list[Any]:
        """Every rank's JSON-able ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)
        size = torch.tensor([data.numel()], dtype=torch.int64)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size, group=self.cpu_group)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[: data.numel()] = data
        gathered = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded, group=self.cpu_group)
        return [
            json.loads(bytes(g[: int(s.item())].tolist()).decode())
            for g, s in zip(gathered, sizes, strict=True)
        ]

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(tensor, group=self.cpu_group)
        return bool(tensor.item())


def rng_to_json(state: dict[str, Any]) -> dict[str, Any]:
    """An ``rng_state()`` as JSON (torch states as base64) for gathering and storing."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key] = {"b64": base64.b64encode(value.numpy().tobytes()).decode()}
        elif key == "numpy":
            name, keys, pos, has_gauss, cached = value
            out[key] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
        else:
            out[key] = value
    return out


def rng_from_json(state: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, dict) and "b64" in value:
            raw = bytearray(base64.b64decode(value["b64"]))
            out[key] = torch.frombuffer(raw, dtype=torch.uint8).clone()
        elif key == "numpy":
            name, keys, pos, has_gauss, cached = value
            out[key] = (name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
        else:
            out[key] = value
    return out
