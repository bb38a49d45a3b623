"""aigc::upsample_conv2d on the CPU against its pure-PyTorch reference (computed in float64)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from aigc_sdk.nn import FusedUpsample
from aigc_sdk.ops import has_kernel, reference, upsample_conv2d
from aigc_sdk.ops.upsample import ACTIVATIONS

pytestmark = pytest.mark.skipif(
    not has_kernel("upsample_conv2d", "cpu"), reason="aigc_sdk._C has no CPU upsample_conv2d"
)

# Tolerances relative to the float64 reference: the kernel accumulates in fp32 (fp64 for
# float64) and rounds once to the output dtype.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.bfloat16: dict(rtol=1.6e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def make_case(
    n, cin, cout, size, kernel, stride, padding, output_padding, dtype, seed, params=(1, 1, 1)
):
    """Random inputs; size/kernel have 1 or 2 entries; params flags bias, scale, shift."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, *size, generator=g).to(dtype)
    w = (torch.randn(cin, cout, *kernel, generator=g) / (cin * len(kernel)) ** 0.5).to(dtype)
    bias, scale, shift = (
        (torch.randn(cout, generator=g) * s).to(dtype) if use else None
        for use, s in zip(params, (0.5, 1.0, 0.5), strict=True)
    )
    return x, w, bias, scale, shift


def reference64(x, w, bias, scale, shift, *args):
    as64 = lambda t: None if t is None else t.double()
    return reference.upsample_conv2d(
        x.double(), w.double(), as64(bias), as64(scale), as64(shift), *args
    )


def assert_matches_reference(y, x, w, bias, scale, shift, *args):
    expected = reference64(x, w, bias, scale, shift, *args)
    assert y.shape == expected.shape
    assert y.dtype == x.dtype
    torch.testing.assert_close(y.double(), expected, **TOLERANCES[x.dtype])


def test_dcgan_layer_matches_reference():
    args = make_case(4, 32, 16, (4, 4), (4, 4), 2, 1, 0, torch.float32, seed=0)
    y = upsample_conv2d(*args, stride=2, padding=1, activation="relu")
    assert y.shape == (4, 16, 8, 8)
    assert_matches_reference(y, *args, 2, 1, 0, "relu", 0.01)


