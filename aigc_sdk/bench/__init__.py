"""Benchmark cases of the fused ops and the harness that measures them
(``aigc bench``, aigc_sdk/cli/bench.py; ``pytest benchmarks/`` runs the same
cases under pytest-benchmark).

    timing.py     the runner: contenders in interleaved rounds, medians, one row per case
    probes.py     the machine's peaks: read bandwidth and matmul FLOP/s, free memory
    report.py     the rows as tables, bench.json and bench.png
    upsample.py, attention.py, sampling.py, quant.py   the cases of each op family

Adding an op family: a module here exposing ``cases(quick, dtype)``; each case
has ``name``, ``inputs()`` and ``contenders(inputs, compile)`` returning
``{"aigc": fn, peer: fn, ...}`` (zero-argument callables), and either
``flops`` (compute-bound) or ``bytes_read`` (memory-bound); a
``peak_bytes()`` if it may not fit in memory. Then list the module in
``FAMILIES``.
"""

from .probes import Probe, available_memory, probe_rate, read_probe

# op name -> module of cases (relative to this package)
FAMILIES = {
    "upsample_conv2d": ".upsample",
    "decode_attention": ".attention",
    "sample": ".sampling",
    "quant_linear": ".quant",
}

# The probes benchmark scripts hold their own figures to (benchmarks/).
__all__ = ["FAMILIES", "Probe", "available_memory", "probe_rate", "read_probe"]
