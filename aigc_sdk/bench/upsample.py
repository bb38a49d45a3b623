"""Cases of ``aigc bench upsample``: the layers of the DCGAN 64x64 generator at batch 64,
the whole generator, and 1-D audio upsampling layers, each as ConvTranspose + BatchNorm
(eval) + activation in PyTorch eager, the same under torch.compile, and FusedUpsample.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import FusedUpsample
from . import Case

ALIASES = ("upsample_conv2d",)

BATCH = 64
NZ = 100
# The DCGAN 64x64 generator after its 1x1 -> 4x4 input layer: (cin, cout, input size).
DCGAN_LAYERS = [(512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 3, 32)]


def dcgan_block(cin: int, cout: int, first: bool = False, last: bool = False) -> nn.Sequential:
    """ConvTranspose2d(k=4) [+ BatchNorm2d] + ReLU/Tanh, as in DCGAN (no conv bias)."""
    stride, padding = (1, 0) if first else (2, 1)
    conv = nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False)
    if last:
        return nn.Sequential(conv, nn.Tanh())
    return nn.Sequential(conv, _batchnorm(nn.BatchNorm2d(cout)), nn.ReLU())


def _batchnorm(bn: nn.Module) -> nn.Module:
    # Statistics as after training, so the fold is not a no-op.
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.1)
    return bn


def dcgan_generator() -> nn.Sequential:
    blocks = [dcgan_block(NZ, 512, first=True)]
    blocks += [dcgan_block(cin, cout, last=cout == 3) for cin, cout, _ in DCGAN_LAYERS]
    return nn.Sequential(*blocks)


def fuse(model: nn.Sequential) -> nn.Module:
    """The same network with every block a FusedUpsample."""
    if isinstance(model[0], nn.ConvTranspose1d | nn.ConvTranspose2d):
        return FusedUpsample.from_modules(*_split(model)).eval()
    return nn.Sequential(*(fuse(block) for block in model)).eval()


def _split(block: nn.Sequential):
    conv, *rest = list(block)
    bn = rest[0] if rest and isinstance(rest[0], nn.BatchNorm1d | nn.BatchNorm2d) else None
    act = rest[-1] if rest and not isinstance(rest[-1], nn.BatchNorm1d | nn.BatchNorm2d) else None
    return conv, bn, act


def transposed_conv_flops(model: nn.Module, x: torch.Tensor) -> float:
    """2 * N * Cin * Cout * prod(kernel) * prod(input size), summed over the layers."""
    flops = 0.0

    def count(module, inputs, _output):
        nonlocal flops
        (inp,) = inputs
        k = module.weight.shape[2:].numel()
        flops += 2 * inp.shape[0] * inp.shape[1] * module.out_channels * k * inp.shape[2:].numel()

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.ConvTranspose1d | nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return flops


def make_case(
    name: str, eager: nn.Module, x: torch.Tensor, dtype: torch.dtype, compile_peer: bool = True
) -> Case:
    eager = eager.to(dtype).eval()
    flops = transposed_conv_flops(eager, x.float().to(dtype))
    fused = fuse(eager)
    x = x.to(dtype)
    impls = {"fused": lambda: fused(x), "eager": lambda: eager(x)}
    if compile_peer:
        compiled = torch.compile(eager)
        impls["compile"] = lambda: compiled(x)

    def check() -> float:
        expected = eager(x).float()
        return ((fused(x).float() - expected).abs().max() / expected.abs().max()).item()

    dtype_name = str(dtype).removeprefix("torch.")
    return Case(
        family="upsample",
        name=f"{name} {dtype_name}",
        impls=impls,
        work=flops,
        dtype=dtype_name,
        check=check,
        tolerance=1e-4 if dtype == torch.float32 else 3e-2,
        extra={"input_shape": list(x.shape)},
    )


def cases(quick: bool) -> list[Case]:
    torch.manual_seed(0)
    if quick:
        return [
            make_case("dcgan 128->64 16x16", dcgan_block(128, 64), torch.randn(2, 128, 16, 16),
                      torch.float32),
            make_case("audio 256->128 L64", audio_block(256, 128), torch.randn(1, 256, 64),
                      torch.float32, compile_peer=False),
            make_case("dcgan 64->3 32x32", dcgan_block(64, 3, last=True),
                      torch.randn(2, 64, 32, 32), torch.bfloat16, compile_peer=False),
        ]  # fmt: skip
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        for cin, cout, size in DCGAN_LAYERS:
            block = dcgan_block(cin, cout, last=cout == 3)
            x = torch.randn(BATCH, cin, size, size)
            out.append(make_case(f"dcgan {cin}->{cout} {size}x{size}", block, x, dtype))
        out.append(
            make_case("dcgan generator", dcgan_generator(), torch.randn(BATCH, NZ, 1, 1), dtype)
        )
        out.append(
            make_case("audio 256->128 L1024", audio_block(256, 128), torch.randn(8, 256, 1024),
                      dtype)
        )  # fmt: skip
        out.append(
            make_case("audio 64->1 L8192", audio_block(64, 1, last=True),
                      torch.randn(8, 64, 8192), dtype)
        )  # fmt: skip
    return out


def audio_block(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    """A 4x upsampling layer of an audio decoder: ConvTranspose1d(k=8, s=4, p=2) +
    BatchNorm1d + LeakyReLU(0.2), or + Tanh for the waveform output."""
    conv = nn.ConvTranspose1d(cin, cout, 8, 4, 2)
    if last:
        return nn.Sequential(conv, nn.Tanh())
    return nn.Sequential(conv, _batchnorm(nn.BatchNorm1d(cout)), nn.LeakyReLU(0.2))
