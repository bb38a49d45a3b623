"""Discovery, disabling, isolation, clashes, laziness, tracing: with real installed plugins."""

import json
import types
import warnings

import pytest
from conftest import run_python

from aigc_sdk import SDK, PluginError, UnknownNameError, hookimpl
from aigc_sdk.plugins import PluginWarning


def _info(sdk, name):
    return {p.name: p for p in sdk.plugins()}[name]


def test_example_plugin_is_discovered_through_its_entry_point():
    info = _info(SDK(), "example")
    assert info.status == "loaded"
    assert (info.distribution, info.version) == ("aigc-example", "1.2.0")
    assert info.generators == ["chime", "cppn", "markov"]
    assert "aigc_register_generators" in info.hooks


def test_disabled_plugin_is_never_imported():
    code = (
        "import sys, aigc_sdk; sdk = aigc_sdk.SDK(disable=['example']);"
        "print([p.status for p in sdk.plugins() if p.name == 'example']);"
        "print('aigc_example' in sys.modules)"
    )
    out = run_python(code).stdout.split()
    assert out == ["['disabled']", "False"]
    out = run_python(
        code.replace("disable=['example']", ""), env={"AIGC_DISABLE_PLUGINS": "other,example"}
    ).stdout.split()
    assert out == ["['disabled']", "False"]


def test_disable_by_distribution_name():
    assert _info(SDK(disable=["aigc-example"]), "example").status == "disabled"


