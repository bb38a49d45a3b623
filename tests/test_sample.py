"""aigc.sample against its bit-exact reference, its documented law and statistics."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigc_sdk import ops
from aigc_sdk.ops import reference
from aigc_sdk.ops._extension import has_kernel

pytestmark = pytest.mark.skipif(not has_kernel("sample", "cpu"), reason="extension not built")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def per_row(logits, **params):
    """The op's per-row tensors, as the wrapper builds them."""
    defaults = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=0, offset=0)
    defaults.update(params)
    return {name: ops.sampling._per_row(name, v, logits) for name, v in defaults.items()}


def sample_args(logits, **params) -> tuple:
    """The arguments of torch.ops.aigc.sample (and of its reference) for ``params``."""
    rows = per_row(logits, **{k: v for k, v in params.items() if k not in ("prev", "penalty")})
    prev, pen = params.get("prev"), params.get("penalty")
    if pen is not None:
        pen = ops.sampling._per_row("repetition_penalty", pen, logits)
    return (logits, *rows.values(), prev, pen)


def both(logits, **params):
    """(kernel tokens, reference tokens) for the same arguments."""
    args = sample_args(logits, **params)
    return torch.ops.aigc.sample(*args), reference.sample(*args)


def test_philox_known_answers():
    # Random123's kat_vectors for philox4x32_10.
    assert reference.philox4x32_10((0, 0, 0, 0), (0, 0)) == (
        0x6627E8D5,
        0xE169C58D,
        0xBC57AC4C,
        0x9B00DBD8,
    )
    assert reference.philox4x32_10((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (
        0x408F276D,
        0x41C83B0E,
        0xA20BC7C6,
        0x6D5451FD,
    )
    assert reference.philox4x32_10(
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)
    ) == (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


def test_exp_nonpos_is_accurate_and_exact_at_zero():
    x = -torch.linspace(0, 87, 200_001)
    e = reference.exp_nonpos(x)
    rel = (e.double() - torch.exp(x.double())).abs() / torch.exp(x.double())
    assert rel.max() < 3 * 2**-24
    assert reference.exp_nonpos(torch.tensor([0.0, -87.5, -math.inf])).tolist() == [1.0, 0.0, 0.0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 6),
    V=st.sampled_from([1, 2, 7, 8, 9, 100, 1000, 1025, 5000]),
    dtype=st.sampled_from(DTYPES),
    spread=st.sampled_from([0.01, 1.0, 5.0, 30.0]),
    temperature=st.sampled_from([0.0, 0.05, 0.7, 1.0, 2.5]),
    top_k=st.sampled_from([0, 1, 2, 5, 50, 10_000]),
    top_p=st.sampled_from([1.0, 0.999, 0.9, 0.5, 0.01]),
    min_p=st.sampled_from([0.0, 0.001, 0.1, 1.0]),
    seed=st.integers(-(2**63), 2**64 - 1),
    offset=st.integers(0, 2**40),
    quantize=st.booleans(),
)
def test_matches_reference_exactly(
    B, V, dtype, spread, temperature, top_k, top_p, min_p, seed, offset, quantize
):
    g = torch.Generator().manual_seed(seed % 2**32)
    logits = torch.randn(B, V, generator=g) * spread
    if quantize:  # many exact ties
        logits = logits.round()
    logits = logits.to(dtype)
    got, want = both(
        logits,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        seed=seed,
        offset=offset,
    )
    assert torch.equal(got, want)


def test_mixed_rows_and_wide_vocabulary():
    torch.manual_seed(1)
    B, V = 8, 128_256
    logits = torch.randn(B, V) * 4
    params = dict(
        temperature=torch.tensor([0.0, 0.6, 1.0, 1.3, 0.9, 1.0, 0.7, 2.0]),
        top_k=torch.tensor([0, 40, 0, 0, 1000, 5, 0, 100_000]),
        top_p=torch.tensor([1.0, 1.0, 0.95, 1.0, 0.8, 0.3, 1.0, 0.99]),
        min_p=torch.tensor([0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.2, 0.001]),
        seed=torch.arange(B) * 7919,
        offset=torch.tensor([3] * B),
    )
    got, want = both(logits, **params)
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_single_wide_row_split_over_threads_stays_exact(dtype):
    # A batch smaller than the thread count splits each long row's passes over
    # the threads; integer masses must keep every token the reference's,
    # whatever the number of threads.
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(1, 128_256, generator=g) * 4).to(dtype)
    settings = [
        dict(temperature=0.8, top_p=0.9),
        dict(top_k=50),
        dict(temperature=1.3, min_p=0.05),
        dict(temperature=1.0),
        dict(temperature=0.7, top_p=0.95, prev=torch.tensor([[5, 17, 5]]), penalty=1.3),
    ]
    cases = [(params, seed) for params in settings for seed in range(6)]
    args = [sample_args(logits, seed=seed, **params) for params, seed in cases]
    threads = torch.get_num_threads()
    try:
        # The oracle once, on one thread (on a busy machine its many small parallel ops
        # would wait for a second thread); the kernel must match it on every count.
        torch.set_num_threads(1)
        wants = [reference.sample(*a) for a in args]
        for n in sorted({1, max(2, threads)}):
            torch.set_num_threads(n)
            for case, a, want in zip(cases, args, wants, strict=True):
                assert torch.equal(torch.ops.aigc.sample(*a), want), (n, *case)
    finally:
        torch.set_num_threads(threads)


