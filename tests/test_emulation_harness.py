"""Self-tests of the CUDA emulation harness (csrc/emulation, tests/emulation).

Each test runs a kernel of tests/emulation/kernels/selftest.cuh on the CPU and
compares it with an independent oracle (torch, numpy, CUDA's documented
semantics). The binding compiles once (~25 s of CPU) into build/emulation/ and is
reused while the sources are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from emulation import dynamic_shared_symbols, load_binding

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def st():
    return load_binding("emu_selftest", "tests/emulation/selftest_binding.cpp")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- reductions, scans, barriers ----------------------------------------------------


def test_block_reduction_matches_torch_sum(st):
    n, blocks = 100_003, 7
    x = torch.randn(n, generator=_gen(1))
    partial = torch.empty(blocks)
    st.block_reduce_sum(x, partial, n, blocks)
    # Block b reads the 256-element chunks b, b + blocks, b + 2 * blocks, ...
    chunks = torch.nn.functional.pad(x, (0, -n % 256)).view(-1, 256).double().sum(1)
    expected = torch.stack([chunks[b::blocks].sum() for b in range(blocks)]).float()
    torch.testing.assert_close(partial, expected, rtol=1e-5, atol=1e-3)
    assert st.last_launch_stats()["barriers"] == blocks


def test_block_scan_needs_its_barrier(st):
    blocks = 5
    x = torch.randint(-50, 50, (blocks * 128,), generator=_gen(2), dtype=torch.int32)
    expected = x.view(blocks, 128).cumsum(1).view(-1).to(torch.int32)
    with_barrier = torch.empty_like(x)
    st.block_scan(x, with_barrier, blocks, True)
    assert torch.equal(with_barrier, expected)
    without_barrier = torch.empty_like(x)
    st.block_scan(x, without_barrier, blocks, False)
    assert not torch.equal(without_barrier, expected)


def test_two_level_scan_with_shfl_up(st):
    blocks = 3
    x = torch.randint(0, 10, (blocks * 512,), generator=_gen(3)).float()
    out = torch.empty_like(x)
    st.block_scan_shfl(x, out, blocks)
    assert torch.equal(out, x.view(blocks, 512).cumsum(1).view(-1))


def test_barrier_count_and_or(st):
    blocks, threads = 3, 96
    pred = torch.zeros(blocks * threads, dtype=torch.int32)
    pred[5] = 1  # block 0: one thread true
    pred[threads : 2 * threads] = 7  # block 1: all true (any non-zero value)
    out = torch.empty(blocks * threads * 3, dtype=torch.int32)
    st.barrier_predicates(pred, out, blocks, threads)
    out = out.view(blocks, threads, 3)
    assert (out[0] == torch.tensor([1, 0, 1], dtype=torch.int32)).all()
    assert (out[1] == torch.tensor([threads, 1, 1], dtype=torch.int32)).all()
    assert (out[2] == torch.tensor([0, 0, 0], dtype=torch.int32)).all()


# ---- warp collectives -----------------------------------------------------------------


def _shfl_oracle(values: list[int], mode: int, arg: int, width: int) -> list[int]:
    """CUDA Programming Guide semantics of the four shuffles (full warps)."""
    out = []
    for t, own in enumerate(values):
        lane, base = t % 32, t - t % 32
        seg_start = lane - lane % width
        if mode == 0:
            src = seg_start + arg % width
        elif mode == 1:
            src = lane - arg if lane - seg_start >= arg else lane
        elif mode == 2:
            src = lane + arg if lane - seg_start + arg < width else lane
        else:
            src = lane ^ arg
            if src >= seg_start + width:  # later groups are out of reach
                src = lane
        out.append(values[base + src] if src != lane else own)
    return out


@pytest.mark.parametrize(
    ("mode", "arg", "width"),
    [
        (0, 0, 32),
        (0, 17, 32),
        (0, 5, 8),
        (0, 3, 16),
        (1, 1, 32),
        (1, 5, 32),
        (1, 3, 8),
        (1, 16, 16),
        (2, 1, 32),
        (2, 7, 32),
        (2, 2, 4),
        (2, 31, 32),
        (3, 1, 32),
        (3, 16, 32),
        (3, 4, 8),
        (3, 8, 8),
        (3, 31, 32),
    ],
)
def test_shuffles_follow_cuda_semantics(st, mode, arg, width):
    threads = 64
    values = torch.randint(
        -(2**31), 2**31 - 1, (threads,), generator=_gen(mode * 100 + arg), dtype=torch.int32
    )
    out = torch.empty_like(values)
    st.shuffle(values, out, threads, mode, arg, width)
    assert out.tolist() == _shfl_oracle(values.tolist(), mode, arg, width)


def test_shuffle_of_wide_and_half_values(st):
    x = torch.randn(64, dtype=torch.float64, generator=_gen(4))
    out = torch.empty_like(x)
    hout = torch.empty(64, dtype=torch.float16)
    st.shuffle_wide(x, out, hout)
    assert torch.equal(
        out, x.view(-1, 2).flip(1).reshape(-1)
    )  # xor 1 swaps pairs, bit-exact doubles
    lanes = torch.arange(64)
    assert torch.equal(hout, (lanes - lanes % 32 + 31 - lanes % 32).half())


def test_shuffle_in_a_partial_warp(st):
    # 48 threads: warp 1 has lanes 0-15 only; xor 1 stays among existing lanes.
    values = torch.arange(100, 148, dtype=torch.int32)
    out = torch.empty_like(values)
    st.shuffle(values, out, 48, 3, 1, 32)
    assert out.tolist() == [values[i ^ 1].item() for i in range(48)]


def test_ballot_any_all_activemask(st):
    blocks, threads = 2, 64
    pred = torch.zeros(blocks * threads, dtype=torch.int32)
    pred[[0, 3, 31]] = 1  # warp 0: three lanes
    pred[32:64] = 1  # warp 1: all lanes
    # warp 2: none; warp 3: lane 7
    pred[96 + 7] = 5
    out = torch.empty(blocks * threads * 4, dtype=torch.uint32)
    st.votes(pred, out, blocks, threads)
    got = out.view(-1, 4).numpy()
    p = pred.numpy().reshape(-1, 32) != 0
    for w in range(4):
        bits = sum(1 << lane for lane in range(32) if p[w, lane])
        for lane in range(32):
            row = got[32 * w + lane]
            assert row[0] == bits
            assert row[1] == int(p[w].any())
            assert row[2] == int(p[w].all())
            assert row[3] == 0xFFFFFFFF


@pytest.mark.parametrize("n", [64, 45, 20])
def test_activemask_excludes_exited_lanes(st, n):
    out = torch.zeros(2 * 64, dtype=torch.uint32)
    st.activemask_after_exit(out, 64, n)
    got = out.view(64, 2).numpy()
    for t in range(n):
        active = [lane for lane in range(32) if 32 * (t // 32) + lane < n]
        assert got[t, 0] == sum(1 << lane for lane in active)
        assert got[t, 1] == len(active)


def test_match_any_reduce_and_syncwarp(st):
    x = torch.randint(0, 4, (64,), generator=_gen(5), dtype=torch.int32)
    out = torch.empty(64 * 3, dtype=torch.uint32)
    st.warp_match_reduce(x, out)
    got = out.view(-1, 3).numpy()
    v = x.numpy().reshape(2, 32)
    for w in range(2):
        for lane in range(32):
            same = sum(1 << k for k in range(32) if v[w, k] == v[w, lane])
            assert got[32 * w + lane].tolist() == [same, v[w].sum(), v[w].max()]


def test_disjoint_half_warp_groups(st):
    x = torch.arange(32, dtype=torch.int32) ** 2
    out = torch.empty_like(x)
    st.half_warp_groups(x, out)
    assert (out[:16] == x[:16].sum()).all() and (out[16:] == x[16:].sum()).all()


def test_cooperative_groups_tiles(st):
    threads = 96
    x = torch.randint(-100, 100, (threads,), generator=_gen(18), dtype=torch.int32)
    out = torch.empty(threads * 3, dtype=torch.int32)
    st.cg_tiles(x, out, threads)
    got = out.view(threads, 3)
    assert torch.equal(got[:, 0], x.view(-1, 8).sum(1, dtype=torch.int32).repeat_interleave(8))
    assert torch.equal(got[:, 1], x.view(-1, 16).cumsum(1).view(-1).to(torch.int32))
    warp_max = x.view(-1, 32).max(1).values.repeat_interleave(32)
    assert torch.equal(got[:, 2], warp_max * 1000 + torch.arange(threads, dtype=torch.int32) // 32)


# ---- atomics --------------------------------------------------------------------------


def test_atomics_from_many_blocks(st):
    n, bins, blocks, threads = 20_000, 13, 9, 96
    values = torch.randint(-1000, 1000, (n,), generator=_gen(6), dtype=torch.int32)
    histogram = torch.zeros(bins, dtype=torch.int32)
    ints = torch.tensor([0, -(2**31), 2**31 - 1, -1], dtype=torch.int32)
    uints = torch.zeros(1, dtype=torch.uint32)
    fsum = torch.zeros(1)
    dsum = torch.zeros(1, dtype=torch.float64)
    fmax = torch.full((1,), -1e30)
    st.atomics(values, n, histogram, bins, ints, uints, fsum, dsum, fmax, blocks, threads)
    v = values.numpy().astype(np.int64)
    assert histogram.tolist() == np.bincount(v % bins, minlength=bins).tolist()
    assert ints[0].item() == v.sum()
    assert ints[1].item() == v.max() and ints[2].item() == v.min()
    assert 0 <= ints[3].item() < blocks
    assert uints.numpy()[0] == n
    assert dsum.item() == (v * 0.25).sum()
    assert fsum.item() == pytest.approx((v * 0.5).sum(), abs=1.0)
    assert fmax.item() == v.max()


def test_runs_are_deterministic_and_threads_give_same_result(st):
    n, blocks = 50_000, 16
    x = torch.randn(n, generator=_gen(7))
    a, b, c = torch.empty(blocks), torch.empty(blocks), torch.empty(blocks)
    st.block_reduce_sum(x, a, n, blocks)
    st.block_reduce_sum(x, b, n, blocks)
    st.set_num_threads(2)
    try:
        st.block_reduce_sum(x, c, n, blocks)
        assert st.last_launch_stats()["blocks"] == blocks
    finally:
        st.set_num_threads(1)
    assert torch.equal(a, b) and torch.equal(a, c)


# ---- shared memory and geometry ----------------------------------------------------------


def test_dynamic_shared_memory_and_missing_barrier(st):
    blocks, threads = 4, 200
    x = torch.randn(blocks * threads, generator=_gen(8))
    out = torch.empty_like(x)
    st.reverse_dynamic(x, out, blocks, threads, True)
    assert torch.equal(out, x.view(blocks, threads).flip(1).reshape(-1))
    st.reverse_dynamic(x, out, blocks, threads, False)
    # Early threads read slots not written yet: poisoned (NaN) shared memory.
    assert out.isnan().any()


def test_dynamic_shared_macro_with_two_arrays(st):
    n = 77
    x = torch.randn(n, generator=_gen(9))
    out = torch.empty(n)
    st.dynamic_two_arrays(x, out, n)
    expected = x.flip(0) + 3 * torch.arange(n - 1, -1, -1).float()
    assert torch.equal(out, expected)


def test_transpose_with_2d_blocks_and_partial_tiles(st):
    rows, cols = 37, 50
    x = torch.randn(rows, cols, generator=_gen(10))
    out = torch.empty(cols, rows)
    st.transpose(x, out, rows, cols)
    assert torch.equal(out, x.t())


@pytest.mark.parametrize(
    ("grid", "block"), [((3, 2, 2), (4, 3, 2)), ((5, 1, 1), (33, 1, 1)), ((1, 4, 1), (8, 8, 4))]
)
def test_multidimensional_geometry(st, grid, block):
    nthreads = int(np.prod(grid) * np.prod(block))
    out = torch.empty(nthreads * 12, dtype=torch.int32)
    st.geometry(out, grid, block)
    expected = []
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                for tz in range(block[2]):
                    for ty in range(block[1]):
                        for tx in range(block[0]):
                            expected.append([tx, ty, tz, bx, by, bz, *block, *grid])
    assert out.view(-1, 12).tolist() == expected


# ---- 16-bit floats ------------------------------------------------------------------------


def _special_floats() -> torch.Tensor:
    specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65519.99,
        65520.0,
        1e6,
        -1e6,
        2**-24,
        2**-25,
        2**-25 * 1.0001,
        2**-14,
        2**-14 * 0.999,
        1 + 2**-11,
        1 + 3 * 2**-11,
        1 + 2**-8,
        1 + 3 * 2**-8,
        3.4e38,
        1e-40,
        float("inf"),
        float("-inf"),
    ]
    rand = torch.randn(20_000, generator=_gen(11)) * torch.logspace(-9, 6, 20_000)
    bits = torch.randint(0, 2**31 - 1, (20_000,), generator=_gen(12), dtype=torch.int32).view(
        torch.float32
    )
    x = torch.cat([torch.tensor(specials), rand, bits])
    return x[~x.isnan()]


def test_float_to_half_and_bf16_match_torch_bit_for_bit(st):
    x = _special_floats()
    n = x.numel()
    h = torch.empty(n, dtype=torch.float16)
    b = torch.empty(n, dtype=torch.bfloat16)
    h_back, b_back = torch.empty(n), torch.empty(n)
    st.convert16(x, h, b, h_back, b_back, n)
    assert torch.equal(h.view(torch.int16), x.half().view(torch.int16))
    assert torch.equal(b.view(torch.int16), x.bfloat16().view(torch.int16))
    assert torch.equal(h_back, x.half().float())
    assert torch.equal(b_back, x.bfloat16().float())
    nan = torch.full((1,), float("nan"))
    st.convert16(nan, h[:1], b[:1], h_back[:1], b_back[:1], 1)
    assert h[0].isnan() and b[0].isnan() and h_back[0].isnan() and b_back[0].isnan()


def test_every_16_bit_pattern_widens_like_torch(st):
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    h, b = patterns.view(torch.float16), patterns.view(torch.bfloat16)
    hf, bf = torch.empty(2**16), torch.empty(2**16)
    st.widen16(h, b, hf, bf, 2**16)
    for got, want in ((hf, h.float()), (bf, b.float())):
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got[~nan].view(torch.int32), want[~nan].view(torch.int32))


def test_half_arithmetic_is_correctly_rounded(st):
    n = 4096
    a = (torch.randn(n, generator=_gen(13)) * 8).half()
    b = (torch.randn(n, generator=_gen(14)) * 8).half()
    fma_out = torch.empty(n, dtype=torch.float16)
    add2_out = torch.empty(n, dtype=torch.float16)
    st.half_math(a, b, fma_out, add2_out, n)
    a64, b64 = a.double().numpy(), b.double().numpy()
    assert np.array_equal(
        fma_out.numpy(), (a64 * b64 + 1.0).astype(np.float16)
    )  # numpy rounds once
    assert np.array_equal(add2_out.numpy(), a.numpy() + b.numpy())


def test_math_intrinsics_match_torch(st):
    n = 1000
    x = torch.linspace(-20, 20, n)
    out = torch.empty(8 * n)
    st.math_functions(x, out, n)
    o = out.view(8, n)
    torch.testing.assert_close(o[0], torch.exp(x), rtol=2e-6, atol=0)
    torch.testing.assert_close(o[1], torch.exp(x), rtol=1e-6, atol=0)
    torch.testing.assert_close(o[2], torch.log(x.abs() + 1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(o[3], torch.rsqrt(x.abs() + 1), rtol=1e-6, atol=0)
    torch.testing.assert_close(o[4], torch.tanh(x), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(o[5], x / 3, rtol=1e-6, atol=0)
    assert torch.equal(o[6], torch.clamp(x, min=0.5))
    assert torch.equal(o[7], torch.clamp(x, max=2.0))


# ---- tensor cores ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("b_col", "c_col"), [(False, False), (True, False), (False, True)])
def test_wmma_gemm_matches_matmul(st, dtype, b_col, c_col):
    M, N, K = 48, 32, 64
    A = torch.randn(M, K, generator=_gen(15)).to(dtype)
    B = torch.randn(K, N, generator=_gen(16)).to(dtype)
    C = torch.empty(N, M) if c_col else torch.empty(M, N)
    b_arg = B.t().contiguous() if b_col else B
    st.wmma_gemm(A, b_arg, C, M, N, K, dtype == torch.bfloat16, b_col, c_col)
    got = C.t() if c_col else C
    expected = 2 * (A.double() @ B.double())
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """Round to tf32 as cvt.rna.tf32.f32 does: nearest, ties away from zero."""
    bits = x.view(torch.int32).to(torch.int64)
    return ((bits + 0x1000) & 0xFFFFE000).to(torch.int32).view(torch.float32)


def test_wmma_half_accumulator_and_tf32_shapes(st):
    g = _gen(19)
    a = torch.randn(32, 16, generator=g).half()  # passed column-major
    b = torch.randn(16, 8, generator=g).half()
    c = torch.randn(32, 8, generator=g).half()
    d = torch.empty(32, 8, dtype=torch.float16)
    ta, tb = torch.randn(16, 8, generator=g), torch.randn(8, 16, generator=g)
    td = torch.empty(16, 16)
    st.wmma_shapes(a.t().contiguous(), b, c, d, ta, tb, td)
    exact = a.double() @ b.double() + c.double()
    torch.testing.assert_close(d.double(), exact.half().double(), rtol=1e-3, atol=1e-3)
    tf32_product = _tf32(ta).double() @ _tf32(tb).double()
    torch.testing.assert_close(td.double(), tf32_product, rtol=1e-6, atol=1e-6)
    assert not torch.equal(_tf32(ta), ta)  # the rounding did something


# ---- misuse is reported, and the harness recovers ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (0, "deadlock"),
        (1, "divergent warp collectives"),
        (2, "exited while lane"),
        (3, "not 256-bit"),
    ],
)
def test_undefined_behaviour_is_reported(st, mode, message):
    out = torch.zeros(32)
    with pytest.raises(RuntimeError, match=message):
        st.misuse(out, mode, 32)
    # The next launch runs normally.
    x = torch.ones(1000)
    partial = torch.empty(1)
    st.block_reduce_sum(x, partial, 1000, 1)
    assert partial.item() == 1000


@pytest.mark.parametrize(
    ("grid", "block", "smem", "message"),
    [
        (1, (2048, 1, 1), 0, "exceeds 1024"),
        (1, (32, 32, 2), 0, "exceeds 1024"),
        (0, (32, 1, 1), 0, "zero dimension"),
        (1, (32, 1, 1), 300_000, "dynamic shared memory"),
    ],
)
def test_invalid_launch_configuration(st, grid, block, smem, message):
    with pytest.raises(ValueError, match=message):
        st.launch_config(grid, *block, smem, torch.zeros(4))


def test_pointer_arguments_are_checked(st):
    with pytest.raises(TypeError, match="torch.float32"):
        st.block_reduce_sum(torch.zeros(4, dtype=torch.float64), torch.zeros(1), 4, 1)
    x = torch.randn(4 * 37 + 1, generator=_gen(17))
    y = torch.empty(4 * 37)
    st.scale_float4(x[:-1], y, 37)
    assert torch.equal(y, 2 * x[:-1])
    with pytest.raises(ValueError, match="aligned to 16 bytes"):
        st.scale_float4(x[1:], y, 37)  # float4 loads need 16-byte alignment


# ---- the loader's dynamic shared memory linking -------------------------------------------------


def test_dynamic_shared_symbols_follow_namespaces(tmp_path):
    src = tmp_path / "k.cuh"
    src.write_text(
        """
        // extern __shared__ float commented_out[];
        __global__ void a() { extern __shared__ float top[]; }
        namespace outer { namespace inner {
        template <int N> __global__ void b() {
          extern __shared__ __align__(16) unsigned char raw[];
        }
        struct S { static void f() { extern __shared__ int in_class[]; } };
        } }
        namespace x::y { __global__ void c() { if (1) { extern __shared__ double deep[]; } } }
        """
    )
    assert dynamic_shared_symbols([src]) == sorted(
        ["top", "_ZN5outer5inner3rawE", "_ZN5outer5inner8in_classE", "_ZN1x1y4deepE"]
    )
