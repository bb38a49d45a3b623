"""The training loop in-process: outputs, hooks, exact resume, two optimizers, accumulation, AMP."""

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from aigc_sdk import GenerationResult, hookimpl
from aigc_sdk.cli.train import cli_main, make_trainer
from aigc_sdk.data import DataError, Splits
from aigc_sdk.errors import AigcError, CheckpointError, PluginError
from aigc_sdk.sdk import SDK
from aigc_sdk.training import ConfigError, TrainConfig, Trainer, fit, option
from aigc_sdk.training.metrics import read_metrics

EXAMPLE = Path(__file__).parent / "example_plugin"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from aigc_example import tiny_trainer  # noqa: E402

pytestmark = pytest.mark.train


class TinyPlugin:
    """Registers the example's trainer at run time, as SDK(plugins=[...]) allows."""

    @hookimpl
    def aigc_register_trainers(self, register):
        register("tiny", tiny_trainer.TinyTrainer, description="tiny autoencoder")


SMALL = dict(
    steps=20,
    batch_size=16,
    width=8,
    image_size=16,
    checkpoint_every=5,
    keep_checkpoints=2,
    eval_every=10,
    sample_every=10,
    log_every=5,
    ema_decay=0.9,
    grad_accum=2,
    lr_schedule="cosine",
    warmup_steps=3,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Other processes share the two cores; one thread each is faster and as exact."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder:
    """A plugin observing the lifecycle hooks, as any third-party plugin could."""

    def __init__(self):
        self.steps, self.evaluations, self.checkpoints, self.samples = [], [], [], []

    @hookimpl
    def aigc_train_step_end(self, trainer, step, metrics):
        self.steps.append((step, metrics))

    @hookimpl
    def aigc_evaluation_end(self, step, metrics):
        self.evaluations.append((step, metrics))

    @hookimpl
    def aigc_checkpoint_saved(self, step, path):
        self.checkpoints.append((step, path, (path / "state.json").is_file()))

    @hookimpl
    def aigc_training_samples(self, trainer, step, samples):
        self.samples.append((step, samples))


class Stop(BaseException):
    """Ends a run abruptly from a hook, like a kill between two steps."""


class StopAt:
    def __init__(self, step):
        self.step = step

    @hookimpl
    def aigc_train_step_end(self, step):
        if step == self.step:
            raise Stop


def _train(tmp, config, plugins=(), resume=False, trainer_class=None, name="tiny"):
    sdk = SDK(plugins=[TinyPlugin(), *plugins], autoload=False)
    cls = trainer_class or tiny_trainer.TinyTrainer
    trainer = cls(cls.Config(**config))
    trainer.name = name
    result = fit(trainer, tmp, sdk=sdk, resume=resume, quiet=True)
    return trainer, result


def _interrupted_then_resumed(run_dir, config, stop_at, trainer_class=None, name="tiny"):
    with pytest.raises(Stop):
        _train(run_dir, config, [StopAt(stop_at)], trainer_class=trainer_class, name=name)
    return _train(run_dir, config, resume=True, trainer_class=trainer_class, name=name)


def _assert_same_weights(a: Path, b: Path):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    oa, ob = load_file(a / "optimizer.safetensors"), load_file(b / "optimizer.safetensors")
    for key in oa:
        assert torch.equal(oa[key], ob[key]), key


def _without_time(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(path)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    recorder = Recorder()
    trainer, result = _train(run_dir, SMALL, [recorder])
    return run_dir, trainer, result, recorder


def test_run_writes_metrics_plot_samples_checkpoints_and_export(reference):
    run_dir, trainer, result, _ = reference
    assert result.step == 20 and trainer.step == 20
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert {"epoch", "seconds", "lr"} <= set(train[0])
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["step"] for r in records if "eval/loss" in r] == [10, 20]
    with Image.open(run_dir / "metrics.png") as plot:
        assert plot.format == "PNG"
    with Image.open(run_dir / "samples" / "step-000010.png") as grid:
        assert grid.size[0] > 16 * 4
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "latest",
        "step-000015",
        "step-000020",
    ]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-000020"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["global_batch"] == 32 and run["config"]["grad_accum"] == 2
    model = tiny_trainer.TinyAutoencoder.from_pretrained(run_dir / "model")
    for key, value in model.state_dict().items():
        assert torch.equal(value, trainer.ema["net"].state_dict()[key])  # exports the EMA