def test_reruns_reproduce_and_offsets_and_rows_differ():
    logits = torch.zeros(64, 1000)
    a = ops.sample(logits, seed=5, offset=0)
    assert torch.equal(a, ops.sample(logits, seed=5, offset=0))
    assert not torch.equal(a, ops.sample(logits, seed=5, offset=1))
    assert len(set(a.tolist())) > 40  # rows draw independent numbers
    torch.manual_seed(3)
    b = ops.sample(logits)
    torch.manual_seed(3)
    assert torch.equal(b, ops.sample(logits))


def test_row_ids_draw_each_request_as_it_would_alone():
    # Three requests' rows in one call, each keyed by its own row numbers, seed and
    # step: every request draws what it draws in a call of its own, on the kernel
    # and in the reference (with a repetition penalty too).
    torch.manual_seed(7)
    requests = [  # (rows, seed, step, temperature, top_p)
        (2, 11, 0, 1.0, 1.0),
        (1, 12, 5, 0.7, 0.9),
        (3, 11, 2, 1.3, 0.95),
    ]
    logits = [torch.randn(n, 400) * 2 for n, *_ in requests]
    prev = [torch.randint(-1, 400, (n, 6)) for n, *_ in requests]
    alone, alone_penalized = [], []
    for x, p, (_, seed, step, t, top_p) in zip(logits, prev, requests, strict=True):
        alone.append(ops.sample(x, seed=seed, offset=step, temperature=t, top_p=top_p))
        alone_penalized.append(
            ops.sample(
                x,
                seed=seed,
                offset=step,
                temperature=t,
                top_p=top_p,
                prev_tokens=p,
                repetition_penalty=1.3,
            )  # fmt: skip
        )

    def per_request(i):
        return torch.cat([torch.full((n,), r[i]) for n, *r in requests])

    batch = dict(
        seed=per_request(0), offset=per_request(1), temperature=per_request(2).float(),
        top_p=per_request(3).float(),
        row_ids=torch.cat([torch.arange(n) for n, *_ in requests]),
    )  # fmt: skip
    together = ops.sample(torch.cat(logits), **batch)
    assert torch.equal(together, torch.cat(alone))
    penalized = ops.sample(
        torch.cat(logits), prev_tokens=torch.cat(prev), repetition_penalty=1.3, **batch
    )
    assert torch.equal(penalized, torch.cat(alone_penalized))
    rows = per_row(torch.cat(logits), **{k: v for k, v in batch.items() if k != "row_ids"})
    want = reference.sample(torch.cat(logits), *rows.values(), None, None, batch["row_ids"])
    assert torch.equal(want, together)
    # Without row_ids the rows are numbered 0..B-1, as before.
    assert torch.equal(
        ops.sample(logits[2], seed=3, row_ids=torch.arange(3)), ops.sample(logits[2], seed=3)
    )
    with pytest.raises(ValueError, match=r"row_ids must have shape \[3\]"):
        ops.sample(logits[2], row_ids=torch.arange(2))
    with pytest.raises(TypeError, match="row_ids must be a tensor"):
        ops.sample(logits[2], row_ids=[0, 1, 2])


