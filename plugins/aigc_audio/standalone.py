"""A minimal training loop for the WaveNet, independent of ``aigc_sdk.training``.

It exists so the default weights could be trained before the SDK's trainer
landed; ``aigc train audio`` (aigc_audio.trainer) is the supported way. It
uses the same objective, crops and config, seeded, and writes the weights in
the generator's format every ``--save-every`` steps, so a run stopped early
still leaves usable weights.

    python -m aigc_audio.standalone --data tones --steps 1500 --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .data import ClipBank, load_splits
from .model import WaveNet, WaveNetConfig, parameter_count
from .objective import heldout_bits, window_loss
from .weights import save_wavenet


def lr_at(step: int, total: int, peak: float, warmup: int = 50, floor: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="tones")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=4000, help="scored samples per crop")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--residual", type=int, default=32)
    p.add_argument("--gate", type=int, default=32)
    p.add_argument("--skip", type=int, default=128)
    p.add_argument("--eval-clips", type=int, default=16)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    splits, labels = load_splits(args.data)
    train = ClipBank.from_dataset(splits.train)
    held = ClipBank.from_dataset(splits.eval, limit=args.eval_clips)
    cfg = WaveNetConfig(residual=args.residual, gate=args.gate, skip=args.skip, labels=labels)
    model = WaveNet(cfg)
    if labels:
        model.label_counts.copy_(torch.bincount(train.labels, minlength=len(labels)).float())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{parameter_count(model)} parameters, receptive field {cfg.receptive_field}", flush=True)
    started = time.time()
    for step in range(args.steps):
        window, lab = train.crops(args.batch, args.length, cfg.receptive_field, rng)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        loss = window_loss(model, window, lab if labels else None, args.length)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record = {
            "step": step + 1,
            "bits": float(loss.detach()) / math.log(2),
            "grad_norm": float(norm),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 1),
        }
        done = step + 1 == args.steps
        if (step + 1) % args.save_every == 0 or done:
            model.eval()
            record["heldout_bits"] = heldout_bits(model, held)
            model.train()
            save_wavenet(
                model,
                args.out,
                training={
                    "loop": "aigc_audio.standalone",
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "steps_done": step + 1,
                    "seconds": record["seconds"],
                    "heldout_bits": record["heldout_bits"],
                },
            )
            print(json.dumps(record), flush=True)
        with open(args.out / "metrics.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
