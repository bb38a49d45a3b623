"""The CUDA kernels of upsample_conv2d (csrc/kernels/upsample_conv2d.cuh), run on the CPU
through the emulation harness, against the reference op.

fp32 goes through the CUDA-core kernel, fp16 and bf16 through the tensor-core (WMMA) one.
"""

import pytest
import torch
from emulation import load_binding

from aigc_sdk.ops import reference
from aigc_sdk.ops.upsample import ACTIVATIONS

pytestmark = pytest.mark.build

TOLERANCES = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=2e-2),
}


@pytest.fixture(scope="module")
def emu():
    return load_binding("upsample_conv2d", "tests/upsample_conv2d_emulation.cpp")


def emulated_upsample(emu, x, w, bias, scale, shift, stride, padding, output_padding,
                      activation, slope):  # fmt: skip
    """What csrc/cuda/upsample_conv2d.cu does around the kernel, on CPU tensors."""
    one_d = x.dim() == 3
    cout = w.shape[1]
    w4 = w.unsqueeze(2) if one_d else w
    kh, kw = w4.shape[2:]
    w_perm = w4.permute(2, 3, 0, 1).contiguous()
    eff_scale = scale.float() if scale is not None else torch.ones(cout)
    eff_shift = torch.zeros(cout)
    if bias is not None:
        eff_shift += bias.float() * eff_scale
    if shift is not None:
        eff_shift += shift.float()
    if one_d:  # as a 2-D problem of height 1
        stride, padding, output_padding = [1, *stride], [0, *padding], [0, *output_padding]
    h, w_in = (1, x.shape[2]) if one_d else x.shape[2:]
    ho = (h - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0]
    wo = (w_in - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1]
    if one_d:
        out = torch.empty(x.shape[0], cout, wo, dtype=x.dtype)
    else:
        out = torch.empty(x.shape[0], cout, ho, wo, dtype=x.dtype)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
    strides = lambda t: (t.stride(0), t.stride(1), 0, t.stride(2)) if one_d else t.stride()
    sizes = (x.shape[0], x.shape[1], cout, h, w_in, ho, wo, kh, kw, *stride, *padding)
    launch = getattr(emu, f"upsample_conv2d_{str(x.dtype).removeprefix('torch.')}")
    launch(x, w_perm, eff_scale.contiguous(), eff_shift, out, strides(x), strides(out), sizes,
           ACTIVATIONS.index(activation), slope)  # fmt: skip
    return out


def make_case(n, cin, cout, size, kernel, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, *size, generator=g).to(dtype)
    w = (torch.randn(cin, cout, *kernel, generator=g) / (cin * len(kernel)) ** 0.5).to(dtype)
    bias, scale, shift = ((torch.randn(cout, generator=g) * s).to(dtype) for s in (0.5, 1, 0.5))
    return x, w, bias, scale, shift


CASES = [
    # n, cin, cout, size, kernel, stride, padding, output_padding, activation, layout
    (2, 8, 16, (5, 5), (4, 4), (2, 2), (1, 1), (0, 0), "relu", "contiguous"),  # DCGAN-like
    (
        3,
        20,
        70,
        (6, 5),
        (3, 4),
        (2, 3),
        (1, 0),
        (1, 2),
        "silu",
        "contiguous",
    ),  # 2 Cout tiles, K tail
    (2, 6, 3, (9, 11), (4, 4), (2, 2), (1, 1), (0, 0), "tanh", "channels_last"),  # RGB output
    (
        1,
        5,
        7,
        (4, 4),
        (1, 1),
        (2, 2),
        (0, 0),
        (1, 1),
        "sigmoid",
        "contiguous",
    ),  # phases without taps
    (2, 4, 9, (3, 3), (5, 5), (3, 3), (4, 4), (2, 2), "leaky_relu", "strided"),  # big padding
    (2, 12, 10, (37,), (8,), (4,), (2,), (1,), "tanh", "contiguous"),  # 1-D audio layer
    (1, 3, 5, (70,), (3,), (1,), (1,), (0,), "none", "contiguous"),  # 1-D, stride 1, 2 M tiles
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[8]}-{c[9]}-{len(c[3])}d-{c[2]}" for c in CASES])
def test_emulated_cuda_kernel_matches_reference(emu, case, dtype):
    n, cin, cout, size, kernel, stride, padding, output_padding, activation, layout = case
    x, w, bias, scale, shift = make_case(n, cin, cout, size, kernel, dtype, seed=cin * cout)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.cat([x, x], 1)[:, ::2]
    args = (stride, padding, output_padding, activation, 0.2)
    y = emulated_upsample(emu, x, w, bias, scale, shift, *args)
    as64 = lambda t: t.double()
    expected = reference.upsample_conv2d(as64(x), as64(w), as64(bias), as64(scale), as64(shift),
                                         *args)  # fmt: skip
    assert y.shape == expected.shape
    torch.testing.assert_close(y.double(), expected, **TOLERANCES[dtype])


def test_emulated_kernel_agrees_with_cpu_kernel(emu):
    from aigc_sdk.ops import has_kernel, upsample_conv2d

    if not has_kernel("upsample_conv2d", "cpu"):
        pytest.skip("no CPU kernel compiled")
    x, w, bias, scale, shift = make_case(2, 16, 24, (6, 6), (4, 4), torch.float32, seed=7)
    args = ((2, 2), (1, 1), (0, 0), "leaky_relu", 0.1)
    torch.testing.assert_close(
        emulated_upsample(emu, x, w, bias, scale, shift, *args),
        upsample_conv2d(x, w, bias, scale, shift, *args),
        rtol=1e-5,
        atol=1e-5,
    )