def test_greedy_takes_the_first_maximum():
    logits = torch.tensor([[1.0, 3.0, 3.0, -1.0], [-math.inf, -math.inf, 2.0, math.inf]])
    assert ops.sample(logits, temperature=0.0, seed=1).tolist() == [1, 3]
    bf = torch.tensor([[0.0, 5.0, 5.0]], dtype=torch.bfloat16)
    assert ops.sample(bf, temperature=0.0).tolist() == [1]


def kept_tokens(logits_row, **params):
    kept, mass = reference.sample_support(logits_row, **params)
    return set(torch.nonzero(mass > 0).flatten().tolist())


def drawn(logits_row, n=4000, **params):
    logits = logits_row.unsqueeze(0).expand(n, -1)
    return set(ops.sample(logits, seed=11, **params).tolist())


def test_top_k_ties_keep_every_tied_token():
    row = torch.tensor([3.0, 1.0, 2.0, 2.0, 0.0, 2.0])
    # 2nd largest is 2.0, tied three times: all four survive top_k=2.
    assert kept_tokens(row, temperature=1.0, top_k=2, top_p=1.0, min_p=0.0) == {0, 2, 3, 5}
    assert drawn(row, top_k=2) == {0, 2, 3, 5}
    assert drawn(row, top_k=1) == {0}
    assert drawn(row, top_k=6) == drawn(row, top_k=100) == set(range(6))


def test_top_p_ties_at_the_threshold_are_kept_whole():
    # e = [1, 1, 1/2, 1/2] (exact powers of two): probabilities 1/3, 1/3, 1/6, 1/6.
    row = torch.tensor([0.0, 0.0, -math.log(2), -math.log(2)])
    probs = dict(temperature=1.0, top_k=0, min_p=0.0)
    assert kept_tokens(row, top_p=0.3, **probs) == {0, 1}  # the tied top pair: 2/3 >= 0.3
    assert kept_tokens(row, top_p=0.67, **probs) == {0, 1, 2, 3}  # 2/3 < 0.67: next tie group
    assert drawn(row, top_p=0.3) == {0, 1}
    assert drawn(row, top_p=0.67) == {0, 1, 2, 3}
    assert drawn(row, top_p=1.0) == {0, 1, 2, 3}


def test_min_p_and_filters_compose():
    row = torch.tensor([0.0, -0.5, -1.0, -3.0, -6.0, -math.inf])
    assert drawn(row, min_p=math.exp(-1.01)) == {0, 1, 2}
    assert drawn(row, min_p=1.0) == {0}
    assert drawn(row) == {0, 1, 2, 3, 4}  # -inf is never drawn
    assert drawn(row, top_k=4, top_p=0.9, min_p=0.01) == kept_tokens(
        row, temperature=1.0, top_k=4, top_p=0.9, min_p=0.01
    )


def test_positive_infinity_shares_the_probability():
    row = torch.tensor([math.inf, 5.0, math.inf, -math.inf])
    assert drawn(row) == {0, 2}
    assert drawn(row, temperature=0.0) == {0}


