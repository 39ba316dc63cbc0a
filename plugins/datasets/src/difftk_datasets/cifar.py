"""CIFAR-10 (Krizhevsky 2009), read from its *binary* version (``cifar-10-binary.tar.gz``).

Each ``.bin`` file is a run of 3,073-byte records: one label byte (0–9), then the 32×32 image
as 1,024 red, 1,024 green and 1,024 blue bytes, each plane row-major — exactly [3, 32, 32].
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.options import option

from difftk_datasets.common import DatasetError, check_split, data_dir

RECORD = 1 + 3 * 32 * 32
FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
#: The class names of ``batches.meta.txt``, used when that file is absent.
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SUBDIR = "cifar-10-batches-bin"  # what the archive unpacks to


@attrs.frozen
class CIFAR10:
    """CIFAR-10, 3×32×32 uint8 in 10 classes, from the binary-version directory at path."""

    NAME: ClassVar[str] = "cifar10"
    path: str = option(help=f"directory with data_batch_1..5.bin and test_batch.bin (or its parent holding {SUBDIR}/)")
    flip: bool = option(False, help="mirror training images left to right at random, as Ho et al. 2020 (§4) trained "
                        "CIFAR-10 (seeded per example and step: a resumed run flips alike)")

    def load(self, split: str = "train") -> ArrayDataset:
        """Split ``train`` (data_batch_1..5.bin, 50,000 images) or ``test`` (test_batch.bin, 10,000)."""
        check_split(self.NAME, split)
        root = self._root()
        records = [self._read(root / name) for name in FILES[split]]
        table = np.concatenate(records)
        labels = table[:, 0]
        if labels.max() > 9:
            raise DatasetError(f"{self.NAME}: a record in {root} has label {int(labels.max())}; CIFAR-10 labels are 0..9")
        return ArrayDataset(
            data=torch.from_numpy(np.ascontiguousarray(table[:, 1:]).reshape(-1, 3, 32, 32)),
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=10,
            name=self.NAME,
            class_names=self._class_names(root),
            flip=self.flip,
        )

    def _root(self) -> Path:
        root = data_dir(self.NAME, self.path, "the CIFAR-10 binary batches")
        if not (root / FILES["train"][0]).is_file() and (root / SUBDIR / FILES["train"][0]).is_file():
            root = root / SUBDIR
        return root

    def _read(self, file: Path) -> np.ndarray:
        if not file.is_file():
            pickled = file.with_suffix("")
            hint = (
                f"; {pickled.name} without .bin is the python version, which is not read: use cifar-10-binary.tar.gz"
                if pickled.is_file() else " (expected the CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin)"
            )
            raise DatasetError(f"{self.NAME}: {file.parent} has no {file.name}{hint}")
        try:
            raw = np.fromfile(file, dtype=np.uint8)
        except OSError as err:
            raise DatasetError(f"{self.NAME}: cannot read {file}: {err.strerror or err}") from None
        if raw.size == 0:
            raise DatasetError(f"{self.NAME}: {file} is empty: re-download the CIFAR-10 binary version")
        if raw.size % RECORD:
            raise DatasetError(
                f"{self.NAME}: {file.name} has {raw.size} bytes, not a multiple of {RECORD} "
                "(is this the CIFAR-10 *binary* version?)"
            )
        return raw.reshape(-1, RECORD)

    def _class_names(self, root: Path) -> tuple[str, ...]:
        meta = root / "batches.meta.txt"
        if not meta.is_file():
            return CLASS_NAMES
        names = tuple(line.strip() for line in meta.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
        if len(names) != 10:
            raise DatasetError(f"{self.NAME}: {meta} lists {len(names)} class names, not 10: fix or delete it")
        return names
