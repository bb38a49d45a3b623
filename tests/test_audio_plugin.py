"""The audio plugin: WaveNet, conv-queue generation, the generator, its files and CLI."""

import importlib.util
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import torch

from aigc_sdk import SDK, RequestError
from aigc_sdk.ops import sample
from aigc_sdk.testing import check_generator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # the plugin without an installed entry point

from aigc_audio.generator import (  # noqa: E402
    StepSampler,
    generate_classes,
    resolve_labels,
)
from aigc_audio.model import (  # noqa: E402
    SILENCE,
    START,
    ConvQueues,
    NumpyConvQueues,
    QueuePlan,
    WaveNet,
    WaveNetConfig,
    mu_law_decode,
    mu_law_encode,
)
from aigc_audio.weights import DEFAULT_WEIGHTS, load_wavenet, save_wavenet  # noqa: E402

TINY = dict(residual=8, gate=8, skip=16, dilations=[1, 2, 4, 8, 1, 2, 4, 8], label_dim=4)


def tiny_model(labels=("C4", "E4", "G4"), seed=0) -> WaveNet:
    torch.manual_seed(seed)
    model = WaveNet(WaveNetConfig(labels=list(labels), **TINY))
    with torch.no_grad():  # larger than the default init, so every path matters in the logits
        for p in model.parameters():
            p.normal_(0, 0.3)
        if labels:
            model.label_counts.copy_(torch.arange(1.0, len(labels) + 1))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_wavenet(tiny_model(), tmp_path_factory.mktemp("weights") / "tiny")


@pytest.fixture
def sdk():
    return SDK(plugins=["aigc_audio"])


# -- mu-law -----------------------------------------------------------------


