"""MNIST handwritten digits (LeCun, Cortes & Burges): the shipped sample or the standard IDX files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.options import option

from difftk_datasets.common import DatasetError, check_split, data_dir
from difftk_datasets.idx import read_idx

#: The standard file names of each split (``t10k`` is the test set).
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: The shipped sample (5,000 digits) is interleaved by class; its first TRAIN_ROWS rows are train.
SAMPLE = "data/mnist_sample.npz"
TRAIN_ROWS = 4500
CLASS_NAMES = tuple(str(d) for d in range(10))


@attrs.frozen
class MNIST:
    """MNIST digits, 1×28×28 uint8: the 5,000-digit sample shipped with the plugin, or the IDX files at path."""

    NAME: ClassVar[str] = "mnist"
    path: str | None = option(
        None, help="directory with the standard MNIST IDX files (plain or .gz); unset: the shipped 5,000-digit sample",
        optional=True,
    )

    def load(self, split: str = "train") -> ArrayDataset:
        """Split ``train`` or ``test``: the IDX files' 60,000 / 10,000, or the sample's 4,500 / 500."""
        check_split(self.NAME, split)
        images, labels = self._sample(split) if self.path is None else self._idx(split)
        return ArrayDataset(
            data=torch.from_numpy(np.ascontiguousarray(images[:, None])),
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=10,
            name=self.NAME,
            class_names=CLASS_NAMES,
        )

    def _sample(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        with resources.files("difftk_datasets").joinpath(SAMPLE).open("rb") as f, np.load(f, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        rows = slice(0, TRAIN_ROWS) if split == "train" else slice(TRAIN_ROWS, None)
        return images[rows], labels[rows]

    def _idx(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        root = data_dir(self.NAME, self.path, "the four standard MNIST IDX files")
        image_file, label_file = (_find(root, base) for base in FILES[split])
        images = read_idx(self.NAME, image_file, ndim=3)
        labels = read_idx(self.NAME, label_file, ndim=1)
        if len(images) != len(labels):
            raise DatasetError(
                f"{self.NAME}: {image_file.name} holds {len(images):,} images but {label_file.name} "
                f"holds {len(labels):,} labels (are they from the same split?)"
            )
        if len(labels) and labels.max() > 9:
            raise DatasetError(f"{self.NAME}: {label_file} holds label {int(labels.max())}; MNIST labels are 0..9")
        if len(images) == 0:
            raise DatasetError(f"{self.NAME}: {image_file} holds no images")
        return images, labels


def _find(root: Path, base: str) -> Path:
    """``root/base`` or ``root/base.gz`` (also the ``train-images.idx3-ubyte`` spelling some mirrors use)."""
    dotted = base.replace("-idx", ".idx")
    for name in (base, base + ".gz", dotted, dotted + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"mnist: {root} has no {base}[.gz] (expected the four standard MNIST IDX files)")
