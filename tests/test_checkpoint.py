"""save_pretrained / from_pretrained: round trips, damage, mismatches, interrupted writes."""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from aigc_sdk import CheckpointError
from aigc_sdk import checkpoint as ckpt


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _save(path, model=None, plugin="demo"):
    model = model or _model()
    return ckpt.save_pretrained(
        path, plugin=plugin, config={"width": 8}, tensors=model.state_dict()
    )


def test_round_trip_restores_every_tensor_and_the_config(tmp_path):
    model = _model()
    _save(tmp_path / "ck", model)
    config, tensors = ckpt.load_pretrained(tmp_path / "ck", plugin="demo")
    assert config == {"width": 8}
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    ckpt.load_into(fresh, tensors, tmp_path / "ck")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    record = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert record["plugin"] == "demo" and record["format_version"] == ckpt.FORMAT_VERSION


def test_weights_are_safetensors_not_pickle(tmp_path):
    _save(tmp_path / "ck")
    header_len = int.from_bytes((tmp_path / "ck" / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "ck" / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert header["__metadata__"]["plugin"] == "demo"


def test_truncated_weights_name_the_file(tmp_path):
    _save(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged"):
        ckpt.load_pretrained(tmp_path / "ck")


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    _save(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x40
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        ckpt.load_pretrained(tmp_path / "ck")


def test_garbage_config_and_missing_files_are_named(tmp_path):
    _save(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is damaged"):
        ckpt.load_pretrained(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        ckpt.load_pretrained(tmp_path / "empty")


def test_checkpoint_of_another_plugin_or_version_is_refused(tmp_path):
    _save(tmp_path / "ck", plugin="vae")
    with pytest.raises(CheckpointError, match="is a checkpoint of 'vae', not 'gan'"):
        ckpt.load_pretrained(tmp_path / "ck", plugin="gan")
    record = json.loads((tmp_path / "ck" / "config.json").read_text())
    record["format_version"] = 99
    (tmp_path / "ck" / "config.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="format version 99"):
        ckpt.load_pretrained(tmp_path / "ck")


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    _save(tmp_path / "ck")
    _, tensors = ckpt.load_pretrained(tmp_path / "ck")
    tensors.pop("0.bias")
    tensors["2.weight"] = torch.zeros(3, 8)
    tensors["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_into(_model(), tensors, tmp_path / "ck")
    message = str(info.value)
    assert "missing tensors: 0.bias" in message
    assert "unexpected tensors: extra" in message
    assert "2.weight (file (3, 8), model (2, 8))" in message


def test_saving_over_a_checkpoint_keeps_the_users_other_files(tmp_path):
    _save(tmp_path / "ck")
    (tmp_path / "ck" / "NOTES.md").write_text("mine")
    _save(tmp_path / "ck")
    assert (tmp_path / "ck" / "NOTES.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporaries left


def test_a_failing_save_leaves_the_previous_checkpoint_intact(tmp_path):
    _save(tmp_path / "ck")
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()
    with pytest.raises(RuntimeError):
        ckpt.save_pretrained(
            tmp_path / "ck", plugin="demo", config={}, tensors={"x": torch.zeros(2, device="meta")}
        )
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


SAVER = """
import sys, torch
from aigc_sdk import checkpoint
big = {f"t{i}": torch.randn(1 << 22) for i in range(24)}  # ~400 MB: a long write
print("saving", flush=True)
checkpoint.save_pretrained(sys.argv[1], plugin="demo", config={}, tensors=big)
print("done", flush=True)
"""


@pytest.mark.cli  # a Python of its own, killed mid-save
def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "ck"
    _save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "saving"
    # Wait until the temporary directory has started filling, then kill.
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = [p for p in tmp_path.glob(".ck.tmp-*/*")]
        if partial and partial[0].stat().st_size > 0:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    config, tensors = ckpt.load_pretrained(target, plugin="demo")
    assert set(tensors) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    _save(target)  # the next save cleans up the dead process's temporary directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def _extents(weights):
    """Tensor name -> (start, end) in the file, read from the safetensors header."""
    data = weights.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    header.pop("__metadata__", None)
    start = 8 + header_length
    return {
        k: (start + v["data_offsets"][0], start + v["data_offsets"][1]) for k, v in header.items()
    }


def test_damage_names_the_file_and_the_tensor(tmp_path):
    _save(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    pristine = weights.read_bytes()
    begin, end = _extents(weights)["0.weight"]
    flipped = bytearray(pristine)
    flipped[(begin + end) // 2] ^= 0x40
    weights.write_bytes(bytes(flipped))
    with pytest.raises(
        CheckpointError, match=r"model.safetensors is damaged: .*\(tensor 0.weight changed\)"
    ):
        ckpt.load_pretrained(tmp_path / "ck")
    last = max(_extents(weights).items(), key=lambda item: item[1][1])[0]
    weights.write_bytes(pristine[:-4])
    with pytest.raises(
        CheckpointError,
        match=rf"model.safetensors is damaged: it is cut short \(tensor {last} incomplete\)",
    ):
        ckpt.load_pretrained(tmp_path / "ck")


def test_recorded_digests_match_each_tensors_bytes(tmp_path):
    # Tensors that straddle the 1 MiB read blocks, an empty one and a tiny one:
    # the one-pass digests must equal hashes of each byte range taken apart.
    tensors = {
        "big": torch.arange(700_000, dtype=torch.float32),
        "empty": torch.zeros(0),
        "tiny": torch.tensor([1], dtype=torch.uint8),
        "tail": torch.arange(300_001, dtype=torch.float64),
    }
    ckpt.save_pretrained(tmp_path / "ck", plugin="demo", config={}, tensors=tensors)
    weights = tmp_path / "ck" / "model.safetensors"
    data = weights.read_bytes()
    record = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert record["weights_sha256"] == hashlib.sha256(data).hexdigest()
    assert record["tensors_sha256"] == {
        name: hashlib.sha256(data[begin:end]).hexdigest()
        for name, (begin, end) in _extents(weights).items()
    }
    assert set(record["tensors_sha256"]) == set(tensors)
    _, loaded = ckpt.load_pretrained(tmp_path / "ck")
    for name, value in tensors.items():
        assert torch.equal(loaded[name], value)


def test_a_misfit_names_the_weights_file(tmp_path):
    _save(tmp_path / "ck")
    _, tensors = ckpt.load_pretrained(tmp_path / "ck")
    with pytest.raises(
        CheckpointError,
        match=r"ck/model.safetensors does not fit the model: missing tensors: 0.bias",
    ):
        ckpt.load_into(
            _model(), {k: v for k, v in tensors.items() if k != "0.bias"}, tmp_path / "ck"
        )


def test_from_pretrained_loads_what_save_pretrained_wrote(tmp_path):
    from aigc_example.cppn import CPPNGenerator

    from aigc_sdk import ImageRequest

    def images(generator):
        return generator.generate(ImageRequest(seed=4, n=2)).tensors["images"]

    trained = CPPNGenerator()
    default = images(trained)
    with torch.no_grad():
        trained.model.out.bias.add_(0.5)  # weights unlike the defaults, so loading them shows
    trained.save_pretrained(tmp_path / "copy")
    loaded = CPPNGenerator.from_pretrained(tmp_path / "copy")
    assert isinstance(loaded, CPPNGenerator)
    assert torch.equal(images(loaded), images(trained))
    assert not torch.equal(images(loaded), default)
    with pytest.raises(CheckpointError, match="does not exist"):
        CPPNGenerator.from_pretrained(tmp_path / "nowhere")


# -- model folders: save_model / load_model --------------------------------------------


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    width: int = 8
    outputs: int = 2

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


class MLP(torch.nn.Sequential):
    def __init__(self, config: MLPConfig):
        super().__init__(
            torch.nn.Linear(4, config.width), torch.nn.ReLU(), torch.nn.Linear(config.width, 2)
        )
        self.config = config


def _edit_config(folder, edit):
    path = folder / "config.json"
    record = json.loads(path.read_text())
    edit(record["config"])
    path.write_text(json.dumps(record))


def test_a_model_folder_round_trips_its_module_and_config(tmp_path):
    torch.manual_seed(0)
    model = MLP(MLPConfig(width=6))
    ckpt.save_model(tmp_path / "flat", model, model.config, plugin="demo")
    loaded, record = ckpt.load_model(tmp_path / "flat", MLP, MLPConfig, plugin="demo")
    assert record == {"width": 6, "outputs": 2} and loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    # Under a key, beside what else the folder records; tensors stored as float16.
    ckpt.save_model(
        tmp_path / "nested", model, model.config, plugin="demo", config_key="model",
        extra={"info": {"steps": 3}}, dtype=torch.float16,
    )  # fmt: skip
    loaded, record = ckpt.load_model(
        tmp_path / "nested", MLP, MLPConfig, plugin="demo", config_key="model"
    )
    assert record == {"model": {"width": 6, "outputs": 2}, "info": {"steps": 3}}
    assert loaded[0].weight.dtype == torch.float32
    torch.testing.assert_close(loaded[0].weight, model[0].weight, atol=1e-3, rtol=1e-3)


def test_a_model_folder_with_unknown_or_bad_config_is_refused_by_name(tmp_path):
    model = MLP(MLPConfig())
    ckpt.save_model(tmp_path / "ck", model, model.config, plugin="demo")
    _edit_config(tmp_path / "ck", lambda c: c.update(depth=3, dropout=0.1))
    with pytest.raises(
        CheckpointError, match=r"ck/config.json: unknown MLPConfig keys: depth, dropout"
    ):
        ckpt.load_model(tmp_path / "ck", MLP, MLPConfig, plugin="demo")
    ckpt.save_model(tmp_path / "ck", model, model.config, plugin="demo")
    _edit_config(tmp_path / "ck", lambda c: c.update(width=0))
    with pytest.raises(CheckpointError, match=r"config.json: bad MLPConfig: width must be >= 1"):
        ckpt.load_model(tmp_path / "ck", MLP, MLPConfig, plugin="demo")
    with pytest.raises(CheckpointError, match=r"config.json: no model config \(model\)"):
        ckpt.load_model(tmp_path / "ck", MLP, MLPConfig, plugin="demo", config_key="model")