def test_known_values_without_overlap():
    # kernel == stride: each input pixel becomes one weighted k x k block.
    x = torch.tensor([[[[1.0, 2.0]]]])
    w = torch.tensor([[[[1.0, 10.0], [100.0, 1000.0]]]])
    y = upsample_conv2d(x, w, torch.tensor([0.5]), stride=2)
    expected = torch.tensor([[[[1.5, 10.5, 2.5, 20.5], [100.5, 1000.5, 200.5, 2000.5]]]])
    torch.testing.assert_close(y, expected)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    dims=st.sampled_from([1, 2]),
    n=st.integers(0, 3),
    cin=st.integers(1, 9),
    cout=st.sampled_from([1, 2, 3, 4, 5, 8, 13, 16, 17, 33]),
    size=st.tuples(st.integers(1, 6), st.integers(1, 7)),
    kernel=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    padding=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    output_padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
    activation=st.sampled_from(ACTIVATIONS),
    params=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_over_shapes(
    dims, n, cin, cout, size, kernel, stride, padding, output_padding, dtype, layout,
    activation, params, seed,
):  # fmt: skip
    size, kernel, stride, padding = (t[-dims:] for t in (size, kernel, stride, padding))
    output_padding = tuple(op % s for op, s in zip(output_padding[-dims:], stride, strict=True))
    out = [(i - 1) * s - 2 * p + k + op for i, s, p, k, op in
           zip(size, stride, padding, kernel, output_padding, strict=True)]  # fmt: skip
    if min(out) <= 0:
        padding = (0,) * dims
    x, w, bias, scale, shift = make_case(
        n, cin, cout, size, kernel, stride, padding, output_padding, dtype, seed, params
    )
    if layout == "channels_last" and dims == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # non-contiguous views: every other channel and column
        big = torch.zeros(n, 2 * cin, *size[:-1], 2 * size[-1], dtype=dtype)
        big[:, ::2, ..., ::2] = x
        x = big[:, ::2, ..., ::2]
        w = w.transpose(0, 1).contiguous().transpose(0, 1)
    args = (list(stride), list(padding), list(output_padding), activation, 0.2)
    y = upsample_conv2d(x, w, bias, scale, shift, *args)
    assert_matches_reference(y, x, w, bias, scale, shift, *args)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "cin,cout,size,kernel,stride,padding",
    [
        (64, 32, (8, 8), (4, 4), 2, 1),  # cout-lanes engine, 16-channel tiles
        (24, 8, (5, 7), (3, 3), 2, 1),  # cout-lanes engine, 8-channel tiles
        (48, 16, (6, 5), (4, 4), 2, 1),  # cout-lanes engine, one 16-lane tile
        (32, 3, (16, 16), (4, 4), 2, 1),  # pixel-lanes engine (RGB output)
        (16, 1, (200,), (8,), 4, 2),  # pixel-lanes engine, mono audio
        (32, 24, (300,), (8,), 4, 2),  # 1-D, cout-lanes
        (520, 200, (2, 3), (4, 4), 2, 1),  # input channels in several K slices
    ],
)
@pytest.mark.parametrize("batch", [1, 5])
def test_larger_layers(dtype, cin, cout, size, kernel, stride, padding, batch):
    dims = len(size)
    args = make_case(batch, cin, cout, size, kernel, stride, padding, 0, dtype, seed=cin + cout)
    conv = [[stride] * dims, [padding] * dims, [0] * dims, "silu", 0.01]
    y = upsample_conv2d(*args, *conv)
    assert_matches_reference(y, *args, *conv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_long_output_rows_in_every_stride(dtype, stride):
    # NCHW output rows of 13+ pixels per phase: runs of 8 neighbours stored as
    # whole vectors, the rest (row ends, the batch's last pixels) one by one;
    # 20 channels leave a partial block of 8; output_padding gives the phases
    # unequal widths.
    dims = 2
    args = make_case(2, 24, 20, (9, 13), (4, 5), stride, 1, stride - 1, dtype, seed=stride)
    conv = [[stride] * dims, [1] * dims, [stride - 1] * dims, "leaky_relu", 0.1]
    y = upsample_conv2d(*args, *conv)
    assert y.is_contiguous()
    assert_matches_reference(y, *args, *conv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_follow_every_kind_of_weight_update(dtype):
    # Without autograd the kernel keeps packed weights between calls; none of
    # these updates bumps a version counter the cache could have relied on.
    x, w, bias, scale, shift = make_case(3, 64, 40, (5, 6), (4, 4), 2, 1, 0, dtype, seed=7)
    args = ([2, 2], [1, 1], [0, 0], "relu", 0.0)
    other = torch.randn(w.shape, generator=torch.Generator().manual_seed(8)).to(dtype) * 0.1

    def check(weight):
        y = upsample_conv2d(x, weight, bias, scale, shift, *args)
        assert_matches_reference(y, x, weight, bias, scale, shift, *args)

    with torch.no_grad():
        check(w)
        check(w)  # served from the cache
        bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
        w.view(bits).numpy()[3, 5, 1, 2] = torch.tensor(50.0, dtype=dtype).view(bits).item()
        check(w)  # one element changed behind autograd's back, through numpy
        w.data.copy_(other)
        check(w)
        check(other)  # same values, another tensor
        check(w.transpose(2, 3).contiguous().transpose(2, 3))  # same values, other strides
        w.zero_()
        check(w)


def test_empty_batch():
    x = torch.zeros(0, 4, 3, 3)
    y = upsample_conv2d(x, torch.randn(4, 5, 4, 4), stride=2, padding=1)
    assert y.shape == (0, 5, 6, 6)


def test_channels_last_in_channels_last_out():
    x = torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    y = upsample_conv2d(x, torch.randn(16, 24, 4, 4), stride=2, padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert upsample_conv2d(x.contiguous(), torch.randn(16, 24, 4, 4), stride=2).is_contiguous()


def test_activation_extremes():
    # Large |z| must saturate cleanly (no inf/nan from the vectorised exp), NaN propagates.
    x = torch.tensor([[[-1e4, -100.0, -5.0, -0.3, 0.0, 1e-3, 0.3, 5.0, 100.0, 1e4, float("nan")]]])
    w = torch.ones(1, 1, 1)
    for activation in ACTIVATIONS:
        y = upsample_conv2d(x, w, activation=activation, negative_slope=0.1)
        expected = reference.upsample_conv2d(x.double(), w.double(), None, None, None, 1, 0, 0,
                                             activation, 0.1)  # fmt: skip
        torch.testing.assert_close(y.double(), expected, rtol=2e-6, atol=1e-7, equal_nan=True)


# ---------------------------------------------------------------------------
# opcheck, gradcheck, torch.compile
# ---------------------------------------------------------------------------

OPCHECK_CASES = [
    (2, 6, 8, (3, 4), (4, 4), [2, 2], [1, 1], [0, 0], "relu", torch.float32, "contiguous"),
    (2, 6, 3, (3, 4), (3, 3), [2, 3], [1, 0], [1, 2], "tanh", torch.float32, "channels_last"),
    (3, 5, 17, (9,), (8,), [4], [2], [1], "silu", torch.float32, "contiguous"),
    (1, 4, 16, (2, 3), (4, 4), [2, 2], [1, 1], [0, 0], "leaky_relu", torch.bfloat16, "contiguous"),
]


@pytest.mark.parametrize("case", OPCHECK_CASES, ids=lambda c: f"{c[8]}-{c[9]}-{c[10]}")
def test_opcheck(case):
    n, cin, cout, size, kernel, stride, padding, op, act, dtype, layout = case
    x, w, bias, scale, shift = make_case(n, cin, cout, size, kernel, stride, padding, op, dtype, 1)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for t in (x, w, bias, scale, shift):
        t.requires_grad_(dtype == torch.float32)
    torch.library.opcheck(
        torch.ops.aigc.upsample_conv2d, (x, w, bias, scale, shift, stride, padding, op, act, 0.1)
    )
    # And with the optional tensors absent.
    torch.library.opcheck(
        torch.ops.aigc.upsample_conv2d, (x, w, None, None, None, stride, padding, op, act, 0.1)
    )


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dims,cout", [(2, 5), (2, 2), (1, 6)])
def test_gradcheck(activation, dims, cout):
    size, kernel = ((3, 4), (3, 3)) if dims == 2 else ((5,), (4,))
    tensors = make_case(2, 3, cout, size, kernel, 2, 1, 1, torch.float64, seed=cout)
    for t in tensors:
        t.requires_grad_()
    slope = -0.3 if dims == 1 else 0.2  # a negative slope exercises the recompute path
    fn = lambda *t: upsample_conv2d(
        *t, stride=2, padding=1, output_padding=1, activation=activation, negative_slope=slope
    )
    assert torch.autograd.gradcheck(fn, tensors, fast_mode=True)


def test_gradcheck_channels_last_and_partial_inputs():
    x, w, _, scale, _ = make_case(2, 4, 6, (3, 3), (4, 4), 2, 1, 0, torch.float64, seed=3)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    scale.requires_grad_()  # w does not require grad: only some grads are asked for
    fn = lambda x, scale: upsample_conv2d(x, w, None, scale, None, 2, 1, activation="tanh")
    assert torch.autograd.gradcheck(fn, (x, scale), fast_mode=True)


def test_backward_matches_reference_in_float32():
    tensors = make_case(3, 8, 16, (5, 5), (4, 4), 2, 1, 0, torch.float32, seed=5)
    ours = [t.clone().requires_grad_() for t in tensors]
    theirs = [t.clone().requires_grad_() for t in tensors]
    grad = torch.randn(3, 16, 10, 10)
    upsample_conv2d(*ours, stride=2, padding=1, activation="silu").backward(grad)
    reference.upsample_conv2d(*theirs, 2, 1, 0, "silu").backward(grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


class TinyGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 6, 4, 4) * 0.2)
        self.w2 = nn.Parameter(torch.randn(6, 3, 4, 4) * 0.2)
        self.scale = nn.Parameter(torch.rand(6) + 0.5)
        self.shift = nn.Parameter(torch.randn(6) * 0.1)

    def forward(self, x):
        h = upsample_conv2d(x, self.w1, None, self.scale, self.shift, 2, 1, activation="relu")
        return upsample_conv2d(h, self.w2, None, None, None, 2, 1, activation="tanh") * 2


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = TinyGenerator()
    x = torch.randn(2, 8, 4, 4)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()  # the registered autograd traces too
    assert model.w1.grad is not None and model.scale.grad is not None


# ---------------------------------------------------------------------------
# FusedUpsample
# ---------------------------------------------------------------------------


def dcgan_block(cin, cout, activation, dims=2, affine=True):
    conv_cls, bn_cls = (nn.ConvTranspose2d, nn.BatchNorm2d) if dims == 2 else (
        nn.ConvTranspose1d, nn.BatchNorm1d)  # fmt: skip
    conv = conv_cls(cin, cout, 4, 2, 1, bias=True)
    bn = bn_cls(cout, affine=affine)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
    return conv, bn, activation


@pytest.mark.parametrize(
    "activation", [nn.ReLU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.Sigmoid(), nn.SiLU(), None]
)
@pytest.mark.parametrize("dims,affine", [(2, True), (1, True), (2, False)])
def test_fused_upsample_folds_batchnorm_in_eval(activation, dims, affine):
    torch.manual_seed(0)
    conv, bn, act = dcgan_block(8, 12, activation, dims, affine)
    original = nn.Sequential(conv, bn, act or nn.Identity()).eval()
    fused = FusedUpsample.from_modules(conv, bn, act).eval()
    x = torch.randn(3, 8, *((5, 6) if dims == 2 else (11,)))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), original(x), rtol=1e-4, atol=1e-5)