def test_hooks_see_every_step_evaluation_checkpoint_and_sample(reference):
    _, trainer, _, recorder = reference
    assert [s for s, _ in recorder.steps] == list(range(1, 21))
    step, metrics = recorder.steps[0]
    assert isinstance(metrics["loss"], float)
    assert [s for s, _ in recorder.evaluations] == [10, 20]
    assert set(recorder.evaluations[0][1]) == {"eval/loss"}
    assert [(s, complete) for s, _, complete in recorder.checkpoints] == [
        (5, True),
        (10, True),
        (15, True),
        (20, True),
    ]
    assert [s for s, _ in recorder.samples] == [10, 20]
    samples = recorder.samples[0][1]
    assert isinstance(samples, GenerationResult) and len(samples.images) == 16


def test_killed_and_resumed_run_is_bitwise_identical(reference, tmp_path):
    ref_dir = reference[0]
    _interrupted_then_resumed(tmp_path, SMALL, stop_at=12)  # last checkpoint: step 10
    _assert_same_weights(
        ref_dir / "checkpoints" / "step-000020", tmp_path / "checkpoints" / "step-000020"
    )
    assert _without_time(tmp_path / "metrics.jsonl") == _without_time(ref_dir / "metrics.jsonl")


def test_resume_ignores_what_a_kill_during_a_checkpoint_write_leaves(reference, tmp_path):
    with pytest.raises(Stop):
        _train(tmp_path, SMALL, [StopAt(12)])
    root = tmp_path / "checkpoints"
    (root / ".step-000015.tmp-999999-0badf00d").mkdir()
    (root / ".step-000015.tmp-999999-0badf00d" / "model.safetensors").write_bytes(b"half")
    (root / "latest").write_text("step-000015\n")
    _train(tmp_path, SMALL, resume=True)
    _assert_same_weights(reference[0] / "checkpoints" / "step-000020", root / "step-000020")
    assert not list(root.glob(".step-*"))


def test_an_existing_run_needs_resume_and_the_same_trainer(reference, tmp_path):
    with pytest.raises(AigcError, match="already holds a training run .*pass --resume"):
        _train(reference[0], SMALL)
    with pytest.raises(CheckpointError, match="is a checkpoint of trainer 'tiny', not 'gan'"):
        _train(reference[0], {"steps": 25}, resume=True, trainer_class=TinyGAN, name="gan")


# -- a GAN: two optimizers, alternating updates -------------------------------------------


