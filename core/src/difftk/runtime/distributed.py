"""Multi-process work on torch.distributed, launched by torchrun: data-parallel training (DDP) and
draws of samples split over processes.

Each process (rank) trains on its shard of every global batch: all ranks draw the same shuffled
global batch of N×B indices and rank r takes the r-th slice of B. DistributedDataParallel
all-reduces (averages) the gradients, so every rank takes the same optimizer step and keeps the
same weights and EMA; only rank 0 writes checkpoints, sample grids and the log. The objective's
noise has one generator per rank (rank 0's is the single-process one); a checkpoint stores all
of them, so ``--resume`` with the same number of processes continues exactly.

A draw of n samples in batches is split by whole batches: rank r draws its contiguous block of
them (:func:`share`) and rank 0 gathers the rows in rank order (:func:`gather_rows`). Every sample
has its own noise stream and every batch is the one a single process would draw, so the gathered
samples equal one process's bit for bit.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from difftk.errors import OptionError

#: the exit status of a process stopped by a user error (the CLI's one-line errors)
USER_ERROR = 2
#: where the processes :func:`launch` starts leave their one-line user errors (a folder it makes)
ERRORS_ENV = "DIFFTK_ERRORS_DIR"
#: rows a rank sends at once when process 0 gathers samples (:func:`gather_rows`)
GATHER_CHUNK = 1024
#: how far apart the ranks' noise seeds are
NOISE_SEED_STRIDE = 1_000_003


@attrs.frozen
class Ranks:
    """This process's rank and the number of processes (1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current() -> Ranks:
    """The ranks of the initialised process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched() -> bool:
    """Whether this process was started by torchrun for a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up (gloo on the CPU, nccl on GPUs; one GPU per rank)."""
    if not launched() or dist.is_initialized():
        return current(), device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise OptionError(f"process {local} has no GPU: {torch.cuda.device_count()} visible, so use "
                              f"nproc={torch.cuda.device_count()} or device=cpu")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current(), device


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DistributedDenoiser(DistributedDataParallel):
    """DDP around a denoiser that still answers ``prediction``, ``learned_variance``, ``num_classes``…"""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def mean_over_ranks(value: float, ranks: Ranks) -> float:
    """The mean of a float over the ranks (itself for one process)."""
    if not ranks.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / ranks.world


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a stop request)."""
    if not ranks.distributed:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def gather_states(state: torch.Tensor, ranks: Ranks) -> list[torch.Tensor]:
    """Every rank's copy of a same-sized uint8 state tensor (generator states), in rank order."""
    if not ranks.distributed:
        return [state]
    out = [torch.empty_like(state) for _ in range(ranks.world)]
    dist.all_gather(out, state.contiguous())
    return out


def share(count: int, ranks: Ranks) -> range:
    """This rank's contiguous block of ``count`` items (the batches of a draw), split as evenly as
    possible: rank r takes ⌊r·count/W⌋ … ⌊(r+1)·count/W⌋ − 1, so the blocks in rank order are 0 … count − 1."""
    return range(ranks.rank * count // ranks.world, (ranks.rank + 1) * count // ranks.world)


def _wire(ranks: Ranks) -> torch.device:
    """Where collectives take their tensors: the rank's GPU under nccl, else the CPU."""
    if ranks.distributed and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: torch.Tensor, ranks: Ranks, chunk: int = GATHER_CHUNK) -> torch.Tensor | None:
    """Every rank's rows [n_r, …] (the counts may differ, the rest of the shape may not) stacked in rank
    order on rank 0, on the CPU; ``None`` on the other ranks; ``x`` itself for one process. The rows
    travel ``chunk`` at a time, so no rank holds more than N·chunk rows on the wire at once."""
    if not ranks.distributed:
        return x
    wire = _wire(ranks)
    count = torch.tensor([len(x)], dtype=torch.int64, device=wire)
    counts = [torch.zeros_like(count) for _ in range(ranks.world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    rows: list[list[torch.Tensor]] = [[] for _ in range(ranks.world)]
    for start in range(0, max(counts), chunk):
        piece = torch.zeros((min(chunk, max(counts) - start), *x.shape[1:]), dtype=x.dtype, device=wire)
        mine = x[start:start + len(piece)]
        piece[:len(mine)] = mine.to(wire)
        bucket = [torch.empty_like(piece) for _ in range(ranks.world)] if ranks.main else None
        dist.gather(piece, bucket, dst=0)
        if ranks.main:
            for r, got in enumerate(bucket):
                rows[r].append(got[:max(0, min(len(piece), counts[r] - start))].cpu())
    if not ranks.main:
        return None
    return torch.cat([torch.empty((0, *x.shape[1:]), dtype=x.dtype)] + [t for r in rows for t in r])


def broadcast(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (the others pass a tensor of the same shape and dtype to fill), on the CPU."""
    if not ranks.distributed:
        return t
    on_wire = t.to(_wire(ranks)).contiguous()
    dist.broadcast(on_wire, src=0)
    return on_wire.cpu()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m difftk_cli ARGV`` in ``nproc`` processes under torch's own launcher (torchrun).

    A process stopped by a user error leaves its one line in :data:`ERRORS_ENV`'s folder instead of
    printing it, and the launcher prints the line of the lowest such process once (every process
    meets the same bad input); otherwise it says which process failed and how, under that
    process's own output. torchrun's own log is silenced."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if nproc > (os.cpu_count() or 1) and not torch.cuda.is_available():
        raise OptionError(f"nproc={nproc} is more than this machine's {os.cpu_count()} CPU cores: use at most "
                          f"{os.cpu_count()}")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    agent = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
             if name.startswith("torch.distributed.elastic")]
    levels = [log.level for log in agent]
    for log in agent:
        log.setLevel(logging.CRITICAL)
    errors = tempfile.TemporaryDirectory(prefix="difftk-errors-")
    os.environ[ERRORS_ENV] = errors.name
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "difftk_cli", *argv])
    except SystemExit as stop:
        return int(stop.code or 0)
    except ChildFailedError as err:
        said = sorted(Path(errors.name).glob("rank*"), key=lambda p: int(p.name[4:]))
        if said:  # a user error: every process met it, the first one's line is enough
            print(said[0].read_text(encoding="utf-8").rstrip("\n"), file=sys.stderr)
            return USER_ERROR
        rank, failure = sorted(err.failures.items())[0]
        print(f"error: process {rank} of {nproc} failed with exit status {failure.exitcode} (its output above says why)",
              file=sys.stderr)
        return 1
    except Exception as err:  # the launcher itself failed
        print(f"error: {type(err).__name__}: {' '.join(str(err).split())[:300]}", file=sys.stderr)
        return 1
    finally:
        for log, level in zip(agent, levels, strict=True):
            log.setLevel(level)
        os.environ.pop(ERRORS_ENV, None)
        errors.cleanup()
    return 0


def leave_error(line: str) -> bool:
    """In a process that :func:`launch` started, leave the user-error ``line`` for the launcher to print
    once (``True``); elsewhere do nothing (``False``: print it yourself)."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder or not launched() or not Path(folder).is_dir():
        return False
    Path(folder, f"rank{int(os.environ.get('RANK', '0'))}").write_text(line + "\n", encoding="utf-8")
    return True
