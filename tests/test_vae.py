"""The built-in VAE plugin: likelihood, ELBO, generation requests, image inputs, CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from aigc_sdk import SDK, RequestError
from aigc_sdk.testing import assert_loaded, check_generator


@pytest.fixture(scope="module")
def sdk():
    sdk = SDK(plugins=["aigc_vae"], autoload=False)  # see tests/test_gan.py
    assert_loaded(sdk)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def vae(sdk):
    return sdk.generator("vae")


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> tuple[Path, Path]:
    """Two held-out digits as PNG files, one of them drawn dark-on-light."""
    from aigc_sdk.data import image_dataset

    held_out = image_dataset("digits").eval
    folder = tmp_path_factory.mktemp("digits")
    a, b = folder / "a.png", folder / "b_inverted.png"
    pixels = [((held_out[i][0][0] + 1) * 127.5).round().byte().numpy() for i in (0, 1)]
    Image.fromarray(pixels[0], "L").save(a)
    Image.fromarray(255 - pixels[1], "L").save(b)
    return a, b


# -- likelihood and ELBO -------------------------------------------------------------


def test_discretized_logistic_masses_sum_to_one():
    from aigc_vae.model import LEVELS, discretized_logistic_log_prob

    levels = torch.linspace(-1, 1, LEVELS)[:, None]  # every 8-bit value, for 5 distributions
    mean = torch.tensor([-1.2, -0.3, 0.0, 0.7, 1.0])[None].expand(LEVELS, 5)
    log_scale = torch.tensor([-6.0, -3.0, -1.0, 0.5, -4.5])[None].expand(LEVELS, 5)
    log_p = discretized_logistic_log_prob(levels.expand(LEVELS, 5), mean, log_scale)
    total = log_p.double().exp().sum(0)
    torch.testing.assert_close(total, torch.ones(5, dtype=torch.float64), atol=1e-5, rtol=0)


def test_discretized_logistic_matches_the_cdf_difference():
    from aigc_vae.model import BIN, discretized_logistic_log_prob

    x, mean, log_scale = torch.tensor([0.2]), torch.tensor([0.1]), torch.tensor([-2.0])
    cdf = lambda v: torch.sigmoid((v - mean) / log_scale.exp())
    expected = torch.log(cdf(x + BIN) - cdf(x - BIN))
    torch.testing.assert_close(discretized_logistic_log_prob(x, mean, log_scale), expected)


def test_quantize_maps_to_256_levels():
    from aigc_vae.model import quantize

    q = quantize(torch.linspace(-1.2, 1.2, 10_001))
    assert q.min() == -1 and q.max() == 1
    assert len(torch.unique(q)) == 256
    codes = (q + 1) * 127.5
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)


def test_gaussian_kl_known_values():
    from aigc_vae.model import gaussian_kl

    assert gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0
    # KL(N(1, e^2) || N(0, 1)) per dimension = (1 + e^2 - 1 - 2) / 2
    value = gaussian_kl(torch.ones(1, 3), torch.full((1, 3), 2.0)).item()
    assert value == pytest.approx(3 * (1 + math.exp(2) - 1 - 2) / 2)


def test_mixture_prior_log_prob_and_samples():
    from aigc_vae.model import MixturePrior

    prior = MixturePrior(components=3, latent=2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
        prior.logvars.copy_(torch.log(torch.tensor([[0.25, 1.0], [1.0, 0.25], [0.5, 0.5]])))
        prior.logits.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    z = torch.tensor([[0.5, -1.0], [-3.0, 0.2]])
    expected = torch.zeros(2)
    for k, weight in enumerate([0.2, 0.3, 0.5]):
        normal = torch.distributions.Normal(prior.means[k], prior.logvars[k].mul(0.5).exp())
        expected += weight * normal.log_prob(z).sum(1).exp()
    torch.testing.assert_close(prior.log_prob(z), expected.log())
    draws = prior.sample(30_000, torch.Generator().manual_seed(0))
    shares = torch.stack([(draws[:, 0] < -2).float(), (draws[:, 0] > 2).float()]).mean(1)
    torch.testing.assert_close(shares, torch.tensor([0.2, 0.3]), atol=0.015, rtol=0)


def test_one_sample_kl_is_unbiased():
    # A one-component mixture at (0, 1) is N(0, I): the estimate must average to the exact KL.
    from aigc_vae.model import VAE, VAEConfig, gaussian_kl

    model = VAE(VAEConfig(latent=4, width=4, size=8, prior=1))
    with torch.no_grad():
        model.prior.means.zero_()
        model.prior.logvars.zero_()
    mean, logvar = torch.tensor([[0.5, -1.0, 2.0, 0.0]]), torch.tensor([[0.0, -1.0, -2.0, 0.5]])
    noise = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0))
    estimate = model.kl(mean.expand_as(noise), logvar.expand_as(noise), noise).mean()
    torch.testing.assert_close(estimate, gaussian_kl(mean, logvar)[0], atol=0.02, rtol=0)


def test_elbo_terms_add_up_and_train():
    from aigc_vae.model import VAE, VAEConfig, elbo_terms

    torch.manual_seed(0)
    model = VAE(VAEConfig(latent=4, width=4, size=8))
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    terms = elbo_terms(model, x, beta=0.5)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    torch.testing.assert_close(terms["neg_elbo"], terms["recon"] + terms["kl"])
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decoder_is_conv_transpose_batchnorm_relu_blocks():
    from aigc_vae.model import VAE, VAEConfig

    from aigc_sdk.nn import UpBlock

    decoder = VAE(VAEConfig()).decoder
    assert all(isinstance(b, UpBlock) for b in decoder.blocks)
    assert decoder.to_pixels.out_channels == 2  # means and log-scales


# -- the generator ------------------------------------------------------------------------


def test_generator_contract(sdk, tmp_path):
    check_generator(sdk, "vae", tmp_path)


def test_prior_samples(sdk):
    result = sdk.generate("vae", seed=3, n=16)
    assert len(result.images) == 16 and result.images[0].size == (32, 32)
    assert result.tensors["images"].shape == (16, 1, 32, 32)
    assert result.tensors["latents"].shape == (16, sdk.generator("vae").config.latent)
    # Temperature scales the spread around the prior's centre (its components' means).
    z = {t: sdk.generate("vae", seed=3, n=16, temperature=t).tensors["latents"] for t in (0, 0.5)}
    torch.testing.assert_close(z[0.5] - z[0], (result.tensors["latents"] - z[0]) * 0.5)


def test_shipped_weights_are_small(vae):
    from aigc_vae.generator import DEFAULT_WEIGHTS

    size = (DEFAULT_WEIGHTS / "model.safetensors").stat().st_size
    assert size < 4 * 2**20, f"shipped weights are {size} bytes"
    assert vae.config.size == 32 and not vae.model.training


def test_reconstruct_an_image(sdk, vae, digit_files):
    a, _ = digit_files
    result = sdk.generate("vae", seed=1, n=3, reconstruct=str(a))
    assert len(result.images) == 3
    mean_decoding = vae.decode(vae.encode(result.tensors["input"])[0])
    torch.testing.assert_close(result.tensors["images"][:1], mean_decoding)
    assert result.tensors["neg_elbo"].shape == (1,) and result.tensors["neg_elbo"].item() > 0


def test_light_background_images_are_inverted(vae, digit_files):
    a, b_inverted = digit_files
    for path in (a, b_inverted):
        image = vae.load(str(path), "reconstruct")
        assert image.shape == (1, 1, 32, 32)
        border = torch.cat([image[0, 0, 0], image[0, 0, -1], image[0, 0, :, 0], image[0, 0, :, -1]])
        assert border.mean() < -0.5, f"{path.name}: background should come out dark"


def test_interpolate_between_two_images(sdk, vae, digit_files):
    a, b = digit_files
    result = sdk.generate("vae", interpolate=(str(a), str(b)), frames=5)
    assert len(result.images) == 5
    z = result.tensors["latents"]
    means, _ = vae.encode(result.tensors["input"])
    torch.testing.assert_close(z[[0, -1]], means)
    torch.testing.assert_close(z[2], (means[0] + means[1]) / 2)
    same = sdk.generate("vae", interpolate=f"{a}|{b}", frames=5)  # the CLI's form
    assert torch.equal(same.tensors["images"], result.tensors["images"])


def test_missing_or_unreadable_inputs_name_the_file(sdk, digit_files, tmp_path):
    a, _ = digit_files
    missing = tmp_path / "nope.png"
    with pytest.raises(RequestError, match=f"reconstruct: image file {missing} does not exist"):
        sdk.generate("vae", reconstruct=str(missing))
    with pytest.raises(RequestError, match=f"interpolate: image file {missing} does not exist"):
        sdk.generate("vae", interpolate=(str(a), str(missing)))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png")
    with pytest.raises(RequestError, match=f"reconstruct: cannot read image file {garbage}"):
        sdk.generate("vae", reconstruct=str(garbage))
    with pytest.raises(RequestError, match="is a directory"):
        sdk.generate("vae", reconstruct=str(tmp_path))


def test_request_checks(sdk, digit_files):
    a, b = digit_files
    with pytest.raises(RequestError, match="exactly two image paths"):
        sdk.generate("vae", interpolate=(str(a),))
    with pytest.raises(RequestError, match="cannot be combined"):
        sdk.generate("vae", interpolate=(str(a), str(b)), reconstruct=str(a))
    with pytest.raises(RequestError, match="leave n at 1"):
        sdk.generate("vae", interpolate=(str(a), str(b)), n=4)
    with pytest.raises(RequestError, match="frames must be"):
        sdk.generate("vae", frames=1)
    with pytest.raises(RequestError, match="temperature must be"):
        sdk.generate("vae", temperature=-1)


def _pixel_codes(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> their 8-bit codes [n, pixels] (what the likelihood scores)."""
    return torch.round((images.clamp(-1, 1) + 1) * 127.5).long().flatten(1)


