"""Images, grids and WAV files a person can open, checked by reading them back."""

import io
import wave

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from aigc_sdk import GenerationResult, media


def test_to_pil_maps_minus_one_to_black_and_one_to_white():
    images = torch.stack([torch.full((3, 2, 2), -1.0), torch.full((3, 2, 2), 1.0)])
    black, white = media.to_pil(images)
    assert black.getpixel((0, 0)) == (0, 0, 0) and white.getpixel((1, 1)) == (255, 255, 255)
    assert media.to_pil(torch.zeros(1, 1, 3, 3))[0].mode == "L"
    with pytest.raises(ValueError, match=r"images must be \[n, 1\|3, h, w\]"):
        media.to_pil(torch.zeros(1, 2, 3, 3))


def test_grid_places_each_image_in_its_cell():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    grid = media.make_grid([Image.new("RGB", (4, 4), c) for c in colours], padding=1)
    assert grid.size == (2 * 5 + 1, 2 * 5 + 1)
    assert grid.getpixel((1, 1)) == colours[0]
    assert grid.getpixel((6, 1)) == colours[1]
    assert grid.getpixel((1, 6)) == colours[2]


def test_wav_round_trip_through_soundfile(tmp_path):
    t = torch.arange(1600) / 16000
    wave_in = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    path = media.save_wav(wave_in, 16000, tmp_path / "a.wav")
    data, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(data, wave_in.numpy(), atol=1 / 32767)
    with wave.open(io.BytesIO(path.read_bytes())) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)


def test_result_save_file_grid_or_directory(tmp_path):
    images = media.to_pil(torch.rand(4, 3, 8, 8) * 2 - 1)
    result = GenerationResult("image", images=images)
    (grid,) = result.save(tmp_path / "grid.png")
    assert Image.open(grid).size == (2 * 10 + 2, 2 * 10 + 2)
    files = result.save(str(tmp_path / "each") + "/")
    assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert Image.open(files[2]).tobytes() == images[2].tobytes()
    audio = GenerationResult("audio", audio=torch.zeros(2, 100), sample_rate=8000)
    assert [p.name for p in audio.save(tmp_path / "clip.wav")] == ["clip-0000.wav", "clip-0001.wav"]
    text = GenerationResult("text", texts=["a", "b"])
    (txt,) = text.save(tmp_path / "t.txt")
    assert txt.read_text() == "a\n\nb"


def test_read_wav_names_an_unreadable_file(tmp_path):
    from aigc_sdk import AigcError

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AigcError, match="cannot read audio file .*bad.wav"):
        media.read_wav(bad)


def test_the_suffix_picks_the_format_and_others_are_refused_before_writing(tmp_path):
    images = GenerationResult("image", images=media.to_pil(torch.rand(2, 3, 8, 8) * 2 - 1))
    for suffix, kind in ((".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP")):
        (path,) = images.save(tmp_path / f"grid{suffix}")
        assert Image.open(path).format == kind
    grey = GenerationResult("image", images=media.to_pil(torch.zeros(1, 1, 4, 4)))
    assert Image.open(grey.save(tmp_path / "grey.jpg")[0]).mode == "L"
    t = torch.arange(1600) / 16000
    clip = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    audio = GenerationResult("audio", audio=clip[None], sample_rate=16000)
    for suffix, kind in ((".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")):
        (path,) = audio.save(tmp_path / f"clip{suffix}")
        data, rate = soundfile.read(path, dtype="float32")
        assert soundfile.info(str(path)).format == kind and rate == 16000 and len(data) == 1600
        if kind != "OGG":  # Vorbis is lossy
            np.testing.assert_allclose(data, clip.numpy(), atol=1 / 32767)
    text = GenerationResult("text", texts=["# title"])
    assert text.save(tmp_path / "notes.md")[0].read_text() == "# title"
    for result, path, accepted in [
        (images, "x.gif", "cannot write image as .gif; expected .png, .jpg, .jpeg or .webp"),
        (images, "x", "has no file suffix; expected .png, .jpg, .jpeg or .webp"),
        (text, "x.png", "cannot write text as .png; expected .txt or .md"),
        (audio, "x.mp3", "cannot write audio as .mp3; expected .wav, .flac or .ogg"),
    ]:
        with pytest.raises(media.OutputPathError) as info:
            result.save(tmp_path / path)
        assert str(info.value) == f"{tmp_path / path}: {accepted}, or a directory ending in /"
        assert not (tmp_path / path).exists()


def test_a_file_path_needs_its_folder_and_a_directory_path_is_made(tmp_path):
    result = GenerationResult("text", texts=["a", "b"])
    missing = tmp_path / "missing" / "t.txt"
    with pytest.raises(media.OutputPathError) as info:
        result.save(missing)
    assert str(info.value) == (
        f"{missing}: folder {missing.parent} does not exist; create it, or end the path "
        "with / to write a directory"
    )
    assert not missing.parent.exists()
    written = result.save(f"{tmp_path}/made/deeper/")
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "made/deeper/0000.txt",
        "made/deeper/0001.txt",
    ]
    assert result.save(tmp_path / "made")[0].name == "0000.txt"  # an existing directory
