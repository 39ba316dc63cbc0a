"""Emoji: the shipped renders are what scripts/make_emoji.py documents — sizes, classes, a
disjoint stratified split, white margins, colour — and the script rebuilds them byte for byte."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import difftk
import numpy as np
import pytest
import torch
from difftk_datasets.emoji import CLASS_NAMES, Emoji

# SHA-256 of images.tobytes() + labels.tobytes() (uint8, HWC) of each split, as printed by
# scripts/make_emoji.py from fonts-noto-color-emoji 2.042 and unicode-data 15.0.0 (docs/datasets.md).
CONTENT_SHA256 = {
    "train": "4c0ec6b0344987cf15220b0266b2e3e66e2a424a206756182d1bd2c38312d4d7",
    "test": "65952b63f32ac75cf9690b2b76da92cb2835ca81c3f5e2e5057eba24b6bbfbe2",
}
PER_CLASS = {"train": [141, 308, 722, 190, 222], "test": [25, 54, 127, 33, 39]}
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_emoji.py"
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")


@pytest.fixture(scope="module")
def emoji():
    component = difftk.create("dataset", "emoji")
    return {split: component.load(split) for split in ("train", "test")}


def hwc(ds) -> np.ndarray:
    return ds.data.permute(0, 2, 3, 1).numpy()


def test_sizes_shape_and_classes(emoji):
    for split, ds in emoji.items():
        assert ds.shape == (3, 32, 32) and ds.data.dtype == torch.uint8 and ds.kind == "image"
        assert ds.num_classes == 5 and ds.class_names == CLASS_NAMES == ("smileys", "people", "things", "symbols", "flags")
        assert torch.bincount(ds.labels, minlength=5).tolist() == PER_CLASS[split]


def test_the_split_is_disjoint_and_stratified(emoji):
    train, test = ({bytes(image) for image in hwc(emoji[s])} for s in ("train", "test"))
    assert len(train) == len(emoji["train"]) and len(test) == len(emoji["test"])  # no duplicates within
    assert not train & test
    assert not set(Emoji.names("train")) & set(Emoji.names("test"))
    share = np.array(PER_CLASS["test"]) / (np.array(PER_CLASS["train"]) + np.array(PER_CLASS["test"]))
    assert np.all(np.abs(share - 0.15) < 0.01)  # 15 % of each class, rounded


def test_names_say_what_each_image_is_and_its_class(emoji):
    names = {split: Emoji.names(split) for split in emoji}
    assert all(len(names[s]) == len(emoji[s]) for s in emoji)
    expected = {"grinning face": "smileys", "woman technologist": "people", "rocket": "things",
                "red apple": "things", "recycling symbol": "symbols", "flag: Japan": "flags"}
    for name, cls in expected.items():
        split = next(s for s in names if name in names[s])
        assert emoji[split].class_names[int(emoji[split].labels[names[split].index(name)])] == cls
    assert not any(chr(0x1F3FB) in n or "skin tone" in n for s in names for n in names[s])  # variants dropped


def test_pixels_are_centred_colour_renders_on_white(emoji):
    x = np.concatenate([hwc(ds) for ds in emoji.values()]).astype(np.int64)
    margin = np.concatenate([x[:, :2].reshape(-1, 3), x[:, -2:].reshape(-1, 3),
                             x[:, :, :2].reshape(-1, 3), x[:, :, -2:].reshape(-1, 3)])
    assert (margin == 255).all()  # a 2-pixel white frame around every emoji
    assert x.min() == 0 and 0.3 < (x == 255).all(-1).mean() < 0.6  # white ground, ink in the middle
    saturation = x.max(-1) - x.min(-1)
    assert (saturation > 64).mean() > 0.2  # colour, not grey
    ink = (x < 250).any(-1)
    assert (ink.reshape(len(x), -1).mean(1) > 0.12).all()  # the slimmest, a white exclamation mark, inks 14.6 %
    rows, cols = ink.any(2), ink.any(1)
    first = lambda a: a.argmax(1)  # noqa: E731
    last = lambda a: a.shape[1] - 1 - a[:, ::-1].argmax(1)  # noqa: E731
    long_side = np.maximum(last(rows) - first(rows), last(cols) - first(cols)) + 1
    assert long_side.max() == 28 and long_side.min() >= 22  # scaled to fill the 28×28 inside the frame
    for a in (rows, cols):  # centred (faint antialiased edges, below the ink threshold, shift it a little)
        assert np.abs((first(a) + last(a)) / 2 - 15.5).max() <= 4.5


def test_content_matches_its_documented_source(emoji):
    for split, ds in emoji.items():
        digest = hashlib.sha256(hwc(ds).tobytes() + ds.labels.numpy().astype(np.uint8).tobytes()).hexdigest()
        assert digest == CONTENT_SHA256[split]


def test_the_script_rebuilds_the_shipped_file(tmp_path):
    if not (FONT.is_file() and EMOJI_TEST.is_file()):  # .ci/run installs them, so CI fails rather than skips
        why = "needs Debian's fonts-noto-color-emoji and unicode-data, the build-time sources"
        (pytest.fail if os.environ.get("DIFFTK_CI") == "1" else pytest.skip)(why)
    spec = importlib.util.spec_from_file_location("make_emoji", SCRIPT)
    make_emoji = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_emoji)
    make_emoji.main(["-o", str(tmp_path / "emoji.npz")])
    shipped = Path(make_emoji.OUTPUT).read_bytes()
    assert (tmp_path / "emoji.npz").read_bytes() == shipped


def test_flip_is_an_option_of_the_data_that_reaches_the_trainer():
    plain = difftk.create("dataset", "emoji").load("train")
    flipped = difftk.create("dataset", "emoji", flip=True).load("train")
    assert not plain.flip and flipped.flip
    assert torch.equal(plain.data, flipped.data)  # stored as rendered; the trainer mirrors per example and step
