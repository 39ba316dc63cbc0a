"""Samples as files for other evaluators, and the images of any generator read back to be measured.

Two layouts, both 8-bit (images in [−1, 1] are quantised by :func:`difftk.data.arrays.to_uint8_images`):

- **png-folder**: one PNG per sample, ``000000.png``, ``000001.png``, … (grey images as L-mode PNGs)
  and nothing else: the folder clean-fid's ``compute_fid(dir1, dir2)`` and torch-fidelity's
  ``input1=DIR`` read. A class-conditional draw's label is each PNG's text chunk ``label``.
- **npz**: uint8 [N, H, W, C] under ``arr_0`` (C = 1 for grey), the layout of the ADM evaluation
  suite (Dhariwal & Nichol 2021, ``evaluations/evaluator.py``); the labels as int64 [N] under
  ``labels``.

What difftk writes here says so (each PNG's text chunk ``Software``, the npz's zip comment), and an
existing output is replaced only when it says so too: never a file or folder made for another purpose.
A folder is written into a temporary sibling and renamed into place, an npz atomically.

Every file read is untrusted: whatever is wrong with it is one :class:`DifftkError` line.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from difftk.data.arrays import ArrayDataset, to_uint8_images
from difftk.data.images import open_image
from difftk.errors import DifftkError, OutputError
from difftk.runtime.files import SAMPLES_MARK, atomic_write_bytes, check_output, short_path

#: the layouts ``difftk sample --format`` writes: a grid picture, or the two layouts above
FORMATS: tuple[str, ...] = ("png", "png-folder", "npz")
#: what every file written here carries (PNG text chunk ``Software``, npz zip comment)
MARK = SAMPLES_MARK
#: the image files a folder may hold (names starting with "." are skipped)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_INDEXED = re.compile(r"^\d+\.png$")


def format_of(path: str | Path, given: str | None) -> str:
    """The layout to write ``path`` in: ``given``, or npz for a name ending in .npz, png-folder for a
    name ending in / or an existing folder, and png otherwise; a name that contradicts the layout is
    one line."""
    suffix = Path(path).suffix.lower()
    try:
        folder = str(path).endswith(("/", os.sep)) or Path(path).is_dir()
    except OSError:  # a name too long, a loop of links: the output guard says which
        folder = False
    fmt = given or ("npz" if suffix == ".npz" else "png-folder" if folder else "png")
    if fmt == "npz" and suffix != ".npz":
        raise OutputError(f"{short_path(path)}: an npz of samples is named NAME.npz (format=npz)")
    if fmt == "png" and suffix == ".npz":
        raise OutputError(f"{short_path(path)} names an npz: use format=npz (or name the grid NAME.png)")
    if fmt == "png-folder" and suffix in (".npz", *IMAGE_SUFFIXES):
        raise OutputError(f"{short_path(path)} names a file: format=png-folder writes to a folder name (e.g. samples/)")
    return fmt


def _is_ours_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.comment == MARK.encode()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _is_ours_png(path: Path) -> bool:
    try:
        with open_image(path) as image:
            return image.format == "PNG" and image.info.get("Software") == MARK
    except DifftkError:
        return False


def check_samples_output(path: str | Path, fmt: str) -> None:
    """Refuse, before any work, an output of layout ``fmt`` that cannot be written or would replace
    something difftk did not write as samples (one :class:`OutputError` line)."""
    path = Path(path)
    if fmt == "png":
        return check_output(path)
    if fmt == "npz":
        check_output(path)
        if path.exists() and not _is_ours_npz(path):
            raise OutputError(f"{short_path(path)} exists and is not an npz of samples difftk wrote: choose another path")
        return
    if path.exists() and not path.is_dir():
        raise OutputError(f"{short_path(path)} is a file: a png-folder is written to a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot write {short_path(path)}: {short_path(parent)} is a file, not a directory")
            break
    if path.is_dir():
        foreign = next((p.name for p in sorted(path.iterdir()) if not (_INDEXED.match(p.name) and _is_ours_png(p))), None)
        if foreign is not None:
            raise OutputError(f"{short_path(path)} holds {foreign}, which difftk did not write as a sample: "
                              "choose another folder (or an empty one)")


def write_png_folder(x: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None) -> Path:
    """Images [N, C, H, W] in [−1, 1] as N PNGs named by zero-padded index (at least six digits), with
    their labels; written into a temporary sibling folder that then takes the place of ``path``."""
    path = Path(path)
    check_samples_output(path, "png-folder")
    u8 = to_uint8_images(x.detach().float().cpu()).permute(0, 2, 3, 1).numpy()
    digits = max(6, len(str(len(u8) - 1)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    try:
        for i, pixels in enumerate(u8):
            info = PngImagePlugin.PngInfo()
            info.add_text("Software", MARK)
            if labels is not None:
                info.add_text("label", str(int(labels[i])))
            image = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")
            image.save(tmp / f"{i:0{digits}d}.png", pnginfo=info)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual mode
        _swap_in(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_in(new: Path, path: Path) -> None:
    """Rename the finished folder ``new`` to ``path``; a previous ``path`` (checked to be ours) is moved
    aside first and removed after, or put back if the rename fails."""
    if not path.exists():
        os.rename(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, old / path.name)
    try:
        os.rename(new, path)
    except OSError:
        os.rename(old / path.name, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_npz(x: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None) -> Path:
    """Images [N, C, H, W] in [−1, 1] as uint8 [N, H, W, C] under ``arr_0`` (and ``labels``), atomically."""
    path = Path(path)
    check_samples_output(path, "npz")
    arrays = {"arr_0": to_uint8_images(x.detach().float().cpu()).permute(0, 2, 3, 1).contiguous().numpy()}
    if labels is not None:
        arrays["labels"] = labels.to(torch.int64).cpu().numpy()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # what np.savez writes, with our mark
        archive.comment = MARK.encode()
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


# --- reading --------------------------------------------------------------------------------------


def read_samples(path: str | Path) -> ArrayDataset:
    """The images of a folder or an npz as an :class:`ArrayDataset` (uint8 [N, C, H, W], labels when
    they come with them, ``num_classes`` = the largest label + 1, or 0)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.exists():
        raise DifftkError(f"{short_path(path)}: no such folder or file (give a folder of images or an .npz)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DifftkError(f"{short_path(path)} is one image: give the folder of images it is in, or an .npz of them")
    return _read_npz(path)


def _dataset(data: np.ndarray, labels: np.ndarray | None, path: Path) -> ArrayDataset:
    """uint8 [N, H, W, C] and int labels [N] (or ``None``) as a dataset named by ``path``."""
    y = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
    x = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    return ArrayDataset(x, y, int(y.max()) + 1 if y is not None else 0, name=short_path(path))


def _read_folder(path: Path) -> ArrayDataset:
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DifftkError(f"{short_path(path)} holds no images: give a folder of PNG (or JPEG) files")
    for p in entries:
        if p.is_dir():
            raise DifftkError(f"{short_path(path)} holds the folder {p.name}: give one flat folder of images")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DifftkError(f"{short_path(p)} is not an image (.png, .jpg, .jpeg, .bmp, .webp): the folder must hold "
                              "images only; move it out")
    pixels, labels = [], []
    for p in entries:
        if p.stat().st_size == 0:
            raise DifftkError(f"{short_path(p)} is empty (0 bytes): remove it, or write it again")
        with open_image(p, lambda why, p=p: DifftkError(f"{short_path(p)} is not a readable image ({why[:120]})")) as image:
            image.load()
            if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr"):
                raise DifftkError(f"{short_path(p)} has {image.mode} pixels: save 8-bit grey or RGB images")
            grey = image.mode in ("1", "L", "LA")
            array = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8)
            labels.append(image.info.get("label") if image.format == "PNG" else None)
        array = array[..., None] if grey else array
        if pixels and array.shape[:2] != pixels[0].shape[:2]:
            (h, w), (h0, w0) = array.shape[:2], pixels[0].shape[:2]
            raise DifftkError(f"{short_path(p)} is {w}×{h} but {entries[0].name} is {w0}×{h0}: every image of the "
                              "set must have one size")
        pixels.append(array)
    if any(a.shape[-1] == 3 for a in pixels):  # grey images among colour ones: as RGB, as clean-fid reads them
        pixels = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in pixels]
    given = labels if all(isinstance(v, str) and v.isdigit() for v in labels) else None
    return _dataset(np.stack(pixels), np.array([int(v) for v in given]) if given else None, path)