def test_fused_upsample_trains_like_the_original():
    torch.manual_seed(0)
    conv, bn, act = dcgan_block(8, 12, nn.ReLU())
    original = nn.Sequential(conv, bn, act).train()
    fused = FusedUpsample.from_modules(conv, bn, act).train()
    x = torch.randn(4, 8, 5, 5)
    y_fused, y_original = fused(x), original(x)
    torch.testing.assert_close(y_fused, y_original, rtol=1e-4, atol=1e-5)
    # Batch statistics were used and the running statistics updated identically.
    torch.testing.assert_close(fused.bn.running_mean, bn.running_mean)
    torch.testing.assert_close(fused.bn.running_var, bn.running_var)
    y_fused.square().sum().backward()
    y_original.square().sum().backward()
    for mine, theirs in [(fused.weight, conv.weight), (fused.bn.weight, bn.weight),
                         (fused.bn.bias, bn.bias)]:  # fmt: skip
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-4)
    # A bias before a train-mode BatchNorm gets an exactly-zero gradient in exact arithmetic;
    # both sides hold rounding noise of the size of the other gradients' last digits.
    torch.testing.assert_close(fused.bias.grad, conv.bias.grad, rtol=0, atol=2e-3)


def test_fused_upsample_eval_gradients_reach_batchnorm_parameters():
    conv, bn, act = dcgan_block(4, 6, nn.Tanh())
    fused = FusedUpsample.from_modules(conv, bn, act).eval()
    fused(torch.randn(2, 4, 3, 3)).sum().backward()
    assert fused.weight.grad is not None and fused.bn.weight.grad is not None