def test_mu_law_round_trips_every_class_and_keeps_silence_silent():
    classes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(classes)), classes)
    assert SILENCE == 128 and abs(float(mu_law_decode(torch.tensor(SILENCE)))) < 1e-4
    x = torch.linspace(-1, 1, 1001)
    error = (mu_law_decode(mu_law_encode(x)) - x).abs()
    assert float(error.max()) < 0.035 and float(error[450:551].max()) < 3e-3  # finer near 0
    assert mu_law_encode(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


# -- incremental generation == the full causal forward -------------------------


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("queues_type", [ConvQueues, NumpyConvQueues])
@pytest.mark.parametrize("prefix", [0, 3, 13, 40])
@pytest.mark.parametrize("labels", [("C4", "E4", "G4"), ()])
def test_conv_queues_equal_the_full_forward(queues_type, prefix, labels):
    model = tiny_model(labels)
    x = torch.randint(0, 257, (3, 48), generator=torch.Generator().manual_seed(prefix))
    label = torch.tensor([0, 2, 1]) if labels else None
    with torch.no_grad():
        full = model(x, label)
    queues = queues_type(model, 3, label, prefix=x[:, :prefix])
    steps = torch.stack([queues.step(x[:, t]) for t in range(prefix, 48)], 1)
    torch.testing.assert_close(steps, full[:, prefix:], rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("queues_type", [ConvQueues, NumpyConvQueues])
@pytest.mark.parametrize("labels", [("C4", "E4", "G4"), ()])
def test_the_steady_start_equals_a_forward_over_a_receptive_field_of_it(queues_type, labels):
    model = tiny_model(labels)
    label = torch.tensor([2, 0]) if labels else None
    prefix = torch.full((2, model.cfg.receptive_field - 1), START)
    primed = queues_type(model, 2, label, prefix=prefix)
    steady = queues_type(model, 2, label, steady=START, plan=QueuePlan(model))
    assert steady.t == primed.t
    x = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(1))
    for t in range(30):
        torch.testing.assert_close(steady.step(x[:, t]), primed.step(x[:, t]))


@pytest.mark.usefixtures("one_thread")
def test_the_output_depends_on_exactly_the_receptive_field():
    model = tiny_model()
    rf = model.cfg.receptive_field
    x = torch.randint(0, 256, (1, 3 * rf))
    y = x.clone()
    y[0, rf] += 1  # changes outputs at rf .. 2 rf - 1 only
    with torch.no_grad():
        changed = (model(x, torch.tensor([0])) - model(y, torch.tensor([0]))).abs().amax(-1)[0]
    assert torch.nonzero(changed > 0).flatten().tolist() == list(range(rf, 2 * rf))


@pytest.mark.usefixtures("one_thread")
def test_generation_is_seeded_and_each_clip_of_a_batch_is_its_own():
    model = tiny_model()
    labels = torch.tensor([1, 1])
    a = generate_classes(model, 300, labels, n=2, seed=7)
    b = generate_classes(model, 300, labels, n=2, seed=7)
    c = generate_classes(model, 300, labels, n=2, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # rows draw from their own streams


def test_the_step_sampler_draws_what_the_sample_wrapper_draws():
    params = dict(temperature=0.9, top_k=40, top_p=0.95, min_p=0.01, seed=2**63 + 5)
    draw = StepSampler(3, torch.device("cpu"), **params)
    logits = torch.randn(30, 3, 256, generator=torch.Generator().manual_seed(0)) * 3
    fast = [draw(logits[t], t) for t in range(30)]
    slow = [sample(logits[t], **params, offset=t) for t in range(30)]
    assert torch.equal(torch.stack(fast), torch.stack(slow))


@pytest.mark.usefixtures("one_thread")
def test_greedy_generation_matches_the_naive_loop_that_recomputes_everything():
    model = tiny_model()
    label = torch.tensor([2])
    fast = generate_classes(model, 60, label, n=1, seed=0, temperature=0)
    x = torch.full((1, model.cfg.receptive_field), START)
    with torch.no_grad():
        for _ in range(60):
            nxt = model(x[:, -model.cfg.receptive_field :], label)[:, -1].argmax(-1)
            x = torch.cat([x, nxt[:, None]], 1)
    assert torch.equal(fast, x[:, model.cfg.receptive_field :])


# -- the generator -------------------------------------------------------------


def test_generator_returns_waveform_rate_and_spectrogram(sdk, tiny_weights, tmp_path):
    options = {"weights": str(tiny_weights)}
    result = sdk.generate("audio", options=options, seconds=0.02, seed=3, n=2, label="E4")
    assert result.audio.shape == (2, 320) and result.sample_rate == 16000
    assert result.audio.dtype == torch.float32 and float(result.audio.abs().max()) <= 1
    assert result.tensors["labels"].tolist() == [1, 1]
    assert result.attachments[".png"].startswith(b"\x89PNG")
    written = result.save(tmp_path / "a.wav")
    assert [p.name for p in written] == ["a-0000.wav", "a-0001.wav", "a.png"]
    with wave.open(str(written[0])) as w:
        assert (w.getframerate(), w.getnframes(), w.getnchannels()) == (16000, 320, 1)
    one = sdk.generate("audio", options=options, seconds=0.02, seed=3, n=1, label="E4")
    assert torch.equal(one.audio[0], result.audio[0])  # a clip does not depend on its batch


def test_generator_labels_by_name_index_or_at_random(sdk, tiny_weights):
    gen = sdk.generator("audio", weights=str(tiny_weights))
    req = gen.Request
    assert (req().temperature, req().min_p, req(min_p=0).min_p) == (1.0, 0.1, 0)
    assert gen.generate(req(seconds=0.01, seed=1, label=2)).tensors["labels"].tolist() == [2]
    assert gen.generate(req(seconds=0.01, seed=1, label="2")).tensors["labels"].tolist() == [2]
    drawn = resolve_labels(gen.model, None, 600, torch.Generator().manual_seed(0))
    assert torch.bincount(drawn).tolist() == pytest.approx([100, 200, 300], rel=0.25)
    with pytest.raises(RequestError, match="label must be one of C4, E4, G4"):
        gen.generate(req(seconds=0.01, label="D5"))
    with pytest.raises(RequestError, match=r"label must be in \[0, 3\)"):
        gen.generate(req(seconds=0.01, label=3))
    with pytest.raises(RequestError, match="repetition_penalty is not supported"):
        gen.generate(req(seconds=0.01, repetition_penalty=1.2))


def test_unconditional_weights_refuse_a_label(sdk, tmp_path):
    weights = save_wavenet(tiny_model(labels=()), tmp_path / "uncond")
    gen = sdk.generator("audio", weights=str(weights))
    assert gen.generate(gen.Request(seconds=0.01, seed=2)).audio.shape == (1, 160)
    with pytest.raises(RequestError, match="unconditional"):
        gen.generate(gen.Request(seconds=0.01, label="C4"))


def test_weights_round_trip_and_name_a_mismatch(tmp_path):
    model = tiny_model()
    directory = save_wavenet(model, tmp_path / "w", training={"steps": 3})
    loaded, config = load_wavenet(directory)
    assert config["training"] == {"steps": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    other = WaveNet(WaveNetConfig(labels=["C4", "E4", "G4"], **{**TINY, "residual": 4}))
    save_wavenet(other, tmp_path / "w")
    config_file = tmp_path / "w" / "config.json"
    config_file.write_text(config_file.read_text().replace('"residual": 4', '"residual": 8'))
    with pytest.raises(Exception, match="does not fit the model|SHA-256|wrong shapes"):
        load_wavenet(tmp_path / "w")


@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "config.json").exists(), reason="no default weights")
def test_the_default_weights_pass_the_sdk_plugin_check(sdk, tmp_path):
    check_generator(sdk, "audio", tmp_path, seconds=0.05)


def _eval_audio():
    """benchmarks/eval_audio.py as a module (benchmarks/ is not a package)."""
    if "eval_audio" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "eval_audio", ROOT / "benchmarks" / "eval_audio.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["eval_audio"] = module
        spec.loader.exec_module(module)
    return sys.modules["eval_audio"]


@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "config.json").exists(), reason="no default weights")
def test_the_default_weights_make_neither_silence_nor_noise(sdk):
    # The measures of benchmarks/eval_audio.py: RMS level in dBFS, and spectral flatness
    # (geometric / arithmetic mean of a frame's power spectrum) of the frames louder
    # than -50 dBFS. White noise scores ~0.56, a tone ~0.001, silence has no loud frame.
    level_and_flatness = _eval_audio().level_and_flatness
    rate, samples = 16000, 4000
    noise = level_and_flatness(
        (torch.rand(4, samples, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    )
    silence = level_and_flatness(torch.zeros(4, samples))
    t = torch.arange(samples) / rate
    tone = level_and_flatness(0.5 * torch.sin(2 * torch.pi * 220 * t).repeat(4, 1))
    assert noise["spectral_flatness"] > 0.4 and tone["spectral_flatness"] < 0.01
    assert silence["loud_frame_fraction"] == 0 and silence["rms_dbfs"] < -100

    result = sdk.generate("audio", seconds=samples / rate, seed=0, n=4)  # default sampling
    assert result.audio.shape == (4, samples) and result.sample_rate == rate
    got = level_and_flatness(result.audio)
    # Not silence: the training tones are ~-17.5 dBFS, loud for ~80% of their frames.
    assert got["rms_dbfs"] > -35, got
    assert got["loud_frame_fraction"] > 0.5, got
    # Not noise: 0.002 was measured at 1 s (README), 0.56 is white noise.
    assert got["spectral_flatness"] < 0.05, got


@pytest.mark.cli
def test_cli_writes_wav_and_spectrogram_beside_it(tiny_weights, tmp_path):
    env = dict(
        os.environ,
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'plugins'}",
        AIGC_DISABLE_PLUGIN_AUTOLOAD="1",
        AIGC_PLUGINS="aigc_audio",
    )
    out = tmp_path / "a.wav"
    command = [sys.executable, "-m", "aigc_sdk.cli", "generate", "audio", "--seconds", "0.02"]
    command += ["--seed", "1", "--out", str(out), "--weights", str(tiny_weights)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size == 44 + 2 * 320
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert f"wrote {tmp_path / 'a.png'}" in run.stderr


def test_generation_leaves_the_process_thread_settings_alone(sdk, tiny_weights, monkeypatch):
    # torch's thread count is the host's, shared by every thread of the process:
    # a generation running beside others must neither change nor restore it.
    calls = []
    set_num_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n) or set_num_threads(n))
    before = torch.get_num_threads()
    result = sdk.generate("audio", options={"weights": str(tiny_weights)}, seconds=0.02, seed=1)
    assert result.audio.shape[0] == 1
    assert calls == [] and torch.get_num_threads() == before
