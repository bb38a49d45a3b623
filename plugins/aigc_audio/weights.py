"""Loading and saving WaveNet weights in the SDK's checkpoint format."""

from __future__ import annotations

from pathlib import Path

from aigc_sdk import checkpoint

from .model import WaveNet, WaveNetConfig

PLUGIN = "audio"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "audio"


def save_wavenet(model: WaveNet, directory: str | Path, training: dict | None = None) -> Path:
    """``config.json`` (the model config and how it was trained) + ``model.safetensors``."""
    return checkpoint.save_model(
        directory, model, model.cfg, plugin=PLUGIN, config_key="model",
        extra={"training": training or {}},
    )  # fmt: skip


def load_wavenet(directory: str | Path | None = None, device: str = "cpu") -> tuple[WaveNet, dict]:
    """The model in eval mode and the checkpoint's whole config."""
    directory = Path(directory) if directory is not None else DEFAULT_WEIGHTS
    return checkpoint.load_model(
        directory, WaveNet, WaveNetConfig, plugin=PLUGIN, config_key="model", device=device
    )
