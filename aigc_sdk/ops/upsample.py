"""upsample_conv2d: transposed convolution + bias + folded BatchNorm + activation in one pass.

    y = activation((conv_transpose(x, weight) + bias) * scale + shift)      per output channel

``scale``/``shift`` are an eval-mode BatchNorm folded in (``scale = gamma / sqrt(var + eps)``,
``shift = beta - mean * scale``; see ``aigc_sdk.nn.FusedUpsample``). x is (N, Cin, H, W), or
(N, Cin, L) for audio; weight is ConvTranspose's (Cin, Cout, *kernel), groups=1, dilation=1.

The op is ``torch.ops.aigc.upsample_conv2d`` with the schema

    upsample_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor? scale, Tensor? shift,
                    int[] stride, int[] padding, int[] output_padding,
                    str activation, float negative_slope) -> Tensor

where stride/padding/output_padding have one entry per spatial dim and activation is one of
``none, relu, leaky_relu, tanh, sigmoid, silu`` (negative_slope is used by leaky_relu only).
The output is channels_last when x is. This module adds the Python wrapper (argument checks,
reference fallback), the fake impl for torch.compile and autograd for every tensor input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import reference
from ._extension import has_kernel, op_defined, warn_fallback

OP_NAME = "upsample_conv2d"
ACTIVATIONS = reference.UPSAMPLE_ACTIVATIONS
MAX_KERNEL = 8
MAX_STRIDE = 4
CPU_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def upsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """Fused ConvTranspose{1,2}d + bias + per-channel scale/shift + activation.

    Args:
        x: (N, Cin, H, W) or (N, Cin, L); float32, float64 (CPU), bfloat16 or float16.
        weight: (Cin, Cout, kH, kW) or (Cin, Cout, kL), kernel sizes 1..8, same dtype as x.
        bias, scale, shift: (Cout,) or None (None means 0, 1, 0).
        stride: 1..4, an int or one per spatial dim.
        padding: >= 0, an int or one per spatial dim.
        output_padding: 0 <= output_padding < stride, an int or one per spatial dim.
        activation: "none", "relu", "leaky_relu", "tanh", "sigmoid" or "silu".
        negative_slope: slope of leaky_relu for negative inputs.

    Returns:
        (N, Cout, Ho, Wo) or (N, Cout, Lo) with Ho = (H-1)*stride - 2*padding + kH +
        output_padding, like ConvTranspose; channels_last when x is.
    """
    stride, padding, output_padding = check_args(
        x, weight, bias, scale, shift, stride, padding, output_padding, activation
    )
    if _has_kernel(x.device.type):
        return torch.ops.aigc.upsample_conv2d(
            x,
            weight,
            bias,
            scale,
            shift,
            stride,
            padding,
            output_padding,
            activation,
            float(negative_slope),
        )
    warn_fallback(OP_NAME, x.device.type)
    return reference.upsample_conv2d(
        x, weight, bias, scale, shift, stride, padding, output_padding, activation, negative_slope
    )


@torch.compiler.assume_constant_result
def _has_kernel(device_type: str) -> bool:
    # A constant to torch.compile, so the wrapper traces into a single op call.
    return has_kernel(OP_NAME, device_type)


# ---------------------------------------------------------------------------
# Argument checks (the C++ kernels check the same things for direct op calls).
# ---------------------------------------------------------------------------


def _per_dim(value, spatial: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * spatial
    values = list(value)
    if len(values) != spatial or not all(isinstance(v, int) for v in values):
        raise ValueError(
            f"upsample_conv2d: {name} must be an int or {spatial} ints (one per spatial dim "
            f"of x); got {value!r}"
        )
    return values


def _check_channel_param(t, name: str, x: torch.Tensor, cout: int) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"upsample_conv2d: {name} must be a Tensor or None; got {type(t)}")
    if t.shape != (cout,):
        raise ValueError(
            f"upsample_conv2d: {name} must have shape ({cout},) (one value per output channel); "
            f"got {tuple(t.shape)}"
        )
    if t.dtype != x.dtype:
        raise TypeError(
            f"upsample_conv2d: {name} has dtype {t.dtype} but x has dtype {x.dtype}; "
            "they must match"
        )
    if t.device != x.device:
        raise ValueError(f"upsample_conv2d: {name} is on {t.device} but x is on {x.device}")


def output_size(in_size, kernel, stride, padding, output_padding) -> list[int]:
    """ConvTranspose's output size per spatial dim."""
    return [
        (i - 1) * s - 2 * p + k + op
        for i, k, s, p, op in zip(in_size, kernel, stride, padding, output_padding, strict=True)
    ]


