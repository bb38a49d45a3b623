"""Benchmark cases of quant_linear: y = x W^T with W in a GGUF block format,
against PyTorch eager on the dequantized weight.

Peers: "dense matmul" multiplies by the weight dequantized (to x's dtype)
before the timing starts: a plain GEMM / GEMV over 4-7x the bytes of the
quantized weight. "dequant+matmul" dequantizes inside the timed call
(aigc_sdk.ops.quant's dequantization in torch ops, then the matmul): what
code that keeps the weights quantized pays without a fused kernel. Shapes
[N, K] = [out, in]: SmolLM2-135M's projections (576x576, 1536x576, 576x1536
and the 49152x576 embedding / output matrix) and a 7B model's (4096x4096,
11008x4096).

The types ending in "x8" and "x16" (Q4_0x8, Q4_1x8, Q8_0x8, Q4_Kx8, Q6_Kx8, Q4_0x16,
Q4_1x16) are the GGUF types in the CPU layouts the generators hold them in
(QuantWeight.tiled(): x16 for Q4_0 and Q4_1 when N is a multiple of 16); their peers
start from the GGUF layout.

Figure of merit: up to M = 8 the op streams the weights, scored by bytes
read / time against the read bandwidth probed in the same rounds; from
M = 128 on it is a GEMM, scored in GFLOP/s against the matmul probe. The
weights are random valid blocks (random bytes with finite float16 scales of
a trained model's size): the kernels' speed does not depend on the values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import ops
from ..ops import quant, reference

TILED_TYPES = ("Q4_0x8", "Q4_1x8", "Q8_0x8", "Q4_Kx8", "Q6_Kx8", "Q4_0x16", "Q4_1x16")
_TILED_IDS = {name: qtype for qtype, (name, _) in reference.TILED_TYPES.items()}
TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", *TILED_TYPES)
SMOLLM2_SHAPES = [(576, 576), (1536, 576), (576, 1536), (49152, 576)]
LLAMA7B_SHAPES = [(4096, 4096), (11008, 4096)]
ROWS = (1, 8, 128, 512)


def _gguf_type(type_name: str) -> str:
    """The GGUF type of a case's type ("Q4_1" for the tiled "Q4_1x8" and "Q4_1x16")."""
    return type_name.removesuffix("x16").removesuffix("x8")


def _fits(type_name: str, shape: tuple[int, int]) -> bool:
    """Whether rows of K weights are whole blocks of the type: a K-quant cannot
    hold SmolLM2's K = 576 rows (GGUF files store those in a 32-wide type)."""
    return shape[1] % reference.QUANT_FORMATS[quant.QUANT_TYPES[_gguf_type(type_name)]][1] == 0


FULL = [
    (t, M, s) for t in TYPES for s in SMOLLM2_SHAPES + LLAMA7B_SHAPES for M in ROWS if _fits(t, s)
]
QUICK = [
    (t, M, s)
    for t in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K", *TILED_TYPES)
    for M, s in [(1, (4096, 4096)), (1, (11008, 4096)), (8, (576, 1536)), (512, (4096, 4096))]
] + [  # SmolLM2-135M's decode step: its Q4_1 projections and Q8_0 output matrix, tiled
    ("Q4_1x16", 1, (576, 576)),
    ("Q4_1x16", 1, (1536, 576)),
    ("Q4_1x16", 1, (576, 1536)),
    ("Q4_1x16", 8, (1536, 576)),
    ("Q4_1x8", 8, (1536, 576)),
    ("Q8_0x8", 1, (49152, 576)),
    ("Q8_0x8", 8, (49152, 576)),
]
# From this many rows on, a case is scored as a GEMM (FLOP/s), below as a stream (bytes/s).
GEMM_ROWS = 128


def random_weight(type_name: str, N: int, K: int, seed: int = 0) -> quant.QuantWeight:
    """Random valid blocks of a type: random bytes, then float16 scales (d,
    and dmin / m where the type has one) set to finite values of a trained
    model's size (1e-4 to 2e-3)."""
    qtype = quant.QUANT_TYPES[_gguf_type(type_name)]
    _, block, nbytes = reference.QUANT_FORMATS[qtype]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (N, K // block, nbytes), dtype=np.uint8)
    halves = {"Q6_K": [208], "Q4_1": [0, 2], "Q5_1": [0, 2], "Q4_K": [0, 2], "Q5_K": [0, 2]}
    for offset in halves.get(_gguf_type(type_name), [0]):
        scale = (rng.random((N, K // block)) * 2e-3 + 1e-4).astype(np.float16)
        raw[..., offset : offset + 2] = scale.view(np.uint8).reshape(N, K // block, 2)
    weight = quant.quantized_weight(raw, qtype, (N, K), copy=False)
    tiled = _TILED_IDS.get(type_name)
    if tiled is None:
        return weight
    return quant.QuantWeight(quant._tile(weight.data, tiled), tiled, (N, K))


@dataclass(frozen=True)
class QuantCase:
    type_name: str
    M: int
    shape: tuple[int, int]  # (N, K)
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        N, K = self.shape
        dt = str(self.dtype).removeprefix("torch.")
        return f"{self.type_name} M={self.M} N={N} K={K} {dt}"

    @property
    def weight_bytes(self) -> int:
        N, K = self.shape
        qtype = quant.QUANT_TYPES[_gguf_type(self.type_name)]
        _, block, nbytes = reference.QUANT_FORMATS[qtype]
        return N * K // block * nbytes

    @property
    def bytes_read(self) -> int:
        """Weights plus activations (the stream a small-M call reads)."""
        return self.weight_bytes + self.M * self.shape[1] * self.dtype.itemsize

    @property
    def flops(self) -> int:
        """2 M N K from GEMM_ROWS rows on; 0 below (then scored by bytes_read)."""
        N, K = self.shape
        return 2 * self.M * N * K if self.M >= GEMM_ROWS else 0

    def peak_bytes(self) -> int:
        """The float32 weight of the peers, twice (dequant+matmul makes its own)."""
        N, K = self.shape
        return 2 * N * K * 4 + self.weight_bytes

    def inputs(self, seed: int = 0):
        N, K = self.shape
        w = random_weight(self.type_name, N, K, seed)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.M, K, generator=g).to(self.dtype)
        return x, w, w.dequantize(self.dtype)

    def contenders(self, inputs, compile: bool = True) -> dict:
        """name -> zero-argument callable; "aigc" is the fused op, the rest are peers.

        No torch.compile peer: compiling the dequantization of a 45M-weight
        matrix takes minutes and still runs the same GEMM.
        """
        x, w, w_float = inputs
        K = self.shape[1]
        gguf = w.untiled()  # what the peers start from
        return {
            "aigc": lambda: ops.quant_linear(x, w),
            "dense matmul": lambda: x @ w_float.T,
            "dequant+matmul": lambda: x @ quant.dequantize(gguf.data, gguf.qtype, K).to(x.dtype).T,
        }


def cases(quick: bool = True, dtype: torch.dtype = torch.float32) -> list[QuantCase]:
    return [QuantCase(t, M, s, dtype) for t, M, s in (QUICK if quick else FULL)]
