"""Spectrogram pictures of clips: what you listen to with your eyes."""

from __future__ import annotations

import io

import torch

MAX_PANELS = 8


def power_db(audio: torch.Tensor, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Power spectrogram in dB of a mono clip [samples]: [n_fft // 2 + 1, frames]."""
    spec = torch.stft(
        audio.float().cpu(),
        n_fft=n_fft,
        hop_length=hop,
        window=torch.hann_window(n_fft),
        pad_mode="constant",  # any length, even shorter than a window
        return_complex=True,
    )
    return 10 * torch.log10(spec.abs().pow(2).clamp_min(1e-10))


def spectrogram_png(
    audio: torch.Tensor,
    sample_rate: int,
    titles: list[str] | None = None,
    max_panels: int = MAX_PANELS,
) -> bytes:
    """One PNG of the spectrograms of clips ``[n, samples]`` (a panel for each of the first 8).

    Time in seconds, frequency in Hz, colour in dB relative to each panel's peak.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    clips = (audio if audio.dim() == 2 else audio.unsqueeze(0))[:max_panels]
    n = len(clips)
    fig = Figure(figsize=(8, 2.6 * n + 0.4), layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for i, (ax, clip) in enumerate(zip(axes, clips, strict=True)):
        db = power_db(clip)
        db = db - db.max()
        seconds = clip.shape[-1] / sample_rate
        image = ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-80,
            vmax=0,
            extent=(0, seconds, 0, sample_rate / 2),
        )
        ax.set_ylabel("frequency (Hz)")
        label = f" ({titles[i]})" if titles else ""
        ax.set_title(f"clip {i}{label}", fontsize=9)
        fig.colorbar(image, ax=ax, label="dB")
    axes[-1].set_xlabel("time (s)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
