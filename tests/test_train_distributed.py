"""torchrun with 2 CPU processes (gloo) trains like one process with the same global batch."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from aigc_sdk.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "example_plugin"
if importlib.util.find_spec("aigc_sdk.cli") is not None:
    ENTRY = ["-m", "aigc_sdk.cli", "train"]
else:
    ENTRY = ["-m", "aigc_sdk.training"]

ARGS = [
    "tiny",
    "--steps", "8",
    "--width", "8",
    "--image-size", "16",
    "--dropout", "0",
    "--checkpoint-every", "4",
    "--eval-every", "4",
    "--sample-every", "0",
    "--log-every", "2",
    "--quiet",
]  # fmt: skip


def _env():
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]),
        AIGC_DISABLE_PLUGIN_AUTOLOAD="1",
        AIGC_PLUGINS="example",
        OMP_NUM_THREADS="1",
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command):
    return subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_stay_identical_and_match_one_process(tmp_path):
    single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
    torchrun = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
    ]  # fmt: skip
    multi = _run([*torchrun, *ENTRY, *ARGS, "--batch-size", "8", "--out", str(multi_dir)])
    single = _run([sys.executable, *ENTRY, *ARGS, "--batch-size", "16", "--out", str(single_dir)])
    for process in (multi, single):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    state = json.loads((multi_dir / "checkpoints" / "step-000008" / "state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 16
    digests = state["rank_weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold the same weights
    assert len(state["rng"]) == 2  # each rank's random streams, for resuming

    multi_weights = load_file(multi_dir / "checkpoints" / "step-000008" / "model.safetensors")
    single_weights = load_file(single_dir / "checkpoints" / "step-000008" / "model.safetensors")
    for key, value in single_weights.items():
        torch.testing.assert_close(multi_weights[key], value, rtol=0, atol=1e-5, msg=key)

    # Rank 0 alone logged: each step once, with losses averaged over both ranks.
    records = read_metrics(multi_dir / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8]
    assert [r["step"] for r in records if "eval/loss" in r] == [4, 8]
    run = json.loads((multi_dir / "run.json").read_text())
    assert run["world_size"] == 2
    single_loss = [r["loss"] for r in read_metrics(single_dir / "metrics.jsonl") if "loss" in r]
    multi_loss = [r["loss"] for r in records if "loss" in r]
    for a, b in zip(single_loss, multi_loss, strict=True):
        assert abs(a - b) < 1e-4