def test_vocabulary_of_one_and_all_negative_infinity():
    assert ops.sample(torch.tensor([[-3.0], [7.0]]), seed=1).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"row 1: all its logits are -inf"):
        ops.sample(torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]]))
    with pytest.raises(ValueError, match="all its logits are -inf"):
        ops.sample(torch.full((1, 3), -math.inf), temperature=0.0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_nan_is_a_clear_error(temperature):
    logits = torch.zeros(3, 50)
    logits[2, 17] = math.nan
    with pytest.raises(ValueError, match=r"row 2: its logits contain NaN"):
        ops.sample(logits, temperature=temperature)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("temperature", -0.5, ValueError),
        ("temperature", math.inf, ValueError),
        ("temperature", math.nan, ValueError),
        ("top_k", -1, ValueError),
        ("top_k", 2.5, TypeError),
        ("top_p", 0.0, ValueError),
        ("top_p", 1.5, ValueError),
        ("top_p", math.nan, ValueError),
        ("min_p", -0.1, ValueError),
        ("min_p", 1.01, ValueError),
        ("offset", 2**64, ValueError),
    ],
)
def test_invalid_numbers_name_the_argument(name, value, error):
    with pytest.raises(error, match=name):
        ops.sample(torch.zeros(2, 10), **{name: value})


@pytest.mark.parametrize(
    ("name", "values", "bad"),
    [
        ("temperature", [1.0, -1.0], 1),
        ("top_k", [3, -2], 1),
        ("top_p", [0.5, 0.0], 1),
        ("min_p", [2.0, 0.5], 0),
    ],
)
def test_invalid_per_row_tensors_name_argument_and_row(name, values, bad):
    dtype = torch.int64 if name == "top_k" else torch.float32
    with pytest.raises(ValueError, match=rf"{name}\[{bad}\]"):
        ops.sample(torch.zeros(2, 10), **{name: torch.tensor(values, dtype=dtype)})


def test_per_row_tensors_in_other_dtypes_and_strides_draw_the_same_tokens():
    """Rows already in the op's form (its dtype, [B], contiguous) are passed as they are;
    any other form is converted first. Both must draw the same tokens."""
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    ready = dict(
        temperature=torch.full((4,), 0.7),
        top_k=torch.full((4,), 20, dtype=torch.int64),
        seed=torch.arange(4, dtype=torch.int64) + 11,
        offset=torch.full((4,), 5, dtype=torch.int64),
    )
    converted = dict(
        temperature=torch.full((8,), 0.7, dtype=torch.float64)[::2],
        top_k=torch.full((4,), 20, dtype=torch.int32),
        seed=torch.arange(4, dtype=torch.int32) + 11,
        offset=torch.tensor(5),
    )
    assert ops.sampling._per_row("top_k", ready["top_k"], logits) is ready["top_k"]
    assert torch.equal(ops.sample(logits, **ready), ops.sample(logits, **converted))


