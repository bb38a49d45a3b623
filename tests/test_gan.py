"""The built-in GAN plugin: model, losses, generation requests, weights, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from aigc_sdk import SDK, CheckpointError, RequestError
from aigc_sdk.testing import assert_loaded, check_generator


@pytest.fixture(scope="module")
def sdk():
    # autoload=False: the core does not yet deduplicate a module that is also an
    # installed entry point (SDK(plugins=["aigc_gan"]) would register it twice).
    sdk = SDK(plugins=["aigc_gan"], autoload=False)
    assert_loaded(sdk)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def gan(sdk):
    return sdk.generator("gan")


# -- the model ---------------------------------------------------------------------


def test_config_checks_its_values():
    from aigc_gan.model import GANConfig

    with pytest.raises(ValueError, match="size must be a power of two"):
        GANConfig(size=24)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        GANConfig(channels=2)
    assert GANConfig(size=64).hidden_widths() == [256, 128, 64, 32]


@pytest.mark.parametrize("classes", [0, 10])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_generator_and_discriminator_shapes(classes, spectral_norm):
    from aigc_gan.model import DiscriminatorNet, GANConfig, GeneratorNet

    config = GANConfig(latent=8, width=4, size=16, channels=3, classes=classes)
    g, d = GeneratorNet(config), DiscriminatorNet(config, spectral_norm=spectral_norm)
    labels = torch.arange(5) % 10 if classes else None
    images = g(torch.randn(5, 8), labels)
    assert images.shape == (5, 3, 16, 16)
    assert images.abs().max() <= 1
    logits = d(images, labels)
    assert logits.shape == (5,)
    logits.sum().backward()  # gradients reach the generator through D
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)


def test_generator_is_conv_transpose_batchnorm_relu_blocks():
    # The fused upsample op folds exactly this pattern; keep the model in that shape.
    from aigc_gan.model import GANConfig, GeneratorNet

    from aigc_sdk.nn import UpBlock

    g = GeneratorNet(GANConfig())
    assert all(isinstance(b, UpBlock) for b in g.blocks)
    assert [b.conv.stride for b in g.blocks] == [(1, 1), (2, 2), (2, 2)]
    assert isinstance(g.to_image, torch.nn.ConvTranspose2d)


def test_losses_known_values():
    from aigc_gan.model import discriminator_loss, generator_loss

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(0.25 + 0.5)
    assert generator_loss(fake, "hinge").item() == pytest.approx(1.0)
    softplus = torch.nn.functional.softplus
    expected = softplus(-real).mean() + softplus(fake).mean()
    assert discriminator_loss(real, fake, "ns").item() == pytest.approx(expected.item())
    assert generator_loss(fake, "ns").item() == pytest.approx(softplus(-fake).mean().item())
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_loss(fake, "wasserstein")


def test_slerp_reaches_both_ends_and_keeps_the_norm():
    from aigc_gan.model import slerp

    a, b = torch.randn(3, 16), torch.randn(3, 16)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (3, 5, 16)
    torch.testing.assert_close(path[:, 0], a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[:, -1], b, atol=1e-5, rtol=1e-5)


# -- the generator -----------------------------------------------------------------------


def test_generator_contract(sdk, tmp_path):
    check_generator(sdk, "gan", tmp_path)


def test_shipped_weights_are_small_and_conditional(gan):
    from aigc_gan.generator import DEFAULT_WEIGHTS

    size = (DEFAULT_WEIGHTS / "model.safetensors").stat().st_size
    assert size < 4 * 2**20, f"shipped weights are {size} bytes"
    assert gan.config.classes == 10 and gan.config.size == 32
    assert not gan.model.training


def test_64_images_make_an_8x8_grid_and_a_directory_of_pngs(sdk, tmp_path):
    result = sdk.generate("gan", seed=3, n=64)
    assert len(result.images) == 64 and result.images[0].size == (32, 32)
    assert result.tensors["images"].shape == (64, 1, 32, 32)
    (grid,) = result.save(tmp_path / "grid.png")
    assert Image.open(grid).size == (8 * 34 + 2, 8 * 34 + 2)
    files = result.save(str(tmp_path / "samples") + "/")
    assert len(files) == 64 and all(Image.open(f).size == (32, 32) for f in files)


def test_seed_determines_the_images(sdk):
    a = sdk.generate("gan", seed=5, n=4).tensors["images"]
    b = sdk.generate("gan", seed=5, n=4).tensors["images"]
    c = sdk.generate("gan", seed=6, n=4).tensors["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # A batch is its images: the first of n=4 equals the first of n=8 from one seed.
    more = sdk.generate("gan", seed=5, n=8).tensors
    torch.testing.assert_close(a, more["images"][:4], atol=1e-5, rtol=1e-5)
    assert torch.equal(sdk.generate("gan", seed=5, n=4).tensors["labels"], more["labels"][:4])


def test_label_picks_the_class(sdk, gan):
    result = sdk.generate("gan", seed=1, n=6, label=7)
    assert result.tensors["labels"].tolist() == [7] * 6
    mixed = sdk.generate("gan", seed=1, n=200).tensors["labels"]
    assert set(mixed.tolist()) == set(range(10))
    with pytest.raises(RequestError, match=r"label must be in \[0, 9\], got 10"):
        sdk.generate("gan", n=1, label=10)
    with pytest.raises(RequestError, match="label must be an integer"):
        sdk.generate("gan", n=1, label="seven")


def test_truncation_pulls_towards_the_mean(sdk):
    latents = [sdk.generate("gan", seed=2, n=8, truncation=t).tensors["latents"] for t in (1, 0.5)]
    torch.testing.assert_close(latents[1], latents[0] * 0.5)
    zero = sdk.generate("gan", seed=2, n=3, truncation=0.0, label=4).tensors["images"]
    assert torch.equal(zero[0], zero[1]) and torch.equal(zero[1], zero[2])
    for bad in (-0.1, 1.5, "x", True):
        with pytest.raises(RequestError, match="truncation must be a number in"):
            sdk.generate("gan", truncation=bad)


def test_interpolation_walks_between_two_samples(sdk):
    result = sdk.generate("gan", seed=4, n=2, interpolate=6, label=3)
    assert len(result.images) == 12
    z = result.tensors["latents"].reshape(2, 6, -1)
    ends = sdk.generate("gan", seed=4, n=2, interpolate=2, label=3).tensors["latents"]
    torch.testing.assert_close(z[:, [0, -1]].reshape(4, -1), ends, atol=1e-5, rtol=1e-5)
    images = result.tensors["images"].reshape(2, 6, -1)
    steps = (images[:, 1:] - images[:, :-1]).norm(dim=-1)
    jump = (images[:, -1] - images[:, 0]).norm(dim=-1)
    assert (steps.max(dim=1).values < jump).all(), "neighbouring frames should be closer than ends"
    for bad in (1, -2, 1000):
        with pytest.raises(RequestError, match="interpolate must be 0"):
            sdk.generate("gan", interpolate=bad)


def test_interpolation_walks_between_labels(sdk):
    # n walks draw 2n latents and 2n labels from the seed's streams: start i is draw i and
    # end i is draw n + i, so a plain batch of 2n from the same seed holds every end.
    walks = sdk.generate("gan", seed=9, n=3, interpolate=5).tensors
    plain = sdk.generate("gan", seed=9, n=6).tensors
    labels = walks["labels"]
    assert labels.shape == (3, 2)
    assert labels[:, 0].tolist() == plain["labels"][:3].tolist()
    assert labels[:, 1].tolist() == plain["labels"][3:].tolist()
    assert (labels[:, 0] != labels[:, 1]).any(), "pick a seed whose walks change label"
    z = walks["latents"].reshape(3, 5, -1)
    torch.testing.assert_close(z[:, 0], plain["latents"][:3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z[:, -1], plain["latents"][3:], atol=1e-5, rtol=1e-5)
    # First and last frames are the plain samples of the start and end (latent, label).
    frames = walks["images"].reshape(3, 5, -1)
    torch.testing.assert_close(frames[:, 0], plain["images"][:3].flatten(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(frames[:, -1], plain["images"][3:].flatten(1), atol=1e-4, rtol=0)
    # The middle frames are neither end: a walk, not two copies of its ends.
    middle = frames[:, 1:-1]
    to_start = (middle - frames[:, :1]).norm(dim=-1)
    to_end = (middle - frames[:, -1:]).norm(dim=-1)
    jump = (frames[:, -1] - frames[:, 0]).norm(dim=-1, keepdim=True)
    assert (to_start > 0.1 * jump).all() and (to_end > 0.1 * jump).all()
    # ... and each frame is further from the start and closer to the end than the last.
    assert (to_start.diff(dim=1) > 0).all() and (to_end.diff(dim=1) < 0).all()


def test_unknown_argument_names_the_accepted_ones(sdk):
    with pytest.raises(RequestError, match="unknown argument temperature.*truncation"):
        sdk.generate("gan", temperature=0.5)


def test_save_pretrained_round_trip(sdk, gan, tmp_path):
    gan.save_pretrained(tmp_path / "copy")
    copy = sdk.generate("gan", options={"weights": str(tmp_path / "copy")}, seed=8, n=4)
    assert torch.equal(copy.tensors["images"], sdk.generate("gan", seed=8, n=4).tensors["images"])


def test_damaged_weights_are_named(gan, tmp_path):
    from aigc_gan.generator import GANGenerator

    target = gan.save_pretrained(tmp_path / "broken")
    weights = Path(target) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        GANGenerator(weights=target)


def test_unconditional_model_rejects_labels(tmp_path):
    from aigc_gan.generator import GANGenerator, GANRequest, save_generator
    from aigc_gan.model import GANConfig, GeneratorNet

    save_generator(GeneratorNet(GANConfig(latent=8, width=4, size=16)), tmp_path / "w")
    generator = GANGenerator(weights=tmp_path / "w")
    result = generator.generate(GANRequest(seed=0, n=3))
    assert result.tensors["images"].shape == (3, 1, 16, 16) and "labels" not in result.tensors
    with pytest.raises(RequestError, match="unconditional"):
        generator.generate(GANRequest(seed=0, n=1, label=2))


# -- the command line --------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1", "AIGC_PLUGINS": "aigc_gan"}
    return subprocess.run(
        [sys.executable, "-m", "aigc_sdk.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.cli
def test_cli_writes_a_grid_and_a_directory(tmp_path):
    done = _cli("generate", "gan", "--seed", "3", "-n", "64", "--out", "grid.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "grid.png").size == (274, 274)
    done = _cli(
        "generate", "gan", "--seed", "3", "-n", "2", "--interpolate", "3", "--truncation", "0.7",
        "--label", "5", "--out", "walk/", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "walk").iterdir()) == [
        f"{i:04d}.png" for i in range(6)
    ]
    done = _cli("generate", "gan", "--truncation", "2", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "aigc: error: truncation must be a number in [0, 1], got 2.0"


# -- training ------------------------------------------------------------------------------


@pytest.mark.train
@pytest.mark.parametrize(
    "options",
    [
        {},  # the shipped recipe's settings: hinge, spectral norm, conditional, EMA
        {"loss": "ns", "spectral_norm": False, "conditional": False, "ema_decay": 0.0},
    ],
    ids=["hinge-sn-conditional", "ns-batchnorm-unconditional"],
)
def test_trainer_exports_a_loadable_generator(sdk, tmp_path, options):
    from aigc_gan.generator import GANGenerator, GANRequest

    from aigc_sdk.training import fit

    trainer = sdk.trainer(
        "gan", steps=2, batch_size=8, width=4, latent=8, checkpoint_every=2, bn_batches=2,
        **options,
    )  # fmt: skip
    result = fit(trainer, tmp_path / "run", sdk=sdk, quiet=True)
    assert result.step == 2 and {"d_loss", "g_loss"} <= set(result.metrics)
    assert (tmp_path / "run" / "samples" / "step-000002.png").is_file()
    generator = GANGenerator(weights=result.export)
    assert generator.config.classes == (0 if options else 10)
    images = generator.generate(GANRequest(seed=0, n=3)).tensors["images"]
    assert images.shape == (3, 1, 32, 32) and torch.isfinite(images).all()


@pytest.mark.train
@pytest.mark.parametrize("folders", [["a", "b", "c"], ["."]], ids=["classes", "flat"])
def test_trainer_reads_an_image_folder(sdk, tmp_path, folders):
    from aigc_gan.generator import GANGenerator

    from aigc_sdk.training import fit

    gen = torch.Generator().manual_seed(0)
    for folder in folders:
        (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            pixels = (torch.rand(20, 20, generator=gen) * 255).byte().numpy()
            Image.fromarray(pixels, "L").save(tmp_path / "data" / folder / f"{i}.png")
    trainer = sdk.trainer(
        "gan", data=str(tmp_path / "data"), steps=1, batch_size=4, width=4, latent=8,
        image_size=16, bn_batches=1,
    )  # fmt: skip
    result = fit(trainer, tmp_path / "run", sdk=sdk, quiet=True)
    # Class sub-folders give labels; a flat folder trains an unconditional model.
    assert GANGenerator(weights=result.export).config.classes == (3 if len(folders) > 1 else 0)


@pytest.mark.train
def test_export_recalibrates_the_ema_batchnorm(sdk, tmp_path):
    from safetensors.torch import load_file

    from aigc_sdk.training import fit

    trainer = sdk.trainer(
        "gan", steps=3, batch_size=8, width=4, latent=8, checkpoint_every=3, bn_batches=4
    )
    result = fit(trainer, tmp_path / "run", sdk=sdk, quiet=True)
    ema, live = trainer.inference_model("generator"), trainer.generator
    assert ema is not live
    exported = load_file(result.export / "model.safetensors")["blocks.0.bn.running_mean"]
    # The exported statistics were measured on the EMA's own outputs, not copied from the
    # live model as the EMA's are.
    assert torch.equal(ema.blocks[0].bn.running_mean, live.blocks[0].bn.running_mean)
    assert not torch.equal(exported, live.blocks[0].bn.running_mean)
    # The run's EMA is left as trained and checkpointed (rank 0 alone exports).
    saved = load_file(result.checkpoint / "model.safetensors")
    for key, value in ema.state_dict().items():
        assert torch.equal(saved[f"ema.generator.{key}"], value), key


# -- fused inference -------------------------------------------------------------------------


def _with_random_batchnorm_statistics(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


def test_fused_synthesis_folds_batchnorm_exactly():
    from aigc_gan.model import GANConfig, GeneratorNet, fuse_generator

    from aigc_sdk.nn import FusedUpsample

    torch.manual_seed(0)
    model = _with_random_batchnorm_statistics(GeneratorNet(GANConfig(classes=10)), seed=1)
    fused = fuse_generator(model)
    assert len(fused) == 4 and all(isinstance(layer, FusedUpsample) for layer in fused)
    assert [layer.activation for layer in fused] == ["relu", "relu", "relu", "tanh"]
    x = model.latent_input(torch.randn(16, 64), torch.arange(16) % 10)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model.synthesis(x), atol=1e-5, rtol=1e-4)


def test_fused_and_pytorch_generators_give_the_same_images(sdk, gan):
    from aigc_sdk.nn import FusedUpsample

    assert gan.fused and isinstance(gan.synthesis[0], FusedUpsample)
    fused = sdk.generate("gan", seed=11, n=32).tensors["images"]
    plain = sdk.generate("gan", options={"fused": False}, seed=11, n=32).tensors["images"]
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)


def test_plugins_are_declared_as_entry_points():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    table = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    assert table["aigc_sdk.plugins"]["gan"] == "aigc_gan"
    assert table["aigc_sdk.plugins"]["vae"] == "aigc_vae"
