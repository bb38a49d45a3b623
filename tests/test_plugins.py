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


class RaisingObserver:
    """Observes the start of each generation, and breaks at the end of it."""

    def __init__(self):
        self.before = 0

    @hookimpl
    def aigc_before_generate(self):
        self.before += 1

    @hookimpl
    def aigc_after_generate(self):
        raise RuntimeError("this observer is broken")


def test_a_raising_observer_does_not_break_generation_and_runs_no_more(with_broken_plugins):
    sdk = SDK(disable=["clash"])
    observer = RaisingObserver()
    sdk.register(observer, name="observer")
    with pytest.warns(PluginWarning, match="aigc_after_generate raised RuntimeError"):
        result = sdk.generate("markov", prompt="x", max_new_tokens=3, seed=2)
    assert len(result.texts[0]) == 3
    assert _info(sdk, "observer").status == "failed"
    sdk.generate("markov", prompt="x", max_new_tokens=3, seed=2)
    assert observer.before == 1  # a failed plugin's hooks never run again
    # broken_hook failed while registering: its aigc_after_generate never ran at all.
    assert [e.split(" raised")[0] for e in _info(sdk, "broken_hook").errors] == [
        "hook aigc_register_generators"
    ]


@pytest.mark.cli  # a Python of its own that generates (imports torch)
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


@pytest.mark.cli
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


@pytest.mark.cli
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


