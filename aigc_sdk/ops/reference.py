"""Pure-PyTorch references of every op: the test oracle and the fallback.

Each function computes exactly what its fused kernel computes, written for
clarity, not speed.
"""

import math

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# upsample_conv2d
# ---------------------------------------------------------------------------

UPSAMPLE_ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh", "sigmoid", "silu")


def apply_activation(y: torch.Tensor, activation: str, negative_slope: float = 0.01):
    """The activations of upsample_conv2d, by name."""
    if activation == "none":
        return y
    if activation == "relu":
        return F.relu(y)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope)
    if activation == "tanh":
        return torch.tanh(y)
    if activation == "sigmoid":
        return torch.sigmoid(y)
    if activation == "silu":
        return F.silu(y)
    raise ValueError(f"activation must be one of {UPSAMPLE_ACTIVATIONS}; got {activation!r}")


def upsample_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    activation: str = "none",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """activation((conv_transpose(x, weight) + bias) * scale + shift), per output channel.

    x is (N, Cin, H, W) or (N, Cin, L); weight is ConvTranspose's (Cin, Cout, *kernel).
    """
    conv = F.conv_transpose2d if x.dim() == 4 else F.conv_transpose1d
    y = conv(x, weight, bias, stride, padding, output_padding)
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    if scale is not None:
        y = y * scale.view(per_channel)
    if shift is not None:
        y = y + shift.view(per_channel)
    return apply_activation(y, activation, negative_slope)


