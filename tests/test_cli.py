"""The `aigc` command, run as a real subprocess the way a user runs it."""

import json
import os
import subprocess
import sys

import pytest
from conftest import run_aigc
from PIL import Image

from aigc_sdk.generation import json_types

pytestmark = pytest.mark.cli


def _one_line_error(out, code=1):
    assert out.returncode == code, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aigc: error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def test_generate_a_grid_and_a_directory(tmp_path):
    out = run_aigc("generate", "cppn", "--seed", "3", "-n", "4", "--out", str(tmp_path / "g.png"))
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "g.png").size == (2 * 66 + 2, 2 * 66 + 2)
    out = run_aigc("generate", "cppn", "--seed", "3", "-n", "3", "--out", f"{tmp_path}/each/")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [
        "0000.png",
        "0001.png",
        "0002.png",
    ]


def test_cli_output_equals_the_python_api(tmp_path):
    from aigc_sdk import SDK

    run_aigc("generate", "cppn", "--seed", "9", "--out", str(tmp_path / "one.png"))
    expected = SDK().generate("cppn", seed=9).images[0]
    assert Image.open(tmp_path / "one.png").convert("RGB").tobytes() == expected.tobytes()


def test_generate_text_with_sampling_options_and_stream(tmp_path):
    args = [
        "generate",
        "markov",
        "--prompt",
        "The",
        "--max-new-tokens",
        "30",
        "--seed",
        "4",
        "--temperature",
        "0.7",
        "--top-p",
        "0.9",
        "--top-k",
        "12",
        "--min-p",
        "0.01",
    ]
    streamed = run_aigc(*args, "--stream")
    assert streamed.returncode == 0, streamed.stderr
    saved = run_aigc(*args, "--out", str(tmp_path / "t.txt"))
    assert saved.returncode == 0, saved.stderr
    assert streamed.stdout.rstrip("\n") == (tmp_path / "t.txt").read_text()
    assert len((tmp_path / "t.txt").read_text()) == 30


def test_generate_audio_writes_a_wav(tmp_path):
    import soundfile

    out = run_aigc(
        "generate", "chime", "--seconds", "0.5", "--seed", "1", "--out", str(tmp_path / "a.wav")
    )
    assert out.returncode == 0, out.stderr
    data, rate = soundfile.read(tmp_path / "a.wav")
    assert rate == 16000 and len(data) == 8000 and abs(data).max() > 0.1


def test_user_errors_are_one_line_without_traceback(tmp_path):
    assert "did you mean 'cppn'" in _one_line_error(run_aigc("generate", "cpn"))
    assert "unknown option --promt" in _one_line_error(
        run_aigc("generate", "markov", "--promt", "x")
    )
    assert "top_p must be a number in (0, 1]" in _one_line_error(
        run_aigc("generate", "markov", "--top-p", "0")
    )
    assert "invalid value 'many'" in _one_line_error(
        run_aigc("generate", "markov", "--top-k", "many")
    )
    assert "does not exist" in _one_line_error(
        run_aigc("generate", "cppn", "--weights", str(tmp_path / "none"))
    )


