"""`aigc bench` end to end: a table, JSON rows for every case and a PNG chart."""

import json

import pytest
from conftest import run_aigc
from PIL import Image


@pytest.mark.cli
def test_bench_writes_json_and_a_chart(tmp_path):
    out = run_aigc(
        "bench", "sample", "upsample_conv2d", "--repeats", "1", "--no-compile",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["peaks"]["read_bandwidth"] > 0 and report["threads"] >= 1
    rows = report["rows"]
    units = {"sample": "GB/s", "upsample_conv2d": "GFLOP/s"}
    assert {r["op"] for r in rows} == set(units)
    peer = {"sample": "torch", "upsample_conv2d": "eager"}
    assert all(peer[r["op"]] in r["speedup"] and r["ms"]["aigc"] > 0 for r in rows)
    # Each case is held to the peak probed in its own rounds: read bandwidth
    # for a memory-bound op, matmul FLOP/s for a compute-bound one.
    for r in rows:
        assert r["unit"] == units[r["op"]] and r["peak"] > 0
        assert r["fraction_of_peak"] == pytest.approx(r["rate"] * 1e9 / r["peak"])
    assert Image.open(tmp_path / "bench.png").size[0] > 100
    assert "x vs torch" in out.stdout and "x vs eager" in out.stdout


@pytest.mark.cli
def test_bench_names_an_unknown_op(tmp_path):
    out = run_aigc("bench", "softmax", "--out", str(tmp_path))
    assert out.returncode == 1
    assert "unknown op softmax; known: upsample_conv2d, decode_attention, sample" in out.stderr


def test_every_family_states_the_work_its_rate_counts():
    """The one runner scores every case alike: by its ``flops`` (compute-bound) or,
    without them, by its ``bytes_read`` (memory-bound)."""
    import importlib

    import torch

    from aigc_sdk import bench
    from aigc_sdk.bench.probes import case_work

    for op, name in bench.FAMILIES.items():
        module = importlib.import_module(name, "aigc_sdk.bench")
        for case in module.cases(True, torch.float32) + module.cases(False, torch.float32):
            work, unit = case_work(case)
            assert work > 0 and unit in ("GB/s", "GFLOP/s"), (op, case.name)


def test_upsample_bench_cases_compare_like_with_like():
    """Every upsample case's fused contender computes what its PyTorch peer does,
    the whole DCGAN generator included, so the ratios compare equal work."""
    import torch

    from aigc_sdk.bench import upsample

    cases = upsample.cases(quick=True)
    assert any(isinstance(c, upsample.GeneratorCase) for c in cases)
    for case in cases:
        contenders = case.contenders(case.inputs(), compile=False)
        fused, eager = contenders["aigc"](), contenders["eager"]()
        torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-4, msg=case.name)
        assert case.flops > 0


def test_interleaved_rounds_rotate_which_contender_comes_first():
    """No contender always runs right after the same one (e.g. right after
    the read probe, whose 1 GiB sum leaves every cache cold)."""
    from aigc_sdk.bench.timing import time_interleaved

    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_interleaved(contenders, repeats=3, round_seconds=0.0)
    assert calls[:6] == list("aabbcc")  # warm-up and calibration
    assert calls[6:] == list("abc") + list("bca") + list("cab")  # three rounds
    assert set(times) == set("abc") and all(t >= 0 for t in times.values())


def test_a_fast_contender_makes_one_untimed_call_per_round():
    from collections import Counter

    from aigc_sdk.bench.timing import time_interleaved

    calls = Counter()
    contenders = {name: (lambda name=name: calls.update(name)) for name in "ab"}
    time_interleaved(contenders, repeats=2, round_seconds=1.0)  # capped at 1000 calls a round
    # warm-up + calibration, then per round 1 untimed and 1000 timed calls
    assert calls == {"a": 2 + 2 * (1 + 1000), "b": 2 + 2 * (1 + 1000)}


def test_every_case_compiles_its_own_peer(monkeypatch):
    """Dynamo gives up on a function after recompile_limit (8) shapes and runs
    it eagerly; a bench of more shapes than that would then report eager
    times in the torch.compile column. Each case must get its own graph."""
    import sys
    import types

    import torch
    from rich.progress import Progress

    from aigc_sdk import bench
    from aigc_sdk.bench import timing

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def double_sum(x):
        return (x * 2).sum(-1)

    compiled = torch.compile(double_sum, backend=counting_backend, dynamic=False)

    class Case:
        def __init__(self, n):
            self.name, self.n, self.bytes_read = f"n={n}", n, 4 * n

        def inputs(self):
            return torch.randn(self.n, 3)

        def contenders(self, x, compile=True):
            return {"aigc": lambda: double_sum(x), "torch+compile": lambda: compiled(x)}

    family = types.ModuleType("aigc_sdk.bench.twelve_shapes")
    family.cases = lambda quick, dtype: [Case(n) for n in range(1, 13)]
    monkeypatch.setitem(sys.modules, family.__name__, family)
    monkeypatch.setitem(bench.FAMILIES, "twelve_shapes", ".twelve_shapes")
    probes = {"read": bench.Probe("read probe", lambda: None, 1.0)}
    with Progress(disable=True) as progress:
        rows = timing.run_family("twelve_shapes", True, "float32", 1, True, {}, probes, progress)
    assert len(rows) == 12
    assert len(graphs) == 12  # 8 without the reset: the last 4 cases ran eagerly
