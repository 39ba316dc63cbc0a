"""image-folder: classes from sub-folders, exact pixels for PNG, centre crop + resize, holdout split."""

from __future__ import annotations

import difftk
import numpy as np
import pytest
import torch
from datasets_formats import save_image
from difftk.errors import DifftkError, OptionError
from difftk_datasets import DatasetError
from difftk_datasets.image_folder import held_out
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image


def load(path, split="train", **options):
    return difftk.create("dataset", "image-folder", path=str(path), **options).load(split)


def pixels(ds) -> torch.Tensor:
    """Every image of ``ds`` decoded, uint8 [N, C, H, W]."""
    return ds.read(torch.arange(len(ds)))[0]


def error(path, split="train", **options) -> str:
    with pytest.raises(DatasetError) as info:
        load(path, split, **options)
    assert "\n" not in str(info.value) and str(info.value).startswith("image-folder: ")
    return str(info.value)


def test_classes_are_sorted_sub_folders_and_png_pixels_are_exact(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    save_image(tmp_path / "zebra" / "a.png", rgb)
    save_image(tmp_path / "ant" / "b.png", grey)
    save_image(tmp_path / "ant" / "a.png", rgb)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    save_image(tmp_path / "ant" / ".hidden.png", grey)
    (tmp_path / "empty").mkdir()  # no images: not a class

    ds = load(tmp_path)
    assert ds.class_names == ("ant", "zebra") and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1]  # ant/a.png, ant/b.png, zebra/a.png
    assert ds.shape == (3, 8, 8) and pixels(ds).dtype == torch.uint8
    assert torch.equal(pixels(ds)[0], torch.from_numpy(rgb).permute(2, 0, 1))
    assert all(torch.equal(pixels(ds)[1, c], torch.from_numpy(grey)) for c in range(3))  # grey -> R = G = B


def test_one_channel_uses_the_luma_of_rgb(tmp_path):
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    save_image(tmp_path / "c.png", colours)
    ds = load(tmp_path, channels=1)
    # ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B (Pillow's "L" conversion)
    assert ds.shape == (1, 1, 4) and pixels(ds)[0, 0, 0].tolist() == [76, 150, 29, 255]
    assert ds.labels is None and ds.num_classes == 0  # files in the root are unlabelled


@pytest.mark.parametrize("size", [(40, 20), (20, 40)], ids=["wide", "tall"])
def test_centre_crop_then_resize(tmp_path, size):
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[...] = (255, 0, 0)  # red margins...
    s = min(w, h)
    top, left = (h - s) // 2, (w - s) // 2
    image[top:top + s, left:left + s] = (0, 200, 0)  # ...around a green central square
    save_image(tmp_path / "x.png", image)
    ds = load(tmp_path, image_size=10)
    assert ds.shape == (3, 10, 10)
    assert (pixels(ds)[0].permute(1, 2, 0) == torch.tensor([0, 200, 0], dtype=torch.uint8)).all()