class TinyGAN(Trainer):
    """Generator and discriminator MLPs on points around four centres."""

    @dataclass
    class Config(TrainConfig):
        steps: int = option(16, "steps", min=1)
        batch_size: int = option(16, "batch", min=1)
        lr_d: float = option(1e-3, "discriminator learning rate", min=0)
        noise: int = option(4, "noise size", min=1)
        eval_every: int = option(8, "evaluate every", min=0)
        sample_every: int = option(0, "samples every", min=0)
        checkpoint_every: int = option(8, "checkpoint every", min=1)
        log_every: int = option(4, "log every", min=1)
        clip_grad_norm: float = option(1.0, "clip", min=0)

    def datasets(self, data):
        generator = torch.Generator().manual_seed(0)
        centres = torch.tensor([[2.0, 0], [-2, 0], [0, 2], [0, -2]])
        points = centres[torch.randint(4, (256,), generator=generator)]
        points = points + 0.1 * torch.randn(256, 2, generator=generator)
        dataset = torch.utils.data.TensorDataset(points)
        return Splits(dataset, torch.utils.data.TensorDataset(points[:40]), {"name": "points"})

    def build(self):
        n = self.config.noise
        self.g = torch.nn.Sequential(
            torch.nn.Linear(n, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
        )
        self.d = torch.nn.Sequential(
            torch.nn.Linear(2, 32), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(0.2),
            torch.nn.Linear(32, 1),
        )  # fmt: skip
        return {"g": self.g, "d": self.d}

    def configure_optimizers(self):
        return {
            "d": self.adamw(self.d.parameters(), lr=self.config.lr_d),
            "g": self.adamw(self.g.parameters()),
        }

    def _noise(self, n):
        return torch.randn(n, self.config.noise, device=self.device)

    def discriminator_loss(self, micro):
        (real,) = micro
        fake = self.g(self._noise(len(real))).detach()
        real_score, fake_score = self.d(real), self.d(fake)
        loss = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
        return {"loss": loss, "real_score": real_score.mean()}

    def generator_loss(self, micro):
        (real,) = micro
        return F.softplus(-self.d(self.g(self._noise(len(real))))).mean()

    def training_step(self, batch, ctx):
        d = ctx.optimize(self.discriminator_loss, "d")
        g = ctx.optimize(self.generator_loss, "g")
        return {"d_loss": d["loss"], "g_loss": g["loss"], "real_score": d["real_score"]}

    def evaluation_step(self, batch):
        (real,) = batch
        return {"real_score": self.d(real).mean()}


def test_gan_alternates_two_optimizers_with_their_own_rates(tmp_path):
    trainer, result = _train(tmp_path, {"grad_accum": 2}, trainer_class=TinyGAN, name="gan")
    logged = result.metrics
    assert {"d_loss", "g_loss", "real_score", "grad_norm/d", "grad_norm/g"} <= set(logged)
    assert logged["lr/d"] == pytest.approx(1e-3) and logged["lr/g"] == pytest.approx(1e-3 * 1)
    assert "eval/real_score" in result.eval_metrics
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert set(state["optimizers"]) == {"d", "g"}


def test_gan_resume_is_bitwise_identical(tmp_path):
    config = {"grad_accum": 2, "lr_schedule": "linear", "ema_decay": 0.5}
    _train(tmp_path / "a", config, trainer_class=TinyGAN, name="gan")
    _interrupted_then_resumed(tmp_path / "b", config, stop_at=11, trainer_class=TinyGAN, name="gan")
    last = Path("checkpoints") / "step-000016"
    _assert_same_weights(tmp_path / "a" / last, tmp_path / "b" / last)


def test_optimize_needs_a_name_with_several_optimizers(tmp_path):
    class Unnamed(TinyGAN):
        def training_step(self, batch, ctx):
            return ctx.optimize(self.generator_loss)

    with pytest.raises(PluginError, match="needs the optimizer's name: Unnamed has d, g"):
        _train(tmp_path, {}, trainer_class=Unnamed, name="gan")

    class NotScalar(TinyGAN):
        def training_step(self, batch, ctx):
            return ctx.optimize(lambda micro: self.g(self._noise(4)), "g")

    with pytest.raises(PluginError, match=r"loss of optimizer 'g' must be a scalar.*\(4, 2\)"):
        _train(tmp_path / "2", {}, trainer_class=NotScalar, name="gan")


# -- accumulation and precision -----------------------------------------------------------------


def test_accumulation_equals_one_big_batch(tmp_path):
    common = dict(steps=4, width=8, image_size=16, dropout=0.0, eval_every=0, sample_every=0)
    big, _ = _train(tmp_path / "big", {**common, "batch_size": 16, "grad_accum": 1})
    small, _ = _train(tmp_path / "small", {**common, "batch_size": 4, "grad_accum": 4})
    expected = small.net.state_dict()
    for key, value in big.net.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


class RecordingPrecision(tiny_trainer.TinyTrainer):
    seen: list = []

    def reconstruction_loss(self, batch):
        images, _ = batch
        RecordingPrecision.seen.append(self.net.encoder[0](images).dtype)
        return super().reconstruction_loss(batch)


def test_bf16_autocast_on_the_cpu(tmp_path):
    config = dict(steps=3, width=8, image_size=16, precision="bf16", sample_every=0, eval_every=0)
    trainer, result = _train(tmp_path, config, trainer_class=RecordingPrecision)
    assert set(RecordingPrecision.seen) == {torch.bfloat16}
    assert torch.isfinite(torch.tensor(result.metrics["loss"]))
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())