def test_negative_elbo_is_reproducible_and_plausible(vae):
    from aigc_sdk.data import image_dataset

    splits = image_dataset("digits")
    held_out = splits.eval.images
    first, second = vae.negative_elbo(held_out, seed=1), vae.negative_elbo(held_out, seed=1)
    assert torch.equal(first, second) and first.shape == (len(held_out),)
    assert torch.isfinite(first).all() and (first > 0).all()  # -log of a probability mass

    # Baselines, computed here from the data, independent of the plugin: the likelihood
    # is a distribution over the 256 levels of each 8-bit pixel, so a model that learned
    # nothing (uniform) pays 1024 ln 256 = 5678 nats per 32x32 image, and the best model
    # that ignores how pixels depend on each other (a 256-level histogram per pixel of
    # the training digits, add-one smoothed) pays ~3916 on the held-out digits.
    pixels = held_out[0].numel()
    uniform = pixels * math.log(256)
    train, test = _pixel_codes(splits.train.images), _pixel_codes(held_out)
    counts = torch.ones(pixels, 256, dtype=torch.float64)
    counts.scatter_add_(1, train.T, torch.ones(train.T.shape, dtype=torch.float64))
    log_p = (counts / counts.sum(1, keepdim=True)).log()
    histogram = float(-log_p.gather(1, test.T).sum(0).mean())
    assert 0.5 * uniform < histogram < 0.8 * uniform, histogram  # the oracle is sane

    # The shipped model scores ~2787 nats/image: it must beat the histogram by far,
    # not merely be finite (a decoder that output the mean digit would not).
    mean = float(first.mean())
    assert mean < 0.85 * histogram, f"-ELBO {mean:.0f} nats/image vs histogram {histogram:.0f}"
    assert 2000 < mean < 3200, f"-ELBO {mean:.0f} nats/image, README says ~2787"


