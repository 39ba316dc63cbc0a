"""The IDX file format of MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a big-endian header — two zero bytes, a type byte (0x08 = unsigned byte), the
number of dimensions d, then d 32-bit sizes — followed by the data in row-major order. The
MNIST image files have magic number 0x00000803 (uint8, 3 dimensions: N×rows×cols), the label
files 0x00000801 (uint8, 1 dimension: N). Files may be gzipped.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from difftk_datasets.common import DatasetError

UBYTE = 0x08


#: the most data bytes an IDX file may claim (MNIST's training images are 47 MB): a header or a gzip
#: stream that asks for more is refused before it is read
MAX_IDX_BYTES = 1 << 32


def read_idx(dataset: str, file: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in IDX ``file`` (plain or ``.gz``), which must have ``ndim`` dimensions.

    Every way the file can be wrong — not gzip, wrong magic number, short header, too few or
    too many data bytes, a gzipped file claiming more than :data:`MAX_IDX_BYTES` — is one
    :class:`DatasetError` line naming the file. At most as many bytes as the header claims (and one
    more) are read, a chunk at a time, so a gzip bomb is never decompressed whole.
    """
    magic = (UBYTE << 8) | ndim
    what = "images" if ndim == 3 else "labels" if ndim == 1 else f"{ndim}-d data"
    header = 4 + 4 * ndim
    with _open(dataset, file) as read:
        head = read(header)
        if len(head) < 4:
            raise DatasetError(f"{dataset}: {file} is truncated: {len(head)} bytes, too short for an IDX header")
        found = int.from_bytes(head[:4], "big")
        if found != magic:
            raise DatasetError(
                f"{dataset}: {file} has magic number 0x{found:08x}, not 0x{magic:08x} "
                f"(IDX uint8 {what}, {ndim} dimension{'s' if ndim > 1 else ''}): is it an MNIST IDX file?"
            )
        if len(head) < header:
            raise DatasetError(f"{dataset}: {file} is truncated: {len(head)} bytes, shorter than its {header}-byte IDX header")
        shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        expected = math.prod(shape)  # exact: a header may claim more than int64 holds
        dims = "×".join(map(str, shape))
        if expected > MAX_IDX_BYTES and file.suffix == ".gz":  # a plain file's length says it is truncated
            raise DatasetError(f"{dataset}: {file} claims {dims} = {expected:,} bytes of data, more than the "
                               f"{MAX_IDX_BYTES:,} an IDX file may hold: the file is damaged")
        chunks, left = [], expected + 1
        while left and (chunk := read(min(left, 1 << 24))):  # memory grows with what is there, not what is claimed
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        shown = f"{len(raw):,}" if len(raw) <= expected else f"more than {expected:,}"
        raise DatasetError(f"{dataset}: {file} {problem}: its header says {dims} = {expected:,} bytes of data, found {shown}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


@contextlib.contextmanager
def _open(dataset: str, file: Path):
    """``read(n)`` of ``file`` (gunzipped when it ends in .gz); read errors are one line."""
    try:
        with (gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")) as f:
            def read(n: int) -> bytes:
                try:
                    return f.read(n)
                except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                    raise DatasetError(f"{dataset}: {file} is not a valid gzip file ({err or type(err).__name__}): "
                                       "re-download it") from None
            yield read
    except OSError as err:
        raise DatasetError(f"{dataset}: cannot read {file}: {err.strerror or err}") from None