def test_fp16_on_the_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device.*use bf16 on the CPU"):
        _train(tmp_path, {"precision": "fp16", "device": "cpu"})


# -- data errors ----------------------------------------------------------------------


def test_a_file_failing_in_a_data_worker_is_one_clear_error(tmp_path):
    for i in range(12):
        Image.new("L", (16, 16), i * 20).save(tmp_path / f"{i}.png")

    class Vanishing(tiny_trainer.TinyTrainer):
        def datasets(self, data):
            splits = super().datasets(data)
            (tmp_path / "3.png").unlink()  # gone after the scan: the worker meets it
            return splits

    config = dict(data=str(tmp_path), steps=8, batch_size=4, image_size=16, num_workers=1)
    with pytest.raises(DataError) as info:
        _train(tmp_path / "run", config, trainer_class=Vanishing)
    message = str(info.value)
    assert message.startswith("cannot read image ") and "3.png" in message
    assert "\n" not in message and "Traceback" not in message


def test_missing_data_path_is_named(tmp_path):
    with pytest.raises(DataError, match="'/nonexistent/images': no such file"):
        _train(tmp_path, {"data": "/nonexistent/images"})


def test_trainer_errors_name_the_plugin(tmp_path):
    class NoModels(tiny_trainer.TinyTrainer):
        def build(self):
            return []

    with pytest.raises(PluginError, match="NoModels.build must return a non-empty dict"):
        _train(tmp_path, {"steps": 1}, trainer_class=NoModels)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from ()

    class Streaming(tiny_trainer.TinyTrainer):
        def datasets(self, data):
            return Splits(Stream())

    with pytest.raises(PluginError, match="training set must be map-style"):
        _train(tmp_path, {"steps": 1}, trainer_class=Streaming)


def test_trainer_registered_at_run_time_through_cli_main(tmp_path):
    sdk = SDK(plugins=[TinyPlugin()], autoload=False)
    trainer = make_trainer(sdk, "tiny", tiny_trainer.TinyTrainer.Config(steps=1))
    assert isinstance(trainer, tiny_trainer.TinyTrainer) and trainer.name == "tiny"
    argv = ["--steps", "2", "--width", "4", "--image-size", "8", "--out", str(tmp_path), "--quiet"]
    assert cli_main(sdk, "tiny", argv) == 0
    assert (tmp_path / "checkpoints" / "step-000002" / "state.json").is_file()


class TerminateAt:
    """Sends this process SIGTERM, as a cluster scheduler preempting the job would."""

    def __init__(self, step):
        self.step = step

    @hookimpl
    def aigc_train_step_end(self, step):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoints_at_the_step_boundary_and_resume_continues(reference, tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    trainer, result = _train(tmp_path, SMALL, [TerminateAt(7)])
    assert result.stopped and result.step == 7 and result.export is None
    assert result.checkpoint.name == "step-000007"
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back
    _train(tmp_path, SMALL, resume=True)
    _assert_same_weights(
        reference[0] / "checkpoints" / "step-000020", tmp_path / "checkpoints" / "step-000020"
    )


def test_a_host_trains_through_the_sdk_without_the_cli(tmp_path):
    sdk = SDK(plugins=[TinyPlugin()], autoload=False)
    trainer = sdk.trainer("tiny", steps=3, width=4, image_size=8, sample_every=0)
    result = trainer.fit(tmp_path, sdk=sdk)
    assert result.step == 3 and result.export == tmp_path / "model"
    with pytest.raises(ConfigError, match="unknown config key 'stpes'"):
        sdk.trainer("tiny", stpes=3)
