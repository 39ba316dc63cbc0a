"""What every dataset of the plugin shares: its error, the split names, checking a directory."""

from __future__ import annotations

import os
from pathlib import Path

from difftk.errors import DifftkError, did_you_mean

#: The splits every dataset of this plugin provides.
SPLITS: tuple[str, ...] = ("train", "test")


class DatasetError(DifftkError):
    """Data that cannot be read: a missing path, a wrong format, an unknown split."""


def check_split(dataset: str, split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a one-line :class:`DatasetError`."""
    if split not in SPLITS:
        raise DatasetError(
            f"{dataset}: unknown split {split!r}{did_you_mean(str(split), SPLITS)} (splits: {', '.join(SPLITS)})"
        )
    return split


def data_dir(dataset: str, path: str, expected: str) -> Path:
    """``path`` (``~`` expanded) as an existing directory; ``expected`` says what should be in it."""
    root = Path(os.path.expanduser(path))
    if not root.exists():
        raise DatasetError(f"{dataset}: {root} does not exist (path should be a directory holding {expected})")
    if not root.is_dir():
        raise DatasetError(f"{dataset}: {root} is a file, not a directory (path should be a directory holding {expected})")
    return root
