"""How well a trained autoencoder reconstructs: PSNR, and the reconstructions as an npz for any FID.

Run it as a command::

    python -m difftk_autoencoder.measure mnist-kl.safetensors --data mnist -n 2000 --npz recon.npz --originals orig.npz
    difftk evaluate --samples recon.npz --metric fid     # against MNIST's held-out split
    difftk evaluate --samples orig.npz --metric fid      # the same examples unreconstructed: the floor

PSNR = 10·log₁₀(1/MSE) on pixels in [0, 1] (the data's [−1, 1] mapped there, the reconstruction
clamped), per image, averaged; the reconstruction is D(mean of q(z | x)), as a latent model's
samples are decoded.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from difftk.data.pipeline_data import load_dataset
from difftk.errors import DifftkError
from difftk.evaluation.sample_files import check_samples_output, write_npz

from difftk_autoencoder import load


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of ``y`` against ``x``, both in [−1, 1]: 10·log₁₀(1/MSE) on [0, 1] pixels."""
    a, b = (x.clamp(-1, 1) + 1) / 2, (y.clamp(-1, 1) + 1) / 2
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


@torch.no_grad()
def reconstruct(autoencoder: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """D(mean of q(z | x)), ``batch_size`` examples at a time."""
    return torch.cat([autoencoder.decode(autoencoder.encode(part).mean) for part in x.split(batch_size)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m difftk_autoencoder.measure",
        description="Reconstruction PSNR of a kl autoencoder, and its reconstructions as an npz.",
    )
    parser.add_argument("weights", help="a weights file, or the name of shipped weights (e.g. mnist-kl)")
    parser.add_argument("--data", default="mnist", help="dataset NAME[:PATH]")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("-n", type=int, default=2000, help="examples (the first n of the split)")
    parser.add_argument("--npz", type=Path, help="write the reconstructions here")
    parser.add_argument("--originals", type=Path, help="write the same examples, unreconstructed, here")
    args = parser.parse_args(argv)
    try:
        for out in (args.npz, args.originals):  # before any work: never replace what difftk did not write
            if out is not None:
                check_samples_output(out, "npz")
        ae = load(args.weights)
        name, _, path = args.data.partition(":")
        dataset, _ = load_dataset(name, path or None, split=args.split)
        ae.latent_shape(tuple(dataset.shape))  # data the autoencoder cannot take: one line, not a traceback
        n = min(args.n, len(dataset))
        x, y = dataset.batch(torch.arange(n))
        x_hat = reconstruct(ae, x)
        values = psnr(x, x_hat)
        mse = float(((x.clamp(-1, 1) - x_hat.clamp(-1, 1)) / 2).pow(2).mean())
        print(
            f"{n} {args.split} examples of {name}: PSNR {float(values.mean()):.2f} ± "
            f"{float(values.std()) / math.sqrt(n):.2f} dB (mean ± SE over images; of the mean MSE: "
            f"{10 * math.log10(1 / mse):.2f} dB)"
        )
        if args.npz:
            write_npz(x_hat, args.npz, y)
            print(f"wrote {args.npz}")
        if args.originals:
            write_npz(x, args.originals, y)
            print(f"wrote {args.originals}")
    except DifftkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
