"""A real training process killed with SIGKILL and resumed ends bitwise equal to an unkilled one."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aigc_sdk.training.checkpointing import list_checkpoints
from aigc_sdk.training.metrics import read_metrics

pytestmark = [pytest.mark.train, pytest.mark.cli]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "example_plugin"
# The `aigc` CLI when it is there (`aigc train` calls the same cli_main), else the module entry.
if importlib.util.find_spec("aigc_sdk.cli") is not None:
    TRAIN = [sys.executable, "-m", "aigc_sdk.cli", "train"]
else:
    TRAIN = [sys.executable, "-m", "aigc_sdk.training"]

ARGS = [
    "tiny",
    "--steps", "40",
    "--checkpoint-every", "10",
    "--keep-checkpoints", "2",
    "--eval-every", "20",
    "--sample-every", "0",
    "--width", "8",
    "--image-size", "16",
    "--batch-size", "16",
    "--grad-accum", "2",
    "--num-workers", "1",
    "--ema-decay", "0.9",
    "--lr-schedule", "cosine",
    "--warmup-steps", "5",
    "--quiet",
]  # fmt: skip


def train_env():
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]),
        AIGC_DISABLE_PLUGIN_AUTOLOAD="1",
        AIGC_PLUGINS="example",
        OMP_NUM_THREADS="1",
    )
    return env


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*TRAIN, *ARGS, "--out", str(out), *extra],
        env=train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen, ready, timeout: float = 180) -> None:
    """SIGKILLs ``process`` as soon as ``ready()`` holds; fails if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(
                f"the run ended (code {process.returncode}) before the kill:\n{err}"
            )
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def _assert_bitwise_equal(a: Path, b: Path, names=("model.safetensors", "optimizer.safetensors")):
    for name in names:
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{name}: {key}"


def test_sigkill_and_resume_end_with_the_same_weights(tmp_path):
    reference_dir, victim_dir = tmp_path / "reference", tmp_path / "victim"
    reference = _start(reference_dir)
    victim = _start(victim_dir)
    checkpoints = victim_dir / "checkpoints"

    # First kill: at the first sign of a checkpoint, often while it is being written.
    _kill_when(victim, lambda: checkpoints.is_dir() and any(checkpoints.iterdir()))
    first = list_checkpoints(victim_dir)
    # Second kill: after a later checkpoint, in the middle of training.
    resumed = _start(victim_dir, "--resume")
    _kill_when(resumed, lambda: any(step >= 20 for step, _ in list_checkpoints(victim_dir)))
    second = list_checkpoints(victim_dir)[-1][0]
    assert 20 <= second < 40, second
    assert not first or first[-1][0] < second

    _finish(_start(victim_dir, "--resume"))
    _finish(reference)

    last = Path("checkpoints") / "step-000040"
    _assert_bitwise_equal(reference_dir / last, victim_dir / last)
    _assert_bitwise_equal(reference_dir / "model", victim_dir / "model", ["model.safetensors"])

    def logged(run):
        return [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in read_metrics(run / "metrics.jsonl")
        ]

    assert logged(victim_dir) == logged(reference_dir)
    assert [s for s, _ in list_checkpoints(victim_dir)] == [30, 40]
    assert not list(checkpoints.glob(".*"))  # no temporaries left behind