def test_autoload_off_loads_only_the_named_plugins(monkeypatch):
    monkeypatch.setenv("AIGC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert SDK().generators.names() == []
    monkeypatch.setenv("AIGC_PLUGINS", "example")
    assert SDK().generators.names() == ["chime", "cppn", "markov"]
    assert SDK(autoload=False, plugins=["aigc_example"]).generators.names() == [
        "chime",
        "cppn",
        "markov",
    ]


def test_creating_an_sdk_and_listing_plugins_imports_no_model_code():
    out = run_python(
        "import sys, aigc_sdk; sdk = aigc_sdk.SDK(); sdk.plugins();"
        "print(sorted(m for m in ('torch', 'aigc_example.cppn', 'aigc_example.markov',"
        " 'safetensors', 'PIL') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class Recorder:
    """A run-time plugin object observing generation."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def aigc_before_generate(self, generator, request):
        self.calls.append(("before", generator.name, request.seed))

    @hookimpl
    def aigc_after_generate(self, generator, result, seconds):
        self.calls.append(("after", generator.name, len(result.images), seconds > 0))


def test_run_time_plugin_object_observes_generation():
    sdk = SDK()
    recorder = Recorder()
    sdk.register(recorder, name="recorder")
    sdk.generate("cppn", seed=5, n=2)
    assert recorder.calls == [("before", "cppn", 5), ("after", "cppn", 2, True)]


def test_run_time_module_plugin_registers_generators():
    from aigc_example.cppn import CPPNGenerator

    module = types.ModuleType("my_plugin")

    @hookimpl
    def aigc_register_generators(register):
        register("pattern", CPPNGenerator, modality="image")

    module.aigc_register_generators = aigc_register_generators
    sdk = SDK(autoload=False)
    sdk.register(module)
    assert sdk.generators.names() == ["pattern"]
    assert len(sdk.generate("pattern", seed=1, n=3).images) == 3


def test_two_sdks_share_nothing():
    first, second = SDK(), SDK()
    first.register(Recorder(), name="recorder")
    assert "recorder" in {p.name for p in first.plugins()}
    assert "recorder" not in {p.name for p in second.plugins()}
    assert first.plugin_manager is not second.plugin_manager
    assert first.generator("cppn") is not second.generator("cppn")
    assert first.generator("cppn") is first.generator("cppn")


def test_unknown_generator_names_the_closest_match():
    with pytest.raises(UnknownNameError, match=r"unknown generator 'cpnn'; did you mean 'cppn'\?"):
        SDK().generator("cpnn")
    with pytest.raises(UnknownNameError, match=r"unknown generator 'zzz'\. Known: .*chime, cppn"):
        SDK().generator("zzz")


def test_broken_plugins_are_reported_and_the_others_keep_working(with_broken_plugins):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sdk = SDK()
    infos = {p.name: p for p in sdk.plugins()}
    assert infos["broken_import"].status == "failed"
    assert "aigc_broken.bad_import" in infos["broken_import"].errors[0]
    assert "ModuleNotFoundError" in infos["broken_import"].errors[0]
    assert infos["broken_hook"].status == "failed"
    assert "hook aigc_register_generators raised RuntimeError" in infos["broken_hook"].errors[0]
    assert any(issubclass(w.category, PluginWarning) for w in caught)
    assert infos["example"].status == "loaded"
    assert sdk.generate("markov", prompt="a", max_new_tokens=5, seed=1).texts


def test_a_hook_calling_sys_exit_is_reported_not_fatal():
    plugin = types.ModuleType("exits")

    @hookimpl
    def aigc_register_generators(register):
        raise SystemExit(3)

    plugin.aigc_register_generators = aigc_register_generators
    sdk = SDK(plugins=["aigc_example"], autoload=False)
    with pytest.warns(PluginWarning, match="aigc_register_generators raised SystemExit"):
        sdk.register(plugin)
        names = sdk.generators.names()
    assert "cppn" in names and _info(sdk, "exits").status == "failed"


def test_name_clash_is_an_error_naming_both_plugins(with_broken_plugins):
    sdk = SDK()
    clash = _info(sdk, "clash")
    assert "generator name 'cppn' is provided by both 'clash' and 'example'" in clash.errors[0]
    with pytest.raises(PluginError, match="'cppn' is provided by both 'clash' and 'example'"):
        sdk.generate("cppn")
    assert SDK(disable=["clash"]).generate("cppn", seed=1).images


def test_a_raising_observer_does_not_break_generation(with_broken_plugins):
    sdk = SDK(disable=["clash"])
    with pytest.warns(PluginWarning, match="aigc_after_generate raised RuntimeError"):
        result = sdk.generate("markov", prompt="x", max_new_tokens=3, seed=2)
    assert len(result.texts[0]) == 3
    assert any("aigc_after_generate" in e for e in _info(sdk, "broken_hook").errors)


def test_trace_logs_every_hook_call_with_arguments_and_results():
    out = run_python(
        "import aigc_sdk; aigc_sdk.SDK().generate('cppn', seed=1)",
        env={"AIGC_TRACE_PLUGINS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "aigc_register_generators[example](register=" in out.stderr
    assert "aigc_register_generators[example] -> None" in out.stderr


def test_registration_problems_are_reported_per_plugin():
    module = types.ModuleType("sloppy")

    @hookimpl
    def aigc_register_generators(register):
        register("bad name!", "x:y", modality="image")
        register("nomodality", "x:y")
        register("fine", "aigc_example.cppn:CPPNGenerator", modality="image")

    module.aigc_register_generators = aigc_register_generators
    sdk = SDK(autoload=False)
    sdk.register(module)
    info = _info(sdk, "sloppy")
    assert len(info.errors) == 2
    assert "register('bad name!')" in info.errors[0]
    assert "modality must be one of image, text, audio" in info.errors[1]
    assert sdk.generators.names() == ["fine"]


def test_lazy_factory_that_fails_to_import_names_plugin_and_cause():
    module = types.ModuleType("lazy_broken")

    @hookimpl
    def aigc_register_generators(register):
        register("ghost", "aigc_no_such_module:Gen", modality="text")

    module.aigc_register_generators = aigc_register_generators
    sdk = SDK(autoload=False)
    sdk.register(module)
    with pytest.raises(
        PluginError, match="generator 'ghost' of plugin 'lazy_broken'.*ModuleNotFoundError"
    ):
        sdk.generate("ghost")


def test_plugins_json_lists_everything(with_broken_plugins):
    from conftest import run_aigc

    out = run_aigc("plugins", "--json")
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    assert listed["example"]["status"] == "loaded"
    assert listed["broken_import"]["status"] == "failed"
    assert listed["example"]["generators"] == ["chime", "cppn", "markov"]
    assert any("'cppn' is provided by both" in e for e in listed["example"]["errors"])
    assert listed["broken_hook"]["hooks"] == ["aigc_after_generate", "aigc_register_generators"]


def test_a_plugin_named_explicitly_and_autoloaded_registers_once():
    sdk = SDK(plugins=["aigc_example", "example"])
    assert [p.name for p in sdk.plugins()].count("example") == 1
    assert all(not p.errors for p in sdk.plugins())
    assert sdk.generate("cppn", seed=1).images


def test_a_plugin_exiting_on_import_is_reported_not_fatal(tmp_path, monkeypatch):
    from conftest import run_aigc

    (tmp_path / "aigc_exits.py").write_text("import sys\nsys.exit('no GPU, giving up')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sdk = SDK(autoload=False, plugins=["aigc_exits", "example"])
    info = _info(sdk, "aigc_exits")
    assert info.status == "failed"
    assert "failed to import aigc_exits: SystemExit: no GPU, giving up" in info.errors[0]
    assert sdk.generate("cppn", seed=1).images
    out = run_aigc(
        "plugins",
        env={
            "PYTHONPATH": str(tmp_path),
            "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1",
            "AIGC_PLUGINS": "aigc_exits,example",
        },
    )
    assert out.returncode == 0, out.stderr
    assert "aigc_exits  [failed]" in out.stdout and "example  [loaded]" in out.stdout


def test_every_error_a_caller_can_fix_is_a_user_error():
    from aigc_sdk import AigcError, CheckpointError, RequestError, UserError

    sdk = SDK()
    caught = []
    for bad in (lambda: sdk.generate("cpnn"), lambda: sdk.generate("cppn", sed=3)):
        try:
            bad()
        except UserError as exc:  # one except clause for a host's "bad request"
            caught.append(type(exc))
    assert caught == [UnknownNameError, RequestError]
    assert issubclass(CheckpointError, UserError) and issubclass(UserError, AigcError)
    assert not issubclass(PluginError, UserError) and issubclass(PluginError, AigcError)
