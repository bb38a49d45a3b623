"""torch's thread settings for a host application, measured: the figures behind
docs/plugins.md's "Threads" paragraph, kept in docs/performance.md.

    python benchmarks/host_threads.py [--rounds 5] [--calls 1 4]

Each configuration runs in a fresh process (the OpenMP settings are fixed
when torch loads), in interleaved rounds so that all of them see the same
background load: torch's default (one intra-op thread per core, OpenMP's
spinning wait), ``OMP_WAIT_POLICY=PASSIVE``, and ``torch.set_num_threads(1)``.
A process makes ``calls`` Python threads, each running 40-token greedy
``transformer`` generations through one ``SDK``, and reports the median and
largest latency of a call and the calls per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

CONFIGS = {
    "default": ({}, None),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "set_num_threads(1)": ({}, 1),
}
REQUEST = dict(prompt="def parse(self, ", max_new_tokens=40, temperature=0, seed=1)


def worker(calls: int, threads: int | None) -> str:
    """Runs in the child process: one line 'median max rate'."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from aigc_sdk import SDK

    sdk = SDK()
    for _ in range(3):  # load and warm up
        sdk.generate("transformer", **REQUEST)
    times: list[float] = []

    def run() -> None:
        for _ in range(max(3, 12 // calls)):
            start = time.perf_counter()
            sdk.generate("transformer", **REQUEST)
            times.append(time.perf_counter() - start)

    pool = [threading.Thread(target=run) for _ in range(calls)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - start
    return f"{statistics.median(times)} {max(times)} {len(times) / wall}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/host_threads.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        calls, threads = args.child
        print(worker(calls, threads or None))
        return 0
    print(f"{os.cpu_count()} CPUs; a 40-token greedy transformer decode per call")
    for rnd in range(args.rounds):
        load = os.getloadavg()[0]
        for calls in args.calls:
            for label, (env, threads) in CONFIGS.items():
                child = [sys.executable, __file__, "--child", str(calls), str(threads or 0)]
                out = subprocess.run(
                    child, env={**os.environ, **env}, capture_output=True, text=True, check=True
                )
                median, most, rate = map(float, out.stdout.split())
                print(
                    f"round {rnd + 1} load {load:4.1f} | {calls} at once | {label:24s} | "
                    f"median {median * 1e3:6.1f} ms  max {most * 1e3:6.1f} ms | "
                    f"{rate:5.1f} calls/s",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
