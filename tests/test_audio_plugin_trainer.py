"""``aigc train audio``: the WaveNet trainer through the SDK's loop, on tones and on files."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from aigc_sdk import SDK
from aigc_sdk.training import ConfigError, fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from aigc_audio.data import MIDI_LABELS, crop_windows, load_splits, note_name  # noqa: E402
from aigc_audio.model import START, WaveNet, WaveNetConfig  # noqa: E402
from aigc_audio.objective import clip_nats, window_loss  # noqa: E402
from aigc_audio.trainer import WaveNetTrainer  # noqa: E402

pytestmark = pytest.mark.train

SMALL = dict(
    residual=8, gate=8, skip=16, dilation_cycle=4, stacks=2, crop=300, batch_size=2,
    eval_batches=1, sample_seconds=0.02, warmup_steps=2,
)  # fmt: skip


def test_note_names_follow_midi():
    assert [note_name(m) for m in (0, 21, 60, 61, 69, 127)] == [
        "C-1", "A0", "C4", "C#4", "A4", "G9",
    ]  # fmt: skip
    assert len(MIDI_LABELS) == 128


def test_crop_windows_start_with_start_marks_and_keep_order():
    classes = torch.arange(100).repeat(3, 1)
    windows = crop_windows(classes, 20, 10, torch.Generator().manual_seed(0))
    assert windows.shape == (3, 30) and windows.dtype == torch.int64
    for row in windows:
        real = row[row != START]
        assert torch.equal(real, torch.arange(int(real[0]), int(real[0]) + len(real)))
        assert (row[: 30 - len(real)] == START).all()  # marks only before the clip


def test_clip_score_equals_the_crop_loss_of_the_same_samples():
    model = WaveNet(WaveNetConfig(residual=4, gate=4, skip=8, dilations=[1, 2, 4])).eval()
    classes = torch.randint(0, 256, (2, 50))
    context = model.cfg.receptive_field
    window = torch.cat([torch.full((2, context), START), classes], 1)
    with torch.no_grad():
        whole = window_loss(model, window, None, 50)
    torch.testing.assert_close(clip_nats(model, classes, None, chunk=7), whole)


def test_training_on_tones_learns_and_exports_weights_the_generator_loads(tmp_path):
    trainer = WaveNetTrainer(steps=40, lr=1e-2, eval_every=40, sample_every=40, **SMALL)
    result = fit(trainer, tmp_path / "run", quiet=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if "eval/bits" in r] == [40]
    assert 0 < result.eval_metrics["eval/bits"] < 7.5  # a uniform guess is 8 bits per sample
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step-000040-0000.wav", "step-000040-0001.wav", "step-000040.png",
    ]  # fmt: skip
    sdk = SDK(plugins=["aigc_audio"])
    generator = sdk.generator("audio", weights=str(result.export))
    assert generator.model.cfg.labels == MIDI_LABELS
    assert int(generator.model.label_counts.sum()) == 40 * 2  # every clip trained on, counted
    clip = sdk.generate("audio", options={"weights": str(result.export)}, seconds=0.01, seed=1)
    assert clip.audio.shape == (1, 160)


def test_training_on_a_folder_of_class_folders_conditions_on_them(tmp_path):
    rng = np.random.default_rng(0)
    for cls, freq in (("low", 220.0), ("high", 880.0)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            t = np.arange(8000) / 8000
            wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(8000)
            soundfile.write(tmp_path / "data" / cls / f"{i}.flac", wave, 8000)
    splits, labels = load_splits(str(tmp_path / "data"), 16000, 0.25)
    assert labels == ["high", "low"] and len(splits.train) > 0
    trainer = WaveNetTrainer(data=str(tmp_path / "data"), clip_seconds=0.25, steps=2, **SMALL)
    result = fit(trainer, tmp_path / "run", quiet=True)
    sdk = SDK(plugins=["aigc_audio"])
    clip = sdk.generate("audio", options={"weights": str(result.export)}, seconds=0.01, label="low")
    assert clip.tensors["labels"].tolist() == [1]


def test_one_folder_of_files_trains_an_unconditional_model(tmp_path):
    (tmp_path / "data").mkdir()
    soundfile.write(tmp_path / "data" / "a.wav", np.zeros(4000), 16000)
    _, labels = load_splits(str(tmp_path / "data"), 16000, 0.1)
    assert labels == []


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="fp16"):
        WaveNetTrainer(precision="fp16")
    with pytest.raises(ConfigError, match="residual"):
        WaveNetTrainer(residual=0)
