"""Saving and loading a model with its tokenizer (``save_pretrained`` format).

A checkpoint directory holds ``config.json`` (plugin ``transformer``, the
model config), ``model.safetensors`` and ``tokenizer.json``. Weights are
stored as float16 to keep the shipped defaults small; they load into float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aigc_sdk import CheckpointError, checkpoint

from .model import ModelConfig, Transformer
from .tokenizer import TOKENIZER_FILE, BPETokenizer

PLUGIN = "transformer"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "transformer"


def save(
    directory: str | Path,
    model: Transformer,
    tokenizer: BPETokenizer,
    info: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Writes the model, its tokenizer and ``info`` (how it was trained, its scores)."""
    if tokenizer.vocab_size != model.cfg.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, the model {model.cfg.vocab_size}"
        )
    tensors = {k: v.to(dtype) for k, v in model.state_dict().items()}
    config = {"model": model.cfg.to_dict(), "dtype": str(dtype).removeprefix("torch.")}
    if info:
        config["info"] = info
    return checkpoint.save_pretrained(
        directory,
        plugin=PLUGIN,
        config=config,
        tensors=tensors,
        extra_files={TOKENIZER_FILE: tokenizer.to_json().encode()},
    )


def load(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[Transformer, BPETokenizer, dict[str, Any]]:
    """(model in eval mode, tokenizer, whole config) from a checkpoint directory."""
    directory = Path(directory or DEFAULT_WEIGHTS)
    config, tensors = checkpoint.load_pretrained(directory, plugin=PLUGIN)
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{directory / checkpoint.CONFIG_FILE}: bad model config: {exc}"
        ) from None
    tokenizer_path = directory / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise CheckpointError(f"{tokenizer_path} is missing: the model needs its tokenizer")
    try:
        tokenizer = BPETokenizer.from_file(tokenizer_path)
    except Exception as exc:  # tokenizers raises its own Exception type
        raise CheckpointError(f"{tokenizer_path} is damaged: {exc}") from None
    if tokenizer.vocab_size != cfg.vocab_size:
        raise CheckpointError(
            f"{tokenizer_path} has {tokenizer.vocab_size} tokens but the model expects "
            f"{cfg.vocab_size}"
        )
    model = Transformer(cfg)
    checkpoint.load_into(model, {k: v.float() for k, v in tensors.items()}, directory)
    return model.to(device).eval(), tokenizer, config