def test_resize_gives_one_size_and_matches_pillow(tmp_path):
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    save_image(tmp_path / "a" / "big.png", big)
    save_image(tmp_path / "b" / "small.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    ds = load(tmp_path, image_size=32, channels=1)
    assert ds.shape == (1, 32, 32) and len(ds) == 2
    expected = np.asarray(Image.fromarray(big).resize((32, 32), Image.Resampling.BICUBIC))
    assert np.array_equal(pixels(ds)[0, 0].numpy(), expected)


def test_jpeg_is_read(tmp_path):
    save_image(tmp_path / "photo.JPG", np.full((16, 16, 3), (30, 120, 210), np.uint8))
    ds = load(tmp_path)
    assert (pixels(ds).to(torch.int16) - torch.tensor([30, 120, 210]).view(1, 3, 1, 1)).abs().max() <= 3


def test_sixteen_bit_grey_png_is_scaled_to_eight_bits(tmp_path):
    Image.fromarray(np.array([[0, 257, 32896, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert pixels(load(tmp_path, channels=1))[0, 0, 0].tolist() == [0, 1, 128, 255]


def test_images_of_different_sizes_need_image_size(tmp_path):
    """Files are indexed, not decoded, on load: an image of another size is one line when it is read."""
    save_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    save_image(tmp_path / "b.png", np.zeros((8, 9), np.uint8))
    ds = load(tmp_path)
    assert ds.shape == (3, 8, 8) and pixels(ds.subset(torch.tensor([0]))).shape == (1, 3, 8, 8)
    with pytest.raises(DifftkError) as info:
        ds.read(torch.tensor([0, 1]))
    line = str(info.value)
    assert "\n" not in line and "b.png is 9×8 with 3 channel(s), but the images are 8×8" in line
    assert "give --data-option image_size=N" in line
    assert pixels(load(tmp_path, image_size=8)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("resize", ["crop", "stretch", "pad"])
def test_resize_policies(tmp_path, resize):
    """A 4×2 image with a left half of 200 and a right half of 50, made 2×2: crop keeps the middle
    (one column of each), stretch squashes both halves in, pad keeps them and adds black bars."""
    image = np.zeros((2, 4), np.uint8)
    image[:, :2], image[:, 2:] = 200, 50
    save_image(tmp_path / "wide.png", image)
    x = pixels(load(tmp_path, image_size=2, resize=resize, channels=1))[0, 0].to(torch.int16)
    if resize == "pad":  # the image becomes 2 wide and 1 high, at the top of the odd row left over: black
        assert x[1].tolist() == [0, 0] and (x[0] - torch.tensor([200, 50])).abs().max() <= 30
    else:
        assert (x[:, 0] - 200).abs().max() <= 30 and (x[:, 1] - 50).abs().max() <= 30


def test_the_index_holds_paths_not_pixels(tmp_path):
    """Loading lists files: the index is a byte array of relative paths, the same for any image size."""
    for i in range(6):
        save_image(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", np.full((40, 40, 3), i, np.uint8))
    ds = load(tmp_path)
    assert ds.files.dtype.kind == "S" and ds.files.tolist()[0] == b"a/1.png"
    assert ds.files.nbytes <= 8 * len(ds)  # some bytes per image, none for its 40×40×3 pixels
    assert pixels(ds)[:, 0, 0, 0].tolist() == [1, 3, 5, 0, 2, 4]


def test_fingerprint_tells_folders_of_the_same_shape_apart(tmp_path):
    """Same files, sizes and classes: the same fingerprint wherever the folder is; another class name,
    file or file size: another fingerprint."""
    def folder(root, classes=("cat", "dog"), extra=0):
        for c in classes:
            for i in range(2):
                save_image(root / c / f"{i}.png", np.full((4, 4, 3), 9, np.uint8))
        if extra:
            save_image(root / classes[0] / "9.png", np.full((4, 4, 3), 9, np.uint8))
        return load(root).fingerprint()

    first = folder(tmp_path / "a")
    assert folder(tmp_path / "b") == first
    assert folder(tmp_path / "c", ("car", "plane")) != first
    assert folder(tmp_path / "d", extra=1) != first
    save_image(tmp_path / "b" / "cat" / "0.png", np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8))
    assert load(tmp_path / "b").fingerprint() != first  # same names, another size in bytes


def test_no_images(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("")
    assert error(tmp_path) == f"image-folder: {tmp_path} contains no PNG or JPEG images"


def test_root_images_and_class_folders_do_not_mix(tmp_path):
    save_image(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "cls" / "a.png", np.zeros((4, 4), np.uint8))
    assert "both directly inside it (loose.png, ...) and in class sub-folders (cls/, ...)" in error(tmp_path)


def test_unreadable_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert "cannot read" in error(tmp_path) and "broken.png" in error(tmp_path)


def test_missing_path(tmp_path):
    assert "does not exist" in error(tmp_path / "nope")


def test_holdout_split(tmp_path):
    for cls in ("a", "b"):
        for i in range(10):
            save_image(tmp_path / cls / f"{i:02d}.png", np.full((2, 2), 10 * i + (cls == "b"), np.uint8))
    train, test = load(tmp_path, holdout=0.2), load(tmp_path, "test", holdout=0.2)
    assert (len(train), len(test)) == (16, 4)
    assert test.labels.tolist() == [0, 0, 1, 1]
    assert pixels(test)[:, 0, 0, 0].tolist() == [40, 90, 41, 91]  # files 04 and 09 of each class: spread evenly
    everything = sorted(pixels(train)[:, 0, 0, 0].tolist() + pixels(test)[:, 0, 0, 0].tolist())
    assert everything == sorted(pixels(load(tmp_path))[:, 0, 0, 0].tolist())  # a partition of all images


def test_no_test_split_without_holdout(tmp_path):
    save_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    assert "holdout=0 leaves no test split" in error(tmp_path, "test")
    assert "holds out no image" in error(tmp_path, "test", holdout=0.5)


@given(n=st.integers(0, 300), fraction=st.floats(0.0, 0.999).map(lambda f: round(f, 6)))
def test_held_out_count_is_floor_of_n_times_fraction(n, fraction):
    assert sum(held_out(i, fraction) for i in range(n)) == int(n * round(fraction * 10**6)) // 10**6


def test_option_validation():
    with pytest.raises(OptionError, match="choose from 1, 3"):
        difftk.create("dataset", "image-folder", path=".", channels=2)
    with pytest.raises(OptionError, match="out of range"):
        difftk.create("dataset", "image-folder", path=".", holdout=1.0)
