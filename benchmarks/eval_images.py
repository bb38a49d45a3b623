"""Measured quality of the image generators, with a fixed digits classifier.

    python benchmarks/eval_images.py classifier --train   # train it again, report accuracy
    python benchmarks/eval_images.py classifier           # accuracy of the committed one
    python benchmarks/eval_images.py gan [--samples 2000] [--weights DIR] [--grid out.png]
    python benchmarks/eval_images.py vae [--importance 64] [--weights DIR] [--grid out.png]

The classifier is a small CNN the project trains on the built-in digits'
training split (``aigc_sdk.data``: 1500 images; 297 held out); its weights
live in ``benchmarks/assets/digits_classifier``. Its 64-d penultimate
activations are the feature space of the Fréchet distance (FID's formula,
this classifier instead of Inception, which knows nothing of 32x32 digits).

GAN: Fréchet distance between ``--samples`` generated images and the held-out
digits, beside the same distance between real sets (training split vs
held-out: the same set sizes' bias; two disjoint held-out halves); class
coverage (share of samples the classifier puts in each class) and the share
of samples classified with probability >= 0.9. VAE: held-out negative ELBO in
nats per image and bits per dimension (images quantized to 8 bits), plus an
importance-weighted bound on -log p(x) with ``--importance K``.

Every function is importable (the tests run them on a tiny budget).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER_DIR = Path(__file__).resolve().parent / "assets" / "digits_classifier"
CLASSIFIER_PLUGIN = "digits_classifier"
CONFIDENT = 0.9  # a sample is "confident" when its top class has at least this probability
COVERAGE_RANGE = (0.05, 0.15)  # the target share of every class among GAN samples
FEATURES = 64


# -- data ----------------------------------------------------------------------------


def digits_splits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train images, labels), (held-out images, labels): the splits every trainer uses."""
    from aigc_sdk.data import image_dataset

    splits = image_dataset("digits", size=32, channels=1)

    def stacked(dataset):
        return dataset.images.clone(), dataset.labels.clone()

    return stacked(splits.train), stacked(splits.eval)


# -- the classifier ------------------------------------------------------------------