def _read_npz(path: Path) -> ArrayDataset:
    name = short_path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as err:
        raise DifftkError(f"{name} cannot be read: {err.strerror or err}") from None
    if head.startswith(b"\x80"):  # a pickle's protocol byte: never unpickled
        raise DifftkError(f"{name} holds pickled data, which difftk never loads: save plain arrays "
                          "(np.savez(NAME.npz, arr_0=uint8 images))")
    if head == b"\x93NUMPY":
        raise DifftkError(f"{name} is a single .npy array, not an .npz: save it with np.savez(NAME.npz, arr_0=images)")
    if not head.startswith(b"PK"):
        raise DifftkError(f"{name} is not an .npz file (a zip archive of .npy arrays, as np.savez writes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise DifftkError(f"{name} is not a readable .npz file ({' '.join(str(err).split())[:120]})") from None
    with archive:
        if "arr_0" not in archive.files:
            raise DifftkError(f"{name} has no array arr_0 (it has {', '.join(archive.files) or 'none'}): save the images "
                              "as uint8 [N, H, W, C] under arr_0")
        images, labels = _array(archive, "arr_0", name), None
        key = "labels" if "labels" in archive.files else ("arr_1" if "arr_1" in archive.files else None)
        if key is not None:
            labels = _array(archive, key, name)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise DifftkError(f"{name}: arr_0 is {images.dtype} of shape {list(images.shape)}; images must be uint8 "
                          "[N, H, W, C] with N ≥ 1 and C = 1 (grey) or 3 (RGB), values 0..255")
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != (len(images),) or
                               (len(labels) and labels.min() < 0)):
        raise DifftkError(f"{name}: {key} is {labels.dtype} of shape {list(labels.shape)}; labels must be "
                          f"{len(images)} class indices ≥ 0 (an integer array [N])")
    return _dataset(images, labels, path)


def _array(archive, key: str, name: str) -> np.ndarray:
    """Array ``key`` of an open npz; pickled (object) arrays and damaged members are one line, and
    so is a member whose header claims more bytes than it holds (checked before numpy allocates)."""
    try:
        info = archive.zip.getinfo(f"{key}.npy")
        with archive.zip.open(info) as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            start = fh.tell()
        need = math.prod(shape) * dtype.itemsize
        if need > info.file_size - start:
            raise DifftkError(f"{name}: {key} claims shape {list(shape)} ({need:,} bytes) but holds "
                              f"{max(info.file_size - start, 0):,}: the file is damaged")
        return archive[key]
    except MemoryError:
        raise DifftkError(f"{name}: {key} does not fit in memory: give fewer samples") from None
    except ValueError as err:
        if "pickle" in str(err):
            raise DifftkError(f"{name}: {key} is a pickled object array, which difftk never loads: save it as a "
                              "plain uint8 (images) or integer (labels) array") from None
        raise DifftkError(f"{name}: {key} cannot be read ({' '.join(str(err).split())[:120]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DifftkError(f"{name}: {key} cannot be read ({' '.join(str(err).split())[:120]})") from None