def check_args(x, weight, bias, scale, shift, stride, padding, output_padding, activation):
    """Validates the arguments; returns stride, padding, output_padding as lists."""
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"upsample_conv2d: {name} must be a Tensor; got {type(t)}")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"upsample_conv2d: x must be (N, C, H, W) or (N, C, L); got shape {tuple(x.shape)}"
        )
    spatial = x.dim() - 2
    allowed = CUDA_DTYPES if x.device.type == "cuda" else CPU_DTYPES
    if x.dtype not in allowed:
        raise TypeError(
            f"upsample_conv2d: x must have dtype in {[str(d) for d in allowed]} on "
            f"{x.device.type}; got {x.dtype}"
        )
    if weight.dim() != x.dim():
        layout = "(Cin, Cout, kH, kW)" if spatial == 2 else "(Cin, Cout, kL)"
        raise ValueError(
            f"upsample_conv2d: weight must be {layout} for a {x.dim()}-D x (ConvTranspose "
            f"layout, groups=1); got shape {tuple(weight.shape)}"
        )
    if weight.dtype != x.dtype:
        raise TypeError(
            f"upsample_conv2d: weight has dtype {weight.dtype} but x has dtype {x.dtype}; "
            "they must match"
        )
    if weight.device != x.device:
        raise ValueError(f"upsample_conv2d: weight is on {weight.device} but x is on {x.device}")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"upsample_conv2d: x has {x.shape[1]} channels but weight expects {weight.shape[0]} "
            "input channels (weight is (Cin, Cout, ...), ConvTranspose layout, groups=1)"
        )
    cout = weight.shape[1]
    if cout == 0:
        raise ValueError("upsample_conv2d: weight has 0 output channels")
    kernel = list(weight.shape[2:])
    if not all(1 <= k <= MAX_KERNEL for k in kernel):
        raise ValueError(
            f"upsample_conv2d: kernel sizes 1..{MAX_KERNEL} are supported; weight has kernel "
            f"size {tuple(kernel)}"
        )
    for name, t in (("bias", bias), ("scale", scale), ("shift", shift)):
        _check_channel_param(t, name, x, cout)
    stride = _per_dim(stride, spatial, "stride")
    padding = _per_dim(padding, spatial, "padding")
    output_padding = _per_dim(output_padding, spatial, "output_padding")
    if not all(1 <= s <= MAX_STRIDE for s in stride):
        raise ValueError(f"upsample_conv2d: strides 1..{MAX_STRIDE} are supported; got {stride}")
    if not all(p >= 0 for p in padding):
        raise ValueError(f"upsample_conv2d: padding must be >= 0; got {padding}")
    if not all(0 <= op < s for op, s in zip(output_padding, stride, strict=True)):
        raise ValueError(
            "upsample_conv2d: output_padding must be >= 0 and smaller than stride (as in "
            f"ConvTranspose with dilation 1); got output_padding {output_padding} with "
            f"stride {stride}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"upsample_conv2d: activation must be one of {ACTIVATIONS}; got {activation!r}"
        )
    out = output_size(x.shape[2:], kernel, stride, padding, output_padding)
    if any(s <= 0 for s in x.shape[2:]) or any(o <= 0 for o in out):
        raise ValueError(
            f"upsample_conv2d: padding {padding} is too large for input size "
            f"{tuple(x.shape[2:])} and kernel size {tuple(kernel)}: the output would be empty"
        )
    return stride, padding, output_padding


