"""Built-in datasets that need no download: digits, tones, stdlib."""

import numpy as np
import pytest
import torch

from aigc_sdk import data
from aigc_sdk.data import audio, images, text


def test_digits_are_sklearn_digits_upsampled_with_a_fixed_held_out_split():
    splits = data.image_dataset("digits")
    assert (len(splits.train), len(splits.eval)) == (1500, 297)
    image, label = splits.train[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert -1 <= image.min() < image.max() <= 1
    for part in (splits.train, splits.eval):
        assert sorted(set(part.labels.tolist())) == list(range(10))
    again = data.image_dataset("digits")
    assert torch.equal(again.eval.images, splits.eval.images)
    assert splits.info["name"] == "digits"


def test_digits_read_from_the_bundled_csv_equal_load_digits():
    from sklearn.datasets import load_digits

    pixels, labels = images._digits_arrays()
    reference = load_digits()
    assert np.array_equal(pixels, reference.data.astype(np.float32))
    assert np.array_equal(labels, reference.target)
    native = data.image_dataset("digits", size=8)
    first = native.train.images[0, 0]
    assert ((first + 1) * 8).round().eq((first + 1) * 8).all()  # 17 grey levels, untouched


def test_digits_in_rgb():
    image, _ = data.image_dataset("digits", channels=3).train[5]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])


def test_tones_are_deterministic_notes_and_chords():
    splits = data.audio_dataset("tones")
    assert (len(splits.train), len(splits.eval)) == (2048, 256)
    clip, root = splits.train[3]
    assert clip.shape == (1, 16000) and clip.dtype == torch.float32
    assert 0.45 < clip.abs().max() <= 0.9
    assert 48 <= root <= 72
    assert torch.equal(clip, data.audio_dataset("tones").train[3][0])
    assert not torch.equal(clip, splits.train[4][0])
    assert not torch.equal(splits.eval[3][0], clip)  # held-out clips are other clips
    assert clip[0, -100:].abs().max() < 1e-3  # the note was released before the end


@pytest.mark.parametrize("index", range(6))
def test_tone_spectrum_peaks_at_a_chord_note(index):
    wave, root = audio.synth_tone(index, 16000, 16000)
    spectrum = np.abs(np.fft.rfft(wave))
    peak_hz = np.argmax(spectrum) * 16000 / len(wave)
    notes = [audio._midi_hz(root + i) for shape in audio.SHAPES for i in shape]
    assert min(abs(peak_hz - f) / f for f in notes) < 0.02


def test_tones_at_another_rate_and_length():
    clip, _ = data.audio_dataset("tones", sample_rate=8000, clip_seconds=0.5).eval[0]
    assert clip.shape == (1, 4000)


def test_stdlib_corpus_holds_out_whole_files():
    splits = data.text_dataset("stdlib")
    train = {d.name for d in splits.train}
    held = {d.name for d in splits.eval}
    assert len(train) > 300 and 5 <= len(held) < len(train) / 5
    assert not train & held
    assert "os.py" in train | held
    assert not any(name.startswith(("test/", "site-packages/")) for name in train | held)
    assert all(isinstance(d.text, str) and d.text for d in splits.eval)
    assert [d.name for d in data.text_dataset("stdlib").eval] == [d.name for d in splits.eval]


def test_token_blocks_are_shifted_pairs():
    tokens = torch.arange(23)
    blocks = text.TokenBlocks(tokens, 5)
    assert len(blocks) == 4
    x, y = blocks[1]
    assert x.tolist() == [5, 6, 7, 8, 9] and y.tolist() == [6, 7, 8, 9, 10]
    with pytest.raises(IndexError):
        blocks[4]
    with pytest.raises(data.DataError, match="too short"):
        text.TokenBlocks(torch.arange(4), 5)


def test_builtin_of_the_wrong_kind_is_named():
    with pytest.raises(data.DataError, match="'stdlib' is a built-in text dataset.*needs image"):
        data.image_dataset("stdlib")


def test_no_data_is_a_clear_error():
    with pytest.raises(data.DataError, match="needs --data: a path or a built-in audio dataset"):
        data.audio_dataset(None)