def test_bad_paths_and_devices_are_one_line_errors(tmp_path):
    import torch

    a_file = tmp_path / "afile"
    a_file.write_text("not a directory")
    line = _one_line_error(run_aigc("generate", "cppn", "--out", f"{a_file}/x.png"))
    assert f"--out {a_file}/x.png: cannot write {a_file}" in line
    assert "a file is where a directory is needed" in line
    line = _one_line_error(run_aigc("generate", "cppn", "--out", "/proc/x.png"))
    assert "--out /proc/x.png: cannot write /proc/x.png" in line
    # An image suffix for audio (where the spectrogram attachment would go) is refused first.
    line = _one_line_error(
        run_aigc("generate", "audio", "--seconds", "0.05", "--out", str(tmp_path / "y.png"))
    )
    assert f"--out {tmp_path / 'y.png'}: cannot write audio as .png; expected .wav" in line
    assert not (tmp_path / "y.png").exists()
    line = _one_line_error(run_aigc("generate", "cppn", "--device", "foo"))
    assert "--device 'foo': expected cpu, cuda or cuda:N" in line
    if not torch.cuda.is_available():
        line = _one_line_error(run_aigc("generate", "cppn", "--device", "cuda"))
        assert "--device 'cuda': CUDA is not available on this machine" in line
    line = _one_line_error(
        run_aigc("train", "tiny", "--device", "foo", "--out", str(tmp_path / "r"))
    )
    assert "--device 'foo': expected cpu, cuda or cuda:N" in line
    assert not (tmp_path / "r").exists()
    line = _one_line_error(run_aigc("train", "tiny", "--out", str(a_file)))
    assert f"--out {a_file} is a file; expected a run directory" in line


def test_command_line_syntax_errors_are_one_line_with_a_suggestion():
    line = _one_line_error(run_aigc("generate", "cppn", "--seed", "abc"), code=2)
    assert line == "aigc: error: argument --seed: invalid int value: 'abc'"
    line = _one_line_error(run_aigc("plugins", "--jsn"), code=2)
    assert line == "aigc: error: unrecognized arguments: --jsn (did you mean --json?)"
    line = _one_line_error(run_aigc("train", "tiny", "--stepz", "3"), code=2)
    assert line == "aigc: error: unrecognized arguments: --stepz 3 (did you mean --steps?)"
    # Generator fields are options too: a mistyped one is a user error with the same hint.
    line = _one_line_error(run_aigc("generate", "cppn", "--sed", "3"))
    assert "unknown option --sed for generator cppn (did you mean --seed?)" in line
    assert "(did you mean --out?)" in _one_line_error(run_aigc("generate", "cppn", "--ot", "x"))


def test_plugins_lists_the_example_and_reports_the_broken_ones(with_broken_plugins):
    out = run_aigc("plugins")
    assert out.returncode == 0, out.stderr
    assert "example  [loaded]  aigc-example 1.2.0" in out.stdout
    assert "broken_import  [failed]" in out.stdout
    assert "No module named 'aigc_dependency_that_is_not_installed'" in out.stdout
    # A broken plugin never takes other commands down either.
    out = run_aigc(
        "generate", "markov", "--prompt", "a", "--max-new-tokens", "5", "--stream", "--seed", "1"
    )
    # Five generated characters (a newline among them too) and the line's end.
    assert out.returncode == 0 and len(out.stdout) == 6 and out.stdout.endswith("\n")
    assert "aigc: warning: plugin broken_import: failed to import" in out.stderr


def test_disable_option_and_environment(with_broken_plugins):
    out = run_aigc("--disable", "clash", "plugins", "--json")
    listed = {p["name"]: p["status"] for p in json.loads(out.stdout)}
    assert listed["clash"] == "disabled"
    out = run_aigc("plugins", "--json", env={"AIGC_DISABLE_PLUGINS": "broken_import,clash"})
    listed = {p["name"]: p["status"] for p in json.loads(out.stdout)}
    assert listed["broken_import"] == listed["clash"] == "disabled"


