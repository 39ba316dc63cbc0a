"""The batches of a training run: the data order (what a checkpoint stores), this process's share
of each global batch, the seeded flips, and a reader that reads ahead in worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from difftk.data.examples import Examples, flip_images, flip_mask, to_model
from difftk.data.loader import BatchReader
from difftk.errors import DifftkError
from difftk.runtime.distributed import Ranks
from difftk.training.order import BatchOrder


class Unreadable(Exception):
    """A batch could not be read; raised before anything of the step is done."""

    def __init__(self, error: DifftkError) -> None:
        super().__init__(str(error))
        self.error = error


class Feed:
    """Batches of ``dataset`` in the order of a :class:`BatchOrder` seeded with ``seed``: global
    batches of ``batch_size`` × the number of processes, each process taking its slice."""

    def __init__(self, dataset: Examples, batch_size: int, ranks: Ranks, seed: int) -> None:
        self.dataset, self.batch_size, self.ranks, self.seed = dataset, batch_size, ranks, seed
        self.order = BatchOrder(len(dataset), batch_size * ranks.world, seed + 1)
        self.reader: BatchReader | None = None

    @property
    def rows(self) -> slice:
        """This process's share of a global batch."""
        return slice(self.ranks.rank * self.batch_size, (self.ranks.rank + 1) * self.batch_size)

    def _upcoming(self) -> Iterator[torch.Tensor]:
        order, rows = self.order.copy(), self.rows
        while True:
            yield order.next()[rows]

    def start(self, workers: int, pin_memory: bool = False) -> None:
        """Read ahead from the order's current place with ``workers`` processes (0: none)."""
        self.close()
        self.reader = BatchReader(self.dataset, self._upcoming(), workers, pin_memory=pin_memory)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def next(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The examples of optimizer step ``step`` (1-based) for this process, as the network's input."""
        index = self.order.next()
        rows = index[self.rows]
        try:
            x, y = self.reader.read(rows) if self.reader is not None else self.dataset.read(rows)
        except DifftkError as err:
            raise Unreadable(err) from None
        if self.dataset.flip:  # a coin for every example of the global batch, then this process's share
            x = flip_images(x, flip_mask(self.seed, step, len(index))[self.rows])
        return to_model(x, self.dataset.kind, device), (y.to(device) if y is not None else None)
