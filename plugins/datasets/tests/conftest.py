"""Fixtures: tiny data sets in the real on-disk formats, written independently of the readers under test."""

from __future__ import annotations

import numpy as np
import pytest
from datasets_formats import cifar_record, idx_bytes, write_bytes


@pytest.fixture
def mnist_dir(tmp_path):
    """``make(gz=False, n_train=6, n_test=4) -> (dir, {split: (images, labels)})`` with random 28×28 digits."""

    def make(gz: bool = False, n_train: int = 6, n_test: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        root = tmp_path / ("mnist-gz" if gz else "mnist")
        root.mkdir()
        suffix = ".gz" if gz else ""
        arrays = {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            write_bytes(root / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images))
            write_bytes(root / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
            arrays[split] = (images, labels)
        return root, arrays

    return make


@pytest.fixture
def cifar_dir(tmp_path):
    """``make(per_batch=2, meta=None) -> (dir, {split: (images [N,3,32,32], labels)})``, batches in file order."""

    def make(per_batch: int = 2, meta: list[str] | None = None, seed: int = 0):
        rng = np.random.default_rng(seed)
        root = tmp_path / "cifar-10-batches-bin"
        root.mkdir()
        arrays = {"train": ([], []), "test": ([], [])}
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for name in names:
            split = "test" if name.startswith("test") else "train"
            records = []
            for _ in range(per_batch):
                image = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
                label = int(rng.integers(0, 10))
                records.append(cifar_record(label, image[0], image[1], image[2]))
                arrays[split][0].append(image)
                arrays[split][1].append(label)
            (root / name).write_bytes(b"".join(records))
        if meta is not None:
            (root / "batches.meta.txt").write_text("\n".join(meta) + "\n\n")
        return root, {k: (np.stack(v[0]), np.array(v[1])) for k, v in arrays.items()}

    return make