def test_doctor_tells_the_truth_about_the_build():
    import torch

    from aigc_sdk import ops

    out = run_aigc("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["torch"] == torch.__version__
    assert report["kernels"] == ops.status()
    assert report["kernels"]["extension"] == ("built" if ops.load_error() is None else "missing")
    assert set(report["kernels"]["ops"]) == set(ops.OPS)
    assert "example" in report["plugins"]["loaded"]
    text = run_aigc("doctor").stdout
    assert "extension" in text and "upsample_conv2d" in text


def test_commands_shorten_the_openmp_spin_unless_the_user_set_it(monkeypatch):
    """torch's OpenMP threads would otherwise spin on the cores the kernels' own threads
    need for milliseconds after each parallel torch op (aigc_sdk/cli/__init__.py)."""
    from aigc_sdk.cli import OPENMP_SPIN_COUNT

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    report = json.loads(run_aigc("doctor", "--json").stdout)
    assert report["openmp_spin_count"] == OPENMP_SPIN_COUNT
    report = json.loads(run_aigc("doctor", "--json", env={"GOMP_SPINCOUNT": "250"}).stdout)
    assert report["openmp_spin_count"] == "250"


def test_plugin_new_writes_a_package_whose_own_test_passes(tmp_path):
    out = run_aigc("plugin", "new", "ripple", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    package = tmp_path / "aigc-ripple"
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
    )
    env = {"PYTHONPATH": str(target)}
    listed = json.loads(run_aigc("plugins", "--json", env=env).stdout)
    assert {p["name"]: p["generators"] for p in listed}["ripple"] == ["ripple"]
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        cwd=tmp_path,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout
    assert "already exists" in _one_line_error(
        run_aigc("plugin", "new", "ripple", "--dir", str(tmp_path))
    )


PLASMA = """
from dataclasses import dataclass, field

from aigc_sdk import GenerationResult, Generator, ImageRequest, hookimpl


@dataclass(frozen=True, kw_only=True)
class PlasmaRequest(ImageRequest):
    \"\"\"Plasma clouds.

    Attributes:
        turbulence: how much the clouds swirl
    \"\"\"

    scale: float = field(default=1.0, metadata={"help": "zoom", "minimum": 0.1, "maximum": 10})
    turbulence: int = 3


class PlasmaGenerator(Generator):
    modality = "image"
    Request = PlasmaRequest

    def __init__(self):
        raise SystemExit("plasma: weights loaded")  # no test may get this far

    def generate(self, request):
        return GenerationResult("image")


@hookimpl
def aigc_register_generators(register):
    register("plasma", PlasmaGenerator, modality="image", description="plasma clouds")
"""


@pytest.fixture
def plasma_env(tmp_path):
    """A third-party plugin with its own request fields, named through AIGC_PLUGINS."""
    (tmp_path / "plasma_plugin.py").write_text(PLASMA)
    return {
        "PYTHONPATH": str(tmp_path),
        "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1",
        "AIGC_PLUGINS": "plasma_plugin,gan,audio,transformer,example",
    }


def test_generate_help_lists_the_generators_own_fields(plasma_env):
    out = run_aigc("generate", "plasma", "--help", env=plasma_env)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps help lines
    assert "plasma: image generator of plugin plasma_plugin: plasma clouds" in text
    assert "--scale NUMBER zoom (in [0.1, 10]; default 1.0)" in text
    assert "--turbulence INT how much the clouds swirl (default 3)" in text
    assert "-n INT, --n INT number of outputs (in [1, 1024]; default 1)" in text
    assert "--out PATH" in text and "ending in / for one file per output" in text
    gan = " ".join(run_aigc("generate", "gan", "--help", env=plasma_env).stdout.split())
    assert "--truncation NUMBER pull latents towards the mean" in gan
    assert "(in [0, 1]; default 1.0)" in gan and "--label INT" in gan
    markov = " ".join(run_aigc("generate", "markov", "--help", env=plasma_env).stdout.split())
    assert "--top-k INT draw from the k likeliest tokens only (0: off) (>= 0; default 0)" in markov
    assert "--prompt TEXT" in markov and "(at most 32768 characters)" in markov
    general = run_aigc("generate", "--help")
    assert general.returncode == 0 and "aigc generate NAME --help lists" in general.stdout


def test_plugins_json_describes_each_generators_request(plasma_env):
    out = run_aigc("plugins", "--json", env=plasma_env)
    assert out.returncode == 0, out.stderr
    details = {d["name"]: d for p in json.loads(out.stdout) for d in p["generator_details"]}
    plasma = details["plasma"]["request"]
    assert plasma["title"] == "PlasmaRequest" and plasma["description"].startswith("Plasma clouds.")
    assert plasma["properties"]["scale"] == {
        "type": "number",
        "default": 1.0,
        "description": "zoom",
        "minimum": 0.1,
        "maximum": 10,
    }
    assert plasma["properties"]["n"]["maximum"] == 1024
    gan = details["gan"]["request"]["properties"]
    assert gan["label"]["type"] == ["integer", "null"] and gan["truncation"]["maximum"] == 1
    prompt = details["markov"]["request"]["properties"]["prompt"]
    assert prompt["maxLength"] == 32768 and json_types(prompt) == ["string", "array"]


def test_unknown_options_name_the_generator_and_suggest_only_its_fields(plasma_env):
    line = _one_line_error(run_aigc("generate", "plasma", "--prompt", "x", env=plasma_env))
    assert line == (
        "aigc: error: unknown option --prompt for generator plasma; accepted: --n, --scale, "
        "--seed, --turbulence (aigc generate plasma --help)"
    )
    line = _one_line_error(run_aigc("generate", "plasma", "--scal", "2", env=plasma_env))
    assert "unknown option --scal for generator plasma (did you mean --scale?)" in line
    line = _one_line_error(run_aigc("generate", "plasma", "--scale", "20", env=plasma_env))
    assert line == "aigc: error: scale must be a number in [0.1, 10], got 20.0"


def test_bad_requests_and_outputs_fail_before_any_model_code_loads(plasma_env, tmp_path):
    cases = [
        (["gan", "-n", "-1"], "n must be an integer >= 1, got -1"),
        (["gan", "-n", "100000"], "n must be <= 1024 for gan, got 100000"),
        (["gan", "-n", "8", "--interpolate", "256"], "n x interpolate must be <= 1024 images"),
        (["audio", "--seconds", "0"], "seconds must be a finite number > 0, got 0.0"),
        (["audio", "--seconds", "3600"], "seconds must be <= 60 for audio, got 3600.0"),
        (["transformer", "--top-p", "0"], "top_p must be a number in (0, 1], got 0.0"),
        (["transformer", "--max-new-tokens", "99999"], "max_new_tokens must be <= 4096"),
        (["transformer", "--prompt", "x" * 40_000], "prompt must be at most 32768 characters"),
        (["gan", "--out", str(tmp_path / "x.txt")], "cannot write image as .txt; expected .png"),
        (["gan", "--out", str(tmp_path / "no" / "x.png")], f"folder {tmp_path / 'no'} does not"),
        (["plasma", "--turbulence", "x"], "option --turbulence: invalid value 'x'"),
    ]
    for args, message in cases:
        assert message in _one_line_error(run_aigc("generate", *args, env=plasma_env)), args
        # The same command imports no torch: the check comes before any model (or weights).
        traced = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "aigc_sdk.cli", "generate", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **plasma_env},
        )
        assert traced.returncode == 1, traced.stderr[-500:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()]
        assert "torch" not in imported, args
    assert not (tmp_path / "no").exists()


def test_out_suffix_picks_the_format_and_folders_are_made_only_when_asked(tmp_path):
    # Every suffix is covered in test_media; here the command's own path handling.
    import soundfile

    out = run_aigc("generate", "cppn", "--seed", "1", "--out", str(tmp_path / "a.webp"))
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "a.webp").format == "WEBP"
    out = run_aigc("generate", "chime", "--seconds", "0.2", "--out", str(tmp_path / "a.flac"))
    assert out.returncode == 0, out.stderr
    assert soundfile.info(str(tmp_path / "a.flac")).format == "FLAC"
    # A directory ending in / is made, parents too; the default out/ is made in the cwd.
    out = run_aigc("generate", "cppn", "-n", "2", "--out", f"{tmp_path}/new/deeper/")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == [
        "0000.png",
        "0001.png",
    ]
    assert run_aigc("generate", "cppn", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "cppn.png").is_file()
