"""torchrun with 2 CPU processes (gloo) trains like one process with the same global batch."""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aigc_sdk.training.metrics import read_metrics

pytestmark = [pytest.mark.train, pytest.mark.cli]

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
    digests = state["rank_state_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold the same state
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


# -- the built-in trainers --------------------------------------------------------------------

DRIVER = Path(__file__).parent / "distributed_fit.py"
QUIET = dict(sample_every=0, log_every=2, checkpoint_every=2)


def _torchrun(script, *args):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), *map(str, args),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", AIGC_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(*processes):
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-4000:]


def _train(name, out, options, *flags):
    return _torchrun(DRIVER, name, out, json.dumps(options), *flags)


def _assert_ranks_identical(out, step):
    """Both ranks hold the same state, which is the one rank 0 checkpointed at ``step``."""
    ranks = [load_file(out / f"rank-{r}.safetensors") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between the ranks"
    layout = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]
    assert layout[0] == layout[1]  # optimizer and scheduler scalars (step counts, lr)

    checkpoint = out / "checkpoints" / f"step-{step:06d}"
    saved = load_file(checkpoint / "model.safetensors")
    models = {k: v for k, v in ranks[0].items() if not k.startswith("optimizer.")}
    assert saved.keys() == models.keys()
    for key, value in saved.items():
        assert torch.equal(value, models[key]), key
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["world_size"] == 2
    digests = state["rank_state_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    rng = state["rng"]
    assert len(rng) == 2 and rng[0]["torch"] != rng[1]["torch"]  # each rank its own stream
    return ranks[0]


GAN = dict(steps=4, width=4, image_size=8, latent=8, batch_size=8, bn_batches=1, **QUIET)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """The GAN trainer's torchrun run, and DDP's run of the same recipe in the same processes."""
    run = tmp_path_factory.mktemp("gan")
    _wait(_train("gan", run, GAN, "--ddp-reference"))
    return run, load_file(run / "ddp-reference.safetensors")


def test_gan_trains_on_two_processes_exactly_as_ddp_does(gan_run):
    run, ddp = gan_run
    final = _assert_ranks_identical(run, 4)
    assert any(".bn.running_mean" in k for k in final)  # batch norm,
    assert any("parametrizations.weight.0._u" in k for k in final)  # spectral norm
    assert any(k.startswith("ema.generator.") for k in final)  # and an EMA are covered
    # Rank 0's weights, buffers and EMA are bit for bit what DDP makes of the same recipe.
    assert ddp.keys() == {k for k in final if not k.startswith("optimizer.")}
    for key, value in ddp.items():
        assert torch.equal(final[key], value), key


def test_gan_resumed_on_two_processes_ends_where_the_uninterrupted_run_did(gan_run, tmp_path):
    run, _ = gan_run
    final = _assert_ranks_identical(run, 4)
    shutil.copytree(run / "checkpoints" / "step-000002", tmp_path / "checkpoints" / "step-000002")
    _wait(_train("gan", tmp_path, GAN, "--resume"))
    logged = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "d_loss" in r]
    assert logged == [4]  # it resumed, rather than trained from scratch again
    again = _assert_ranks_identical(tmp_path, 4)
    assert again.keys() == final.keys()
    for key in final:
        assert torch.equal(again[key], final[key]), key


def test_vae_with_ema_and_random_shifts_stays_identical_on_two_processes(tmp_path):
    options = dict(steps=4, width=4, image_size=8, latent=4, prior=2, batch_size=8, shift=1,
                   ema_decay=0.9, eval_every=0, prior_draws=1, **QUIET)  # fmt: skip
    _wait(_train("vae", tmp_path, options))
    final = _assert_ranks_identical(tmp_path, 4)
    # Buffers follow rank 0 (DDP's broadcast_buffers), and the EMA copies the synced ones.
    for key, value in final.items():
        if key.startswith("vae.") and "running_" in key:
            assert torch.equal(final[f"ema.{key}"], value), key


def test_audio_counts_the_labels_of_every_process(tmp_path):
    options = dict(steps=4, residual=4, gate=4, skip=4, dilation_cycle=2, stacks=1, crop=32,
                   batch_size=2, clip_seconds=0.05, sample_rate=4000, ema_decay=0.5,
                   eval_every=0, eval_batches=1, sample_seconds=0.01, sample_clips=1,
                   **QUIET)  # fmt: skip
    _wait(_train("audio", tmp_path, options))
    final = _assert_ranks_identical(tmp_path, 4)

    # What one process with the same global batch counts: the labels of every clip trained on.
    from aigc_sdk.data import audio_dataset
    from aigc_sdk.training.state import SHUFFLE_STREAM, derived_seed

    train = audio_dataset("tones", sample_rate=4000, clip_seconds=0.05).train
    seen = torch.randperm(
        len(train), generator=torch.Generator().manual_seed(derived_seed(0, SHUFFLE_STREAM, 0))
    )
    labels = torch.tensor([train[i][1] for i in seen[: 4 * 2 * 2].tolist()])
    expected = torch.bincount(labels, minlength=128).float()
    assert torch.equal(final["net.label_counts"], expected)
    assert torch.equal(final["ema.net.label_counts"], expected)


def test_transformer_on_two_processes_matches_one_process(tmp_path):
    data = tmp_path / "text"
    data.mkdir()
    for i in range(4):
        lines = [f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(40)]
        (data / f"part{i}.py").write_text("".join(lines))
    options = dict(data=str(data), steps=4, dim=16, n_layers=1, n_heads=2, n_kv_heads=1,
                   hidden_dim=32, block_size=16, vocab_size=260, warmup_steps=1, eval_every=0,
                   **QUIET)  # fmt: skip
    multi, single = tmp_path / "multi", tmp_path / "single"
    one_process = [sys.executable, str(DRIVER), "transformer", single]
    single_run = subprocess.Popen(
        [*one_process, json.dumps({**options, "batch_size": 4})],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait(_train("transformer", multi, {**options, "batch_size": 2}), single_run)
    final = _assert_ranks_identical(multi, 4)
    # Averaged gradients of equal shards are the whole batch's gradient (no dropout here).
    one = load_file(single / "rank-0.safetensors")
    for key, value in one.items():
        if not key.startswith("optimizer."):
            torch.testing.assert_close(final[key], value, rtol=0, atol=1e-5, msg=key)
