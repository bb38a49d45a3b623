"""Benchmark cases of upsample_conv2d: the fused op against the same layer in
PyTorch (ConvTranspose + BatchNorm in eval mode + activation), eager and under
torch.compile.

Shapes: the DCGAN 64x64 generator's layers at batch 64 (kernel 4, stride 2,
padding 1: 512->256 at 4x4, 256->128 at 8x8, 128->64 at 16x16, 64->3 at 32x32
with tanh), a 1-D audio upsampling layer, and the whole DCGAN generator
(every layer fused vs every layer in PyTorch). Compute-bound: the figure of
merit is GFLOP/s against the machine's matmul peak measured in the same run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import FusedUpsample

DCGAN = [
    # (cin, cout, size, activation)
    (512, 256, 4, "relu"),
    (256, 128, 8, "relu"),
    (128, 64, 16, "relu"),
    (64, 3, 32, "tanh"),
]
AUDIO = (64, 32, 4000, "leaky_relu")  # (cin, cout, length, activation), kernel 8, stride 4


@dataclass(frozen=True)
class UpsampleCase:
    cin: int
    cout: int
    size: int
    activation: str
    dims: int = 2
    batch: int = 64
    dtype: torch.dtype = torch.float32

    @property
    def kernel(self) -> int:
        return 4 if self.dims == 2 else 8

    @property
    def stride(self) -> int:
        return 2 if self.dims == 2 else 4

    @property
    def padding(self) -> int:
        return 1 if self.dims == 2 else 2

    @property
    def name(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        shape = f"{self.size}x{self.size}" if self.dims == 2 else f"L={self.size}"
        return f"{self.cin}->{self.cout} at {shape} N={self.batch} {self.activation} {dt}"

    @property
    def flops(self) -> int:
        """Useful multiply-adds x 2 of the transposed convolution (zeros not counted)."""
        return 2 * self.batch * self.cin * self.cout * self.kernel**self.dims * self.size**self.dims

    def layer(self) -> nn.Sequential:
        conv_cls = nn.ConvTranspose2d if self.dims == 2 else nn.ConvTranspose1d
        norm_cls = nn.BatchNorm2d if self.dims == 2 else nn.BatchNorm1d
        act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "leaky_relu": nn.LeakyReLU(0.2)}
        torch.manual_seed(0)
        layer = nn.Sequential(
            conv_cls(self.cin, self.cout, self.kernel, self.stride, self.padding, bias=False),
            norm_cls(self.cout),
            act[self.activation],
        )
        with torch.no_grad():  # non-trivial running statistics, as after training
            layer[1].running_mean.uniform_(-0.5, 0.5)
            layer[1].running_var.uniform_(0.5, 2.0)
            layer[1].weight.uniform_(0.5, 1.5)
            layer[1].bias.uniform_(-0.2, 0.2)
        return layer.eval().to(self.dtype)

    def inputs(self, seed: int = 0) -> tuple:
        g = torch.Generator().manual_seed(seed)
        spatial = (self.size,) * self.dims
        x = torch.randn(self.batch, self.cin, *spatial, generator=g).to(self.dtype)
        return x, self.layer()

    def contenders(self, inputs, compile: bool = True) -> dict:
        x, layer = inputs
        fused = FusedUpsample.from_modules(layer[0], layer[1], layer[2]).eval()
        out = {
            "aigc": torch.no_grad()(lambda: fused(x)),
            "eager": torch.no_grad()(lambda: layer(x)),
        }
        if compile:
            compiled = _compiled(layer)
            out["eager+compile"] = torch.no_grad()(lambda: compiled(x))
        return out


@functools.cache
def _compiled(layer: nn.Module):
    return torch.compile(layer, dynamic=False)


@dataclass(frozen=True)
class GeneratorCase:
    """The whole DCGAN 64x64 generator (z of 100 -> 512x4x4 -> ... -> 3x64x64), every
    layer ConvTranspose + BatchNorm (eval) + ReLU, the last one + tanh."""

    batch: int = 64
    dtype: torch.dtype = torch.float32
    z_dim: int = 100

    @property
    def name(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"DCGAN generator z{self.z_dim}->3x64x64 N={self.batch} {dt}"

    def _layers(self) -> list[tuple[int, int, int, int, int]]:
        """(cin, cout, input size, stride, padding) of each kernel-4 layer."""
        first = [(self.z_dim, 512, 1, 1, 0)]
        return first + [(cin, cout, size, 2, 1) for cin, cout, size, _ in DCGAN]

    @property
    def flops(self) -> int:
        return sum(
            2 * self.batch * cin * cout * 16 * size**2 for cin, cout, size, *_ in self._layers()
        )

    def model(self) -> nn.Sequential:
        torch.manual_seed(0)
        blocks = []
        for cin, cout, _, stride, padding in self._layers():
            last = cout == 3
            conv = nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=last)
            norm = nn.Identity() if last else nn.BatchNorm2d(cout)
            if not last:
                with torch.no_grad():
                    norm.running_mean.uniform_(-0.5, 0.5)
                    norm.running_var.uniform_(0.5, 2.0)
            blocks.append(nn.Sequential(conv, norm, nn.Tanh() if last else nn.ReLU()))
        return nn.Sequential(*blocks).eval().to(self.dtype)

    def inputs(self, seed: int = 0) -> tuple:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(self.batch, self.z_dim, 1, 1, generator=g).to(self.dtype)
        return z, self.model()

    def contenders(self, inputs, compile: bool = True) -> dict:
        z, model = inputs
        fused = nn.Sequential(
            *(
                FusedUpsample.from_modules(
                    conv, None if isinstance(norm, nn.Identity) else norm, act
                )
                for conv, norm, act in model
            )
        ).eval()
        out = {
            "aigc": torch.no_grad()(lambda: fused(z)),
            "eager": torch.no_grad()(lambda: model(z)),
        }
        if compile:
            compiled = _compiled(model)
            out["eager+compile"] = torch.no_grad()(lambda: compiled(z))
        return out


def cases(quick: bool = True, dtype: torch.dtype = torch.float32) -> list:
    batch = 16 if quick else 64
    layers = [UpsampleCase(cin, cout, size, act, 2, batch, dtype) for cin, cout, size, act in DCGAN]
    cin, cout, length, act = AUDIO
    audio = UpsampleCase(cin, cout, length, act, 1, 8 if quick else 32, dtype)
    return [*layers, audio, GeneratorCase(batch, dtype)]
