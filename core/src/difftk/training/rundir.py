"""The run directory: where a training run writes its checkpoint, sample grids and loss log,
the checks before it starts, and the lock that keeps a second writer out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from difftk.checkpoint.files import (
    CHECKPOINT_NAME,
)
from difftk.errors import DifftkError, OutputError
from difftk.runtime.files import atomic_write_text, short_path
from difftk.training.config import TrainingError


class RunLog:
    """log.jsonl open for appending: every write is flushed at once, and a write that fails (a full
    disk) is one :class:`~difftk.errors.OutputError` line naming the log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
            self._fh.flush()
        except OSError as err:
            raise OutputError(f"cannot write {short_path(self.path)}: {err.strerror or err}") from None

    def flush(self) -> None:
        """Nothing to do: :meth:`write` flushes (kept for code that writes to a file object)."""

    def close(self) -> None:
        with contextlib.suppress(OSError):  # what could not be written was reported by write
            self._fh.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the lock file of a run directory (see :meth:`RunPaths.lock`)
LOCK_NAME = ".lock"


@attrs.frozen
class RunPaths:
    """Where a training run writes: its latest checkpoint, sample grids and loss log."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_NAME

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    def existing(self) -> list[str]:
        """The run files already present, e.g. ``["checkpoint.safetensors", "samples/"]``."""
        found = [p.name for p in (self.checkpoint, self.log) if p.exists()]
        return found + (["samples/"] if self.samples.is_dir() and any(self.samples.iterdir()) else [])

    def prepare(self, resume: bool) -> str | None:
        """Refuse to start over a run that has a checkpoint (unless resuming) or to resume nothing.

        A run that stopped before its first checkpoint (a NaN, a full disk, a kill) holds only a
        log and perhaps samples, and nothing to resume: it is started over. The return value
        then says so, for the caller to show.
        """
        try:
            if self.root.exists() and not self.root.is_dir():
                raise TrainingError(f"out={self.root} is a file; give a directory for the run")
            found = self.existing()
        except OSError as err:  # a name too long, a directory that cannot be listed
            raise TrainingError(f"out={short_path(self.root)}: {err.strerror or err}") from None
        if resume and not self.checkpoint.is_file():
            extra = f" (it holds {', '.join(found)}: a run stopped before its first checkpoint)" if found else ""
            raise TrainingError(f"{self.root} has no {CHECKPOINT_NAME} to resume from{extra}: drop resume=True to "
                                "start it over, or choose another out=DIR")
        if not resume and self.checkpoint.exists():
            raise TrainingError(f"{self.root} already holds a training run ({', '.join(found)}): "
                                "continue it with resume=True, or choose another out=DIR")
        if not resume and found:
            return (f"{self.root} holds {', '.join(found)} of a run that stopped before its first checkpoint: "
                    "starting it over")
        return None

    def check_unlocked(self) -> None:
        """Refuse at once, with the writer's pid, if a run holds the lock; changes nothing (the first
        check of a resume, before the checkpoint is looked for: a live run may not have one yet)."""
        try:
            fd = os.open(self.root / LOCK_NAME, os.O_RDONLY)
        except OSError:  # no lock file: no run has written here
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise TrainingError(f"{self.root} is being written by another difftk train (pid {holder}): wait for it "
                                "to finish, or choose another out=DIR") from None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory while a run writes it, so that a second
        ``difftk train`` (or a ``--resume`` of a live run) is refused instead of racing it.

        The lock is ``flock`` on ``DIR/.lock``, released by the kernel when the process dies, so
        a killed run never leaves the directory locked. Once it is held, the temporary files a
        killed writer left behind (``.checkpoint.safetensors.*.tmp``) are removed.
        """
        try:
            if self.root.exists() and not self.root.is_dir():
                raise TrainingError(f"out={self.root} is a file; give a directory for the run")
            created = not self.root.exists()
        except OSError as err:
            raise TrainingError(f"out={short_path(self.root)}: {err.strerror or err}") from None
        if (self.root / LOCK_NAME).is_dir():
            raise TrainingError(f"{short_path(self.root / LOCK_NAME)} is a folder, where difftk train keeps the run's lock "
                                "file: remove it, or choose another out=DIR")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            what = "create the run directory" if created else "write the lock file of"
            raise TrainingError(f"cannot {what} {short_path(self.root)}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise TrainingError(f"{self.root} is being written by another difftk train (pid {holder}): wait for it "
                                "to finish, or choose another out=DIR") from None
        try:
            try:  # the pid is what a refused second writer is told; a full disk is one line, before any step
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            except OSError as err:
                raise TrainingError(f"cannot write to {short_path(self.root)}: {err.strerror or err} (nothing was "
                                    "trained): free some space, then run again") from None
            for stray in self.root.glob(f".{CHECKPOINT_NAME}.*.tmp"):
                stray.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if created and [p.name for p in self.root.iterdir()] == [LOCK_NAME]:  # a run refused before it wrote
                (self.root / LOCK_NAME).unlink(missing_ok=True)
                self.root.rmdir()

    def open_log(self, step: int, note: Callable[[str], None] | None = None) -> RunLog:
        """Open log.jsonl for appending, first dropping the records after ``step`` (those of a
        run resumed from an earlier checkpoint than its last log line) and its damaged lines,
        each of which is named to ``note``."""
        from difftk.training.history import read_log

        log = self.log
        try:
            if log.exists():
                records, damaged = read_log(log)
                for message in damaged:
                    if note is not None:
                        note(message.replace(": skipped", ": dropped from the log"))
                kept = [json.dumps(record) + "\n" for _, record in records if record["step"] <= step]
                if damaged or len(kept) != len(records):
                    atomic_write_text(log, "".join(kept), replaces="run")
            log.parent.mkdir(parents=True, exist_ok=True)
            return RunLog(log)
        except OSError as err:
            if isinstance(err, DifftkError):  # already one line that names the file
                raise
            raise TrainingError(f"cannot write to {self.root}: {err.strerror or err}") from None

