"""Datasets from the user's files: image folders, text files and folders, audio files."""

import math

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from aigc_sdk import data
from aigc_sdk.data import DataError


def _image(path, size, mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)
    return path


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "pictures"
    for i in range(12):
        _image(root / "cats" / f"c{i:02d}.png", (40, 30))
        _image(root / "dogs" / f"d{i:02d}.jpg", (20, 20), value=30)
    _image(root / ".hidden" / "x.png", (8, 8))  # hidden folders are skipped
    return root


def test_image_folder_with_class_folders(image_tree):
    splits = data.image_dataset(image_tree, size=16, channels=3, holdout=0.25)
    assert splits.train.classes == ["cats", "dogs"]
    assert len(splits.train) + len(splits.eval) == 24
    assert len(splits.eval) >= 1
    image, label = splits.train[0]
    assert image.shape == (3, 16, 16) and -1 <= image.min() <= image.max() <= 1
    assert label == 0 and splits.train.labels[-1] == 1
    again = data.image_dataset(image_tree, size=16, channels=3, holdout=0.25)
    assert again.eval.files == splits.eval.files  # the split depends on names only


def test_adding_a_file_moves_no_other_file_between_splits(image_tree):
    before = data.image_dataset(image_tree, holdout=0.3)
    _image(image_tree / "cats" / "new.png", (10, 10))
    after = data.image_dataset(image_tree, holdout=0.3)
    assert set(before.eval.files) <= set(after.eval.files)
    assert set(before.train.files) <= set(after.train.files)


def test_flat_folder_and_single_file(tmp_path):
    for i in range(3):
        _image(tmp_path / f"{i}.png", (8, 8), "L", value=255)
    splits = data.image_dataset(tmp_path, size=8)
    assert set(splits.train.labels) == {0}
    image, _ = splits.train[0]
    assert torch.allclose(image, torch.ones(1, 8, 8))
    single = data.image_dataset(tmp_path / "0.png", size=4)
    assert len(single.train) == 1 and single.eval is None


def test_broken_image_is_named(image_tree):
    bad = image_tree / "cats" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        data.image_dataset(image_tree)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match=r"'nowhere/x': no such file.*built-ins: digits"):
        data.image_dataset("nowhere/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files .* under .*empty"):
        data.image_dataset(tmp_path / "empty")


def test_text_folder(tmp_path):
    for i in range(30):
        (tmp_path / "docs" / f"{i:02d}.md").parent.mkdir(exist_ok=True)
        (tmp_path / "docs" / f"{i:02d}.md").write_text(f"document {i} ünïcode\n")
    _image(tmp_path / "docs" / "figure.png", (4, 4))  # not text: skipped
    splits = data.text_dataset(tmp_path / "docs", holdout=0.2)
    names = [d.name for d in splits.train] + [d.name for d in splits.eval]
    assert sorted(names) == [f"{i:02d}.md" for i in range(30)]
    assert splits.eval and all("ünïcode" in d.text for d in splits.eval)


def test_single_text_file_holds_out_its_tail(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("a" * 90 + "b" * 10)
    splits = data.text_dataset(path, holdout=0.1)
    assert splits.train[0].text == "a" * 90 and splits.eval[0].text == "b" * 10


def test_non_utf8_text_is_named(tmp_path):
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt is not UTF-8 text"):
        data.text_dataset(tmp_path)


def _tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * math.pi * 440 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_audio_files_are_cut_into_resampled_mono_clips(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    soundfile.write(root / "a.wav", _tone(2.5, 22050), 22050)
    soundfile.write(root / "b.flac", _tone(1.0, 8000, channels=2), 8000)
    soundfile.write(root / "c.wav", _tone(0.3, 16000), 16000)  # shorter than a clip: padded
    splits = data.audio_dataset(root, sample_rate=16000, clip_seconds=1.0, holdout=0.0)
    assert len(splits.train) == 2 + 1 + 1 and splits.eval is None
    for i in range(len(splits.train)):
        clip, label = splits.train[i]
        assert clip.shape == (1, 16000) and label == 0
    first, _ = splits.train[0]
    spectrum = torch.fft.rfft(first[0]).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 2  # 1 Hz bins: still a 440 Hz tone
    padded, _ = splits.train[3]
    assert padded[0, 5000:].abs().max() == 0


def test_broken_audio_is_named(tmp_path):
    soundfile.write(tmp_path / "good.wav", _tone(1.0, 16000), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    with pytest.raises(DataError, match="cannot read audio file .*bad.wav"):
        data.audio_dataset(tmp_path)
