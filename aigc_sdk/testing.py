"""Helpers for plugin authors' own test suites.

    from aigc_sdk.testing import check_plugin

    def test_my_plugin(tmp_path):
        check_plugin("aigc_myplugin", tmp_path)       # loads, registers, generates

Each check uses an SDK with autoload off, so the result depends on the plugin
under test only, not on whatever else is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import PluginError
from .generation import GenerationResult
from .sdk import SDK

__all__ = [
    "SMALL_REQUESTS",
    "assert_loaded",
    "check_generator",
    "check_plugin",
    "check_result",
    "isolated_sdk",
]

SMALL_REQUESTS: dict[str, dict[str, Any]] = {
    "image": {"n": 2},
    "text": {"prompt": "a", "max_new_tokens": 8},
    "audio": {"seconds": 0.1},
}


def isolated_sdk(*plugins: Any) -> SDK:
    """An SDK with exactly these plugins (modules, objects, entry-point or module names).

    Autoload is off and no ``AIGC_*`` variable is read, so neither what else is
    installed nor the shell's ``AIGC_DISABLE_PLUGINS`` changes the result.
    """
    return SDK(plugins=plugins, autoload=False, disable=(), env=False)


def assert_loaded(sdk: SDK) -> None:
    """Fails with every plugin's errors if any plugin failed to load or register."""
    problems = [f"{p.name}: {'; '.join(p.errors)}" for p in sdk.plugins() if p.errors]
    if problems:
        raise AssertionError("plugin problems:\n  " + "\n  ".join(problems))


def check_result(result: GenerationResult, modality: str, n: int) -> None:
    """Checks that a result holds ``n`` outputs of the right kinds."""
    from PIL import Image

    assert isinstance(result, GenerationResult), f"generate returned {type(result).__name__}"
    assert result.modality == modality, f"result modality {result.modality!r} != {modality!r}"
    if modality == "image":
        assert len(result.images) == n, f"{len(result.images)} images for n={n}"
        assert all(isinstance(i, Image.Image) for i in result.images), "images must be PIL"
    elif modality == "text":
        assert len(result.texts) == n and all(isinstance(t, str) for t in result.texts)
    else:
        assert result.audio is not None and result.audio.shape[0] == n, "audio must be [n, samples]"
        assert isinstance(result.sample_rate, int) and result.sample_rate > 0
        assert float(result.audio.abs().max()) <= 1.0, "audio must lie in [-1, 1]"


def check_generator(sdk: SDK, name: str, tmp_path: Path, **request: Any) -> GenerationResult:
    """Generates twice with one seed (same output), saves, and checks the files."""
    generator = sdk.generator(name)
    kwargs = {**SMALL_REQUESTS[generator.modality], "seed": 1234, **request}
    first = sdk.generate(name, **kwargs)
    n = kwargs.get("n", 1)
    if generator.modality == "text" and not isinstance(kwargs.get("prompt", ""), str):
        n = len(kwargs["prompt"])
    check_result(first, generator.modality, n)
    second = sdk.generate(name, **kwargs)
    same = {
        "image": lambda: (
            [i.tobytes() for i in first.images] == [i.tobytes() for i in second.images]
        ),
        "text": lambda: first.texts == second.texts,
        "audio": lambda: bool((first.audio == second.audio).all()),
    }[generator.modality]()
    assert same, f"generator {name!r}: the same seed gave different outputs"
    written = first.save(f"{Path(tmp_path) / name}-out/")  # a str: Path drops the final /
    assert written and all(p.stat().st_size > 0 for p in written), "nothing was written"
    return first


def check_plugin(plugin: Any, tmp_path: Path) -> SDK:
    """Loads ``plugin`` alone and runs ``check_generator`` on each of its generators."""
    sdk = isolated_sdk(plugin)
    assert_loaded(sdk)
    names = sdk.generators.names()
    if not names and not sdk.trainers.names():
        raise PluginError(f"plugin {plugin!r} registered no generators and no trainers")
    for name in names:
        check_generator(sdk, name, tmp_path)
    return sdk