def test_fused_upsample_module_api():
    layer = FusedUpsample(16, 8, 4, stride=2, padding=1, batch_norm=True, activation="relu")
    assert layer(torch.randn(2, 16, 4, 4)).shape == (2, 8, 8, 8)
    assert set(layer.state_dict()) >= {"weight", "bias", "bn.running_mean", "bn.weight"}
    assert "activation='relu'" in repr(layer)
    no_bn = FusedUpsample.from_modules(nn.ConvTranspose1d(4, 2, 3, 2), None, "silu")
    assert no_bn(torch.randn(1, 4, 7)).shape == (1, 2, 15)


def test_fused_upsample_rejects_what_it_cannot_fuse():
    with pytest.raises(ValueError, match="groups=2"):
        FusedUpsample.from_modules(nn.ConvTranspose2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="dilation"):
        FusedUpsample.from_modules(nn.ConvTranspose2d(4, 4, 3, dilation=2))
    with pytest.raises(ValueError, match="cannot fuse activation GELU"):
        FusedUpsample.from_modules(nn.ConvTranspose2d(4, 4, 3), None, nn.GELU())
    with pytest.raises(ValueError, match="BatchNorm has 5 features"):
        FusedUpsample.from_modules(nn.ConvTranspose2d(4, 4, 3), nn.BatchNorm2d(5))


