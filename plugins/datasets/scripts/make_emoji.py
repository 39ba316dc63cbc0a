"""Build ``src/difftk_datasets/data/emoji.npz``, the colour dataset shipped with the plugin.

Sources, both Debian packages (bookworm):

- ``fonts-noto-color-emoji`` 2.042: ``/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf``, Google's
  Noto Color Emoji, whose emoji images are Apache-2.0 (the package's copyright file; the font file
  itself is SIL OFL 1.1). Its colour bitmaps (CBDT) exist at one size, 109 px, with 136×128 glyphs.
- ``unicode-data`` 15.0.0: ``/usr/share/unicode/emoji/emoji-test.txt``, which lists every emoji
  with its Unicode group and CLDR short name.

Every fully-qualified emoji of the file but the skin-tone variants is rendered with Pillow (the
raqm layout, so that ZWJ sequences and flags become their single glyph) at 109 px in colour,
composited onto white, cropped to its ink, padded to a centred square with a 2 px margin at the
target size, and downscaled to 32×32 with a Lanczos filter (antialiased). A sequence the font does
not draw as one glyph is dropped (it would be two pictures side by side), and so are exact
duplicates. The skin-tone variants (1,785 of the 2,148 People & Body emoji) are the same picture
recoloured: kept, they would make ``people`` 59 % of the data.

Classes are the Unicode emoji groups, with the five groups of things merged (see :data:`CLASSES`
and docs/datasets.md); ``Component`` (four hair styles and five skin-tone swatches) is dropped.

Split: in each class, the 15 % of emoji whose sequence has the smallest SHA-256 are ``test``, the
rest ``train``: stratified, and independent of the file's order.

The output is an ``.npz`` archive (no pickled objects) of ``train_images``/``test_images``
(uint8 [N, 32, 32, 3]), ``train_labels``/``test_labels`` (uint8 [N]) and ``train_names``/
``test_names`` (the CLDR short names, unicode strings), deflate-compressed with fixed zip
timestamps, so running the script twice gives the same bytes.

Usage::

    apt-get install fonts-noto-color-emoji unicode-data
    python plugins/datasets/scripts/make_emoji.py [--preview /tmp/emoji_grid.png]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_mnist_sample import content_digest, write_npz  # noqa: E402  (one npz writer for the plugin's data)

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "difftk_datasets" / "data" / "emoji.npz"
SIZE = 32  # pixels of the output
MARGIN = 2  # white pixels around the emoji's ink at the output size
STRIKE = 109  # the one size at which the CBDT font has bitmaps
SKIN_TONES = {0x1F3FB, 0x1F3FC, 0x1F3FD, 0x1F3FE, 0x1F3FF}
TEST_FRACTION = 0.15  # of the emoji of each class
#: class index -> (class name, the Unicode groups it holds); keep in step with difftk_datasets.emoji
CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("smileys", ("Smileys & Emotion",)),
    ("people", ("People & Body",)),
    ("things", ("Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects")),
    ("symbols", ("Symbols",)),
    ("flags", ("Flags",)),
)
GROUP_CLASS = {group: c for c, (_, groups) in enumerate(CLASSES) for group in groups}


def read_emoji_test(path: Path) -> list[tuple[str, str, str]]:
    """(sequence, group, CLDR name) of every fully-qualified emoji in ``path``, in file order."""
    rows, group = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.removeprefix("# group:").strip()
        elif "; fully-qualified" in line:
            codes, rest = line.split(";", 1)
            name = rest.split("#", 1)[1].split(maxsplit=2)[2]  # "😀 E1.0 grinning face" -> "grinning face"
            rows.append(("".join(chr(int(c, 16)) for c in codes.split()), group, name))
    if len(rows) < 3000:
        sys.exit(f"{path}: only {len(rows)} fully-qualified emoji (is it the emoji-test.txt of Unicode 15?)")
    return rows


def render(font, sequence: str) -> np.ndarray | None:
    """uint8 [SIZE, SIZE, 3]: ``sequence`` in colour on white, centred, or None if not one glyph."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (3 * STRIKE, 2 * STRIKE), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, 0), sequence, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None or box[2] - box[0] > 1.5 * STRIKE:  # empty, or several glyphs side by side
        return None
    ink = canvas.crop(box)
    side = max(ink.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    # composite before resizing: resampling a picture on white is resampling premultiplied colour
    square.alpha_composite(ink, ((side - ink.width) // 2, (side - ink.height) // 2))
    inner = SIZE - 2 * MARGIN
    out = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    out.paste(square.convert("RGB").resize((inner, inner), Image.Resampling.LANCZOS, reducing_gap=3.0), (MARGIN, MARGIN))
    return np.asarray(out, dtype=np.uint8)


def test_sequences(by_class: dict[int, list[str]]) -> set[str]:
    """The test split: in each class, the TEST_FRACTION of its sequences whose SHA-256 comes first."""
    chosen = set()
    for sequences in by_class.values():
        ranked = sorted(sequences, key=lambda q: hashlib.sha256(q.encode("utf-8")).digest())
        chosen.update(ranked[: round(TEST_FRACTION * len(ranked))])
    return chosen


def build(font_path: Path, emoji_test: Path) -> tuple[dict[str, np.ndarray], Counter]:
    """The arrays of the archive, and how many emoji were dropped and why."""
    from PIL import ImageFont, features

    if not features.check("raqm"):
        sys.exit("Pillow has no raqm layout here: ZWJ sequences and flags would render as several glyphs")
    font = ImageFont.truetype(str(font_path), STRIKE, layout_engine=ImageFont.Layout.RAQM)
    rendered, dropped, seen = [], Counter(), set()
    for sequence, group, name in read_emoji_test(emoji_test):
        if group not in GROUP_CLASS:
            dropped[f"group {group}"] += 1
            continue
        if any(ord(ch) in SKIN_TONES for ch in sequence):
            dropped["skin-tone variant"] += 1
            continue
        image = render(font, sequence)
        if image is None:
            dropped["not one glyph"] += 1
            continue
        if (key := image.tobytes()) in seen:
            dropped["duplicate picture"] += 1
            continue
        seen.add(key)
        rendered.append((sequence, GROUP_CLASS[group], name, image))
    by_class: dict[int, list[str]] = {}
    for sequence, label, _, _ in rendered:
        by_class.setdefault(label, []).append(sequence)
    test = test_sequences(by_class)
    split: dict[bool, tuple[list, list, list]] = {False: ([], [], []), True: ([], [], [])}
    for sequence, label, name, image in rendered:
        images, labels, names = split[sequence in test]
        images.append(image), labels.append(label), names.append(name)
    arrays = {}
    for part, test in (("train", False), ("test", True)):
        images, labels, names = split[test]
        arrays[f"{part}_images"] = np.stack(images)
        arrays[f"{part}_labels"] = np.asarray(labels, dtype=np.uint8)
        arrays[f"{part}_names"] = np.asarray(names, dtype=np.str_)
    return arrays, dropped


def save_preview(path: Path, images: np.ndarray, labels: np.ndarray, per_class: int = 16) -> None:
    """One row per class: its first ``per_class`` images, scaled ×3."""
    from PIL import Image

    rows = []
    for c in range(len(CLASSES)):
        pick = images[labels == c][:per_class]
        pick = np.concatenate([pick, np.full((per_class - len(pick), SIZE, SIZE, 3), 255, np.uint8)])
        rows.append(np.concatenate(list(pick), axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid.resize((grid.width * 3, grid.height * 3), Image.Resampling.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=FONT, help=f"the Noto Color Emoji font (default: {FONT})")
    parser.add_argument("--emoji-test", type=Path, default=EMOJI_TEST, help=f"Unicode's emoji-test.txt (default: {EMOJI_TEST})")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help=f"where to write (default: {OUTPUT})")
    parser.add_argument("--preview", type=Path, help="also save a PNG grid of 16 training images per class here")
    args = parser.parse_args(argv)
    for path in (args.font, args.emoji_test):
        if not path.is_file():
            sys.exit(f"{path} is missing: apt-get install fonts-noto-color-emoji unicode-data")

    arrays, dropped = build(args.font, args.emoji_test)
    write_npz(args.output, arrays)
    if args.preview:
        save_preview(args.preview, arrays["train_images"], arrays["train_labels"])
    for what in ("font", "emoji_test"):
        path = getattr(args, what)
        print(f"source {path} sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()})")
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        counts = np.bincount(labels, minlength=len(CLASSES))
        print(f"{part}: {len(images):,} images, content sha256 {content_digest(images, labels)}; per class "
              + ", ".join(f"{name} {n}" for (name, _), n in zip(CLASSES, counts)))
    print("dropped: " + ", ".join(f"{why} {n}" for why, n in sorted(dropped.items())))


if __name__ == "__main__":
    main()