def _module(name, **hooks):
    """A run-time plugin module; plain functions become ``@hookimpl`` implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        marked = hasattr(function, "aigc_impl")
        setattr(module, hook_name, function if marked else hookimpl(function))
    return module


def test_a_plugin_whose_hook_raises_contributes_nothing():
    from aigc_example.cppn import CPPNGenerator

    seen, kept = [], []

    def aigc_register_generators(register):
        kept.append(register)
        register("pattern", CPPNGenerator, modality="image")
        register("cppn", CPPNGenerator, modality="image")  # clashes with the example's
        raise RuntimeError("broken after registering")

    def aigc_before_generate(generator):
        seen.append(generator.name)

    half = _module(
        "half",
        aigc_register_generators=aigc_register_generators,
        aigc_before_generate=aigc_before_generate,
    )
    sdk = SDK(plugins=["aigc_example"], autoload=False)
    with pytest.warns(PluginWarning, match="broken after registering"):
        sdk.register(half)
    assert _info(sdk, "half").status == "failed"
    assert _info(sdk, "half").generators == []
    assert not sdk.plugin_manager.is_registered(half)
    with pytest.raises(UnknownNameError, match="unknown generator 'pattern'"):
        sdk.generator("pattern")
    # The name it clashed on is the example's alone again, and no clash is left reported.
    assert sdk.generate("cppn", seed=1).images
    assert _info(sdk, "example").errors == []
    assert seen == []
    kept[0]("later", CPPNGenerator, modality="image")  # a callback kept past the failure
    assert sdk.generators.names() == ["chime", "cppn", "markov"]


def test_a_plugin_failing_later_loses_its_generators_and_cached_instances():
    from aigc_example.cppn import CPPNGenerator

    def aigc_register_generators(register):
        register("pattern", CPPNGenerator, modality="image")

    def aigc_after_generate():
        raise RuntimeError("observer broken")

    sdk = SDK(autoload=False)
    sdk.register(
        _module(
            "late",
            aigc_register_generators=aigc_register_generators,
            aigc_after_generate=aigc_after_generate,
        )
    )
    with pytest.warns(PluginWarning, match="observer broken"):
        assert sdk.generate("pattern", seed=1).images  # this call itself still answers
    with pytest.raises(UnknownNameError):
        sdk.generate("pattern", seed=1)


class Wrappers:
    """New-style and old-style pluggy wrappers around the other implementations."""

    def __init__(self, log):
        self.log = log

    @hookimpl(wrapper=True)
    def aigc_before_generate(self, generator):
        self.log.append(("wrapper enters", generator.name))
        results = yield
        self.log.append(("wrapper leaves", results))
        return results

    @hookimpl(hookwrapper=True)
    def aigc_after_generate(self):
        self.log.append("hookwrapper enters")
        outcome = yield
        self.log.append(("hookwrapper leaves", outcome.get_result()))


class Plain:
    def __init__(self, log):
        self.log = log

    @hookimpl
    def aigc_before_generate(self):
        self.log.append("plain before")
        return "plain"

    @hookimpl
    def aigc_after_generate(self):
        self.log.append("plain after")
        raise RuntimeError("plain after is broken")


def test_hook_wrappers_run_around_the_other_implementations_through_pluggy():
    log = []
    sdk = SDK(plugins=["aigc_example"], autoload=False)
    sdk.register(Plain(log), name="plain")
    sdk.register(Wrappers(log), name="wrappers")
    with pytest.warns(PluginWarning, match="plugin 'plain': hook aigc_after_generate raised"):
        sdk.generate("cppn", seed=1)
    assert log == [
        ("wrapper enters", "cppn"),
        "plain before",
        ("wrapper leaves", ["plain"]),
        "hookwrapper enters",
        "plain after",  # raised: its plugin failed, the wrapper saw a normal outcome
        ("hookwrapper leaves", []),
    ]
    assert _info(sdk, "wrappers").status == "loaded"


def test_a_raising_wrapper_fails_its_own_plugin_only():
    log = []

    def before_raises():
        raise RuntimeError("wrapper broken before yield")
        yield

    def after_raises():
        yield
        raise RuntimeError("wrapper broken after yield")

    sdk = SDK(plugins=["aigc_example"], autoload=False)
    sdk.register(Plain(log), name="plain")
    sdk.register(_module("w1", aigc_before_generate=hookimpl(wrapper=True)(before_raises)))
    sdk.register(_module("w2", aigc_before_generate=hookimpl(wrapper=True)(after_raises)))
    sdk.register(_module("w3", aigc_before_generate=hookimpl(wrapper=True)(lambda: None)))
    with pytest.warns(PluginWarning):
        assert sdk.generate("cppn", seed=1).images
    assert log[0] == "plain before"
    errors = {name: _info(sdk, name).errors for name in ("w1", "w2")}
    assert errors == {
        "w1": [
            "hook aigc_before_generate (wrapper) raised RuntimeError: wrapper broken before yield"
        ],
        "w2": [
            "hook aigc_before_generate (wrapper) raised RuntimeError: wrapper broken after yield"
        ],
    }
    assert _info(sdk, "w3").status == "failed"
    assert _info(sdk, "plain").status == "failed"  # its after hook raises


def _results_plugin():
    """Generators that break the result contract, each in its own way."""
    from aigc_sdk import GenerationResult, Generator, TextRequest

    class ReturnsNone(Generator):
        def generate(self, request):
            return None

    class ReturnsText(Generator):  # an image generator answering with text
        def generate(self, request):
            return GenerationResult("text", texts=["x"])

    class StreamsNumbers(Generator):
        modality = "text"
        Request = TextRequest

        def stream(self, request):
            yield "a"
            yield 3

    def aigc_register_generators(register):
        register("none", ReturnsNone, modality="image")
        register("mixed", ReturnsText, modality="image")
        register("numbers", StreamsNumbers, modality="text")

    return _module("sloppy_results", aigc_register_generators=aigc_register_generators)


def test_a_result_of_the_wrong_type_is_one_error_naming_generator_and_plugin():
    sdk = SDK(autoload=False, plugins=[_results_plugin()])
    owner = "generator {!r} of plugin 'sloppy_results'"
    with pytest.raises(PluginError) as caught:
        sdk.generate("none")
    assert str(caught.value) == (
        f"{owner.format('none')}: generate() returned None; "
        "expected a GenerationResult of modality 'image'"
    )
    with pytest.raises(PluginError, match=r"'mixed' .*returned a text result; expected .*'image'"):
        sdk.generate("mixed")
    stream = sdk.stream("numbers", prompt="x")
    assert next(stream) == "a"
    with pytest.raises(PluginError, match=r"'numbers' .*stream\(\) yielded int; expected str"):
        next(stream)


def test_disable_takes_module_names_and_warns_about_names_matching_no_plugin(monkeypatch):
    assert _info(SDK(disable=["aigc_example"]), "example").status == "disabled"
    with pytest.warns(PluginWarning) as caught:
        sdk = SDK(disable=["exampel"])
    assert _info(sdk, "example").status == "loaded"
    assert [str(w.message) for w in caught] == [
        "aigc: cannot disable 'exampel': no installed plugin has that name, module or "
        "distribution; did you mean 'example'?"
    ]
    monkeypatch.setenv("AIGC_DISABLE_PLUGINS", "aigc-exmaple")
    with pytest.warns(PluginWarning, match=r"'aigc-exmaple' \(from AIGC_DISABLE_PLUGINS\).*"):
        SDK()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SDK(env=False)  # env=False: the variable is not read at all


def test_env_false_makes_the_arguments_the_whole_configuration(monkeypatch):
    monkeypatch.setenv("AIGC_DISABLE_PLUGINS", "example")
    monkeypatch.setenv("AIGC_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("AIGC_PLUGINS", "gan")
    assert SDK().generators.names() == ["gan"]
    sdk = SDK(env=False)
    assert sdk.autoload and "cppn" in sdk.generators.names()


def test_autoload_off_says_so_in_an_unknown_name_error():
    with pytest.raises(UnknownNameError, match="plugin autoload is off; name the plugins"):
        SDK(autoload=False).generator("cppn")


def test_a_failure_keeps_its_traceback_in_the_log_record_and_warns_at_the_callers_line(
    with_broken_plugins, caplog
):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sdk = SDK()  # the warnings point here, not into aigc_sdk
    records = [r for r in caplog.records if "broken_hook" in r.getMessage()]
    assert records and records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError
    assert {w.filename for w in caught if issubclass(w.category, PluginWarning)} == {__file__}
    traceback = _info(sdk, "broken_hook").tracebacks[_info(sdk, "broken_hook").errors[0]]
    assert traceback.startswith("Traceback") and "bad_hook.py" in traceback
    assert "aigc_sdk" not in traceback  # from the plugin's own frame on
