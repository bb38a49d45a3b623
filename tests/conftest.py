"""Shared fixtures: real plugin packages, real subprocesses, no mocks of our code."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
BIN = Path(sys.executable).parent


def benchmark_module(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """One torch thread for the test. For loops of tiny ops (a decode step of a tiny
    model): on a busy machine an op that goes parallel can wait a scheduler slice for
    its second thread, milliseconds for microseconds of work, which made such tests run
    for minutes. Use it where the result does not depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def broken_plugins_dir(tmp_path_factory) -> Path:
    """The deliberately broken plugins, pip-installed into a directory of their own.

    They stay out of the venv (so `aigc plugins` stays clean for users) and are
    put on sys.path / PYTHONPATH only by the tests that want them.
    """
    target = tmp_path_factory.mktemp("broken-plugins")
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
            str(TESTS / "broken_plugin"),
        ],
        check=True,
    )
    return target


@pytest.fixture
def with_broken_plugins(broken_plugins_dir, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(broken_plugins_dir))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(broken_plugins_dir), os.environ.get("PYTHONPATH")])),
    )
    return broken_plugins_dir


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    for name in (
        "AIGC_DISABLE_PLUGINS",
        "AIGC_DISABLE_PLUGIN_AUTOLOAD",
        "AIGC_PLUGINS",
        "AIGC_TRACE_PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)


def run_aigc(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs the installed `aigc` console script for real."""
    return subprocess.run(
        [str(BIN / "aigc"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def run_python(code: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
