"""Pictures of samples: image grids, scatter plots of 2-D points, and x̂₀ trajectory strips.

Everything returns a Pillow image; :func:`save_png` writes one atomically. Images come in as
floats in [−1, 1] (the range :class:`difftk.data.arrays.ArrayDataset` trains on) and are quantised
with :func:`difftk.data.to_uint8_images`; points come in as float [N, D] and are drawn as dots
of the first two coordinates on fixed bounds, so pictures from different steps compare.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from difftk.data.arrays import to_uint8_images
from difftk.errors import DifftkError
from difftk.runtime.files import PNG_MARK, atomic_write_bytes

#: pixels between tiles and around a grid
PAD = 2
#: side of a scatter plot in pixels
PLOT_SIZE = 256
#: height of the caption band above a trajectory column
CAPTION = 14
#: narrowest trajectory column (small images are enlarged, nearest neighbour, to fit the caption)
MIN_COLUMN = 48


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of the near-square grid that holds ``n`` tiles: ⌈√n⌉ columns."""
    if n < 1:
        raise ValueError("a grid needs at least one tile")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _tile_array(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [−1, 1] -> uint8 [N, H, W, 3] (grey images repeated to RGB)."""
    u8 = to_uint8_images(x.detach().float().cpu())
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    elif u8.shape[1] != 3:
        raise ValueError(f"images need 1 or 3 channels to be drawn, got {u8.shape[1]}")
    return u8.permute(0, 2, 3, 1).contiguous()


def image_grid(x: torch.Tensor, cols: int | None = None) -> Image.Image:
    """Images [N, C, H, W] in [−1, 1] as one near-square RGB grid (black padding of :data:`PAD`)."""
    tiles = _tile_array(x)
    n, h, w, _ = tiles.shape
    rows, cols = grid_shape(n) if cols is None else (math.ceil(n / cols), cols)
    canvas = torch.zeros((PAD + rows * (h + PAD), PAD + cols * (w + PAD), 3), dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
        canvas[top:top + h, left:left + w] = tiles[i]
    return Image.fromarray(canvas.numpy(), mode="RGB")


def point_bounds(points: torch.Tensor, margin: float = 0.1) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the first two coordinates, widened by ``margin`` of the span."""
    xy = _xy(points)
    lo, hi = xy.min(dim=0).values, xy.max(dim=0).values
    span = (hi - lo).clamp(min=1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _xy(points: torch.Tensor) -> torch.Tensor:
    p = points.detach().float().cpu().reshape(points.shape[0], -1)
    return p[:, :2] if p.shape[1] >= 2 else torch.cat([p, torch.zeros_like(p)], dim=1)


def scatter_plot(points: torch.Tensor, bounds: Sequence[float] | None = None, size: int = PLOT_SIZE) -> Image.Image:
    """Points [N, D] as dots on a white square: x = coordinate 0, y = coordinate 1 (upwards).

    ``bounds`` = (x_min, x_max, y_min, y_max) fixes the axes (the training data's, so that
    pictures compare); points outside are pinned to the edge in red, so that a model that has
    not learnt the data yet still shows where its samples went. One-dimensional data is drawn
    on y = 0.
    """
    xy = _xy(points)
    x0, x1, y0, y1 = bounds if bounds is not None else point_bounds(points)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(200, 200, 200))
    if x0 < 0 < x1:  # the axes through the origin, faintly
        u = (0 - x0) / (x1 - x0) * (size - 1)
        draw.line([(u, 0), (u, size - 1)], fill=(235, 235, 235))
    if y0 < 0 < y1:
        v = (1 - (0 - y0) / (y1 - y0)) * (size - 1)
        draw.line([(0, v), (size - 1, v)], fill=(235, 235, 235))
    u = (xy[:, 0] - x0) / (x1 - x0) * (size - 1)
    v = (1 - (xy[:, 1] - y0) / (y1 - y0)) * (size - 1)
    finite = torch.isfinite(u) & torch.isfinite(v)
    inside = finite & (u >= 0) & (u <= size - 1) & (v >= 0) & (v <= size - 1)
    r = 1.5 if len(xy) > 500 else 2.0
    outside = finite & ~inside
    for a, b in zip(u[outside].clamp(0, size - 1).tolist(), v[outside].clamp(0, size - 1).tolist(), strict=True):
        draw.rectangle([a - 1, b - 1, a + 1, b + 1], fill=(214, 39, 40))  # off the plot: pinned to its edge, red
    for a, b in zip(u[inside].tolist(), v[inside].tolist(), strict=True):
        draw.ellipse([a - r, b - r, a + r, b + r], fill=(31, 119, 180))
    return img


def picture(x: torch.Tensor, kind: str, bounds: Sequence[float] | None = None) -> Image.Image:
    """A grid for ``kind == "image"`` data, a scatter plot for ``"points"``."""
    return image_grid(x) if kind == "image" else scatter_plot(x, bounds)


def trajectory_strip(frames: Sequence[torch.Tensor], times: Sequence[float], kind: str,
                     bounds: Sequence[float] | None = None, rows: int = 4) -> Image.Image:
    """x̂₀ predicted at several times t, left (t ≈ 1, noise) to right (t → 0, the sample).

    Each column is one time, captioned with t; for images it holds the first ``rows``
    samples stacked vertically, for points one scatter plot of all of them.
    """
    if len(frames) != len(times) or not frames:
        raise ValueError("a trajectory needs one time per frame, and at least one frame")
    if kind == "image":
        panels = [image_grid(f[:rows], cols=1) for f in frames]
        scale = max(1, math.ceil(MIN_COLUMN / panels[0].width))  # room for the caption
        panels = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in panels]
    else:
        panels = [scatter_plot(f, bounds, size=160) for f in frames]
    w, h = panels[0].size
    strip = Image.new("RGB", (len(panels) * w, h + CAPTION), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for i, (panel, t) in enumerate(zip(panels, times, strict=True)):
        strip.paste(panel, (i * w, CAPTION))
        draw.text((i * w + 2, 1), f"t={t:.2f}", fill=(0, 0, 0), font=font)
    return strip


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG, atomically (temp file + fsync + rename)."""
    buf = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", PNG_MARK)  # what the output guard recognises as a picture difftk wrote
    image.save(buf, format="PNG", pnginfo=info)
    return atomic_write_bytes(Path(path), buf.getvalue())  # its errors are one OutputError line already


#: the most pixels an image file may have (8192²): below Pillow's own decompression-bomb limit, so a
#: file whose header claims more is refused before a byte of it is decoded
MAX_IMAGE_PIXELS = 1 << 26
#: what Pillow raises for a damaged or hostile file: a bad header or chunk (OSError, SyntaxError), a
#: text chunk past its limit (ValueError), a size past its bomb limit
IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@contextlib.contextmanager
def open_image(path: str | Path, error: Callable[[str], Exception] | None = None) -> Iterator[Image.Image]:
    """Open an untrusted image file: its size is checked from the header before anything is decoded
    (at most :data:`MAX_IMAGE_PIXELS`), and every failure of Pillow, while opening or inside the
    ``with`` block, becomes ``error(reason)`` (by default a :class:`DifftkError` naming the file).
    The one way difftk opens an image it did not make."""
    def fail(reason: str) -> Exception:
        return error(reason) if error is not None else DifftkError(f"{path} is not a readable image ({reason})")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise fail(f"its header says {width}×{height}, more than {MAX_IMAGE_PIXELS:,} pixels: a "
                               "decompression bomb, or far larger than any model's images")
                yield image
    except DifftkError:
        raise
    except FileNotFoundError:
        raise (error("no such file") if error is not None else DifftkError(f"{path}: no such image file")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise fail(f"its header claims more than {MAX_IMAGE_PIXELS:,} pixels: a decompression bomb, or far larger "
                   "than any model's images") from None
    except IMAGE_ERRORS as err:
        raise fail(" ".join(str(err).split())[:160] or type(err).__name__) from None


def load_image(path: str | Path, shape: Sequence[int]) -> torch.Tensor:
    """The image file at ``path`` as [1, C, H, W] float32 in [−1, 1] for examples of ``shape``
    (C, H, W): converted to grey or RGB as C says; its size must be H×W (one-line error otherwise)."""
    C, H, W = shape
    with open_image(path, lambda why: DifftkError(f"{path}: no such image file" if why == "no such file" else
                                                  f"{path} is not an image (PNG, JPEG, …): {why}")) as image:
        if image.size != (W, H):
            raise DifftkError(f"{path} is {image.width}×{image.height}; the model's examples are {W}×{H}: resize it first")
        image = image.convert("L" if C == 1 else "RGB")
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(H, W, -1).permute(2, 0, 1)
    return (array.to(torch.float32) / 127.5 - 1.0).unsqueeze(0)


#: the named masks: which half of the image is generated (1); the rest is kept
HALVES: tuple[str, ...] = ("left", "right", "top", "bottom")


def load_mask(source: str | Path, shape: Sequence[int]) -> torch.Tensor:
    """A mask [1, 1, H, W] of 0 (keep) and 1 (generate) for examples of ``shape``: a named half
    (:data:`HALVES`: that half is generated) or an image file whose white pixels (≥ 128) are generated."""
    _, H, W = shape
    if str(source) in HALVES:
        mask = torch.zeros(1, 1, H, W)
        side = str(source)
        if side == "left":
            mask[..., : W // 2] = 1
        elif side == "right":
            mask[..., W // 2:] = 1
        elif side == "top":
            mask[..., : H // 2, :] = 1
        else:
            mask[..., H // 2:, :] = 1
        return mask
    grey = load_image(source, (1, H, W))
    return (grey >= 0.0).to(torch.float32)  # ≥ 128 of 255
