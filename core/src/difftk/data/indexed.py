"""Image files indexed, not decoded: a dataset whose memory does not grow with its images.

Loading a folder lists its files (relative paths as one fixed-width byte array, and int64
labels: some tens of bytes per image); the pixels are decoded when a batch is read, in the
training process or in loader workers (:mod:`difftk.data.loader`). A plain byte array, not a
list of Python strings, so that forked workers share its pages instead of copying them as
reference counts change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from difftk.data.examples import digest, to_model
from difftk.errors import DifftkError

#: decodes one file into uint8 [C, H, W]; raises a one-line DifftkError for a file it cannot read
Decoder = Callable[[Path], np.ndarray]

#: files whose bytes the fingerprint reads (spread evenly; all of them in a smaller folder)
FINGERPRINT_FILES = 1024


def file_table(paths: Sequence[str]) -> np.ndarray:
    """Relative paths as a fixed-width byte array (``os.fsencode``, so any file name round-trips)."""
    return np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)


@attrs.frozen(eq=False)
class IndexedImages:
    """Images in files under ``root`` (the :class:`~difftk.data.examples.Examples` surface).

    :param root: the directory the paths are relative to.
    :param files: relative paths, :func:`file_table`.
    :param decode: reads one file as uint8 [C, H, W] (a picklable callable: loader workers call it).
    :param shape: (C, H, W) every image decodes to; an image of another size is a one-line
        error naming the file and ``resize_hint``.
    :param labels: int64 [N] class indices, or ``None``.
    """

    root: Path
    files: np.ndarray
    decode: Decoder
    shape: tuple[int, int, int]
    labels: torch.Tensor | None = None
    num_classes: int = 0
    name: str = "images"
    class_names: tuple[str, ...] = ()
    flip: bool = False
    resize_hint: str = "resize them to one size"

    def __attrs_post_init__(self) -> None:
        if len(self.files) == 0:
            raise DifftkError(f"{self.name}: the dataset is empty")
        if self.labels is not None and self.labels.shape != (len(self.files),):
            raise DifftkError(f"{self.name}: {len(self.files)} files but labels of shape {tuple(self.labels.shape)}")

    @property
    def kind(self) -> str:
        return "image"

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.files[i])

    def read(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images ``index`` decoded as uint8 [B, C, H, W], and their labels."""
        rows = index.tolist()
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        for k, i in enumerate(rows):
            try:
                image = self.decode(self.path(i))
            except DifftkError:
                raise
            except Exception as err:  # a decoder's own failure, still one line naming the file
                raise DifftkError(f"{self.name}: cannot read {self.path(i)} ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:200]}): replace or remove it") from None
            if image.shape != self.shape:
                C, H, W = self.shape
                raise DifftkError(f"{self.name}: {self.path(i)} is {image.shape[2]}×{image.shape[1]} with "
                                  f"{image.shape[0]} channel(s), but the images are {W}×{H} with {C}: {self.resize_hint}")
            out[k] = image
        return torch.from_numpy(out), (self.labels[index] if self.labels is not None else None)

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images ``index`` as float32 in [−1, 1] on ``device``, and their labels."""
        x, y = self.read(index)
        return to_model(x, self.kind, device), (y.to(device) if y is not None else None)

    def subset(self, index: torch.Tensor) -> IndexedImages:
        labels = self.labels[index] if self.labels is not None else None
        return attrs.evolve(self, files=self.files[index.numpy()], labels=labels)

    def fingerprint(self) -> str:
        """A hash of the relative paths, their sizes in bytes, the labels, the class names, and the
        bytes of :data:`FINGERPRINT_FILES` files spread evenly (every file of a smaller folder): it
        tells a folder from another of the same shape without reading every image of a large one.
        Where the folder lies does not enter it."""
        n = len(self.files)
        sizes = np.array([self.path(i).stat().st_size for i in range(n)], dtype=np.int64)
        labels = self.labels.numpy().tobytes() if self.labels is not None else b""
        read = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_FILES)).round().astype(np.int64))
        return digest([b"\0".join(self.files.tolist()), sizes, labels, "\0".join(self.class_names).encode(),
                       str(self.shape).encode(), *(self.path(int(i)).read_bytes() for i in read)])
