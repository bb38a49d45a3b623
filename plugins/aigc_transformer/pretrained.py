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
    extra: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch.")}
    if info:
        extra["info"] = info
    return checkpoint.save_model(
        directory,
        model,
        model.cfg,
        plugin=PLUGIN,
        config_key="model",
        extra=extra,
        dtype=dtype,
        extra_files={TOKENIZER_FILE: tokenizer.to_json().encode()},
    )


def load(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[Transformer, BPETokenizer, dict[str, Any]]:
    """(model in eval mode, tokenizer, whole config) from a checkpoint directory."""
    directory = Path(directory or DEFAULT_WEIGHTS)
    model, config = checkpoint.load_model(
        directory, Transformer, ModelConfig, plugin=PLUGIN, config_key="model", device=device
    )
    cfg = model.cfg
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
    return model, tokenizer, config
