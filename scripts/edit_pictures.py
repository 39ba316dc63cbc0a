"""The pictures of docs/editing.md: SDEdit of a training digit over the strength s, and an inpainted half digit.

    .venv/bin/python scripts/edit_pictures.py            # writes docs/img/sdedit_strip.png, docs/img/inpaint_half.png

Both come from the shipped model through `Model.sample`, with DDIM (20 steps within [0, s]), clipping
off, unguided, seed 0, the same as `difftk sample mnist-cfg --init train:K --strength S`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import difftk
import torch
from difftk.data.images import image_grid, load_mask, save_png

STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def enlarged(image, factor: int = 3):
    """Pixels ×3 (nearest), so a 28×28 digit reads on a page."""
    return image.resize((image.width * factor, image.height * factor), resample=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-cfg")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=3, help="samples (seeds) per strength")
    args = parser.parse_args()
    model = difftk.load(args.model)
    x, y = model.examples("train", range(200))
    nine = x[(y == 9).nonzero()[0]]
    index = int((y == 9).nonzero()[0])
    columns = [nine.expand(args.rows, -1, -1, -1)]
    for s in STRENGTHS:
        columns.append(model.sample(args.rows, sampler="ddim", steps=args.steps, init=nine, strength=s, labels=9,
                                    guidance=False, seed=0))
        print(f"s = {s}: mean |x − x₀| = {float((columns[-1] - nine).abs().mean()):.3f}, "
              f"max |x| = {float(columns[-1].abs().max()):.3f}")
    strip = torch.stack(columns, dim=1).flatten(0, 1)  # rows: seeds; columns: the digit, then s = 0.1 … 1
    out = Path(args.out)
    save_png(enlarged(image_grid(strip, cols=len(columns))), out / "sdedit_strip.png")
    print(f"wrote {out / 'sdedit_strip.png'}: train example {index} (a 9), then s = {', '.join(map(str, STRENGTHS))}")

    rows = []
    for side in ("right", "bottom"):
        mask = load_mask(side, model.data_shape)
        drawn = model.sample(args.rows, sampler="ddim", steps=args.steps, init=nine, mask=mask, labels=9,
                             guidance=False, seed=0)
        kept = float((drawn * (1 - mask) - nine * (1 - mask)).abs().max())
        print(f"mask {side}: known half kept to {kept:.1e}, max |x| = {float(drawn.abs().max()):.3f}")
        rows.append(torch.cat([nine, nine * (1 - mask) - mask, drawn]))
    save_png(enlarged(image_grid(torch.cat(rows), cols=args.rows + 2)), out / "inpaint_half.png")
    print(f"wrote {out / 'inpaint_half.png'}: the digit, what is kept, {args.rows} inpaintings; right half, then bottom half")


if __name__ == "__main__":
    main()
