"""`aigc plugins`, `aigc plugin new` and plugin problems, run as real subprocesses."""

import json
import os
import subprocess
import sys

import pytest
from conftest import run_aigc

from aigc_sdk.cli.plugins import new_plugin

pytestmark = pytest.mark.cli


def _one_line_error(out):
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aigc: error: "), out.stderr
    return lines[0]


def test_plugins_shows_each_generator_and_trainer_with_its_description():
    out = run_aigc("plugins")
    assert out.returncode == 0, out.stderr
    assert (
        "  generators:\n"
        "    chime   audio  a seeded wind-chime melody from additive synthesis\n"
        "    cppn    image  abstract patterns from a compositional pattern-producing network\n"
        "    markov  text   character-level Markov chain text, streamed\n"
        "  trainers:\n"
        "    tiny  a tiny autoencoder\n"
    ) in out.stdout
    example = {p["name"]: p for p in json.loads(run_aigc("plugins", "--json").stdout)}["example"]
    assert example["generators"] == ["chime", "cppn", "markov"]
    cppn, tiny = example["generator_details"][1], example["trainer_details"][0]
    assert {k: cppn[k] for k in ("name", "plugin", "modality", "description")} == {
        "name": "cppn",
        "plugin": "example",
        "modality": "image",
        "description": "abstract patterns from a compositional pattern-producing network",
    }
    assert (tiny["name"], tiny["description"]) == ("tiny", "a tiny autoencoder")


def test_a_failure_is_one_line_and_its_traceback_is_behind_verbose_and_trace(
    with_broken_plugins,
):
    out = run_aigc("plugins")
    assert out.returncode == 0 and "Traceback" not in out.stdout + out.stderr
    warning = "aigc: warning: plugin broken_hook: hook aigc_register_generators raised"
    assert warning in out.stderr
    verbose = run_aigc("plugins", "--verbose").stdout
    section = verbose.split("broken_hook  [failed]")[1].split("broken_import")[0]
    assert "      Traceback (most recent call last):" in section
    assert 'bad_hook.py", line 8, in aigc_register_generators' in section
    listed = {p["name"]: p for p in json.loads(run_aigc("plugins", "--json", "-v").stdout)}
    assert "bad_hook.py" in next(iter(listed["broken_hook"]["tracebacks"].values()))
    assert "tracebacks" not in json.loads(run_aigc("plugins", "--json").stdout)[0]
    traced = run_aigc("plugins", env={"AIGC_TRACE_PLUGINS": "1"})
    assert warning in traced.stderr  # the summary line, then the traceback
    assert 'bad_hook.py", line 8' in traced.stderr and "Traceback" in traced.stderr


def test_disable_warns_about_a_name_matching_no_plugin_and_takes_module_names():
    out = run_aigc(
        "--disable", "exampel", "plugins", "--json", env={"AIGC_DISABLE_PLUGINS": "aigc_gan"}
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "aigc: warning: cannot disable 'exampel': no installed plugin has that name, module "
        "or distribution; did you mean 'example'?"
    ]
    status = {p["name"]: p["status"] for p in json.loads(out.stdout)}
    assert status["example"] == "loaded" and status["gan"] == "disabled"


def test_autoload_off_says_so_instead_of_no_plugins_installed():
    out = run_aigc("plugins", env={"AIGC_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        "no plugins loaded: plugin autoload is off (AIGC_DISABLE_PLUGIN_AUTOLOAD); name the "
        "plugins to load in AIGC_PLUGINS=a,b (installed: "
    )
    assert "example" in out.stdout and "no plugins installed" not in out.stdout
    line = _one_line_error(run_aigc("generate", "cppn", env={"AIGC_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert "plugin autoload is off; name the plugins to load with AIGC_PLUGINS=a,b" in line


NONE_PLUGIN = """
from aigc_sdk import Generator, hookimpl


class Nothing(Generator):
    def generate(self, request):
        return None


@hookimpl
def aigc_register_generators(register):
    register("nothing", Nothing, modality="image")
"""


def test_a_generator_returning_none_is_one_line_naming_generator_and_plugin(tmp_path):
    (tmp_path / "aigc_nothing.py").write_text(NONE_PLUGIN)
    env = {
        "PYTHONPATH": str(tmp_path),
        "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1",
        "AIGC_PLUGINS": "aigc_nothing",
    }
    line = _one_line_error(
        run_aigc("generate", "nothing", "--out", str(tmp_path / "x.png"), env=env)
    )
    assert line == (
        "aigc: error: generator 'nothing' of plugin 'aigc_nothing': generate() returned None; "
        "expected a GenerationResult of modality 'image'"
    )


def test_plugin_new_refuses_names_taken_by_installed_plugins_and_modules(tmp_path):
    line = _one_line_error(run_aigc("plugin", "new", "gan", "--dir", str(tmp_path)))
    assert line == (
        "aigc: error: plugin name 'gan' is taken by the installed plugin 'gan' of aigc-sdk "
        "(module aigc_gan); choose another name"
    )
    assert "module aigc_example" in _one_line_error(
        run_aigc("plugin", "new", "example", "--dir", str(tmp_path))
    )
    assert "importable module aigc_sdk" in _one_line_error(
        run_aigc("plugin", "new", "sdk", "--dir", str(tmp_path))
    )
    assert list(tmp_path.iterdir()) == []


def test_two_scaffolded_plugins_are_tested_together(tmp_path):
    roots = [new_plugin(name, tmp_path) for name in ("ripple", "swirl")]
    assert [sorted(p.name for p in (r / "tests").iterdir()) for r in roots] == [
        ["test_ripple.py"],
        ["test_swirl.py"],
    ]
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [str(r / "tests") for r in roots],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(r) for r in roots)},
        cwd=tmp_path,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 passed" in test.stdout
