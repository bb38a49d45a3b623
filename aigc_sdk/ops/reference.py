"""Pure-PyTorch references of every op: the test oracle and the fallback.

Each function computes exactly what its fused kernel computes, written for
clarity, not speed.
"""

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# upsample_conv2d
# ---------------------------------------------------------------------------

UPSAMPLE_ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh", "sigmoid", "silu")


def apply_activation(y: torch.Tensor, activation: str, negative_slope: float = 0.01):
    """The activations of upsample_conv2d, by name."""
    if activation == "none":
        return y
    if activation == "relu":
        return F.relu(y)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope)
    if activation == "tanh":
        return torch.tanh(y)
    if activation == "sigmoid":
        return torch.sigmoid(y)
    if activation == "silu":
        return F.silu(y)
    raise ValueError(f"activation must be one of {UPSAMPLE_ACTIVATIONS}; got {activation!r}")


def upsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """activation((conv_transpose(x, weight) + bias) * scale + shift), per output channel.

    x is (N, Cin, H, W) or (N, Cin, L); weight is ConvTranspose's (Cin, Cout, *kernel).
    """
    conv = F.conv_transpose2d if x.dim() == 4 else F.conv_transpose1d
    y = conv(x, weight, bias, stride, padding, output_padding)
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    if scale is not None:
        y = y * scale.view(per_channel)
    if shift is not None:
        y = y + shift.view(per_channel)
    return apply_activation(y, activation, negative_slope)