def test_bad_tensors_give_clear_errors():
    x = torch.zeros(2, 10)
    with pytest.raises(TypeError, match="logits must be float32"):
        ops.sample(x.double())
    with pytest.raises(ValueError, match=r"logits must have shape \[B, V\]"):
        ops.sample(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"top_p must be a number or a tensor of shape \[2\]"):
        ops.sample(x, top_p=torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(TypeError, match="top_k must hold integers"):
        ops.sample(x, top_k=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty vocabulary"):
        ops.sample(torch.zeros(2, 0))
    rows = per_row(x)
    with pytest.raises(ValueError, match=r"logits rows must be contiguous"):
        torch.ops.aigc.sample(torch.zeros(10, 2).t(), *rows.values())
    with pytest.raises(TypeError, match="top_k must be a Long tensor"):
        torch.ops.aigc.sample(x, *{**rows, "top_k": rows["top_k"].int()}.values())
    with pytest.raises(ValueError, match=r"seed must have shape \[2\]"):
        torch.ops.aigc.sample(x, *{**rows, "seed": rows["seed"][:1]}.values())


def test_rows_of_a_larger_tensor_need_no_copy():
    torch.manual_seed(0)
    hidden = torch.randn(4, 3, 500)
    last = hidden[:, -1, :]  # row stride 1500, rows contiguous
    assert not last.is_contiguous()
    assert torch.equal(
        ops.sample(last, seed=9, top_p=0.8), ops.sample(last.contiguous(), seed=9, top_p=0.8)
    )


def test_repetition_penalty_matches_reference():
    torch.manual_seed(2)
    logits = torch.randn(3, 300) * 3
    prev = torch.tensor([[5, 5, 17, -1], [0, 299, 299, 1], [-1, -1, -1, -1]])
    pen = torch.tensor([1.3, 0.7, 2.0])
    for temperature in (0.0, 0.8):
        got, want = both(logits, temperature=temperature, top_p=0.9, seed=4, prev=prev, penalty=pen)
        assert torch.equal(got, want)
    # A strong penalty on the argmax moves greedy decoding off it.
    top = int(logits[0].argmax())
    assert (
        ops.sample(
            logits[0], temperature=0, prev_tokens=torch.tensor([top]), repetition_penalty=1e6
        ).item()
        != top
    )
    with pytest.raises(ValueError, match="prev_tokens"):
        ops.sample(logits, prev_tokens=torch.tensor([[300]] * 3), repetition_penalty=1.2)
    with pytest.raises(ValueError, match="repetition_penalty"):
        ops.sample(logits, prev_tokens=prev, repetition_penalty=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empirical_distribution_matches_the_law(dtype):
    """Chi-square of 40k draws against mass / kept mass, and the exact support."""
    scipy_stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(7)
    row = (torch.randn(300) * 2).to(dtype)
    for params in (
        dict(temperature=0.9, top_k=0, top_p=1.0, min_p=0.0),
        dict(temperature=1.2, top_k=40, top_p=0.9, min_p=0.0),
        dict(temperature=0.7, top_k=0, top_p=0.95, min_p=0.02),
    ):
        n = 40_000
        tokens = ops.sample(row.unsqueeze(0).expand(n, -1), seed=123, offset=1, **params)
        kept, mass = reference.sample_support(row, **params)
        probs = mass.double() / mass.sum()
        assert set(tokens.unique().tolist()) <= set(torch.nonzero(mass).flatten().tolist())
        counts = torch.bincount(tokens, minlength=row.numel()).double()
        # Tokens expected at least 5 times each test on their own; the rest pooled.
        expected = probs * n
        big = expected >= 5
        obs = torch.cat([counts[big], counts[~big].sum().view(1)])
        exp = torch.cat([expected[big], expected[~big].sum().view(1)])
        if exp[-1] == 0:
            obs, exp = obs[:-1], exp[:-1]
        p_value = scipy_stats.chisquare(obs.numpy(), exp.numpy()).pvalue
        assert p_value > 1e-4, (params, p_value)
        # Every token with an expected count of 20 or more was drawn.
        assert bool((counts[expected >= 20] > 0).all())


def test_opcheck():
    logits = torch.randn(3, 77)
    rows = per_row(logits, temperature=0.8, top_k=5, top_p=0.9, seed=3)
    torch.library.opcheck(torch.ops.aigc.sample.default, (logits, *rows.values(), None, None))
    prev = torch.tensor([[1, 2], [3, -1], [0, 0]])
    pen = torch.full((3,), 1.2)
    torch.library.opcheck(torch.ops.aigc.sample.default, (logits, *rows.values(), prev, pen))
    row_ids = torch.tensor([4, 0, 4])
    torch.library.opcheck(
        torch.ops.aigc.sample.default, (logits, *rows.values(), None, None, row_ids)
    )


def test_reference_fallback_is_the_same_law(monkeypatch):
    torch.manual_seed(4)
    logits = torch.randn(4, 333)
    want = ops.sample(logits, seed=2, top_k=30, top_p=0.9)
    monkeypatch.setattr(ops.sampling, "has_kernel", lambda op, device: False)
    monkeypatch.setattr(ops._extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="pure-PyTorch reference"):
        got = ops.sample(logits, seed=2, top_k=30, top_p=0.9)
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match=r"top_p\[1\]"):
        ops.sample(logits, top_p=torch.tensor([0.5, 2.0, 0.5, 0.5]))
