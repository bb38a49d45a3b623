"""Audio generation speed: conv queues (NumPy and torch steps) vs naive recomputation.

    pytest benchmarks/test_bench_audio.py --benchmark-columns=min,mean,rounds

The model has the default weights' architecture (20 layers, receptive field
2047, 32 residual channels); its weights are random, which changes nothing
about speed. Every clip is drawn with the fused sampler. The last test times
both generators in this process and checks the ratio (no absolute time).
"""

import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from aigc_audio.data import MIDI_LABELS  # noqa: E402
from aigc_audio.generator import generate_classes  # noqa: E402
from aigc_audio.model import ConvQueues, NumpyConvQueues, WaveNet, WaveNetConfig  # noqa: E402
from eval_audio import naive_generate  # noqa: E402

QUEUE_SAMPLES = 1600  # 0.1 s at 16 kHz
NAIVE_SAMPLES = 40


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = WaveNetConfig(residual=32, gate=32, skip=64, labels=MIDI_LABELS)
    return WaveNet(cfg).eval()


LABEL = torch.tensor([60])


@pytest.fixture(autouse=True)
def one_thread():
    # The naive baseline's full forwards would use threads the queues have no use
    # for: every contender gets one, so the ratios compare the algorithms.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("queues", [NumpyConvQueues, ConvQueues], ids=["numpy", "torch"])
def test_conv_queues(benchmark, model, queues):
    benchmark.extra_info["samples"] = QUEUE_SAMPLES
    benchmark.pedantic(
        generate_classes,
        args=(model, QUEUE_SAMPLES, LABEL),
        kwargs=dict(n=1, seed=1, queues_type=queues),
        rounds=3,
    )


def test_conv_queues_batch_of_8(benchmark, model):
    benchmark.extra_info["samples"] = QUEUE_SAMPLES
    benchmark.pedantic(
        generate_classes, args=(model, QUEUE_SAMPLES, LABEL.repeat(8)), kwargs=dict(n=8, seed=1)
    )


def test_naive(benchmark, model):
    benchmark.extra_info["samples"] = NAIVE_SAMPLES
    benchmark.pedantic(naive_generate, args=(model, NAIVE_SAMPLES, LABEL, 1), rounds=1)


def _cpu_seconds_per_sample(fn, samples: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, (time.process_time() - start) / samples)
    return best


def test_conv_queues_are_far_faster_than_naive_generation(model):
    queues = _cpu_seconds_per_sample(
        lambda: generate_classes(model, QUEUE_SAMPLES, LABEL, n=1, seed=1), QUEUE_SAMPLES
    )
    naive = _cpu_seconds_per_sample(
        lambda: naive_generate(model, NAIVE_SAMPLES, LABEL, 1), NAIVE_SAMPLES, repeats=1
    )
    # The target: incremental generation >= 50x faster than naive for 1 s of
    # 16 kHz audio (per sample, so 0.1 s of queues and 40 naive samples measure it).
    # CPU time, not wall time: the machine is shared, and both loops are single-threaded.
    ratio = naive / queues
    assert ratio >= 50, f"conv queues only {ratio:.1f}x faster than naive (target 50x)"