# ------------------------------------------------------------ decode_attention


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One query token per sequence against its KV cache: ``(out, lse)``.

    q [B, H, D]; caches [B, Hkv, Tmax, D] with H a multiple of Hkv (query head
    h reads KV head h // (H // Hkv)); the first seq_lens[b] positions of the
    cache are valid. out [B, H, D] in q's dtype; lse [B, H] float32 is the
    natural log of sum_t exp(scale * q.k_t). A sequence of length 0 gives
    out = 0 and lse = -inf. Computed in float32.
    """
    B, H, D = q.shape
    Hkv, Tmax = k_cache.shape[1], k_cache.shape[2]
    scale = D**-0.5 if scale is None else scale
    qg = q.float().reshape(B, Hkv, H // Hkv, D)
    scores = torch.einsum("bkgd,bktd->bkgt", qg, k_cache.float()) * scale
    valid = torch.arange(Tmax, device=q.device) < seq_lens.to(q.device).view(B, 1, 1, 1)
    scores = scores.masked_fill(~valid, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1)).nan_to_num(0.0)  # empty rows: -inf - -inf
    out = torch.einsum("bkgt,bktd->bkgd", probs, v_cache.float())
    return out.reshape(B, H, D).to(q.dtype), lse.reshape(B, H)


# ---------------------------------------------------------------------- sample
# Bit-exact with the kernels (csrc/kernels/philox.h, csrc/cpu/sample.cpp,
# csrc/cuda/sample.cu): same float32 operations in the same order, integer
# masses, the same Philox numbers. The tests compare tokens exactly.

_MASK32 = 0xFFFFFFFF
_MASS_SCALE = float(2**40)


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox 4x32-10 (Salmon et al., SC'11) on a 128-bit counter and 64-bit key."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & _MASK32,
            p1 & _MASK32,
            ((p0 >> 32) ^ c3 ^ k1) & _MASK32,
            p0 & _MASK32,
        )
        k0, k1 = (k0 + 0x9E3779B9) & _MASK32, (k1 + 0xBB67AE85) & _MASK32
    return c0, c1, c2, c3


def sample_random_bits(seed: int, offset: int, row: int) -> int:
    """The 64 random bits of one row: Philox keyed by seed, counter (offset, row)."""
    seed, offset = seed & (2**64 - 1), offset & (2**64 - 1)
    r = philox4x32_10(
        (offset & _MASK32, offset >> 32, row & _MASK32, row >> 32), (seed & _MASK32, seed >> 32)
    )
    return (r[1] << 32) | r[0]


def _f32(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


_EXP = {
    name: _f32(value)
    for name, value in dict(
        log2e=1.44269504088896341,
        c1=0.693359375,
        c2=-2.12194440e-4,
        p0=1.9875691500e-4,
        p1=1.3981999507e-3,
        p2=8.3334519073e-3,
        p3=4.1665795894e-2,
        p4=1.6666665459e-1,
        p5=5.0000001201e-1,
        one=1.0,
    ).items()
}


def exp_nonpos(x: torch.Tensor) -> torch.Tensor:
    """e^x for float32 x <= 0, bit-identical to aigc::exp_nonpos (Cephes expf, flushed to
    0 below -87), one rounding per float32 operation."""
    c = {k: v.to(x.device) for k, v in _EXP.items()}
    in_range = x >= -87.0
    x = torch.where(in_range, x, torch.full_like(x, -87.0))
    n = torch.round(x * c["log2e"])
    r = x - n * c["c1"]
    r = r - n * c["c2"]
    r2 = r * r
    p = c["p0"] * r + c["p1"]
    for name in ("p2", "p3", "p4", "p5"):
        p = p * r + c[name]
    y = (p * r2 + r) + c["one"]
    scale = ((n.to(torch.int32) + 127) << 23).view(torch.float32)
    return torch.where(in_range, y * scale, torch.zeros_like(y))


def _float_bits(value: float) -> int:
    return int(_f32(value).view(torch.int32))


def sample_support(
    logits_row: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    prev_tokens: torch.Tensor | None = None,
    repetition_penalty: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept tokens and their integer masses for one row at temperature > 0:
    ``(kept [V] bool, mass [V] int64)``; the probability of a kept token is its
    mass over the kept total. Raises ValueError on NaN or all -inf logits."""
    x = _penalized(logits_row, prev_tokens, repetition_penalty)
    m = x.max()
    if m == -math.inf:
        raise ValueError("aigc.sample: all logits of the row are -inf, so no token can be drawn")
    # 1/T rounded once to float32, capped so that (x - m) * inv_t is 0 at the max.
    inv_t = torch.clamp(_f32(1.0) / _f32(temperature), max=torch.finfo(torch.float32).max)
    e = (x == math.inf).float() if m == math.inf else exp_nonpos((x - m) * inv_t)
    mass = (e.double() * _MASS_SCALE).floor().long()
    keys = e.view(torch.int32)  # e >= 0: the bits order like the values
    V = x.numel()
    tau = 0
    if 0 < top_k < V:  # the k-th largest e; ties with it stay
        tau = int(keys.topk(top_k).values[-1])
    if top_p < 1.0:  # the smallest prefix by e (ties whole) whose mass reaches ceil(p * total)
        in_k = keys >= tau
        total = int(mass[in_k].sum())
        target = min(total, math.ceil(float(_f32(top_p)) * float(total)))
        sorted_keys, order = keys[in_k].sort(descending=True)
        running = mass[in_k][order].cumsum(0)
        pos = int(torch.searchsorted(running, torch.tensor([target]))[0])
        tau = max(tau, int(sorted_keys[pos]))
    if min_p > 0.0:  # e is the probability relative to the most likely token
        tau = max(tau, _float_bits(min_p))
    kept = keys >= tau
    return kept, mass * kept


def _penalized(
    row: torch.Tensor, prev_tokens: torch.Tensor | None, repetition_penalty: float
) -> torch.Tensor:
    x = row.float().clone()
    if torch.isnan(x).any():
        raise ValueError("aigc.sample: the row's logits contain NaN")
    if prev_tokens is not None:
        ids = prev_tokens[prev_tokens >= 0].unique()
        xv, pen = x[ids], _f32(repetition_penalty)
        x[ids] = torch.where(xv > 0, xv / pen, xv * pen)
    return x


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
    prev_tokens: torch.Tensor | None = None,
    repetition_penalty: torch.Tensor | None = None,
    row_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """torch.ops.aigc.sample in PyTorch: logits [B, V]; per-row parameter
    tensors [B]; prev_tokens [B, n] int64 (negative = padding) with
    repetition_penalty [B]; row_ids [B], the row numbers keyed into the draws
    (default 0..B-1). Returns int64 tokens [B]. Values must be valid (the
    wrapper aigc_sdk.ops.sample checks them)."""
    B = logits.shape[0]
    tokens = []
    for b in range(B):
        row = logits[b].cpu()
        prev = None if prev_tokens is None else prev_tokens[b].cpu()
        pen = 1.0 if repetition_penalty is None else float(repetition_penalty[b])
        if float(temperature[b]) == 0.0:
            x = _penalized(row, prev, pen)
            if x.max() == -math.inf:
                raise ValueError("aigc.sample: all logits of the row are -inf")
            tokens.append(int(x.argmax()))  # the first of equal maxima
            continue
        kept, mass = sample_support(
            row, float(temperature[b]), int(top_k[b]), float(top_p[b]), float(min_p[b]), prev, pen
        )
        running = mass.cumsum(0)
        row_id = b if row_ids is None else int(row_ids[b])
        bits = sample_random_bits(int(seed[b]), int(offset[b]), row_id)
        r = (bits * int(running[-1])) >> 64
        tokens.append(int(torch.searchsorted(running, torch.tensor([r]), right=True)[0]))
    return torch.tensor(tokens, dtype=torch.int64, device=logits.device)


# ---------------------------------------------------------------- quant_linear
# GGUF block formats (csrc/kernels/quant_formats.h): GGML type id -> (name,
# weights per block, bytes per block).
QUANT_FORMATS = {
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
}


# The CPU layouts with 8 rows interleaved, and Q4_0 / Q4_1 with 16 (two 8-row
# halves whose groups alternate) (QuantWeight.tiled(); the layouts are described
# in csrc/kernels/quant_formats.h): type id -> (name, GGUF type id).
TILED_TYPES = {
    258: ("Q4_0x8", 2),
    259: ("Q4_1x8", 3),
    264: ("Q8_0x8", 8),
    268: ("Q4_Kx8", 12),
    270: ("Q6_Kx8", 14),
    514: ("Q4_0x16", 2),
    515: ("Q4_1x16", 3),
}
TILED_X8_OF = {base: qtype for qtype, (name, base) in TILED_TYPES.items() if name.endswith("x8")}
TILED_X16_OF = {base: qtype for qtype, (name, base) in TILED_TYPES.items() if name.endswith("x16")}
TILE_ROWS = 8  # the rows of a group


def tile_rows(qtype: int) -> int:
    """The rows of a tile of a tiled type: 16 for the x16 types, else 8."""
    return 16 if TILED_TYPES[qtype][0].endswith("x16") else TILE_ROWS


def block_scales(qtype: int) -> tuple[int, int]:
    """Where a GGUF block's float16 scales start and the bytes they take: a tiled
    group holds them as d[8] (then m[8] or dmin[8]) before the words of the
    block's other bytes."""
    if qtype == 14:
        return 208, 2  # Q6_K: d is last
    return 0, 4 if qtype in (3, 12) else 2  # Q4_1: d, m; Q4_K: d, dmin


def untile_x8(data: torch.Tensor, qtype: int) -> torch.Tensor:
    """A tiled weight [N, bytes_per_row] -> the GGUF rows it was made from, byte by
    byte (Q6_Kx8: weight by weight) from the layout's description, the oracle of
    the layout."""
    import numpy as np

    base = TILED_TYPES[qtype][1]
    if base == 14:
        return _untile_q6k_x8(data)
    nbytes = QUANT_FORMATS[base][2]
    start, head = block_scales(base)
    N, row = data.shape
    R = tile_rows(qtype)
    n = np.arange(N)[:, None, None]
    b = np.arange(row // nbytes)[None, :, None]
    k = np.arange(nbytes)[None, None, :]
    tile, half, j = n // R, n % R // TILE_ROWS, n % TILE_ROWS
    group = ((tile * (row // nbytes) + b) * (R // TILE_ROWS) + half) * TILE_ROWS * nbytes
    s = k - start  # byte s of the scales: d[8], then m[8] or dmin[8]
    scale_at = (s // 2) * 2 * TILE_ROWS + 2 * j + s % 2
    q = np.where(k < start, k, k - head)  # byte q of the other bytes, word by word
    word_at = head * TILE_ROWS + 32 * (q // 4) + 4 * j + q % 4
    index = group + np.where((s >= 0) & (s < head), scale_at, word_at)
    return data.reshape(-1)[torch.from_numpy(index.reshape(N, row)).to(data.device)]


def _untile_q6k_x8(data: torch.Tensor) -> torch.Tensor:
    """untile_x8 for Q6_Kx8, whose weights are repacked: each weight's 6 bits from
    where the layout puts them, then Q6_K's own packing of them."""
    import numpy as np

    raw = data.detach().cpu().numpy().astype(np.int64)
    N, row = raw.shape
    nb = row // 210
    n = np.arange(N)[:, None, None]
    b = np.arange(nb)[None, :, None]
    j = n % TILE_ROWS
    group = ((n // TILE_ROWS) * nb + b) * TILE_ROWS * 210  # [N, nb, 1]
    flat = raw.reshape(-1)
    # Weight w of a block: chunk p = w // 32, its word t and byte m, step 8h + t.
    w = np.arange(256)[None, None, :]
    p, within = w // 32, w % 32
    t, m = (within % 16) // 2, 2 * (within // 16) + within % 2
    h, k = p // 4, p % 4
    at = group + 144 + 96 * (8 * h + t) + 4 * j + m  # vector 0 of the step, this lane
    low = flat[at + 32 * np.minimum(k, 2)] & 63
    top = (flat[at] >> 6) | (flat[at + 32] >> 6) << 2 | (flat[at + 64] >> 6) << 4
    q = np.where(k < 3, low, top)  # [N, nb, 256], 0..63
    out = np.zeros((N, nb, 210), dtype=np.int64)
    for half in range(2):
        for i in range(32):
            w0 = 128 * half + i  # weights w0, w0 + 32, w0 + 64, w0 + 96 share bytes
            qs = [q[..., w0 + 32 * k] for k in range(4)]
            out[..., 64 * half + i] = (qs[0] & 15) | (qs[2] & 15) << 4
            out[..., 64 * half + 32 + i] = (qs[1] & 15) | (qs[3] & 15) << 4
            out[..., 128 + 32 * half + i] = sum((qs[k] >> 4) << 2 * k for k in range(4))
    for g in range(16):  # scale g: pair g // 2, element g % 2
        out[..., 192 + g] = flat[group[..., 0] + 16 + 16 * (g // 2) + 2 * j[..., 0] + g % 2]
    for byte in range(2):
        out[..., 208 + byte] = flat[group[..., 0] + 2 * j[..., 0] + byte]
    return torch.from_numpy(out.astype(np.uint8).reshape(N, row)).to(data.device)


def dequantize_gguf(data: torch.Tensor, qtype: int, K: int) -> torch.Tensor:
    """Raw GGUF blocks [N, bytes_per_row] uint8 -> float32 [N, K], by the ``gguf``
    package's own dequantization (the oracle the kernels are tested against).
    A tiled weight is turned back into its GGUF rows first."""
    import gguf

    if qtype in TILED_TYPES:
        data, qtype = untile_x8(data, qtype), TILED_TYPES[qtype][1]

    raw = data.detach().cpu().contiguous().numpy()
    w = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype))
    return torch.from_numpy(w.reshape(data.shape[0], K).copy()).to(data.device)


def quantize_activations(x: torch.Tensor, block: int) -> torch.Tensor:
    """x [M, K] as the int8 path of quant_linear sees it: per ``block``
    activations, d = amax / 127 and q = round-half-even(x * (1 / d)); returns
    d * q (float32). The same float32 operations as the kernels."""
    M, K = x.shape
    xb = x.float().reshape(M, K // block, block)
    d = xb.abs().amax(dim=-1, keepdim=True) / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.round(xb * inv).clamp(-127, 127)
    return (q * d).reshape(M, K)


def activation_block(qtype: int) -> int:
    """The activation block of quant_linear's int8 path: 256 for the K-quants, else 32."""
    qtype = TILED_TYPES[qtype][1] if qtype in TILED_TYPES else qtype
    return 256 if QUANT_FORMATS[qtype][1] == 256 else 32


def quant_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    qtype: int,
    K: int,
    bias: torch.Tensor | None = None,
    exact: bool = True,
) -> torch.Tensor:
    """x [M, K] @ dequantize(weight).T (+ bias) in float32, out in x's dtype.

    ``exact=False`` rounds the activations first as the kernels' int8 path
    does (quantize_activations), which is what that path must match tightly.
    """
    w = dequantize_gguf(weight, qtype, K).to(x.device)
    xf = x.float() if exact else quantize_activations(x, activation_block(qtype))
    y = xf @ w.T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
