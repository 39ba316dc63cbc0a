"""The installed version of difftk-core, for the records every checkpoint keeps."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("difftk-core")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
