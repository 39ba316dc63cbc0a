"""CIFAR-10 binary version: records round-trip plane by plane; malformed directories give one line."""

from __future__ import annotations

import difftk
import numpy as np
import pytest
import torch
from datasets_formats import cifar_record
from difftk.errors import OptionError
from difftk_datasets import DatasetError
from difftk_datasets.cifar import CLASS_NAMES


@pytest.mark.parametrize("split, n", [("train", 5 * 3), ("test", 3)])
def test_round_trip(cifar_dir, split, n):
    root, arrays = cifar_dir(per_batch=3)
    ds = difftk.create("dataset", "cifar10", path=str(root)).load(split)
    images, labels = arrays[split]
    assert len(ds) == n and ds.shape == (3, 32, 32) and ds.data.dtype == torch.uint8
    assert torch.equal(ds.data, torch.from_numpy(images))  # channel 0 = red plane, in data_batch_1..5 order
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    assert ds.num_classes == 10 and ds.class_names == CLASS_NAMES


def test_pixel_layout_is_channel_major(tmp_path):
    red, green, blue = (np.full((32, 32), v, np.uint8) for v in (10, 20, 30))
    red[0, 1] = 200  # row 0, column 1 of the red plane
    (tmp_path / "test_batch.bin").write_bytes(cifar_record(7, red, green, blue))
    ds = difftk.create("dataset", "cifar10", path=str(tmp_path)).load("test")
    assert ds.data[0, :, 5, 5].tolist() == [10, 20, 30] and ds.data[0, 0, 0, 1].item() == 200
    assert ds.labels.tolist() == [7]


def test_class_names_from_meta_file(cifar_dir):
    names = [f"class{i}" for i in range(10)]
    root, _ = cifar_dir(per_batch=1, meta=names)
    assert difftk.create("dataset", "cifar10", path=str(root)).load("test").class_names == tuple(names)


def test_meta_file_with_wrong_count(cifar_dir):
    root, _ = cifar_dir(per_batch=1, meta=["cat", "dog"])
    with pytest.raises(DatasetError, match="batches.meta.txt lists 2 class names, not 10"):
        difftk.create("dataset", "cifar10", path=str(root)).load("test")


def test_parent_of_the_unpacked_archive_is_accepted(cifar_dir):
    root, arrays = cifar_dir(per_batch=1)
    ds = difftk.create("dataset", "cifar10", path=str(root.parent)).load("train")
    assert np.array_equal(ds.labels.numpy(), arrays["train"][1])


def error(path, split="train") -> str:
    with pytest.raises(DatasetError) as info:
        difftk.create("dataset", "cifar10", path=str(path)).load(split)
    assert "\n" not in str(info.value) and str(info.value).startswith("cifar10: ")
    return str(info.value)


def test_size_not_a_multiple_of_the_record(cifar_dir):
    root, _ = cifar_dir(per_batch=1)
    (root / "data_batch_1.bin").write_bytes(bytes(1000))
    assert error(root) == "cifar10: data_batch_1.bin has 1000 bytes, not a multiple of 3073 (is this the CIFAR-10 *binary* version?)"
    (root / "test_batch.bin").write_bytes(b"")
    assert "is empty" in error(root, "test")


def test_missing_batch(cifar_dir):
    root, _ = cifar_dir(per_batch=1)
    (root / "data_batch_4.bin").unlink()
    assert error(root) == f"cifar10: {root} has no data_batch_4.bin (expected the CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin)"
    assert len(difftk.create("dataset", "cifar10", path=str(root)).load("test")) == 1


def test_python_version_is_recognised(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x02}q\x00")
    assert "data_batch_1 without .bin is the python version" in error(tmp_path)


def test_label_out_of_range(tmp_path):
    plane = np.zeros((32, 32), np.uint8)
    (tmp_path / "test_batch.bin").write_bytes(cifar_record(3, plane, plane, plane) + cifar_record(11, plane, plane, plane))
    assert "has label 11; CIFAR-10 labels are 0..9" in error(tmp_path, "test")


def test_missing_directory(tmp_path):
    assert "does not exist" in error(tmp_path / "missing")


def test_path_is_required():
    with pytest.raises(OptionError, match="needs option"):
        difftk.create("dataset", "cifar10")