class DigitsClassifier(nn.Module):
    """32x32 digit -> 10 logits; ``features`` are the 64-d penultimate activations."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.conv = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 64))  # -> 64 x 4 x 4
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(1024, FEATURES), nn.ReLU()
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small affine warps (shift, rotation, scale): what a digit may do in a sample."""
    n = len(images)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(12)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.12
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Background is -1: pad with it by warping (x + 1) with zero padding.
    return F.grid_sample(images + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_classifier(
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    out: Path | None = CLASSIFIER_DIR,
) -> tuple[DigitsClassifier, float]:
    """Trains the classifier on the digits' training split; returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    (train_x, train_y), (test_x, test_y) = digits_splits()
    model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(train_x), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(augment(train_x[index], gen)), train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    accuracy = classifier_accuracy(model, test_x, test_y)
    if out is not None:
        from aigc_sdk import checkpoint

        config = {
            "features": FEATURES,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "heldout_accuracy": accuracy,
            "heldout_images": len(test_x),
        }
        checkpoint.save_pretrained(
            out, plugin=CLASSIFIER_PLUGIN, config=config, tensors=model.state_dict()
        )
    return model, accuracy


def load_classifier(directory: Path = CLASSIFIER_DIR) -> DigitsClassifier:
    from aigc_sdk import checkpoint

    _, tensors = checkpoint.load_pretrained(directory, plugin=CLASSIFIER_PLUGIN)
    model = DigitsClassifier()
    checkpoint.load_into(model, tensors, directory)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def classify(
    model: DigitsClassifier, images: torch.Tensor, chunk: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [n, 64], probabilities [n, 10]) of images in [-1, 1]."""
    feats, probs = [], []
    for part in images.float().split(chunk):
        f = model.features(part)
        feats.append(f.double())
        probs.append(model.head(f).softmax(-1))
    return torch.cat(feats), torch.cat(probs)


def classifier_accuracy(
    model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor
) -> float:
    _, probs = classify(model, images)
    return float((probs.argmax(-1) == labels).float().mean())


# -- statistics ------------------------------------------------------------------------


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between two feature sets [n, d].

    tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of the
    symmetric S_a^1/2 S_b S_a^1/2, computed in float64.
    """
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(cov_a)
    root_a = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(fd)


def class_shares(probs: torch.Tensor) -> list[float]:
    counts = torch.bincount(probs.argmax(-1), minlength=10).double()
    return (counts / counts.sum()).tolist()


def confident_share(probs: torch.Tensor) -> float:
    return float((probs.max(-1).values >= CONFIDENT).double().mean())


# -- generators --------------------------------------------------------------------------


def make_sdk(plugin: str):
    """An SDK with only the built-in plugin ``plugin`` (from a checkout or an install)."""
    from aigc_sdk import SDK

    return SDK(plugins=[plugin], autoload=False)


@dataclass
class GANReport:
    samples: int
    seed: int
    fd_samples_vs_heldout: float
    fd_train_vs_heldout: float
    fd_heldout_halves: float
    class_shares: list[float]
    min_share: float
    max_share: float
    confident_share: float
    label_agreement: float | None
    real_confident_share: float
    classifier_heldout_accuracy: float
    seconds: float

    def targets_met(self) -> dict[str, bool]:
        low, high = COVERAGE_RANGE
        return {
            "all 10 digits present": min(self.class_shares) > 0,
            f"each digit {low:.0%}-{high:.0%} of samples": low <= self.min_share
            and self.max_share <= high,
            f">=90% of samples with p >= {CONFIDENT}": self.confident_share >= 0.9,
        }


def real_references(model: DigitsClassifier, seed: int = 0) -> dict[str, float]:
    """Fréchet distances between real sets: what a perfect generator would score."""
    (train_x, _), (test_x, _) = digits_splits()
    train_f, _ = classify(model, train_x)
    test_f, test_p = classify(model, test_x)
    order = torch.randperm(len(test_f), generator=torch.Generator().manual_seed(seed))
    half = len(order) // 2
    return {
        "fd_train_vs_heldout": frechet_distance(train_f, test_f),
        "fd_heldout_halves": frechet_distance(test_f[order[:half]], test_f[order[half:]]),
        "real_confident_share": confident_share(test_p),
        "heldout_features": test_f,
    }


def evaluate_gan(
    samples: int = 2000,
    seed: int = 0,
    weights: str | None = None,
    grid: str | None = None,
    sdk=None,
) -> GANReport:
    """Generates ``samples`` images with the ``gan`` generator and measures them."""
    start = time.perf_counter()
    classifier = load_classifier()
    (_, _), (test_x, test_y) = digits_splits()
    sdk = sdk or make_sdk("aigc_gan")
    options = {"weights": weights} if weights else {}
    result = sdk.generate("gan", options=options, seed=seed, n=samples)
    images = result.tensors["images"]
    feats, probs = classify(classifier, images)
    labels = result.tensors.get("labels")
    agreement = float((probs.argmax(-1) == labels).double().mean()) if labels is not None else None
    reference = real_references(classifier, seed)
    shares = class_shares(probs)
    if grid:
        sdk.generate("gan", options=options, seed=seed, n=64).save(grid)
    return GANReport(
        samples=samples,
        seed=seed,
        fd_samples_vs_heldout=frechet_distance(feats, reference["heldout_features"]),
        fd_train_vs_heldout=reference["fd_train_vs_heldout"],
        fd_heldout_halves=reference["fd_heldout_halves"],
        class_shares=shares,
        min_share=min(shares),
        max_share=max(shares),
        confident_share=confident_share(probs),
        label_agreement=agreement,
        real_confident_share=reference["real_confident_share"],
        classifier_heldout_accuracy=classifier_accuracy(classifier, test_x, test_y),
        seconds=time.perf_counter() - start,
    )


@dataclass
class VAEReport:
    heldout_images: int
    neg_elbo_nats: float
    bits_per_dim: float
    recon_nats: float
    kl_nats: float
    importance_samples: int
    iw_nll_nats: float | None
    iw_bits_per_dim: float | None
    pixel_histogram_nats: float
    prior_samples: int
    prior_confident_share: float
    prior_class_shares: list[float]
    seconds: float


def pixel_histogram_nats(train: torch.Tensor, test: torch.Tensor) -> float:
    """Reference: -log p of ``test`` in nats/image under independent per-pixel histograms.

    Each pixel gets its own 256-level histogram of the 8-bit training images
    (add-one smoothing): the best model that ignores how pixels depend on each other.
    """
    from aigc_vae.model import LEVELS, quantize

    def codes(x: torch.Tensor) -> torch.Tensor:
        return ((quantize(x) + 1) * (LEVELS - 1) / 2).round().long().flatten(1)  # [n, pixels]

    train_codes, test_codes = codes(train), codes(test)
    pixels = train_codes.shape[1]
    counts = torch.ones(pixels, LEVELS, dtype=torch.float64)
    counts.scatter_add_(1, train_codes.T, torch.ones(pixels, len(train), dtype=torch.float64))
    log_p = (counts / counts.sum(1, keepdim=True)).log()
    return float(-log_p.gather(1, test_codes.T).sum(0).mean())


@torch.no_grad()
def importance_weighted_nll(model, images: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """-log p(x) bound from ``k`` posterior draws per image (IWAE; k = 1 is the ELBO)."""
    from aigc_vae.model import discretized_logistic_log_prob, quantize, split_output

    gen = torch.Generator().manual_seed(seed)
    x = quantize(images)
    mean, logvar = model.encoder(x)
    std = (0.5 * logvar).exp()
    log_w = []
    for _ in range(k):
        eps = torch.randn(mean.shape, generator=gen)
        z = mean + eps * std
        log_px = discretized_logistic_log_prob(x, *split_output(model.decoder(z))).flatten(1).sum(1)
        log_pz = model.log_prior(z)
        log_qz = -0.5 * (eps.square() + math.log(2 * math.pi)).sum(1) - std.log().sum(1)
        log_w.append(log_px + log_pz - log_qz)
    return -(torch.logsumexp(torch.stack(log_w), 0) - math.log(k))


def evaluate_vae(
    importance: int = 0,
    samples: int = 2000,
    seed: int = 0,
    weights: str | None = None,
    grid: str | None = None,
    sdk=None,
) -> VAEReport:
    """Held-out -ELBO (nats/image, bits/dim) of the ``vae`` generator; its samples' classes."""
    from aigc_vae.model import per_image_terms

    start = time.perf_counter()
    (train_x, _), (test_x, _) = digits_splits()
    sdk = sdk or make_sdk("aigc_vae")
    options = {"weights": weights} if weights else {}
    generator = sdk.generator("vae", **options)
    dims = generator.config.dims
    with torch.no_grad():
        recon, kl = per_image_terms(generator.model, test_x, torch.Generator().manual_seed(seed))
    neg_elbo = float((recon + kl).mean())
    iw = (
        float(importance_weighted_nll(generator.model, test_x, importance, seed).mean())
        if importance
        else None
    )
    result = sdk.generate("vae", options=options, seed=seed, n=samples)
    _, probs = classify(load_classifier(), result.tensors["images"])
    if grid:
        sdk.generate("vae", options=options, seed=seed, n=64).save(grid)
    bits = 1 / (dims * math.log(2))
    return VAEReport(
        heldout_images=len(test_x),
        neg_elbo_nats=neg_elbo,
        bits_per_dim=neg_elbo * bits,
        recon_nats=float(recon.mean()),
        kl_nats=float(kl.mean()),
        importance_samples=importance,
        iw_nll_nats=iw,
        iw_bits_per_dim=iw * bits if iw is not None else None,
        pixel_histogram_nats=pixel_histogram_nats(train_x, test_x),
        prior_samples=samples,
        prior_confident_share=confident_share(probs),
        prior_class_shares=class_shares(probs),
        seconds=time.perf_counter() - start,
    )


# -- command line ----------------------------------------------------------------------------


def _print_gan(report: GANReport) -> None:
    print(
        f"GAN, {report.samples} samples (seed {report.seed}), classifier held-out accuracy "
        f"{report.classifier_heldout_accuracy:.1%}"
    )
    print(f"  Frechet distance, samples vs held-out digits: {report.fd_samples_vs_heldout:8.2f}")
    real = "(real vs real)"
    print(
        f"  Frechet distance, train vs held-out digits  : {report.fd_train_vs_heldout:8.2f}  {real}"
    )
    print(
        f"  Frechet distance, held-out half vs half     : {report.fd_heldout_halves:8.2f}  {real}"
    )
    shares = "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(report.class_shares))
    print(f"  class shares: {shares}")
    print(
        f"  classified with p >= {CONFIDENT}: {report.confident_share:.1%} of samples "
        f"({report.real_confident_share:.1%} of held-out real digits)"
    )
    if report.label_agreement is not None:
        print(f"  classifier agrees with the requested label: {report.label_agreement:.1%}")
    for target, met in report.targets_met().items():
        print(f"  [{'x' if met else ' '}] {target}")


def _print_vae(report: VAEReport) -> None:
    print(f"VAE, {report.heldout_images} held-out digits (8-bit)")
    print(
        f"  -ELBO: {report.neg_elbo_nats:.1f} nats/image = {report.bits_per_dim:.4f} bits/dim "
        f"(reconstruction {report.recon_nats:.1f} + KL {report.kl_nats:.1f})"
    )
    if report.iw_nll_nats is not None:
        print(
            f"  -log p(x) <= {report.iw_nll_nats:.1f} nats/image = "
            f"{report.iw_bits_per_dim:.4f} bits/dim "
            f"(importance-weighted, {report.importance_samples} draws)"
        )
    print(
        f"  reference: independent per-pixel histograms "
        f"{report.pixel_histogram_nats:.1f} nats/image"
    )
    print(
        f"  prior samples classified with p >= {CONFIDENT}: {report.prior_confident_share:.1%}; "
        f"class shares " + " ".join(f"{s:.0%}" for s in report.prior_class_shares)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("classifier", help="held-out accuracy of the digits classifier")
    p.add_argument("--train", action="store_true", help="train it again and overwrite the weights")
    p.add_argument("--steps", type=int, default=2000)
    for name in ("gan", "vae"):
        p = sub.add_parser(name, help=f"measure the {name} generator")
        p.add_argument("--weights", help="checkpoint directory (default: the shipped weights)")
        p.add_argument("--samples", type=int, default=2000, help="generated images to classify")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--grid", help="also write a 64-sample grid PNG here")
        p.add_argument("--json", help="write the figures as JSON here")
        if name == "vae":
            p.add_argument("--importance", type=int, default=0, help="IWAE draws (0: off)")
    args = parser.parse_args(argv)
    if args.what == "classifier":
        if args.train:
            start = time.perf_counter()
            _, accuracy = train_classifier(steps=args.steps)
            print(f"trained in {time.perf_counter() - start:.0f} s -> {CLASSIFIER_DIR}")
        else:
            (_, _), (test_x, test_y) = digits_splits()
            accuracy = classifier_accuracy(load_classifier(), test_x, test_y)
        print(f"digits classifier held-out accuracy: {accuracy:.2%} (297 images)")
        return 0
    if args.what == "gan":
        report = evaluate_gan(args.samples, args.seed, args.weights, args.grid)
        _print_gan(report)
    else:
        report = evaluate_vae(args.importance, args.samples, args.seed, args.weights, args.grid)
        _print_vae(report)
    print(f"  ({report.seconds:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    # Run from a checkout: the SDK and the built-in plugins import from the tree.
    for path in (ROOT, ROOT / "plugins"):
        if str(path) not in sys.path:
            sys.path.insert(1, str(path))
    sys.exit(main())
