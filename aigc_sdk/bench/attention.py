"""Benchmark cases of decode_attention: the fused op against PyTorch's
F.scaled_dot_product_attention (eager, and under torch.compile), with the
fraction of the machine's read bandwidth each one reaches.

Decode attention reads every K/V byte once, so its figure of merit is
KV bytes / time / read bandwidth, the bandwidth measured in the same run.
Shapes: H = 32 query heads, D = 128, full-length sequences (SDPA gets no mask),
Hkv = 32 (no GQA) or 8 (4:1 GQA, SDPA with enable_gqa=True).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops
from ..media import atomic_write
from . import time_interleaved

H, D = 32, 128
FULL = [(B, T, Hkv) for B in (1, 8, 32) for T in (512, 2048, 8192) for Hkv in (32, 8)]
QUICK = [(1, 2048, 32), (1, 2048, 8), (8, 2048, 32), (8, 2048, 8)]


@dataclass(frozen=True)
class AttentionCase:
    B: int
    T: int
    Hkv: int
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"B={self.B} T={self.T} H={H} Hkv={self.Hkv} D={D} {dt}"

    @property
    def kv_bytes(self) -> int:
        return 2 * self.B * self.Hkv * self.T * D * self.dtype.itemsize

    def peak_bytes(self) -> int:
        """Memory the case needs: the caches, plus a GQA-expanded copy SDPA may make."""
        expansion = H // self.Hkv if self.Hkv != H else 0
        return self.kv_bytes * (1 + expansion)

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(self.B, H, D, generator=g, dtype=self.dtype)
        k = torch.randn(self.B, self.Hkv, self.T, D, generator=g, dtype=self.dtype)
        v = torch.randn(self.B, self.Hkv, self.T, D, generator=g, dtype=self.dtype)
        return q, k, v, torch.full((self.B,), self.T, dtype=torch.int32)

    def contenders(self, inputs, compile: bool = True) -> dict:
        """name -> zero-argument callable; "aigc" is the fused op, the rest are peers."""
        q, k, v, lens = inputs
        gqa = self.Hkv != H
        out = {
            "aigc": lambda: ops.decode_attention(q, k, v, lens),
            "sdpa": lambda: sdpa_decode(q, k, v, gqa),
        }
        if compile:
            compiled = compiled_sdpa_decode()
            out["sdpa+compile"] = lambda: compiled(q, k, v, gqa)
        return out


def sdpa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gqa: bool) -> torch.Tensor:
    """Decode attention with PyTorch's SDPA: one query position per sequence."""
    return F.scaled_dot_product_attention(q.unsqueeze(2), k, v, enable_gqa=gqa).squeeze(2)


@functools.cache
def compiled_sdpa_decode():
    return torch.compile(sdpa_decode, dynamic=False)


def cases(quick: bool = True, dtype: torch.dtype = torch.float32) -> list[AttentionCase]:
    return [AttentionCase(B, T, Hkv, dtype) for B, T, Hkv in (QUICK if quick else FULL)]


# --------------------------------------------------------------- stand-alone run
# `python -m aigc_sdk.bench.attention [--full] [--repeats N] [--json PATH]`.


def measure_read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes/s of a large float32 sum: the machine's practical read bandwidth."""
    x = torch.ones(nbytes // 4)
    return nbytes / median_seconds(x.sum, repeats)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def run(case_list, repeats: int = 5, compile: bool = True, log=print) -> dict:
    bandwidth = measure_read_bandwidth()
    log(f"read bandwidth: {bandwidth / 1e9:.1f} GB/s ({torch.get_num_threads()} threads)")
    rows = []
    for case in case_list:
        if case.peak_bytes() > 0.7 * available_memory():
            log(f"{case.name}: skipped, needs {case.peak_bytes() / 2**30:.1f} GiB")
            continue
        inputs = case.inputs()
        times = time_interleaved(case.contenders(inputs, compile), repeats)
        del inputs
        for name, seconds in times.items():
            rows.append(
                dict(
                    op="decode_attention",
                    case=case.name,
                    contender=name,
                    ms=seconds * 1e3,
                    speedup=seconds / times["aigc"],
                    bandwidth_fraction=case.kv_bytes / seconds / bandwidth,
                )
            )
            log(
                f"{case.name:<40} {name:<13} {seconds * 1e3:9.2f} ms  "
                f"x{seconds / times['aigc']:5.2f} vs aigc  "
                f"{case.kv_bytes / seconds / bandwidth:6.1%} of read bandwidth"
            )
    return dict(read_bandwidth=bandwidth, threads=torch.get_num_threads(), rows=rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aigc_sdk.bench.attention")
    parser.add_argument("--full", action="store_true", help="every shape (up to 8 GiB of KV)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for every contender")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(
        cases(not args.full, getattr(torch, args.dtype)), args.repeats, not args.no_compile
    )
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
