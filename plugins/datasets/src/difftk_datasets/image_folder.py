"""A directory of PNG/JPEG images as a dataset: one class per sub-folder, as torchvision's ImageFolder."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.options import option
from PIL import Image, ImageOps, UnidentifiedImageError

from difftk_datasets.common import DatasetError, check_split, data_dir

EXTENSIONS = (".png", ".jpg", ".jpeg")
_PARTS = 1_000_000  # holdout is applied in millionths, so the split is exact integer arithmetic


@attrs.frozen
class ImageFolder:
    """PNG/JPEG images under path: one class per sub-folder (sorted names -> 0, 1, ...), or unlabelled in the root."""

    NAME: ClassVar[str] = "image-folder"
    path: str = option(help="directory of PNG/JPEG images: one sub-folder per class, or all directly inside it (unlabelled)")
    image_size: int | None = option(
        None, help="center-crop each image to a square and resize it to image_size×image_size; unset: keep the size "
        "(all images must then share it)", ge=1, optional=True,
    )
    channels: int = option(3, help="3 = RGB, 1 = greyscale (an alpha channel is dropped)", choices=(1, 3))
    holdout: float = option(
        0.0, help="fraction of each class's images (spread evenly in file-name order) kept out of train for the test split",
        ge=0.0, lt=1.0,
    )

    def load(self, split: str = "train") -> ArrayDataset:
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
        data = np.stack(self._read_all(files))
        labelled = groups[0][0] is not None
        return ArrayDataset(
            data=torch.from_numpy(data),
            labels=torch.tensor(labels, dtype=torch.int64) if labelled else None,
            num_classes=len(groups) if labelled else 0,
            name=self.NAME,
            class_names=tuple(name for name, _ in groups) if labelled else (),
        )

    def _read_all(self, files: list[Path]) -> list[np.ndarray]:
        arrays = []
        for file in files:
            array = self._read(file)
            if arrays and array.shape != arrays[0].shape:
                h0, w0 = arrays[0].shape[1:]
                h, w = array.shape[1:]
                raise DatasetError(
                    f"{self.NAME}: {file} is {w}×{h} but {files[0]} is {w0}×{h0}: give --data-option image_size=N "
                    "to crop and resize every image to one square size"
                )
            arrays.append(array)
        return arrays

    def _read(self, file: Path) -> np.ndarray:
        """One image as uint8 [C, H, W]."""
        try:
            with Image.open(file) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey (PNG): scale to 8 bits
                    im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
                im = im.convert("L" if self.channels == 1 else "RGB")
                if self.image_size is not None:
                    im = _square(im, self.image_size)
                array = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DatasetError(f"{self.NAME}: cannot read {file} as an image ({err}): replace or remove it") from None
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


def _square(im: Image.Image, size: int) -> Image.Image:
    """The largest central square of ``im``, resized (bicubic, antialiased) to size×size."""
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    return im if s == size else im.resize((size, size), Image.Resampling.BICUBIC)
