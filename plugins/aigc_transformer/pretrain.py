"""A self-contained training loop for the default weights.

    nice -n 10 python -m aigc_transformer.pretrain --out DIR [--steps N] ...

It reads the Python standard library's own source (tests excluded; 5 % of
the files held out by a stable hash of their path, the same rule as
``aigc_sdk.data``'s ``stdlib`` dataset), trains a byte-level BPE tokenizer on
the training files, trains the model with AdamW and a cosine schedule, and
writes a ``save_pretrained`` checkpoint whose config records the command, the
wall time and the held-out bits per byte (measured on the float16 weights
that are shipped).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import torch

from . import pretrained
from .corpus import bits_per_byte, random_blocks, token_stream
from .model import ModelConfig, Transformer
from .tokenizer import BPETokenizer

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_texts(holdout: float = 0.05) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of the standard library's .py files."""
    root = Path(sysconfig.get_path("stdlib"))
    train, held = [], []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if SKIP_DIRS & set(path.relative_to(root).parts[:-1]):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a few files are deliberately not UTF-8
        (held if zlib.crc32(name.encode()) % 10_000 < holdout * 10_000 else train).append(text)
    return train, held


def lr_at(step: int, progress: float, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor * peak`` as
    ``progress`` (the fraction of the budget used) goes from 0 to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model: Transformer, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; matrices decay, norms' gains don't."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--steps", type=int, default=800, help="optimizer steps (the budget)")
    p.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="a wall-time budget instead: the schedule follows the time used, and training "
        "stops when it is spent (the step count then depends on the machine and its load)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--model", default="{}", help="JSON overrides of ModelConfig")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is best on a busy box)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    log = lambda msg: print(f"[{time.time() - start:7.1f}s] {msg}", flush=True)  # noqa: E731

    train_texts, held_texts = stdlib_texts()
    tokenizer = BPETokenizer.train(train_texts, args.vocab_size)
    train_ids, held_ids = token_stream(tokenizer, train_texts), token_stream(tokenizer, held_texts)
    log(f"tokenizer {tokenizer.vocab_size}; train {len(train_ids)} tokens, held {len(held_ids)}")

    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_seq_len=args.block_size,
                      **json.loads(args.model))  # fmt: skip
    model = Transformer(cfg)
    log(f"model {model.num_parameters() / 1e6:.2f}M parameters: {cfg}")
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    rng = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)

    train_start = time.time()
    budget = args.minutes * 60

    def progress(step: int) -> float:
        return (time.time() - train_start) / budget if budget else step / args.steps

    step = 0
    while progress(step) < 1:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress(step), args.lr, args.warmup)
        x, y = random_blocks(train_ids, args.batch_size, args.block_size, rng)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            log(f"step {step} loss {loss.item():.3f} lr {optimizer.param_groups[0]['lr']:.2e}")
        step += 1
        if step % args.eval_every == 0:
            ev = bits_per_byte(model, held_ids, tokenizer.token_bytes, args.block_size,
                               max_tokens=16 * args.block_size)  # fmt: skip
            log(f"step {step} held-out (first 8k tokens) {ev['bits_per_byte']:.3f} bits/byte")
            pretrained.save(out, model, tokenizer, {"partial": True, "step": step})

    train_seconds = time.time() - start
    # Score what is shipped: the float16-rounded weights.
    pretrained.save(out, model, tokenizer, {"partial": True})
    shipped, _, _ = pretrained.load(out)
    ev = bits_per_byte(shipped, held_ids, tokenizer.token_bytes, args.block_size)
    log(f"held-out: {ev['bits_per_byte']:.4f} bits/byte, {ev['loss']:.4f} nats/token")
    info = {
        "command": "python -m aigc_transformer.pretrain " + " ".join(sys.argv[1:] or argv or []),
        "data": "stdlib .py files, tests excluded, 5% of files held out (crc32 of path)",
        "steps": step,
        "train_tokens_seen": step * args.batch_size * args.block_size,
        "train_seconds": round(train_seconds),
        "heldout_bits_per_byte": round(ev["bits_per_byte"], 4),
        "heldout_nats_per_token": round(ev["loss"], 4),
        "heldout_tokens": ev["tokens"],
        "torch": torch.__version__,
    }
    pretrained.save(out, model, tokenizer, info)
    log(f"wrote {out}: {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
