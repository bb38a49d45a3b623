"""Layers built on the fused ops.

``UpBlock`` is ConvTranspose2d -> BatchNorm2d -> ReLU, the upsampling step of a
DCGAN-style generator or decoder. ``FusedUpsample`` replaces
ConvTranspose{1,2}d (+ BatchNorm) (+ activation):

    layer = FusedUpsample.from_modules(nn.ConvTranspose2d(512, 256, 4, 2, 1),
                                       nn.BatchNorm2d(256), nn.ReLU())

In eval mode (and whenever there is no BatchNorm) the whole block is one call of
``aigc_sdk.ops.upsample_conv2d`` with the BatchNorm folded into a per-channel scale and
shift. In train mode the BatchNorm needs the statistics of the batch, so the layer runs
the transposed convolution, then the BatchNorm module itself (updating its running
statistics exactly as the original would), then the activation.

Importing this module is cheap: the compiled extension loads when a fused layer
is first made or run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FusedUpsample", "UpBlock"]

# Activation modules from_modules() understands, and the op's name for each.
_ACTIVATION_MODULES = {
    nn.Identity: "none",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
}


def _as_tuple(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(value)


class FusedUpsample(nn.Module):
    """ConvTranspose1d/2d + optional BatchNorm + activation, fused at inference.

    Parameters have the names and shapes of the modules it replaces: ``weight``
    (Cin, Cout, *kernel) and ``bias`` as in ConvTranspose, ``bn`` a BatchNorm module.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        bias: bool = True,
        batch_norm: bool = False,
        activation: str = "none",
        negative_slope: float = 0.01,
        dims: int = 2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        from .ops.upsample import ACTIVATIONS

        if dims not in (1, 2):
            raise ValueError(f"FusedUpsample: dims must be 1 or 2; got {dims}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"FusedUpsample: activation must be one of {ACTIVATIONS}")
        self.dims = dims
        self.kernel_size = _as_tuple(kernel_size, dims)
        self.stride = _as_tuple(stride, dims)
        self.padding = _as_tuple(padding, dims)
        self.output_padding = _as_tuple(output_padding, dims)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        factory = {"device": device, "dtype": dtype}
        # Initialised as ConvTranspose does, so a fresh layer trains like one.
        conv = (nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose1d)(
            in_channels, out_channels, self.kernel_size, bias=bias, **factory
        )
        self.weight = conv.weight
        self.bias = conv.bias
        batch_norm_cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.bn = batch_norm_cls(out_channels, **factory) if batch_norm else None

    @classmethod
    def from_modules(
        cls,
        conv_transpose: nn.ConvTranspose1d | nn.ConvTranspose2d,
        batchnorm: nn.BatchNorm1d | nn.BatchNorm2d | None = None,
        activation: nn.Module | str | None = None,
    ) -> FusedUpsample:
        """A layer computing ``activation(batchnorm(conv_transpose(x)))``, with copies of
        their parameters and buffers (the original modules are left untouched)."""
        conv = conv_transpose
        if not isinstance(conv, nn.ConvTranspose1d | nn.ConvTranspose2d):
            raise TypeError(
                f"FusedUpsample.from_modules: expected ConvTranspose1d/2d; got {type(conv)}"
            )
        dims = 2 if isinstance(conv, nn.ConvTranspose2d) else 1
        if conv.groups != 1:
            raise ValueError(f"FusedUpsample: groups={conv.groups} is not supported (only 1)")
        if any(d != 1 for d in conv.dilation):
            raise ValueError(f"FusedUpsample: dilation={conv.dilation} is not supported (only 1)")
        if conv.padding_mode != "zeros":
            raise ValueError(f"FusedUpsample: padding_mode={conv.padding_mode!r} is not supported")
        if batchnorm is not None:
            expected = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
            if not isinstance(batchnorm, expected):
                raise TypeError(
                    f"FusedUpsample.from_modules: expected {expected.__name__}; "
                    f"got {type(batchnorm)}"
                )
            if batchnorm.num_features != conv.out_channels:
                raise ValueError(
                    f"FusedUpsample.from_modules: BatchNorm has {batchnorm.num_features} "
                    f"features but the convolution has {conv.out_channels} output channels"
                )
        name, slope = _activation_name(activation)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.output_padding,
            bias=conv.bias is not None,
            activation=name,
            negative_slope=slope,
            dims=dims,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.bn = copy.deepcopy(batchnorm)
        layer.train(conv.training)
        return layer

    def _folded_batchnorm(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scale, shift) of the eval-mode BatchNorm, or (None, None) without one."""
        bn = self.bn
        if bn is None:
            return None, None
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale = scale * bn.weight
            shift = bn.bias - bn.running_mean * scale
        return scale, shift

    def _uses_batch_statistics(self) -> bool:
        bn = self.bn
        return bn is not None and (bn.training or bn.running_mean is None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .ops.upsample import reference, upsample_conv2d

        if self._uses_batch_statistics():
            # Train mode: BatchNorm must see this batch's statistics, so run it unfused.
            y = upsample_conv2d(
                x, self.weight, self.bias, None, None, self.stride, self.padding,
                self.output_padding, "none",
            )  # fmt: skip
            return reference.apply_activation(self.bn(y), self.activation, self.negative_slope)
        scale, shift = self._folded_batchnorm()
        if scale is not None:
            scale, shift = scale.to(x.dtype), shift.to(x.dtype)
        return upsample_conv2d(
            x, self.weight, self.bias, scale, shift, self.stride, self.padding,
            self.output_padding, self.activation, self.negative_slope,
        )  # fmt: skip

    def extra_repr(self) -> str:
        cin, cout = self.weight.shape[:2]
        return (
            f"{cin}, {cout}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, output_padding={self.output_padding}, "
            f"bias={self.bias is not None}, activation={self.activation!r}"
            + (f", negative_slope={self.negative_slope}" if self.activation == "leaky_relu" else "")
        )


def _activation_name(activation: nn.Module | str | None) -> tuple[str, float]:
    """The op's activation name and negative slope for a module, a name or None."""
    from .ops.upsample import ACTIVATIONS

    if activation is None:
        return "none", 0.01
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"FusedUpsample: activation must be one of {ACTIVATIONS}")
        return activation, 0.01
    name = _ACTIVATION_MODULES.get(type(activation))
    if name is None:
        supported = ", ".join(cls.__name__ for cls in _ACTIVATION_MODULES)
        raise ValueError(
            f"FusedUpsample: cannot fuse activation {type(activation).__name__}; "
            f"supported: {supported} (or a name from {ACTIVATIONS})"
        )
    slope = activation.negative_slope if isinstance(activation, nn.LeakyReLU) else 0.01
    return name, float(slope)


class UpBlock(nn.Module):
    """ConvTranspose2d (kernel 4, no bias) -> BatchNorm2d -> ReLU: one fusable upsampling step.

    Its parameters are ``conv.weight`` and ``bn.*``, the names saved checkpoints
    hold. ``fused()`` is the block as one ``FusedUpsample`` (copies of the weights).
    """

    def __init__(self, cin: int, cout: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fused(self) -> FusedUpsample:
        return FusedUpsample.from_modules(self.conv, self.bn, self.act)
