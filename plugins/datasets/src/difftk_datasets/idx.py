"""The IDX file format of MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a big-endian header — two zero bytes, a type byte (0x08 = unsigned byte), the
number of dimensions d, then d 32-bit sizes — followed by the data in row-major order. The
MNIST image files have magic number 0x00000803 (uint8, 3 dimensions: N×rows×cols), the label
files 0x00000801 (uint8, 1 dimension: N). Files may be gzipped.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from difftk_datasets.common import DatasetError

UBYTE = 0x08


def read_idx(dataset: str, file: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in IDX ``file`` (plain or ``.gz``), which must have ``ndim`` dimensions.

    Every way the file can be wrong — not gzip, wrong magic number, short header, too few or
    too many data bytes — is one :class:`DatasetError` line naming the file.
    """
    raw = _read_bytes(dataset, file)
    magic = (UBYTE << 8) | ndim
    what = "images" if ndim == 3 else "labels" if ndim == 1 else f"{ndim}-d data"
    if len(raw) < 4:
        raise DatasetError(f"{dataset}: {file} is truncated: {len(raw)} bytes, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(
            f"{dataset}: {file} has magic number 0x{found:08x}, not 0x{magic:08x} "
            f"(IDX uint8 {what}, {ndim} dimension{'s' if ndim > 1 else ''}): is it an MNIST IDX file?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{dataset}: {file} is truncated: {len(raw)} bytes, shorter than its {header}-byte IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # exact: a header may claim more than int64 holds
    found_bytes = len(raw) - header
    if found_bytes != expected:
        dims = "×".join(map(str, shape))
        problem = "is truncated" if found_bytes < expected else "has trailing bytes"
        raise DatasetError(
            f"{dataset}: {file} {problem}: its header says {dims} = {expected:,} bytes of data, found {found_bytes:,}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _read_bytes(dataset: str, file: Path) -> bytes:
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as f:
                return f.read()
        return file.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DatasetError(f"{dataset}: {file} is not a valid gzip file ({err or type(err).__name__}): re-download it") from None
    except OSError as err:
        raise DatasetError(f"{dataset}: cannot read {file}: {err.strerror or err}") from None
