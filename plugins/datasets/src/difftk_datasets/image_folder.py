"""A directory of PNG/JPEG images as a dataset: one class per sub-folder, as torchvision's ImageFolder."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.images import open_image
from difftk.data.indexed import IndexedImages, file_table
from difftk.options import option
from PIL import Image, ImageOps

from difftk_datasets.common import DatasetError, check_split, data_dir

EXTENSIONS = (".png", ".jpg", ".jpeg")
#: how an image becomes image_size×image_size: the central square resized, the whole image
#: squashed, or the whole image resized into the square with black bars (letterbox)
RESIZE = ("crop", "stretch", "pad")
_PARTS = 1_000_000  # holdout is applied in millionths, so the split is exact integer arithmetic


@attrs.frozen
class ImageFolder:
    """PNG/JPEG images under path: one class per sub-folder (sorted names -> 0, 1, ...), or unlabelled in the root.

    Loading lists the files; the pixels are decoded when a batch is read (in loader workers with
    ``difftk train --workers N``), so memory does not grow with the number of images.
    """

    NAME: ClassVar[str] = "image-folder"
    path: str = option(help="directory of PNG/JPEG images: one sub-folder per class, or all directly inside it (unlabelled)")
    image_size: int | None = option(
        None, help="make every image image_size×image_size (as resize says); unset: keep the size (all images must "
        "then share it)", ge=1, optional=True,
    )
    resize: str = option("crop", help="with image_size: crop = the central square, resized; stretch = the whole image "
                         "squashed to a square; pad = the whole image resized into the square, black bars", choices=RESIZE)
    flip: bool = option(False, help="mirror training images left to right at random (a fair coin per example and "
                        "step, seeded: a resumed run flips alike)")
    channels: int = option(3, help="3 = RGB, 1 = greyscale (an alpha channel is dropped)", choices=(1, 3))
    holdout: float = option(
        0.0, help="fraction of each class's images (spread evenly in file-name order) kept out of train for the test split",
        ge=0.0, lt=1.0,
    )

    def load(self, split: str = "train") -> IndexedImages:
        """Split ``train`` (all images but the held-out ones) or ``test`` (the held-out ones; needs ``holdout`` > 0)."""
        check_split(self.NAME, split)
        root = data_dir(self.NAME, self.path, "PNG or JPEG images")
        if split == "test" and self.holdout == 0:
            raise DatasetError(
                f"{self.NAME}: holdout=0 leaves no test split: give --data-option holdout=0.1 (it keeps every 10th "
                "image of each class for testing)"
            )
        groups = _scan(root)
        files: list[Path] = []
        labels: list[int] = []
        for label, (_, members) in enumerate(groups):
            chosen = [f for i, f in enumerate(members) if held_out(i, self.holdout) == (split == "test")]
            files += chosen
            labels += [label] * len(chosen)
        if not files:
            raise DatasetError(
                f"{self.NAME}: holdout={self.holdout:g} holds out no image of {root} (a class needs at least "
                f"{int(np.ceil(1 / self.holdout))} images to give one): raise it with --data-option holdout=… or add images"
            )
        labelled = groups[0][0] is not None
        return IndexedImages(
            root=root,
            files=file_table([f.relative_to(root).as_posix() for f in files]),
            decode=self.read,
            shape=self._shape(files[0]),
            labels=torch.tensor(labels, dtype=torch.int64) if labelled else None,
            num_classes=len(groups) if labelled else 0,
            name=self.NAME,
            class_names=tuple(name for name, _ in groups) if labelled else (),
            flip=self.flip,
            resize_hint=f"give --data-option image_size=N to make every image N×N (as --data-option resize={self.resize} says)",
        )

    def _shape(self, first: Path) -> tuple[int, int, int]:
        """(C, H, W) of every image: image_size×image_size, or the first file's size (from its header)."""
        if self.image_size is not None:
            return (self.channels, self.image_size, self.image_size)
        with open_image(first, self._unreadable(first)) as im:
            w, h = im.size
        return (self.channels, h, w)

    def _unreadable(self, file: Path):
        return lambda why: DatasetError(f"{self.NAME}: cannot read {file} as an image ({why}): replace or remove it")

    def read(self, file: Path) -> np.ndarray:
        """One image as uint8 [C, H, W] (what :class:`IndexedImages` calls, in loader workers too)."""
        with open_image(file, self._unreadable(file)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey (PNG): scale to 8 bits
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
            im = im.convert("L" if self.channels == 1 else "RGB")
            if self.image_size is not None:
                im = _square(im, self.image_size, self.resize)
            array = np.asarray(im, dtype=np.uint8)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()


def _scan(root: Path) -> list[tuple[str | None, list[Path]]]:
    """[(class name, its image files)] for each sub-folder holding images, or [(None, root files)]."""
    top = _images(p for p in root.iterdir() if p.is_file())
    classes = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name):
        members = _images(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
        if members:
            classes.append((folder.name, members))
    if top and classes:
        raise DatasetError(
            f"image-folder: {root} has images both directly inside it ({top[0].name}, ...) and in class sub-folders "
            f"({classes[0][0]}/, ...): move the loose images into a sub-folder, or the class images up"
        )
    if not top and not classes:
        raise DatasetError(f"image-folder: {root} contains no PNG or JPEG images")
    return classes or [(None, top)]


def _images(paths) -> list[Path]:
    return sorted((p for p in paths if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")), key=lambda p: p.as_posix())


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def held_out(i: int, fraction: float) -> bool:
    """Whether the i-th file of a class is held out: floor(n·fraction) of every n, spread evenly."""
    k = round(fraction * _PARTS)
    return (i + 1) * k // _PARTS > i * k // _PARTS


def _square(im: Image.Image, size: int, resize: str = "crop") -> Image.Image:
    """``im`` as size×size (bicubic, antialiased): its largest central square (crop), all of it
    squashed (stretch), or all of it scaled to fit, centred on black (pad)."""
    w, h = im.size
    if resize == "stretch":
        return im if (w, h) == (size, size) else im.resize((size, size), Image.Resampling.BICUBIC)
    if resize == "pad":
        scale = size / max(w, h)
        fitted = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new(im.mode, (size, size))
        canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
        return canvas
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    return im if s == size else im.resize((size, size), Image.Resampling.BICUBIC)
