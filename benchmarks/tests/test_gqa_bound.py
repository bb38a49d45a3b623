"""benchmarks/gqa_bound.py: the ideal GQA loop reads every cached element once,
and the script prints its table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gqa_bound.py"

pytestmark = [
    pytest.mark.build,
    pytest.mark.skipif(
        torch.backends.cpu.get_cpu_capability() != "AVX512", reason="the ideal loop needs AVX-512"
    ),
]


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("gqa_bound", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


@pytest.mark.parametrize(
    "shape", [(1, 1, 100, 64), (2, 3, 77, 128), (1, 2, 32, 16), (3, 1, 200, 80), (1, 1, 0, 64)]
)
@pytest.mark.parametrize("groups", [0, 1, 4])
def test_reads_every_element_once(loop, shape, groups):
    # Small integers: every fp32 partial sum is exact, so the sum must match
    # to the last unit whatever the loop's order, and a row read twice or
    # skipped (a partial last tile, a head) shows.
    g = torch.Generator().manual_seed(sum(shape) + groups)
    k = torch.randint(-8, 9, shape, generator=g).float()
    v = torch.randint(-8, 9, shape, generator=g).float()
    read, sink = loop.ideal_gqa_loop(k, v, groups)
    assert read == k.double().sum().item() + v.double().sum().item()
    assert sink == sink  # not NaN


def test_rejects_what_it_cannot_stream(loop):
    k = torch.zeros(1, 1, 8, 24)
    with pytest.raises(RuntimeError, match="D must be a multiple of 16"):
        loop.ideal_gqa_loop(k, k, 4)
    with pytest.raises(RuntimeError, match="float32"):
        loop.ideal_gqa_loop(k.bfloat16(), k.bfloat16(), 4)
    k = torch.zeros(1, 1, 16, 32)
    with pytest.raises(RuntimeError, match="contiguous"):
        loop.ideal_gqa_loop(k.transpose(2, 3), k.transpose(2, 3), 4)


def test_script_prints_the_table(loop):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "1", "2", "--tokens", "256", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("B=1 T=256 Hkv=8", "B=2 T=256 Hkv=8", "ideal loop", "aigc / ideal"):
        assert text in done.stdout
