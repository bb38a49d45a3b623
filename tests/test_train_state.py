"""The pieces under exact resume: state without pickle, RNG, data order, checkpoints, metrics."""

import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from aigc_sdk.errors import AigcError, CheckpointError
from aigc_sdk.training import checkpointing
from aigc_sdk.training.batches import batch_size, split_batch
from aigc_sdk.training.distributed import rng_from_json, rng_to_json
from aigc_sdk.training.ema import EMA
from aigc_sdk.training.metrics import MetricsLog, plot_metrics, read_metrics
from aigc_sdk.training.sampler import DataPosition, StepBatches
from aigc_sdk.training.state import (
    flatten,
    preserved_rng,
    rng_state,
    seed_everything,
    set_rng_state,
    unflatten,
)
from aigc_sdk.training.trainer import lr_factor


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 / (1 + i))
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=generator)
        model(x).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_optimizer_and_scheduler_state_round_trip_through_safetensors_and_json(tmp_path):
    model, optimizer, scheduler = _model_and_optimizer()
    _train(model, optimizer, scheduler, 5, seed=1)
    tensors = {}
    structure = {
        "optimizer": flatten(optimizer.state_dict(), "opt", tensors),
        "scheduler": flatten(scheduler.state_dict(), "sched", tensors),
    }
    save_file(tensors, tmp_path / "opt.safetensors")
    (tmp_path / "state.json").write_text(json.dumps(structure))
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    loaded = load_file(tmp_path / "opt.safetensors")
    structure = json.loads((tmp_path / "state.json").read_text())
    model2, optimizer2, scheduler2 = _model_and_optimizer()
    model2.load_state_dict(weights)
    optimizer2.load_state_dict(unflatten(structure["optimizer"], loaded))
    scheduler2.load_state_dict(unflatten(structure["scheduler"], loaded))
    assert optimizer2.param_groups[0]["betas"] == (0.8, 0.95)  # tuples come back as tuples

    _train(model, optimizer, scheduler, 3, seed=2)
    _train(model2, optimizer2, scheduler2, 3, seed=2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_flatten_tags_what_json_would_lose():
    tensors = {}
    value = {1: (2, [3.5, None]), "s": np.arange(3, dtype=np.int16), "t": torch.ones(2)}
    back = unflatten(json.loads(json.dumps(flatten(value, "x", tensors))), tensors)
    assert back[1] == (2, [3.5, None]) and back["s"].dtype == np.int16
    assert torch.equal(back["t"], torch.ones(2))
    with pytest.raises(TypeError, match="without pickle"):
        flatten({"f": object()}, "x", {})


def test_rng_state_survives_json():
    seed_everything(3)
    saved = json.loads(json.dumps(rng_to_json(rng_state())))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(rng_from_json(saved))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_preserved_rng_leaves_the_streams_alone():
    seed_everything(5)
    expected = torch.rand(4)
    seed_everything(5)
    with preserved_rng():
        seed_everything(99)
        torch.rand(100)
        np.random.rand(5)
    assert torch.equal(torch.rand(4), expected)


def test_step_batches_split_across_ranks_like_one_process():
    single = StepBatches(50, per_rank=8, world_size=1, rank=0, seed=3)
    ranks = [StepBatches(50, per_rank=4, world_size=2, rank=r, seed=3) for r in range(2)]
    single_steps = list(single)
    rank_steps = [list(r) for r in ranks]
    assert len(single_steps) == 6 == len(rank_steps[0])
    for step, indices in enumerate(single_steps):
        assert sorted(indices) == sorted(rank_steps[0][step] + rank_steps[1][step])
    everything = [i for s in single_steps for i in s]
    assert len(set(everything)) == 48  # no sample twice in an epoch


def test_step_batches_resume_at_any_offset_and_reshuffle_each_epoch():
    sampler = StepBatches(30, per_rank=4, world_size=1, rank=0, seed=0)
    full = list(sampler)
    sampler.position = DataPosition(0, 12)
    assert list(sampler) == full[3:]
    sampler.position = DataPosition(1, 0)
    assert list(sampler) != full
    with pytest.raises(AigcError, match="fewer than one global batch of 40"):
        StepBatches(30, per_rank=20, world_size=2, rank=0, seed=0)


def test_split_batch_handles_fields_dicts_and_strings():
    batch = [torch.arange(10).view(10, 1), torch.arange(10)]
    parts = split_batch(batch, 3)
    assert [batch_size(p) for p in parts] == [4, 3, 3]
    assert torch.equal(torch.cat([p[1] for p in parts]), batch[1])
    named = {"x": torch.zeros(4, 2), "names": ["a", "b", "c", "d"], "scale": torch.tensor(2.0)}
    halves = split_batch(named, 2)
    assert halves[1]["names"] == ["c", "d"] and halves[1]["x"].shape == (2, 2)
    assert halves[0]["scale"] == 2.0
    with pytest.raises(AigcError, match="cannot be cut into 5"):
        split_batch(torch.zeros(3), 5)


def _fake_checkpoint(run_dir, step, value=0.0):
    return checkpointing.write_checkpoint(
        run_dir, step, {"w": torch.full((2,), value)}, {"m": torch.zeros(1)}, {"step": step}
    )


def test_checkpoints_prune_and_latest(tmp_path):
    for step in (10, 20, 30, 40):
        _fake_checkpoint(tmp_path, step)
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000040"
    deleted = checkpointing.prune(tmp_path, keep=2)
    assert [p.name for p in deleted] == ["step-000010", "step-000020"]
    assert [s for s, _ in checkpointing.list_checkpoints(tmp_path)] == [30, 40]
    state, model, _ = checkpointing.read_checkpoint(checkpointing.latest_checkpoint(tmp_path))
    assert state["step"] == 40 and torch.equal(model["w"], torch.zeros(2))


def test_leftovers_of_a_killed_write_are_not_checkpoints(tmp_path):
    _fake_checkpoint(tmp_path, 10)
    root = tmp_path / "checkpoints"
    (root / ".step-000020.tmp-999999-deadbeef").mkdir()  # atomic_directory's temporary
    (root / "step-000030").mkdir()  # no state.json: not complete
    (root / ".step-000005.deleting").mkdir()  # a prune killed midway
    (root / "latest").write_text("step-000030\n")
    assert checkpointing.latest_checkpoint(tmp_path).name == "step-000010"


def test_damaged_checkpoint_file_is_named(tmp_path):
    path = _fake_checkpoint(tmp_path, 10)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step-000010/model.safetensors is damaged"):
        checkpointing.read_checkpoint(path)


def test_metrics_log_drops_records_after_the_resumed_step_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, resume_step=None)
    for step in (10, 20, 30):
        log.append({"step": step, "loss": 1 / step})
    log.append({"step": 20, "eval/loss": 0.5})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 40, "lo')  # the killed process was writing this line
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 30, 20]
    MetricsLog(path, resume_step=20).close()
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 20]
    png = plot_metrics(path, tmp_path / "metrics.png", "test")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 200


