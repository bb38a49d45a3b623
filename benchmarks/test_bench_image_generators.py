"""Fused vs plain-PyTorch inference of the image generators, 64 images per call.

    pytest benchmarks/test_bench_image_generators.py

Each generator runs with its shipped weights twice: with the fused layers
(every ConvTranspose2d + BatchNorm + activation block is one
``upsample_conv2d`` call, the BatchNorm folded in) and with the very same
weights in plain PyTorch layers. Two figures per generator: the network alone
(latents -> pixel tensor) and the whole ``generate`` call (latents, network,
PIL images). The PyTorch path is timed in the same process, one call before
each timed round of the fused path; the ratio of the best times (PyTorch /
fused, above 1 when fused is faster) goes into the benchmark's ``extra_info``
and is printed. No absolute time is asserted.
"""

from __future__ import annotations

import time

import pytest
import torch

N = 64
ROUNDS = 15


def _generators(name: str):
    from aigc_sdk import SDK

    sdk = SDK(plugins=[f"aigc_{name}"], autoload=False)
    return sdk.generator(name, fused=True), sdk.generator(name, fused=False)


def _network(generator, name: str):
    """The latents -> pixels call of one generator, on fixed latents."""
    request = generator.Request(seed=0, n=N)
    if name == "gan":
        inputs = generator.latent_inputs(request, seed=0)["input"]
        return lambda: generator.synthesize(inputs)
    z = torch.randn(N, generator.config.latent, generator=torch.Generator().manual_seed(0))
    return lambda: generator.decode(z)


def _whole(generator, name: str):
    request = generator.Request(seed=0, n=N)
    return lambda: generator.generate(request)


class Interleaved:
    """Times the PyTorch path once before every timed round of the fused one.

    Used as pytest-benchmark's ``setup``: both paths see the same machine load,
    which matters on a shared CPU; the best of each is compared.
    """

    def __init__(self, fn) -> None:
        self.fn, self.times = fn, []

    def __call__(self) -> None:
        start = time.perf_counter()
        self.fn()
        self.times.append(time.perf_counter() - start)


@pytest.mark.parametrize("what", ["network", "generate"])
@pytest.mark.parametrize("name", ["gan", "vae"])
def test_fused_vs_pytorch_64_images(benchmark, name, what):
    fused, plain = _generators(name)
    make = _network if what == "network" else _whole
    fused_fn, plain_fn = make(fused, name), make(plain, name)
    # Same weights, same latents: the two paths must agree before their times mean anything.
    torch.testing.assert_close(
        _network(fused, name)(), _network(plain, name)(), atol=2e-5, rtol=1e-4
    )
    plain_fn()  # warm-up
    pytorch = Interleaved(plain_fn)
    benchmark.group = f"{name}: {N} images, {what}"
    benchmark.pedantic(fused_fn, setup=pytorch, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, no figures
        return
    fused_best, pytorch_best = benchmark.stats.stats.min, min(pytorch.times)
    ratio = pytorch_best / fused_best
    benchmark.extra_info.update(
        {"pytorch_seconds": pytorch_best, "fused_seconds": fused_best, "speedup_vs_pytorch": ratio}
    )
    print(
        f"\n{name} {what}, {N} images: fused {fused_best * 1e3:.2f} ms, "
        f"PyTorch {pytorch_best * 1e3:.2f} ms, ratio {ratio:.2f}x "
        f"(threads: {torch.get_num_threads()})"
    )
