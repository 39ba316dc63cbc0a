"""Emoji: 32×32 colour renders of the Noto Color Emoji font, classed by their Unicode emoji group.

The file ships with the plugin (``data/emoji.npz``, built by ``scripts/make_emoji.py``; the
images are Apache-2.0, ``data/NOTICE.txt``), so no font is needed to use it.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.options import option

from difftk_datasets.common import check_split

DATA = "data/emoji.npz"
#: The classes, each one or more Unicode emoji groups (scripts/make_emoji.py, CLASSES):
#: smileys = Smileys & Emotion; people = People & Body (no skin-tone variants);
#: things = Animals & Nature + Food & Drink + Travel & Places + Activities + Objects; symbols; flags.
CLASS_NAMES = ("smileys", "people", "things", "symbols", "flags")


@attrs.frozen
class Emoji:
    """Noto Color Emoji renders, 3×32×32 uint8 on white, in 5 classes from the Unicode emoji groups (shipped)."""

    NAME: ClassVar[str] = "emoji"
    flip: bool = option(False, help="mirror training images left to right at random (seeded per example and step: "
                        "a resumed run flips alike); a mirrored emoji is still one of its class")

    def load(self, split: str = "train") -> ArrayDataset:
        """Split ``train`` or ``test``: an emoji and its skin-tone variants are always in the same one."""
        check_split(self.NAME, split)
        with resources.files("difftk_datasets").joinpath(DATA).open("rb") as f, np.load(f, allow_pickle=False) as z:
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
        return ArrayDataset(
            data=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),  # HWC -> CHW
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=len(CLASS_NAMES),
            name=self.NAME,
            class_names=CLASS_NAMES,
            flip=self.flip,
        )

    @staticmethod
    def names(split: str = "train") -> tuple[str, ...]:
        """The CLDR short name of each image of ``split`` ("grinning face"), in row order."""
        check_split(Emoji.NAME, split)
        with resources.files("difftk_datasets").joinpath(DATA).open("rb") as f, np.load(f, allow_pickle=False) as z:
            return tuple(str(name) for name in z[f"{split}_names"])