def test_lr_schedules():
    assert [lr_factor(i, 10, 2, "constant", 0.1) for i in (0, 1, 2, 9)] == [0.5, 1, 1, 1]
    assert lr_factor(2, 10, 2, "cosine", 0.1) == 1.0
    assert lr_factor(10, 10, 2, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(6, 10, 2, "linear", 0.0) == pytest.approx(0.5)


def test_ema_follows_with_warmup_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 2/11)
    assert ema.model.weight.item() == pytest.approx(1 - 2 / 11)
    assert not ema.model.weight.requires_grad and not ema.model.training


def test_a_starting_run_removes_what_killed_writers_left(tmp_path):
    root = tmp_path / "checkpoints"
    dead = root / ".step-000020.tmp-999999-deadbeef"
    alive = root / f".step-000030.tmp-{os.getpid()}-cafe"  # still being written: kept
    for directory in (dead, alive, root / ".step-000005.deleting", tmp_path / "samples"):
        directory.mkdir(parents=True)
    leftovers = [
        root / ".latest.k2j4.tmp",
        tmp_path / ".metrics.png.a1b2.tmp",
        tmp_path / "samples" / ".step-000010.png.x9.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("a user's file")
    checkpointing.remove_leftovers(tmp_path)
    assert not dead.exists() and alive.exists() and not (root / ".step-000005.deleting").exists()
    assert not any(p.exists() for p in leftovers)
    assert (tmp_path / "notes.tmp").exists()
