"""Writers of the real on-disk formats (IDX, CIFAR-10 binary, PNG/JPEG), independent of the readers under test."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as in LeCun's spec: 0, 0, type 0x08 (ubyte), ndim; then big-endian int32 sizes; then data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_bytes(file: Path, data: bytes) -> Path:
    """Write ``data``, gzipped when the name ends in ``.gz``."""
    file.write_bytes(gzip.compress(data) if file.name.endswith(".gz") else data)
    return file


def cifar_record(label: int, red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> bytes:
    """One CIFAR-10 binary record: the label byte, then the red, green and blue 32×32 planes, row-major."""
    planes = (np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in (red, green, blue))
    return bytes([label]) + b"".join(planes)


def save_image(file: Path, array: np.ndarray) -> Path:
    """Save uint8 [H, W] (grey) or [H, W, 3] (RGB) as PNG or JPEG, by the file's suffix."""
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(file)
    return file
