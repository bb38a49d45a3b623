"""Image datasets: folders of PNG/JPEG files, and scikit-learn's bundled digits.

Every item is ``(image, label)``: a float tensor ``[channels, size, size]`` in
[-1, 1] (the range ``aigc_sdk.media.to_pil`` expects back) and an int label.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .splits import DataError, Splits, split_names

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DIGITS_HELD_OUT = 297  # of 1797: leaves 1500 for training


class TensorImages(torch.utils.data.Dataset):
    """Images already in memory: ``[n, c, h, w]`` in [-1, 1] plus labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def _digits_arrays():
    """scikit-learn's bundled digits (1797 x 64 pixels in 0..16, and labels).

    The CSV ships inside scikit-learn; reading it directly skips the 1.5 s
    import of sklearn.datasets. ``load_digits`` is the fallback if the
    package layout ever changes.
    """
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return table[:, :-1], table[:, -1].astype(np.int64)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the built-in dataset 'digits' needs scikit-learn installed") from None
    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _digits_tensors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels = _digits_arrays()
    pixels = torch.from_numpy(pixels).view(-1, 1, 8, 8) / 16.0
    if size != 8:
        pixels = torch.nn.functional.interpolate(
            pixels, size=(size, size), mode="bilinear", align_corners=False
        ).clamp(0, 1)
    return pixels * 2 - 1, torch.from_numpy(labels)


def digits(size: int = 32, channels: int = 1) -> Splits:
    """scikit-learn's 1797 handwritten 8x8 digits, upsampled to ``size``.

    A fixed permutation holds out 297 images (about 30 per class) for evaluation.
    """
    images, labels = _digits_tensors(size)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 1:
        raise DataError(f"digits has 1 or 3 channels, not {channels}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    held, train = order[:DIGITS_HELD_OUT], order[DIGITS_HELD_OUT:]
    classes = [str(d) for d in range(10)]
    return Splits(
        TensorImages(images[train], labels[train], classes),
        TensorImages(images[held], labels[held], classes),
        {"name": "digits", "kind": "image", "size": size, "channels": channels},
    )


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded on access; labels from class sub-folders, if any."""

    def __init__(
        self, files: list[Path], labels: list[int], classes: list[str], size: int, channels: int
    ) -> None:
        self.files, self.labels, self.classes = files, labels, classes
        self.size, self.channels = size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.files[index], self.size, self.channels), self.labels[index]


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """One file as ``[channels, size, size]`` in [-1, 1], centre-cropped to a square."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    array = np.asarray(img, dtype=np.float32).reshape(size, size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1) / 127.5 - 1


def _check_image(path: Path) -> None:
    """Reads only the header: a broken or non-image file is named before training starts."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (a file or a folder, searched recursively), sorted."""
    if root.is_file():
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


def image_folder(root: Path, size: int = 32, channels: int = 1, holdout: float = 0.05) -> Splits:
    """A folder of images; ``root/<class>/*.png`` gives class labels, else all are 0.

    A stable hash of each file's relative path holds out ``holdout`` of them.
    """
    if channels not in (1, 3):
        raise DataError(f"images have 1 or 3 channels, not {channels}")
    files = image_files(root)
    for path in files:
        _check_image(path)
    base = root if root.is_dir() else root.parent
    relative = [p.relative_to(base).as_posix() for p in files]
    in_folders = all(len(Path(r).parts) >= 2 for r in relative)
    classes = sorted({Path(r).parts[0] for r in relative}) if in_folders else ["images"]
    labels = [classes.index(Path(r).parts[0]) if in_folders else 0 for r in relative]
    train, held = split_names(relative, holdout)

    def subset(indices: list[int]) -> ImageFiles:
        return ImageFiles(
            [files[i] for i in indices], [labels[i] for i in indices], classes, size, channels
        )

    return Splits(
        subset(train),
        subset(held) if held else None,
        {"name": str(root), "kind": "image", "size": size, "channels": channels},
    )
