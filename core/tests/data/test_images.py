"""The one way difftk opens an image it did not make (``open_image``): the size in the header is
bounded before anything is decoded, and every failure of Pillow is one line. ``sample --init`` and
``--mask`` (load_image, load_mask), sample folders and the image-folder dataset all go through it."""

import struct
import zlib

import pytest
from difftk.data.images import MAX_IMAGE_PIXELS, load_image, load_mask, open_image
from difftk.errors import DifftkError
from PIL import Image


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *extra: bytes, pixels: bytes | None = None) -> bytes:
    """A grey PNG; the IDAT holds ``pixels`` (default: one empty row, so a big header stays tiny)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = pixels if pixels is not None else b"\x00" * (width + 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


BOMB = png(30000, 30000, pixels=b"\x00")  # a ~70-byte file whose header claims 900 megapixels
ZTXT = png(4, 4, chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"a" * (2 << 20))), pixels=b"\x00" * 20)


@pytest.mark.parametrize("data, said", [
    (BOMB, "decompression bomb"), (png(9000, 9000, pixels=b"\x00"), f"9000×9000, more than {MAX_IMAGE_PIXELS:,} pixels"),
    (ZTXT, "Decompressed"), (b"not an image", "cannot identify image file"), (png(4, 4)[:40], "not an image"),
])
@pytest.mark.parametrize("reader", [lambda p: load_image(p, (1, 4, 4)), lambda p: load_mask(p, (1, 4, 4))])
def test_hostile_images_are_one_line(tmp_path, data, said, reader):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(DifftkError, match=said) as err:
        reader(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_the_bound_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    path.write_bytes(png(9000, 9000, pixels=b"\x00"))  # below Pillow's own limit, above difftk's
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a bomb"))
    with pytest.raises(DifftkError, match="its header says 9000×9000"), open_image(path):
        pass


def test_a_good_image_and_the_callers_own_errors_pass_through(tmp_path):
    path = tmp_path / "x.png"
    Image.new("L", (4, 4), 255).save(path)
    assert load_image(path, (1, 4, 4)).eq(1.0).all()
    with pytest.raises(DifftkError, match="is 4×4; the model's examples are 8×8"):
        load_image(path, (1, 8, 8))
    with pytest.raises(DifftkError, match="no such image file"):
        load_image(tmp_path / "missing.png", (1, 4, 4))