# ---------------------------------------------------------------------------
# Error messages: from the Python wrapper and from the op itself.
# ---------------------------------------------------------------------------

GOOD = dict(x=torch.randn(1, 4, 3, 3), weight=torch.randn(4, 5, 4, 4))

ERRORS = [
    (dict(x=torch.randn(1, 4, 3, 3, 3)), "x must be \\(N, C, H, W\\) or \\(N, C, L\\)"),
    (dict(x=torch.randn(1, 3, 3, 3)), "x has 3 channels but weight expects 4 input channels"),
    (dict(weight=torch.randn(4, 5, 4)), "weight must be \\(Cin, Cout, kH, kW\\)"),
    (dict(weight=torch.randn(4, 5, 9, 9)), "kernel sizes 1..8 are supported"),
    (dict(weight=torch.randn(4, 5, 4, 4).double()), "weight has dtype torch.float64"),
    (
        dict(x=torch.randn(1, 4, 3, 3).int(), weight=torch.randn(4, 5, 4, 4).int()),
        "x must .*float32",
    ),
    (dict(bias=torch.randn(4)), "bias must have shape \\(5,\\)"),
    (dict(scale=torch.randn(5).double()), "scale has dtype torch.float64"),
    (dict(stride=5), "strides 1..4 are supported"),
    (dict(stride=[2, 2, 2]), "stride must .*one per spatial dim"),
    (dict(padding=-1), "padding must be >= 0"),
    (dict(output_padding=2), "output_padding must be >= 0 and smaller than stride"),
    (dict(padding=9), "the output would be empty"),
    (dict(activation="gelu"), "activation must be one of"),
]


@pytest.mark.parametrize("change,message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_wrapper_errors(change, message):
    kwargs = dict(GOOD, stride=2)
    kwargs.update(change)
    with pytest.raises((ValueError, TypeError), match=message):
        upsample_conv2d(**kwargs)


@pytest.mark.parametrize("change,message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_op_errors(change, message):
    a = dict(GOOD, bias=None, scale=None, shift=None, stride=2, padding=0, output_padding=0,
             activation="none")  # fmt: skip
    a.update(change)
    dims = a["x"].dim() - 2
    per_dim = lambda v: v if isinstance(v, list) else [v] * dims
    with pytest.raises(RuntimeError, match=message):
        torch.ops.aigc.upsample_conv2d(
            a["x"], a["weight"], a["bias"], a["scale"], a["shift"], per_dim(a["stride"]),
            per_dim(a["padding"]), per_dim(a["output_padding"]), a["activation"], 0.01,
        )  # fmt: skip


def test_reference_agrees_with_torch_modules():
    # The oracle itself: the reference is ConvTranspose + BatchNorm(eval) + activation.
    conv, bn, _ = dcgan_block(6, 7, None)
    bn.eval()
    x = torch.randn(2, 6, 4, 4)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    y = reference.upsample_conv2d(x, conv.weight, conv.bias, scale, shift, 2, 1, 0, "silu")
    torch.testing.assert_close(y, F.silu(bn(conv(x))), rtol=1e-5, atol=1e-5)
