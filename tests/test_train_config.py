"""Trainer configuration: defaults, JSON, flags, --set, --help, and errors that name the key."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigc_sdk import hookimpl
from aigc_sdk.cli.train import cli_main
from aigc_sdk.errors import AigcError, UnknownNameError
from aigc_sdk.sdk import SDK
from aigc_sdk.training import ConfigError, TrainConfig
from aigc_sdk.training.checkpointing import STATE_FILE, step_dir

EXAMPLE = Path(__file__).parent / "example_plugin"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from aigc_example import tiny_trainer  # noqa: E402


class TinyPlugin:
    """Registers the example's trainer at run time, as SDK(plugins=[...]) allows."""

    @hookimpl
    def aigc_register_trainers(self, register):
        register("tiny", tiny_trainer.TinyTrainer, description="tiny autoencoder")


Config = tiny_trainer.TinyTrainer.Config


@pytest.fixture(scope="module")
def sdk():
    return SDK(plugins=[TinyPlugin()], autoload=False)


def test_defaults_and_trainer_overrides():
    cfg = Config()
    assert (cfg.steps, cfg.lr, cfg.data, cfg.width) == (300, 2e-3, "digits", 16)
    assert TrainConfig().steps == 1000  # the trainer changed the common default, not the base
    assert cfg.replace(steps=5).steps == 5 and cfg.steps == 300


def test_values_from_text_are_converted_by_type():
    cfg = Config.from_dict({"steps": "40", "lr": "1e-4", "deterministic": "yes", "dropout": 0})
    assert cfg.steps == 40 and cfg.lr == 1e-4 and cfg.deterministic is True
    assert isinstance(cfg.dropout, float)
    assert Config.parse_assignment("data=none") == ("data", None)
    assert Config.parse_assignment("batch-size = 8") == ("batch_size", "8")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stpes": 3}, r"unknown config key 'stpes'; did you mean 'steps'\?"),
        ({"steps": 0}, r"'steps' must be >= 1, got 0"),
        ({"steps": 2.5}, r"'steps' must be an integer, got 2.5"),
        ({"lr": "fast"}, r"'lr' must be a number, got 'fast'"),
        ({"precision": "fp8"}, r"'precision' must be one of auto, fp32, bf16, fp16"),
        ({"deterministic": "maybe"}, r"'deterministic' must be true or false"),
        ({"width": None}, r"'width' must be an integer, got None"),
        ({"lr": float("nan")}, r"'lr' must be a finite number"),
        ({"image_size": 30}, r"'image_size' must be a multiple of 4"),
    ],
)
def test_bad_keys_and_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_json_config_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"steps": 7, "latent": 4}))
    cfg = Config.from_json_file(good)
    assert (cfg.steps, cfg.latent, cfg.width) == (7, 4, 16)
    bad_key = tmp_path / "bad_key.json"
    bad_key.write_text(json.dumps({"latnet": 4}))
    with pytest.raises(ConfigError, match=r"unknown config key 'latnet' \(in .*bad_key.json\)"):
        Config.from_json_file(bad_key)
    broken = tmp_path / "broken.json"
    broken.write_text("{steps: 3")
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        Config.from_json_file(broken)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        Config.from_json_file(listing)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_json_file(tmp_path / "missing.json")


def test_help_lists_common_and_trainer_keys_with_defaults(sdk, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(sdk, "tiny", ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for expected in (
        "training options (every trainer)",
        "tiny options",
        "--steps INT",
        "(default: 300)",
        "--latent INT",
        "--dropout FLOAT",
        "--precision STR",
        "[auto|fp32|bf16|fp16]",
        "--resume",
        "--config FILE",
        "--set KEY=VALUE",
        "--deterministic, --no-deterministic",
    ):
        assert expected in text, expected


def test_precedence_defaults_json_flags_set(sdk, tmp_path, capsys):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"steps": 11, "latent": 3, "width": 5}))
    argv = ["--config", str(cfg_file), "--steps", "12", "--set", "latent=9", "--print-config"]
    assert cli_main(sdk, "tiny", argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["steps"], printed["latent"], printed["width"], printed["lr"]) == (
        12,
        9,
        5,
        2e-3,
    )


def test_resume_starts_from_the_runs_saved_config(sdk, tmp_path, capsys):
    saved = Config(steps=50, latent=3).to_dict()
    checkpoint = step_dir(tmp_path, 20)
    checkpoint.mkdir(parents=True)
    (checkpoint / STATE_FILE).write_text(json.dumps({"step": 20, "config": saved}))
    argv = ["--out", str(tmp_path), "--resume", "--steps", "80", "--print-config"]
    assert cli_main(sdk, "tiny", argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["steps"], printed["latent"]) == (80, 3)


def test_command_line_errors(sdk):
    with pytest.raises(ConfigError, match="--set expects key=value"):
        cli_main(sdk, "tiny", ["--set", "latent"])
    with pytest.raises(ConfigError, match=r"unknown config key 'hidden' \(in --set\)"):
        cli_main(sdk, "tiny", ["--set", "hidden=3"])
    with pytest.raises(ConfigError, match=r"'latent' must be >= 1, got 0 \(in the command line\)"):
        cli_main(sdk, "tiny", ["--latent", "0"])
    with pytest.raises(UnknownNameError, match="unknown trainer 'tinny'; did you mean 'tiny'"):
        cli_main(sdk, "tinny", [])
    with pytest.raises(SystemExit) as exit_info:
        cli_main(sdk, "tiny", ["--no-such-flag"])
    assert exit_info.value.code == 2


def _module_env():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(root), str(EXAMPLE)]),
        AIGC_DISABLE_PLUGIN_AUTOLOAD="1",
        AIGC_PLUGINS="example",
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.mark.cli
def test_module_entry_help_and_one_line_errors(tmp_path):
    run = [sys.executable, "-m", "aigc_sdk.training"]
    shown = subprocess.run(
        [*run, "tiny", "--help"], env=_module_env(), capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "--latent INT" in shown.stdout and "--steps INT" in shown.stdout
    bad = subprocess.run(
        [*run, "tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")],
        env=_module_env(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --data ")
    assert "Traceback" not in bad.stderr


def test_module_entry_without_a_name_lists_trainers(monkeypatch, capsys):
    from aigc_sdk.training.__main__ import main

    monkeypatch.setenv("AIGC_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("AIGC_PLUGINS", "example")
    assert main([]) == 2
    assert "trainers: tiny" in capsys.readouterr().err
    assert main(["tinny"]) == 1
    assert "error: unknown trainer 'tinny'" in capsys.readouterr().err


def test_aigc_errors_are_one_line():
    with pytest.raises(AigcError) as info:
        Config.from_dict({"warmup_steps": -1})
    assert "\n" not in str(info.value)


def test_cli_main_of_aigc_sdk_training_is_deprecated():
    """The command line moved to the CLI; the old public name works for one more release."""
    import aigc_sdk.training

    with pytest.warns(DeprecationWarning, match="aigc_sdk.training.cli_main is deprecated"):
        assert aigc_sdk.training.cli_main is cli_main
