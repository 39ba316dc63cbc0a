"""Reading the training batches ahead, in worker processes (a ``torch.utils.data.DataLoader``).

The order stays the trainer's: the caller passes the index batches it will ask for, in order
(drawn from a copy of its :class:`~difftk.training.order.BatchOrder`), the workers read them
ahead, and :meth:`BatchReader.read` checks that what arrives is the batch asked for. So the
examples of every step are the same with any number of workers, and a resumed run, which
starts a new reader from its restored order, continues exactly.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from difftk.data.examples import Examples
from difftk.errors import DifftkError


class DataReadError(DifftkError):
    """A batch could not be read (a file that is missing, corrupt or of another size)."""


class _Reads(torch.utils.data.Dataset):
    """Map-style view for the DataLoader: key = an index batch; a failure comes back as its message
    (a worker's exception would reach the trainer as a multi-line traceback)."""

    def __init__(self, dataset: Examples) -> None:
        self.dataset = dataset

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | str, torch.Tensor | None]:
        try:
            x, y = self.dataset.read(index)
        except DifftkError as err:
            return index, str(err), None
        except Exception as err:
            return index, f"{self.dataset.name}: reading a batch failed: {type(err).__name__}: {' '.join(str(err).split())}", None
        return index, x, y


class _Keys(torch.utils.data.Sampler):
    def __init__(self, batches: Iterable[torch.Tensor]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)


def _as_is(item):
    return item


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """Workers ignore Ctrl-C, SIGTERM and SIGHUP (a terminal sends Ctrl-C to every process of the
    group): the trainer finishes its step, writes its checkpoint and then stops them."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


class BatchReader:
    """Reads the batches ``upcoming`` (an iterator of index tensors, the order they will be asked
    for) with ``workers`` processes, or in this process when ``workers`` is 0."""

    def __init__(self, dataset: Examples, upcoming: Iterator[torch.Tensor], workers: int = 0, *,
                 pin_memory: bool = False, prefetch: int = 2) -> None:
        self.dataset, self.workers = dataset, workers
        self._it = None
        if workers:
            # a generator of its own: the loader draws its workers' base seed from it, not from torch's
            # global RNG, which the run's dropout draws from (and a checkpoint stores)
            loader = DataLoader(_Reads(dataset), sampler=_Keys(upcoming), batch_size=None, num_workers=workers,
                                collate_fn=_as_is, pin_memory=pin_memory, prefetch_factor=prefetch,
                                generator=torch.Generator().manual_seed(0), worker_init_fn=_leave_signals_to_the_trainer)
            self._it = iter(loader)

    def read(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stored examples ``index`` (the next batch of ``upcoming``) and their labels."""
        if self._it is None:
            return self.dataset.read(index)
        try:
            got, x, y = next(self._it)
        except RuntimeError as err:  # a worker killed from outside (out of memory, a signal to it alone)
            raise DataReadError(f"{self.dataset.name}: a loader worker stopped ({' '.join(str(err).split())[:200]}): "
                                "retry with fewer workers") from None
        if isinstance(x, str):
            raise DataReadError(x)
        if not torch.equal(got, index):  # the order was advanced without this reader: a bug, not bad data
            raise RuntimeError("BatchReader: the batch read ahead is not the batch asked for")
        return x, y

    def close(self) -> None:
        """Stop the worker processes."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
