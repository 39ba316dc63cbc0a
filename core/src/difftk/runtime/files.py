"""Writing files so that a crash never leaves a half-written one behind, and so that an output
path never silently replaces a training checkpoint."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from difftk.errors import DifftkError, OutputError
from difftk.runtime.untrusted import read_json

#: what a write may replace: ``none`` (no difftk checkpoint: pictures, pipelines, logs),
#: ``export`` (an exported or classifier checkpoint, never a resumable training one), ``run``
#: (anything: the training loop rewriting its own checkpoint)
REPLACES = ("none", "export", "run")


def short_path(path: str | Path, limit: int = 120) -> str:
    """A path for an error line, cut in the middle when very long."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]}"


def checkpoint_kind(path: Path) -> str | None:
    """``"training"`` or ``"export"`` when ``path`` is a difftk checkpoint (by its safetensors
    header: a training checkpoint holds an optimizer state), else ``None``. Reads the header only."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return None
            (size,) = struct.unpack("<Q", head)
            if not 2 <= size <= 100_000_000:
                return None
            meta = read_json(fh.read(size), max_bytes=100_000_000).get("__metadata__") or {}
    except (OSError, DifftkError, AttributeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != "difftk-checkpoint":
        return None
    return "training" if "optimizer" in meta else "export"


def check_output(path: Path, replaces: str = "none") -> None:
    """Refuse an output path that is a directory, lies under a file, or is a checkpoint that the
    write may not replace (see :data:`REPLACES`); one :class:`OutputError` line each."""
    try:
        if path.is_dir():
            raise OutputError(f"{short_path(path)} is a directory: give a file name")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"cannot write {short_path(path)}: {short_path(parent)} is a file, not a directory")
                break
        exists = path.is_file()
    except OSError as err:  # a name too long, a loop of links: stat itself fails
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    if replaces == "run" or not exists:
        return
    kind = checkpoint_kind(path)
    if kind == "training" or (kind == "export" and replaces == "none"):
        what = "a training checkpoint (what difftk train --resume continues)" if kind == "training" else "a difftk checkpoint"
        raise OutputError(f"{short_path(path)} is {what}; writing there would replace it: choose another output path")


def atomic_write_bytes(path: Path, data: bytes, *, replaces: str = "none") -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    :func:`check_output` runs first; an ``OSError`` (read-only or full disk, a name too long)
    becomes one :class:`OutputError` line, and no partial or temporary file is left.
    """
    path = Path(path)
    check_output(path, replaces)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, *, replaces: str = "none") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), replaces=replaces)
