"""What a dataset's examples are to the rest of difftk: the :class:`Examples` protocol (what a
``dataset`` component's ``load(split)`` returns), and the steps every batch takes from its
stored form to the network's input.

A dataset stores examples compactly — uint8 [C, H, W] images, float32 [D] points — and
:meth:`Examples.read` returns them so. :func:`to_model` scales a batch to the network's input
(images x/127.5 − 1 ∈ [−1, 1], points unchanged), and :func:`flip_images` is the one
augmentation (random horizontal flips, Ho et al. 2020 §4, on CIFAR-10). ``batch`` is ``read``
then ``to_model``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from difftk.errors import OptionError

#: the stream of the flip decisions, apart from the trainer's other seeds (seed + 1, seed + 2)
FLIP_STREAM = 0xF11B


@runtime_checkable
class Examples(Protocol):
    """The surface of loaded data: what a ``dataset`` component's ``load(split)`` returns.

    Two implementations ship: :class:`~difftk.data.arrays.ArrayDataset` (examples in memory) and
    :class:`~difftk.data.indexed.IndexedImages` (image files, decoded when read). ``flip`` is
    the data's augmentation option, applied by the trainer (never to held-out data);
    ``fingerprint()`` identifies the content, so a resumed run can tell its data from other data
    of the same shape.
    """

    name: str
    labels: torch.Tensor | None
    num_classes: int
    class_names: tuple[str, ...]
    flip: bool

    @property
    def kind(self) -> str: ...  # "image" or "points"

    @property
    def shape(self) -> tuple[int, ...]: ...  # of one example, e.g. (3, 32, 32) or (2,)

    def __len__(self) -> int: ...

    def read(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def subset(self, index: torch.Tensor) -> Examples: ...

    def fingerprint(self) -> str: ...


def to_model(x: torch.Tensor, kind: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """A stored batch as the network's float32 input on ``device``: images x/127.5 − 1 ∈ [−1, 1]."""
    x = x.to(device)
    return x.to(torch.float32) / 127.5 - 1.0 if kind == "image" else x.to(torch.float32)


def flip_mask(seed: int, step: int, n: int) -> torch.Tensor:
    """Which of the ``n`` examples of optimizer step ``step`` are mirrored: a fair coin each, from a
    stream of its own keyed by (seed, step), so a resumed or re-batched run flips exactly alike."""
    rng = np.random.default_rng([FLIP_STREAM, seed, step])
    return torch.from_numpy(rng.random(n) < 0.5)


def flip_images(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Images [B, C, H, W] with the rows where ``mask`` is true mirrored left to right."""
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)


def digest(parts: Iterable[bytes | memoryview]) -> str:
    """A short content hash (BLAKE2b, 16 bytes, hex) of the byte strings or buffers ``parts``, in order."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        view = memoryview(part).cast("B")
        h.update(view.nbytes.to_bytes(8, "little"))
        h.update(view)
    return h.hexdigest()


def class_weights(examples: Examples) -> torch.Tensor:
    """Per-class loss weights N/(K·n_k) from the labels (float64, one per class): each class weighs
    as much in a loss as if the K classes were in equal numbers, the "balanced" weighting (a class
    absent from the data weighs 0). Used by ``train-classifier --balance`` and ``train --balance``."""
    if examples.labels is None:
        raise OptionError(f"dataset {examples.name!r} has no labels, so its classes cannot be balanced")
    n = torch.bincount(examples.labels.long(), minlength=examples.num_classes).to(torch.float64)
    present = n > 0
    weights = torch.zeros_like(n)
    weights[present] = n.sum() / (int(present.sum()) * n[present])
    return weights
