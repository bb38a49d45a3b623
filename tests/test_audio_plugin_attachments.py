"""GenerationResult.attachments: extra files about a result, written beside it (core feature)."""

import pytest
import torch

from aigc_sdk import GenerationResult


def _clip_result(n: int = 1) -> GenerationResult:
    audio = torch.linspace(-0.5, 0.5, 800).repeat(n, 1)
    result = GenerationResult("audio", audio=audio, sample_rate=8000, seed=1)
    result.attachments[".png"] = b"picture"
    result.attachments["-notes.txt"] = b"notes"
    return result


def test_attachments_are_written_beside_a_file(tmp_path):
    written = _clip_result().save(tmp_path / "a.wav")
    assert written == [tmp_path / "a.wav", tmp_path / "a.png", tmp_path / "a-notes.txt"]
    assert (tmp_path / "a.png").read_bytes() == b"picture"
    assert (tmp_path / "a-notes.txt").read_bytes() == b"notes"


def test_attachments_of_several_clips_are_written_once(tmp_path):
    written = _clip_result(n=2).save(tmp_path / "a.wav")
    assert [p.name for p in written] == ["a-0000.wav", "a-0001.wav", "a.png", "a-notes.txt"]


def test_attachments_go_inside_a_directory_target(tmp_path):
    written = _clip_result(n=2).save(f"{tmp_path}/clips/")
    names = [p.relative_to(tmp_path).as_posix() for p in written]
    assert names == ["clips/0000.wav", "clips/0001.wav", "clips/audio.png", "clips/audio-notes.txt"]


def test_an_attachment_may_not_replace_the_output(tmp_path):
    result = _clip_result()
    result.attachments = {".wav": b"oops"}
    with pytest.raises(ValueError, match="would overwrite the output"):
        result.save(tmp_path / "a.wav")
    assert not (tmp_path / "a.wav").exists()
    result.attachments = {"sub/x.png": b"oops"}
    with pytest.raises(ValueError, match="suffixes such as '.png'"):
        result.save(tmp_path / "a.wav")


def test_results_without_attachments_save_as_before(tmp_path):
    result = GenerationResult("text", texts=["hello"])
    assert result.save(tmp_path / "t.txt") == [tmp_path / "t.txt"]
