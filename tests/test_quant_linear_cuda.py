"""The CUDA quant_linear kernels (csrc/kernels/quant_linear.cuh), run on the CPU
through the emulation harness, against gguf's dequantization (the reference).

They keep the activations in float32, so only the order of the additions
(and FMA contraction on a GPU) separates them from the reference:
|y - ref| <= 1e-5 * (|W| @ |x|), as test_quant_linear.py's float32 paths.
"""

import pytest
import torch
from emulation import load_binding
from test_quant_linear import K_OF, TYPES, dequantized, float_bound, random_weight

from aigc_sdk.ops import reference

pytestmark = pytest.mark.build

# Without GNU-unique symbols each binding keeps its own copy of the emulator's
# inline thread_locals (see test_decode_attention_cuda.py).
EMU_FLAGS = ["-fno-gnu-unique"]
GEMV, GEMM = 1, 2


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws the same activations on every run."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def emu():
    return load_binding("quant_linear", "tests/quant_linear_emulation.cpp", extra_cflags=EMU_FLAGS)


def run(emu, x, w, bias=None, path=0):
    """The launch csrc/cuda/quant_linear.cu performs, on CPU tensors."""
    M, K = x.shape
    N = w.shape[0]
    out = torch.empty(M, N, dtype=x.dtype)
    bias = bias.float().contiguous() if bias is not None else torch.empty(0)
    emu.quant_linear(
        x.dtype == torch.bfloat16,
        x,
        w.data,
        bias if bias.numel() else None,
        out,
        x.stride(0),
        w.data.shape[1],
        w.qtype,
        M,
        N,
        K,
        path,
    )
    return out


def check(emu, x, w, bias=None, path=0):
    y = run(emu, x, w, bias, path).float()
    want = reference.quant_linear(x.float(), w.data, w.qtype, w.shape[1], bias)
    tol = float_bound(dequantized(w).abs(), x)
    if x.dtype == torch.bfloat16:
        tol = tol + want.abs() * 2.0**-8
    err = (y - want).abs()
    assert bool((err <= tol).all()), f"max error {err.max():.3g}"


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("M", [1, 3, 8])
def test_gemv_matches_reference(emu, name, M):
    w = random_weight(name, 9, K_OF[name], seed=M)
    x = torch.randn(M, K_OF[name])
    check(emu, x, w, torch.randn(9) if M != 3 else None)


@pytest.mark.parametrize("name", list(TYPES))
def test_gemm_matches_reference(emu, name):
    # 70 x 67: partial tiles in both dimensions.
    K = 288 if reference.QUANT_FORMATS[TYPES[name]][1] == 32 else 256
    w = random_weight(name, 67, K, seed=5)
    x = torch.randn(70, w.shape[1])
    check(emu, x, w, torch.randn(67))


@pytest.mark.parametrize("name", ["Q4_1", "Q6_K"])
def test_bfloat16_and_strided_rows(emu, name):
    K = K_OF[name]
    w = random_weight(name, 13, K, seed=2)
    base = torch.randn(20, K + 64).bfloat16()
    x = base[:, 32 : 32 + K]  # rows K + 64 apart, 64-byte aligned starts
    check(emu, x[:5], w, path=GEMV)
    check(emu, x, w, torch.randn(13).bfloat16(), path=GEMM)


def test_both_paths_agree_on_small_m(emu):
    w = random_weight("Q4_K", 20, 512, seed=4)
    x = torch.randn(6, 512)
    torch.testing.assert_close(run(emu, x, w, path=GEMV), run(emu, x, w, path=GEMM))


def test_cuda_kernels_agree_with_cpu_exact_path(emu):
    from aigc_sdk import ops
    from aigc_sdk.ops._extension import has_kernel

    if not has_kernel("quant_linear", "cpu"):
        pytest.skip("extension not built")
    w = random_weight("Q5_K", 33, 512, seed=6)
    x = torch.randn(4, 512, generator=torch.Generator().manual_seed(6))
    err = (run(emu, x, w) - ops.quant_linear(x, w, exact=True)).abs()
    assert bool((err <= 2 * float_bound(dequantized(w).abs(), x)).all())