def test_save_pretrained_round_trip(sdk, vae, tmp_path):
    vae.save_pretrained(tmp_path / "copy")
    copy = sdk.generate("vae", options={"weights": str(tmp_path / "copy")}, seed=8, n=4)
    assert torch.equal(copy.tensors["images"], sdk.generate("vae", seed=8, n=4).tensors["images"])


# -- the command line -------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1", "AIGC_PLUGINS": "aigc_vae"}
    return subprocess.run(
        [sys.executable, "-m", "aigc_sdk.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.cli
def test_cli_reconstruct_interpolate_and_errors(digit_files, tmp_path):
    a, b = digit_files
    done = _cli(
        "generate", "vae", "--reconstruct", str(a), "-n", "4", "--out", "r.png", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    done = _cli(
        "generate", "vae", "--interpolate", f"{a}|{b}", "--frames", "6", "--out", "walk/",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "walk").glob("*.png"))) == 6
    done = _cli("generate", "vae", "--reconstruct", "missing.png", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "aigc: error: reconstruct: image file missing.png does not exist"
    )


# -- training ---------------------------------------------------------------------------------


@pytest.mark.train
def test_trainer_evaluates_and_exports_a_loadable_vae(sdk, tmp_path):
    from aigc_vae.generator import VAEGenerator, VAERequest

    from aigc_sdk.training import fit

    trainer = sdk.trainer(
        "vae", steps=3, batch_size=8, width=4, latent=4, eval_every=3, eval_batches=2,
        checkpoint_every=3, kl_warmup=2,
    )  # fmt: skip
    assert [trainer.beta_at(s) for s in range(3)] == [0.5, 1.0, 1.0]
    result = fit(trainer, tmp_path / "run", sdk=sdk, quiet=True)
    assert {"eval/neg_elbo", "eval/bits_per_dim", "eval/kl"} <= set(result.eval_metrics)
    assert (tmp_path / "run" / "samples" / "step-000003.png").is_file()
    generator = VAEGenerator(weights=result.export)
    assert generator.config.latent == 4
    images = generator.generate(VAERequest(seed=0, n=2)).tensors["images"]
    assert images.shape == (2, 1, 32, 32) and torch.isfinite(images).all()


# -- fused inference --------------------------------------------------------------------------


def test_fused_decoder_folds_batchnorm_exactly():
    from aigc_vae.model import VAE, VAEConfig, fuse_decoder

    from aigc_sdk.nn import FusedUpsample

    torch.manual_seed(0)
    decoder = VAE(VAEConfig()).decoder
    gen = torch.Generator().manual_seed(1)
    for block in decoder.blocks:  # statistics far from the initial (0, 1)
        block.bn.running_mean.copy_(torch.randn(block.bn.num_features, generator=gen) * 0.3)
        block.bn.running_var.copy_(torch.rand(block.bn.num_features, generator=gen) + 0.5)
    decoder.eval()
    fused = fuse_decoder(decoder)
    assert all(isinstance(layer, FusedUpsample) for layer in fused)
    assert [layer.activation for layer in fused] == ["relu", "relu", "relu", "none"]
    z = torch.randn(16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused(z[:, :, None, None]), decoder(z), atol=1e-5, rtol=1e-4)


def test_fused_and_pytorch_decoders_give_the_same_images(sdk, vae):
    assert vae.fused and vae.fused_decoder is not None
    fused = sdk.generate("vae", seed=11, n=32).tensors["images"]
    plain = sdk.generate("vae", options={"fused": False}, seed=11, n=32).tensors["images"]
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)
