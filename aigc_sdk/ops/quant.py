"""Linear layers over GGUF-quantized weights (``torch.ops.aigc.quant_linear``).

A weight matrix [N, K] stays in its GGUF block format: a uint8 tensor
[N, bytes_per_row] holding the file's bytes (``gguf.GGUFReader(path).tensors[i]
.data`` is already that shape), its GGML type id and K. Supported types:
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (blocks of 32 weights) and Q4_K, Q5_K, Q6_K
(super-blocks of 256).

    from aigc_sdk.ops import QuantWeight, quant_linear
    w = QuantWeight.from_gguf(reader.tensors[i])       # or quantized_weight(raw, qtype, (N, K))
    y = quant_linear(x, w, bias)                         # x [..., K] -> y [..., N]

On the CPU, ``w.tiled()`` holds a Q4_0, Q4_1, Q8_0, Q4_K or Q6_K matrix in a
layout of its own (Q4_0x8, Q4_1x8, Q8_0x8, Q4_Kx8, Q6_Kx8: 8 rows interleaved
block by block, type ids 258, 259, 264, 268 and 270; for N a multiple of 16,
Q4_0x16 and Q4_1x16, ids 514 and 515: two such 8-row tiles whose blocks alternate)
that the kernels read faster on AVX2, with bit for bit the same results;
``w.untiled()`` gives the GGUF layout back (``w.to("cuda")`` does so itself).

Numerics. With ``exact=False`` (the default) the CPU kernel computes small
batches (M < 32 rows of x, the decode step) as llama.cpp does: each row of x
is rounded to int8 per block of 32 activations (256 for the K-quants) with a
float scale d = amax / 127, and the dot products are integer. The result then
differs from the float32 product by the activation rounding, at most
``sum_k |w_k| * d_k / 2`` for an output. On CPUs with AVX-512 VNNI, Q4_0 and
Q4_1 (and their tiled layouts) take that path at any M, prefill included,
where it is the faster one; ``int8_max_rows(qtype)`` tells the bound on this
build. Larger batches, ``exact=True`` and the CUDA kernels use the float32
activations: they match ``dequantize(W) @ x`` up to the order of the additions.

Inference only (no autograd).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from . import reference
from ._extension import has_kernel, op_defined, warn_fallback

QUANT_TYPES = {name: qtype for qtype, (name, _, _) in reference.QUANT_FORMATS.items()}
# The most rows of x the CPU kernel rounds to int8 when exact=False, for most types
# (int8_max_rows gives each type's bound on this build).
INT8_MAX_ROWS = 31


def int8_max_rows(qtype: int) -> int:
    """The most rows of x that ``quant_linear(..., exact=False)`` computes with int8
    activations on the CPU for a weight of GGML type ``qtype`` (see Numerics)."""
    if has_kernel("quant_linear", "cpu") and op_defined("quant_linear_int8_rows"):
        return torch.ops.aigc.quant_linear_int8_rows(int(qtype))
    return INT8_MAX_ROWS


def _format(qtype: int) -> tuple[str, int, int]:
    try:
        if int(qtype) in reference.TILED_TYPES:
            name, base = reference.TILED_TYPES[int(qtype)]
            return (name, *reference.QUANT_FORMATS[base][1:])
        return reference.QUANT_FORMATS[int(qtype)]
    except (KeyError, TypeError, ValueError):
        supported = ", ".join(f"{n} ({t})" for n, t in QUANT_TYPES.items())
        raise ValueError(
            f"quant_linear: unsupported GGML type {qtype!r}; supported: {supported}"
        ) from None


def _qtype_id(qtype) -> int:
    """A GGML type given as an int, a name ("Q4_K") or a gguf.GGMLQuantizationType."""
    if isinstance(qtype, str):
        if qtype.upper() not in QUANT_TYPES:
            _format(-1)
        return QUANT_TYPES[qtype.upper()]
    qtype = int(qtype)
    _format(qtype)
    return qtype


@dataclass(frozen=True)
class QuantWeight:
    """A [N, K] weight matrix in a GGUF block format.

    ``data`` is uint8 [N, K / block * bytes_per_block] (one row of blocks per
    output feature), ``qtype`` the GGML type id, ``shape`` = (N, K) as for
    ``nn.Linear.weight`` (GGUF lists the dimensions the other way round).

    ``tiled()`` gives the same matrix in a CPU layout that the kernels read
    faster (Q4_0, Q4_1, Q8_0, Q4_K and Q6_K: the same name with "x8", 8 rows
    interleaved, type ids 258, 259, 264, 268 and 270; Q4_0 and Q4_1 with "x16"
    for N a multiple of 16, ids 514 and 515); ``untiled()`` the GGUF layout back.
    """

    data: torch.Tensor
    qtype: int
    shape: tuple[int, int]

    def __post_init__(self):
        name, block, nbytes = _format(self.qtype)
        N, K = self.shape
        if not isinstance(self.data, torch.Tensor) or self.data.dtype != torch.uint8:
            raise TypeError(f"QuantWeight: data must be a uint8 tensor, got {type(self.data)}")
        if K <= 0 or K % block:
            raise ValueError(f"QuantWeight: K = {K} must be a positive multiple of {block}")
        want = (N, K // block * nbytes)
        if tuple(self.data.shape) != want:
            raise ValueError(
                f"QuantWeight: {name} data of a [{N}, {K}] matrix must have shape {list(want)}, "
                f"got {list(self.data.shape)}"
            )
        if self.is_tiled and N % reference.tile_rows(self.qtype):
            rows = reference.tile_rows(self.qtype)
            raise ValueError(f"QuantWeight: a {name} matrix needs N a multiple of {rows}, got {N}")

    @classmethod
    def from_gguf(cls, tensor, *, copy: bool = True) -> QuantWeight:
        """From a ``gguf.GGUFReader`` tensor (a ReaderTensor) of a 2-D quantized matrix.

        ``copy=False`` keeps the reader's memory map (read-only: never write
        to ``data``); the default copies it into process memory.
        """
        dims = [int(d) for d in tensor.shape]
        if len(dims) != 2:
            raise ValueError(f"QuantWeight.from_gguf: {tensor.name!r} is not a matrix: {dims}")
        K, N = dims  # GGUF lists the row length first
        return quantized_weight(tensor.data, int(tensor.tensor_type), (N, K), copy=copy)

    @classmethod
    def cat(cls, weights: list[QuantWeight]) -> QuantWeight:
        """The matrices stacked along N (their output features), one weight for
        one call: e.g. the q, k and v projections of a layer. Rows of blocks are
        independent, so this is a concatenation of the bytes."""
        weights = list(weights)
        if not weights:
            raise ValueError("QuantWeight.cat: no weights")
        first = weights[0]
        if all(w.is_tiled for w in weights) and len({w.qtype for w in weights}) > 1:
            # Tiles of 8 and of 16 rows of one GGUF type: the layout that suits the whole.
            bases = {reference.TILED_TYPES[w.qtype][1] for w in weights}
            if len(bases) == 1:
                return cls.cat([w.untiled() for w in weights]).tiled()
        for w in weights[1:]:
            if w.qtype != first.qtype or w.shape[1] != first.shape[1]:
                raise ValueError(
                    f"QuantWeight.cat: every weight must have one type and K; got {first} and {w}"
                )
        data = torch.cat([w.data for w in weights])
        return cls(data, first.qtype, (data.shape[0], first.shape[1]))

    @property
    def type_name(self) -> str:
        return _format(self.qtype)[0]

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def is_tiled(self) -> bool:
        return self.qtype in reference.TILED_TYPES

    def tiled(self) -> QuantWeight:
        """This matrix in its type's CPU layout with 8 rows interleaved (Q4_0 ->
        Q4_0x8, and so Q4_1, Q8_0, Q4_K and Q6_K; Q4_0 and Q4_1 with 16, Q4_0x16
        and Q4_1x16, when N is a multiple of 16): the same weights rearranged
        (Q6_K's repacked too) so that the CPU kernels load each block of 8 rows at
        once (faster on AVX2, the results bit for bit the same). Itself for the
        other types, for N not a multiple of 8, or already tiled."""
        N, K = self.shape
        tiled_type = reference.TILED_X16_OF.get(self.qtype)
        if tiled_type is None or N % reference.tile_rows(tiled_type):
            tiled_type = reference.TILED_X8_OF.get(self.qtype)
        if tiled_type is None or N % reference.tile_rows(tiled_type):
            return self
        return QuantWeight(_tile(self.data, tiled_type), tiled_type, self.shape)

    def untiled(self) -> QuantWeight:
        """This matrix in its GGUF layout (itself if it is not tiled)."""
        if not self.is_tiled:
            return self
        base = reference.TILED_TYPES[self.qtype][1]
        return QuantWeight(_untile(self.data, self.qtype), base, self.shape)

    def to(self, device) -> QuantWeight:
        """On ``device``; a tiled matrix leaves the CPU in its GGUF layout."""
        weight = self if torch.device(device).type == "cpu" else self.untiled()
        return QuantWeight(weight.data.to(device), weight.qtype, weight.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float matrix [N, K] (on data's device), as gguf's dequantization gives it."""
        return _dequantize_blocks(self.data, self.qtype, self.shape[1]).to(dtype)

    def dequantize_rows(
        self, index: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Rows ``index`` (int64 [n]) of the float matrix, [n, K]: an embedding
        lookup that dequantizes only the rows it returns."""
        if has_kernel("dequantize", self.device.type):
            return torch.ops.aigc.dequantize.default(
                self.data, self.qtype, self.shape[1], index.to(self.device, torch.int64)
            ).to(dtype)
        if self.is_tiled:  # the tiles holding the rows, back in GGUF rows, then the rows
            R, row_bytes = reference.tile_rows(self.qtype), self.data.shape[1]
            base = reference.TILED_TYPES[self.qtype][1]
            picked = self.data.view(-1, R * row_bytes).index_select(0, index // R)
            within = _untile(picked.view(-1, row_bytes), self.qtype).view(-1, R, row_bytes)
            rows = within[torch.arange(len(index), device=index.device), index % R]
            return dequantize(rows, base, self.shape[1]).to(dtype)
        rows = self.data.index_select(0, index)
        return dequantize(rows, self.qtype, self.shape[1]).to(dtype)

    def __repr__(self) -> str:
        N, K = self.shape
        return f"QuantWeight({self.type_name}, shape=({N}, {K}), device={self.device})"


def quantized_weight(raw, ggml_type, shape, *, copy: bool = True) -> QuantWeight:
    """A QuantWeight from raw GGUF bytes.

    raw: a numpy array or tensor of the matrix's bytes (uint8, any shape with
    the right number of bytes, e.g. ``GGUFReader(...).tensors[i].data``);
    ggml_type: an int, a name ("Q4_K") or a ``gguf.GGMLQuantizationType``;
    shape: (N, K) = (out_features, in_features).
    """
    import numpy as np

    qtype = _qtype_id(ggml_type)
    name, block, nbytes = _format(qtype)
    N, K = (int(s) for s in shape)
    if isinstance(raw, torch.Tensor):
        data = raw.detach()
        if copy:
            data = data.clone()
    else:
        arr = np.asarray(raw)
        if arr.dtype != np.uint8:
            raise TypeError(f"quantized_weight: raw must hold uint8 bytes, got {arr.dtype}")
        if copy:
            data = torch.from_numpy(np.array(arr, copy=True))
        else:
            with warnings.catch_warnings():  # a read-only memory map: never written here
                warnings.simplefilter("ignore", UserWarning)
                data = torch.from_numpy(arr)
    if data.dtype != torch.uint8:
        raise TypeError(f"quantized_weight: raw must hold uint8 bytes, got {data.dtype}")
    if K <= 0 or K % block:
        raise ValueError(f"quantized_weight: K = {K} is not a positive multiple of {block}")
    row = K // block * nbytes
    if data.numel() != N * row:
        raise ValueError(
            f"quantized_weight: a [{N}, {K}] {name} matrix has {N * row} bytes, got {data.numel()}"
        )
    return QuantWeight(data.reshape(N, row).contiguous(), qtype, (N, K))


_X_DTYPES = (torch.float32, torch.bfloat16)


def quant_linear(
    x: torch.Tensor,
    weight: QuantWeight,
    bias: torch.Tensor | None = None,
    *,
    exact: bool = False,
) -> torch.Tensor:
    """y = x @ W^T (+ bias) with W quantized: x [..., K] float32 or bfloat16
    (any strides), bias [N] (float32 or x's dtype); y [..., N] in x's dtype.

    ``exact=True`` keeps the activations in float32 on every path (see the
    module's doc for what the default int8 path rounds).
    """
    # Called once per projection per decoded token, where Python-side work costs
    # as much as a small kernel: only the cheap checks here, the kernels check the rest.
    if not isinstance(weight, QuantWeight):
        raise TypeError(f"quant_linear: weight must be a QuantWeight, got {type(weight)}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"quant_linear: x must be a torch.Tensor, got {type(x)}")
    N, K = weight.shape
    if x.dtype not in _X_DTYPES:
        raise TypeError(f"quant_linear: x must be float32 or bfloat16, got {x.dtype}")
    dims = x.dim()
    if dims == 0 or x.shape[-1] != K:
        raise ValueError(
            f"quant_linear: x must have shape [..., K = {K}] for a {weight.type_name} weight of "
            f"shape ({N}, {K}), got {tuple(x.shape)}"
        )
    if weight.data.device != x.device:
        raise ValueError(f"quant_linear: weight is on {weight.device} but x is on {x.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (N,):
            shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias)
            raise ValueError(f"quant_linear: bias must be a tensor of shape ({N},), got {shape}")
        if bias.dtype != torch.float32 and bias.dtype != x.dtype:
            raise TypeError(f"quant_linear: bias must be float32 or {x.dtype}, got {bias.dtype}")
        if bias.device != x.device:
            raise ValueError(f"quant_linear: bias is on {bias.device} but x is on {x.device}")
    x2 = x if dims == 2 else x.reshape(-1, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    device = "cpu" if x.is_cpu else x.device.type
    if has_kernel("quant_linear", device):
        y = torch.ops.aigc.quant_linear(x2, weight.data, weight.qtype, K, bias, exact)
    else:
        warn_fallback("quant_linear", device)
        y = reference.quant_linear(x2, weight.data, weight.qtype, K, bias)
    return y if dims == 2 else y.reshape(*x.shape[:-1], N)


class QuantLinear(torch.nn.Module):
    """An nn.Linear whose weight stays quantized: the raw blocks are a buffer
    (saved in state_dict as uint8), the type and shape are attributes."""

    def __init__(self, weight: QuantWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.qtype = weight.qtype
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight_data", weight.data)
        self.register_buffer("bias", bias)

    @property
    def weight(self) -> QuantWeight:
        return QuantWeight(self.weight_data, self.qtype, (self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quant_linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        name = _format(self.qtype)[0]
        return f"{name}, in_features={self.in_features}, out_features={self.out_features}"


# ------------------------------------------------- dequantization in torch --
# The same float32 operations as gguf.quants (d * q + m, d * sc * q - dmin * m),
# as tensor ops so that it runs on any device and at tensor speed.


def _half(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2] (little-endian IEEE half) -> float32 [...]."""
    return b.contiguous().view(torch.float16).squeeze(-1).float()


def _bits(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., n] -> the 8n bits [..., 8n] (bit i of byte i // 8), as uint8."""
    shifts = torch.arange(8, dtype=torch.uint8, device=b.device)
    return ((b.unsqueeze(-1) >> shifts) & 1).flatten(-2)


def _nibbles32(qs: torch.Tensor) -> torch.Tensor:
    """16 packed bytes -> 32 values: the low nibbles, then the high ones."""
    return torch.cat([qs & 15, qs >> 4], dim=-1)


def _k_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K's 12 scale bytes [..., 12] -> 6-bit scales and mins [..., 8]."""
    d, m, md = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = torch.cat([d & 63, (md & 15) | ((d >> 2) & 48)], dim=-1)
    mn = torch.cat([m & 63, (md >> 4) | ((m >> 2) & 48)], dim=-1)
    return sc.float(), mn.float()


def _dequantize_blocks(data: torch.Tensor, qtype: int, K: int) -> torch.Tensor:
    if has_kernel("dequantize", data.device.type):
        return torch.ops.aigc.dequantize.default(data, qtype, K)
    return dequantize(data, qtype, K)  # torch ops: every device, the same values


def _x8_parts(qtype: int) -> tuple[int, int, int]:
    """(bytes of a GGUF block, where its float16 scales start, the bytes they take)."""
    return reference.QUANT_FORMATS[qtype][2], *reference.block_scales(qtype)


def _q6k_quants(blocks: torch.Tensor) -> torch.Tensor:
    """Q6_K blocks [..., 210] -> their 6-bit weights [..., 256] (0..63, before the -32)."""
    lead = blocks.shape[:-1]
    ql = blocks[..., 0:128].reshape(*lead, 2, 1, 64)
    ql = torch.cat([ql & 15, ql >> 4], dim=-2).reshape(*lead, 2, 4, 32)
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=blocks.device).view(4, 1)
    qh = (blocks[..., 128:192].reshape(*lead, 2, 1, 32) >> shifts) & 3
    return (ql | (qh << 4)).reshape(*lead, 256)


def _q6k_packed(q: torch.Tensor) -> torch.Tensor:
    """The inverse of _q6k_quants' unpacking: weights [..., 256] -> ql and qh [..., 192]."""
    lead = q.shape[:-1]
    q = q.reshape(*lead, 2, 4, 32)  # [half, quarter, l]: weight 128 half + 32 quarter + l
    low, high = q & 15, q >> 4
    ql = (low[..., 0:2, :] | low[..., 2:4, :] << 4).reshape(*lead, 128)
    qh = high[..., 0, :] | high[..., 1, :] << 2 | high[..., 2, :] << 4 | high[..., 3, :] << 6
    return torch.cat([ql, qh.reshape(*lead, 64)], -1)


def _tile_q6k_x8(data: torch.Tensor) -> torch.Tensor:
    """Q6_K rows [N, row] -> Q6_Kx8 (csrc/kernels/quant_formats.h)."""
    N, row = data.shape
    T, nb, R = N // reference.TILE_ROWS, row // 210, reference.TILE_ROWS
    blocks = data.reshape(T, R, nb, 210).transpose(1, 2)  # [tile, block, row, byte]
    d = blocks[..., 208:210].reshape(T, nb, 2 * R)
    pairs = blocks[..., 192:208].reshape(T, nb, R, 8, 2).transpose(2, 3).reshape(T, nb, 16 * R)
    # Weight 32p + 16 half + 2t + e -> chunk p, word t, byte 2 half + e.
    q = _q6k_quants(blocks).reshape(T, nb, R, 8, 2, 8, 2).permute(0, 1, 2, 3, 5, 4, 6)
    q = q.reshape(T, nb, R, 2, 4, 8, 4)  # [.., h, chunk 4h + k, t, byte]
    top = q[..., 3, :, :]
    v = torch.stack([q[..., k, :, :] | ((top >> 2 * k) & 3) << 6 for k in range(3)], -3)
    steps = v.permute(0, 1, 3, 5, 4, 2, 6)  # [tile, block, h, t, k, row, byte]
    return torch.cat([d, pairs, steps.reshape(T, nb, -1)], -1).reshape(N, row)


def _untile_q6k_x8(data: torch.Tensor) -> torch.Tensor:
    """The inverse of _tile_q6k_x8."""
    N, row = data.shape
    T, nb, R = N // reference.TILE_ROWS, row // 210, reference.TILE_ROWS
    groups = data.reshape(T, nb, R * 210)
    d = groups[..., : 2 * R].reshape(T, nb, R, 2)
    sc = groups[..., 2 * R : 18 * R].reshape(T, nb, 8, R, 2).transpose(2, 3).reshape(T, nb, R, 16)
    v = groups[..., 18 * R :].reshape(T, nb, 2, 8, 3, R, 4).permute(0, 1, 5, 2, 4, 3, 6)
    top = (v[..., 0, :, :] >> 6) | (v[..., 1, :, :] >> 6) << 2 | (v[..., 2, :, :] >> 6) << 4
    q = torch.cat([v & 63, top.unsqueeze(-3)], -3)  # [tile, block, row, h, k, t, byte]
    q = q.reshape(T, nb, R, 8, 8, 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(T, nb, R, 256)
    blocks = torch.cat([_q6k_packed(q), sc, d], -1)
    return blocks.transpose(1, 2).reshape(N, row)


def _tile_x8(data: torch.Tensor, qtype: int) -> torch.Tensor:
    """GGUF rows [N, row] of a type with a tiled layout -> that layout
    (csrc/kernels/quant_formats.h)."""
    if qtype == 14:
        return _tile_q6k_x8(data)
    N, row = data.shape
    nbytes, start, head = _x8_parts(qtype)
    T, nb, R = N // reference.TILE_ROWS, row // nbytes, reference.TILE_ROWS
    blocks = data.reshape(T, R, nb, nbytes).transpose(1, 2)  # [tile, block, row, byte]
    scales = blocks[..., start : start + head].reshape(T, nb, R, head // 2, 2).transpose(2, 3)
    others = torch.cat([blocks[..., :start], blocks[..., start + head :]], -1)
    quants = others.reshape(T, nb, R, -1, 4).transpose(2, 3)
    return torch.cat([scales.reshape(T, nb, -1), quants.reshape(T, nb, -1)], -1).reshape(N, row)


def _untile_x8(data: torch.Tensor, qtype: int) -> torch.Tensor:
    """The inverse of _tile_x8: x8 rows [N, row] -> GGUF rows of ``qtype``."""
    if qtype == 14:
        return _untile_q6k_x8(data)
    N, row = data.shape
    nbytes, start, head = _x8_parts(qtype)
    T, nb, R = N // reference.TILE_ROWS, row // nbytes, reference.TILE_ROWS
    groups = data.reshape(T, nb, R * nbytes)
    scales = groups[..., : R * head].reshape(T, nb, head // 2, R, 2).transpose(2, 3)
    quants = groups[..., R * head :].reshape(T, nb, -1, R, 4).transpose(2, 3)
    scales, quants = scales.reshape(T, nb, R, head), quants.reshape(T, nb, R, nbytes - head)
    blocks = torch.cat([quants[..., :start], scales, quants[..., start:]], -1)
    return blocks.transpose(1, 2).reshape(N, row)


def _tile(data: torch.Tensor, tiled_type: int) -> torch.Tensor:
    """GGUF rows [N, row] -> the tiled layout ``tiled_type`` (csrc/kernels/quant_formats.h):
    an x16 tile is two x8 tiles whose groups alternate."""
    base = reference.TILED_TYPES[tiled_type][1]
    x8 = _tile_x8(data, base)
    if reference.tile_rows(tiled_type) == reference.TILE_ROWS:
        return x8
    N, row = data.shape
    nbytes = reference.QUANT_FORMATS[base][2]
    halves = x8.reshape(N // 16, 2, row // nbytes, reference.TILE_ROWS * nbytes)
    return halves.transpose(1, 2).reshape(N, row)  # [tile, block, half, group]


def _untile(data: torch.Tensor, tiled_type: int) -> torch.Tensor:
    """The inverse of _tile: rows [N, row] of ``tiled_type`` -> GGUF rows."""
    base = reference.TILED_TYPES[tiled_type][1]
    if reference.tile_rows(tiled_type) != reference.TILE_ROWS:
        N, row = data.shape
        nbytes = reference.QUANT_FORMATS[base][2]
        groups = data.reshape(N // 16, row // nbytes, 2, reference.TILE_ROWS * nbytes)
        data = groups.transpose(1, 2).reshape(N, row)  # [tile, half, block, group]
    return _untile_x8(data, base)


def dequantize(data: torch.Tensor, qtype: int, K: int) -> torch.Tensor:
    """Raw GGUF blocks [N, bytes_per_row] uint8 -> float32 [N, K], in torch ops."""
    if qtype in reference.TILED_TYPES:
        data = _untile(data, qtype)
        qtype = reference.TILED_TYPES[qtype][1]
    name, block, nbytes = _format(qtype)
    N = data.shape[0]
    b = data.reshape(N, K // block, nbytes)
    if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        d = _half(b[..., 0:2]).unsqueeze(-1)
        if name == "Q8_0":
            w = d * b[..., 2:].contiguous().view(torch.int8).float()
        elif name == "Q4_0":
            w = d * (_nibbles32(b[..., 2:]).float() - 8)
        elif name == "Q4_1":
            w = d * _nibbles32(b[..., 4:]).float() + _half(b[..., 2:4]).unsqueeze(-1)
        elif name == "Q5_0":
            q = _nibbles32(b[..., 6:]) | (_bits(b[..., 2:6]) << 4)
            w = d * (q.float() - 16)
        else:
            q = _nibbles32(b[..., 8:]) | (_bits(b[..., 4:8]) << 4)
            w = d * q.float() + _half(b[..., 2:4]).unsqueeze(-1)
    elif name in ("Q4_K", "Q5_K"):
        d, dmin = _half(b[..., 0:2]), _half(b[..., 2:4])
        sc, mn = _k_scales(b[..., 4:16])
        qs = b[..., 48:] if name == "Q5_K" else b[..., 16:]
        qs = qs.reshape(N, -1, 4, 1, 32)
        q = torch.cat([qs & 15, qs >> 4], dim=-2).reshape(N, -1, 8, 32)
        if name == "Q5_K":
            qh = b[..., 16:48].unsqueeze(-2)  # [N, nb, 1, 32]
            shifts = torch.arange(8, dtype=torch.uint8, device=b.device).view(8, 1)
            q = q | (((qh >> shifts) & 1) << 4)
        ds = (d.unsqueeze(-1) * sc).unsqueeze(-1)
        dm = (dmin.unsqueeze(-1) * mn).unsqueeze(-1)
        w = ds * q.float() - dm
    else:  # Q6_K
        sc = b[..., 192:208].contiguous().view(torch.int8).float()
        d = _half(b[..., 208:210])
        q = _q6k_quants(b).reshape(N, -1, 16, 16).float() - 32
        w = (d.unsqueeze(-1) * sc).unsqueeze(-1) * q
    return w.reshape(N, K)


if op_defined("dequantize"):

    @torch.library.register_fake("aigc::dequantize")
    def _dequantize_fake(weight, qtype, K, rows=None):
        n = weight.shape[0] if rows is None else rows.shape[0]
        return weight.new_empty((n, K), dtype=torch.float32)


if op_defined("quant_linear"):

    @torch.library.register_fake("aigc::quant_linear")
    def _quant_linear_fake(x, weight, qtype, K, bias=None, exact=False):
        return x.new_empty((x.shape[0], weight.shape[0]))
