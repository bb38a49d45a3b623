"""Loading and saving WaveNet weights in the SDK's checkpoint format."""

from __future__ import annotations

from pathlib import Path

import torch

from aigc_sdk import CheckpointError, checkpoint

from .model import WaveNet, WaveNetConfig

PLUGIN = "audio"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "audio"


def save_wavenet(model: WaveNet, directory: str | Path, training: dict | None = None) -> Path:
    """``config.json`` (the model config and how it was trained) + ``model.safetensors``."""
    config = {"model": model.cfg.to_dict(), "training": training or {}}
    return checkpoint.save_pretrained(
        directory, plugin=PLUGIN, config=config, tensors=model.state_dict()
    )


def load_wavenet(directory: str | Path | None = None, device: str = "cpu") -> tuple[WaveNet, dict]:
    """The model in eval mode and the checkpoint's whole config."""
    directory = Path(directory) if directory is not None else DEFAULT_WEIGHTS
    config, tensors = checkpoint.load_pretrained(directory, plugin=PLUGIN)
    try:
        cfg = WaveNetConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{directory / checkpoint.CONFIG_FILE}: bad WaveNet config ({exc})"
        ) from None
    model = WaveNet(cfg)
    checkpoint.load_into(model, tensors, directory)
    return model.to(torch.device(device)).eval(), config
