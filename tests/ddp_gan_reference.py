"""The GAN trainer's recipe under DistributedDataParallel: the reference for its torchrun run.

``tests/distributed_fit.py gan ... --ddp-reference`` runs it under torchrun
before the trainer's own run, in the same processes. The networks, losses
and optimizers are the GAN plugin's; the synchronisation is torch's own DDP
(gradients averaged in backward, buffers broadcast from rank 0 before each
forward that records gradients); the EMA is written out here from its
definition. Data,
initialisation and random streams follow the training loop's documented
contract: models initialised from ``derived_seed(seed, INIT_STREAM)`` on
every rank, each epoch a permutation drawn from ``derived_seed(seed,
SHUFFLE_STREAM, epoch)``, rank r of w taking every w-th index of a step's
global batch from r, and training randomness drawn from ``derived_seed(seed,
TRAINING_STREAM, rank)``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from aigc_gan.model import discriminator_loss, generator_loss
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import default_collate

from aigc_sdk import SDK
from aigc_sdk.training.state import (
    INIT_STREAM,
    SHUFFLE_STREAM,
    TRAINING_STREAM,
    derived_seed,
    seed_everything,
)


def train_with_ddp(options: dict[str, Any]) -> dict[str, torch.Tensor]:
    """This rank's generator, discriminator and EMA after ``options["steps"]`` DDP steps."""
    rank, world = dist.get_rank(), dist.get_world_size()
    trainer = SDK(plugins=["aigc_gan"], autoload=False).trainer("gan", **options)

    cfg = trainer.config
    seed_everything(derived_seed(cfg.seed, INIT_STREAM))
    trainer.splits = trainer.datasets(cfg.data)
    trainer.build()
    G, D = trainer.generator, trainer.discriminator
    optimizers = trainer.configure_optimizers()
    (d_opt, d_sched), (g_opt, g_sched) = optimizers["d"], optimizers["g"]
    g_ddp, d_ddp = DDP(G), DDP(D)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    conditional = trainer.net_config.classes > 0
    latent = trainer.net_config.latent

    seed_everything(derived_seed(cfg.seed, TRAINING_STREAM, rank))
    train = trainer.splits.train
    global_batch = cfg.batch_size * world
    assert cfg.steps * global_batch <= len(train), "one epoch only"
    shuffle = torch.Generator().manual_seed(derived_seed(cfg.seed, SHUFFLE_STREAM, 0))
    order = torch.randperm(len(train), generator=shuffle)
    for step in range(cfg.steps):
        chunk = order[step * global_batch : (step + 1) * global_batch]
        real, labels = default_collate([train[i] for i in chunk[rank::world].tolist()])
        y = labels if conditional else None

        d_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = g_ddp(torch.randn(len(labels), latent), y)
        loss = discriminator_loss(d_ddp(real, y), d_ddp(fake, y), cfg.loss)
        loss.backward()
        d_opt.step()
        d_sched.step()

        g_opt.zero_grad(set_to_none=True)
        D.requires_grad_(False)  # D is a constant of the G update: the plain module
        loss = generator_loss(D(g_ddp(torch.randn(len(labels), latent), y), y), cfg.loss)
        loss.backward()
        g_opt.step()
        g_sched.step()
        D.requires_grad_(True)

        updates = step + 1
        decay = min(cfg.ema_decay, (1 + updates) / (10 + updates))
        with torch.no_grad():
            for avg, live in zip(ema.parameters(), G.parameters(), strict=True):
                avg.lerp_(live, 1 - decay)
            for avg, live in zip(ema.buffers(), G.buffers(), strict=True):
                avg.copy_(live)

    tensors = {f"generator.{k}": v for k, v in G.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in D.state_dict().items()}
    tensors |= {f"ema.generator.{k}": v for k, v in ema.state_dict().items()}
    return {k: v.detach().clone() for k, v in tensors.items()}
