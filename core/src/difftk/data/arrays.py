"""In-memory datasets: what a ``dataset`` component's ``load()`` returns when the data is small.

Images are kept as uint8 [N, C, H, W] and scaled to [−1, 1] per batch (x/127.5 − 1), so
60,000 MNIST digits take 47 MB instead of 188 MB. Point sets (the 2-D toys) are float32
[N, D] used as they are. Data too big for memory is an
:class:`~difftk.data.indexed.IndexedImages` instead.
"""

from __future__ import annotations

import attrs
import torch

from difftk.data.examples import digest, to_model
from difftk.errors import DifftkError


@attrs.frozen(eq=False)
class ArrayDataset:
    """Examples and (optional) labels held in memory (the :class:`~difftk.data.examples.Examples` surface).

    :param data: uint8 images [N, C, H, W] (``kind="image"``) or float32 points [N, D] (``kind="points"``).
    :param labels: int64 [N] class indices in [0, num_classes), or ``None``.
    :param num_classes: number of classes (0 when unlabelled).
    :param name: what to call it in messages.
    :param flip: mirror training images at random (the trainer's augmentation).
    """

    data: torch.Tensor
    labels: torch.Tensor | None = None
    num_classes: int = 0
    name: str = "dataset"
    class_names: tuple[str, ...] = ()
    flip: bool = False

    def __attrs_post_init__(self) -> None:
        if self.data.ndim not in (2, 4):
            raise DifftkError(f"{self.name}: data must be [N, C, H, W] images or [N, D] points, got shape {tuple(self.data.shape)}")
        if self.kind == "image" and self.data.dtype != torch.uint8:
            raise DifftkError(f"{self.name}: images must be stored as uint8, got {self.data.dtype}")
        if self.labels is not None and self.labels.shape != (len(self.data),):
            raise DifftkError(f"{self.name}: {len(self.data)} examples but labels of shape {tuple(self.labels.shape)}")
        if len(self.data) == 0:
            raise DifftkError(f"{self.name}: the dataset is empty")
        if self.flip and self.kind != "image":
            raise DifftkError(f"{self.name}: flip mirrors images, but this data is {self.data.shape[1]}-D points: drop flip")

    @property
    def kind(self) -> str:
        return "image" if self.data.ndim == 4 else "points"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (1, 28, 28) or (2,)."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return len(self.data)

    def read(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Examples ``index`` as stored (uint8 images, float32 points) and their labels, on the CPU."""
        return self.data[index], (self.labels[index] if self.labels is not None else None)

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Examples ``index`` as float32 on ``device`` (images in [−1, 1]) and their labels."""
        x, y = self.read(index)
        return to_model(x, self.kind, device), (y.to(device) if y is not None else None)

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        labels = self.labels[index] if self.labels is not None else None
        return ArrayDataset(self.data[index], labels, self.num_classes, self.name, self.class_names, self.flip)

    def fingerprint(self) -> str:
        """A hash of the examples' bytes, the labels and the class names."""
        labels = self.labels.numpy().tobytes() if self.labels is not None else b""
        data = self.data.contiguous().numpy()
        return digest([str(tuple(data.shape)).encode(), data, labels, "\0".join(self.class_names).encode()])


def to_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] -> uint8 [0, 255] (rounded), e.g. to save samples as PNG."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