# ---------------------------------------------------------------------------
# Fake impl and autograd of torch.ops.aigc.upsample_conv2d.
# ---------------------------------------------------------------------------


def _wants_channels_last(x: torch.Tensor) -> bool:
    # Mirrors wants_channels_last() in csrc/cpu/upsample_conv2d.h.
    return (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _fake(x, weight, bias, scale, shift, stride, padding, output_padding, activation, slope):
    sizes = output_size(x.shape[2:], weight.shape[2:], stride, padding, output_padding)
    out = x.new_empty((x.shape[0], weight.shape[1], *sizes))
    if _wants_channels_last(x):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _setup_context(ctx, inputs, output):
    x, weight, bias, scale, shift, stride, padding, output_padding, activation, slope = inputs
    ctx.conv = (stride, padding, output_padding)
    ctx.activation = activation
    ctx.slope = slope
    ctx.has = (bias is not None, scale is not None, shift is not None)
    ctx.save_for_backward(x, weight, bias, scale, shift, output)


def _activation_grad(ctx, grad, x, weight, bias, scale, shift, y):
    """d loss / d z where y = act(z); uses the saved output y where it determines act'(z)."""
    act, slope = ctx.activation, ctx.slope
    if act == "none":
        return grad
    if act == "relu" or (act == "leaky_relu" and slope >= 0):
        # slope >= 0 keeps the sign, so y > 0 exactly when z > 0.
        return torch.where(y > 0, grad, grad * slope if act == "leaky_relu" else 0)
    if act == "tanh":
        return grad * (1 - y * y)
    if act == "sigmoid":
        return grad * y * (1 - y)
    # silu, or leaky_relu with a negative slope: y does not determine z; recompute it.
    z = torch.ops.aigc.upsample_conv2d(x, weight, bias, scale, shift, *ctx.conv, "none", 0.0)
    if act == "leaky_relu":
        return torch.where(z > 0, grad, grad * slope)
    s = torch.sigmoid(z)
    return grad * s * (1 + z * (1 - s))


def _backward(ctx, grad):
    x, weight, bias, scale, shift, y = ctx.saved_tensors
    needs = ctx.needs_input_grad
    stride, padding, output_padding = ctx.conv
    channel_sum_dims = [0, *range(2, grad.dim())]
    per_channel = (1, -1) + (1,) * (grad.dim() - 2)

    g_z = _activation_grad(ctx, grad, x, weight, bias, scale, shift, y)
    g_shift = g_z.sum(channel_sum_dims) if needs[4] else None
    g_scale = None
    if needs[3]:
        # d z / d scale = conv_transpose(x, w) + bias, recomputed (not kept from forward).
        u = torch.ops.aigc.upsample_conv2d(
            x, weight, bias, None, None, stride, padding, output_padding, "none", 0.0
        )
        g_scale = (g_z * u).sum(channel_sum_dims)
    g_conv = g_z * scale.view(per_channel) if scale is not None else g_z
    g_bias = g_conv.sum(channel_sum_dims) if needs[2] else None
    g_x = g_w = None
    if needs[0] or needs[1]:
        # The adjoint of a transposed convolution, from aten (one call for both grads).
        g_x, g_w, _ = torch.ops.aten.convolution_backward(
            g_conv.contiguous(memory_format=_grad_format(x)),
            x,
            weight,
            None,
            stride,
            padding,
            [1] * len(stride),
            True,
            output_padding,
            1,
            [needs[0], needs[1], False],
        )
    return g_x, g_w, g_bias, g_scale, g_shift, None, None, None, None, None


def _grad_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _wants_channels_last(x) else torch.contiguous_format


def _register() -> None:
    if not op_defined(OP_NAME):
        return  # no compiled op: the wrapper uses the reference, which autograd already covers
    torch.library.register_fake(f"aigc::{OP_NAME}")(_fake)
    torch.library.register_autograd(f"aigc::{OP_NAME}", _backward, setup_context=_setup_context)


_register()
