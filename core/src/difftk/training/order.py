"""The order of the training data: shuffled epochs from one generator, restorable exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class BatchOrder:
    """Shuffled epochs drawn from one generator: each epoch a fresh permutation of the indices.

    A batch that runs past the end of an epoch continues into the next, so every example is
    seen once per epoch whatever the batch size. The state is the generator's state at the
    start of the current epoch plus the position in it: from those the permutation is drawn
    again on restore, so nothing derived needs storing.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = -1
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_start = self.generator.get_state()
        self.perm = torch.randperm(self.size, generator=self.generator)
        self.position = 0
        self.epoch += 1

    def next(self) -> torch.Tensor:
        """The indices of the next batch."""
        parts, need = [], self.batch_size
        while need:
            if self.position == self.size:
                self._new_epoch()
            take = min(need, self.size - self.position)
            parts.append(self.perm[self.position:self.position + take])
            self.position += take
            need -= take
        return torch.cat(parts)

    def copy(self) -> BatchOrder:
        """An independent order at the same place: drawing from it leaves this one where it is
        (a loader reads ahead from a copy)."""
        twin = BatchOrder.__new__(BatchOrder)
        twin.size, twin.batch_size = self.size, self.batch_size
        twin.generator = torch.Generator().set_state(self.generator.get_state())
        twin.epoch_start, twin.perm = self.epoch_start, self.perm
        twin.epoch, twin.position = self.epoch, self.position
        return twin

    def state(self) -> tuple[torch.Tensor, dict[str, int]]:
        return self.epoch_start, {"epoch": self.epoch, "position": self.position}

    def restore(self, epoch_start: torch.Tensor, where: Mapping[str, int]) -> None:
        self.generator.set_state(epoch_start)
        self.epoch_start = epoch_start
        self.perm = torch.randperm(self.size, generator=self.generator)
        self.epoch, self.position = int(where["epoch"]), int(where["position"])
