"""The data pipeline against the trainer: examples/s the loader delivers and the trainer consumes
(32×32 RGB PNGs, batch 128, 0, 1 and 2 loader workers), and the peak memory of `difftk train`
on a folder of 5,000 and of 50,000 images.

The goal (issue 29): the loader is never the bottleneck, and the peak RSS for 50,000 images is
within 1.5× of that for 5,000 — an image folder is indexed, not decoded, up front.

    python benchmarks/data_pipeline.py                 # everything, a table for docs/benchmarks.md
    python benchmarks/data_pipeline.py --images 5000   # a smaller folder for the throughput part

The PNGs are generated into a temporary directory (smooth colour fields with noise, so they
compress like photographs rather than like noise or flat colour) and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BATCH = 128
SIZE = 32
CLASSES = 10


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 32×32 RGB PNGs in ten class folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.uniform(0, 255, (3, 3))
        field = a[:, 0, None, None] + a[:, 1, None, None] * xx + a[:, 2, None, None] * yy
        pixels = np.clip(field.transpose(1, 2, 0) / 2 + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class{i % CLASSES}" / f"{i:06d}.png")
    return root


def loader_rate(folder: Path, workers: int, batches: int) -> float:
    """Examples/s the loader delivers: decoded uint8 batches of the trainer's order, nothing else."""
    import difftk
    from difftk.data.loader import BatchReader
    from difftk.training.order import BatchOrder

    data = difftk.create("dataset", "image-folder", path=str(folder)).load()
    order = BatchOrder(len(data), BATCH, seed=1)
    ahead = order.copy()

    def upcoming():
        while True:
            yield ahead.next()

    reader = BatchReader(data, upcoming(), workers)
    try:
        reader.read(order.next())  # workers started, first batch in
        start = time.perf_counter()
        for _ in range(batches):
            reader.read(order.next())
        return batches * BATCH / (time.perf_counter() - start)
    finally:
        reader.close()


def trainer_rate(folder: Path, workers: int, steps: int) -> float:
    """Examples/s a training run consumes with the default unet-attn (fitted to 32 px), reading
    from the folder with ``workers`` loader processes: optimizer steps, data included."""
    import difftk
    from difftk.data.pipeline_data import load_dataset, size_to_data
    from difftk.training.config import TrainConfig
    from difftk.training.trainer import Trainer

    data, _ = load_dataset("image-folder", str(folder))
    spec = difftk.compose(schedule="cosine", sampler="ddim", denoiser="unet-attn", objective="simple").spec
    torch.manual_seed(0)
    pipeline, _ = size_to_data(spec, data)
    trainer = Trainer(pipeline, data, TrainConfig(steps=steps + 1, batch_size=BATCH, workers=workers))
    trainer.feed.start(workers)
    try:
        trainer.train_step()  # warm-up: first allocations, workers started
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        return steps * BATCH / (time.perf_counter() - start)
    finally:
        trainer.feed.close()


def peak_rss(folder: Path, workers: int, steps: int) -> float:
    """Peak RSS (MiB) of `difftk train` on the folder: the largest of its processes (the trainer,
    its loader workers), as the kernel's maxrss of the waited-for children reports it."""
    with tempfile.TemporaryDirectory() as work:
        code = ("import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        difftk = str(Path(sys.executable).with_name("difftk"))
        pipeline = Path(work) / "p.toml"
        subprocess.run([difftk, "compose", "--schedule", "cosine", "--sampler", "ddim", "--denoiser", "unet-attn",
                        "--objective", "simple", "-o", str(pipeline)], check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([sys.executable, "-c", code, difftk, "train", str(pipeline), "--data", f"image-folder:{folder}",
                              "--steps", str(steps), "--batch-size", str(BATCH), "--workers", str(workers),
                              "--sample-every", "0", "--out", str(Path(work) / "run")],
                             check=True, capture_output=True, text=True)
        return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images in the throughput folder")
    parser.add_argument("--batches", type=int, default=20, help="loader batches timed per worker count")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps timed per worker count")
    parser.add_argument("--rss-steps", type=int, default=3, help="optimizer steps of each peak-RSS run")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the 5,000 / 50,000 peak-RSS runs")
    args = parser.parse_args()
    print(f"# data pipeline — {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) "
          f"(shared with other work: figures are noisy), torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        small = make_folder(Path(tmp) / "small", args.images)
        print(f"generated {args.images:,} PNGs of {SIZE}×{SIZE} in {time.perf_counter() - t0:.1f} s")
        print(f"\n| loader workers | loader delivers (ex/s) | trainer consumes (ex/s), batch {BATCH} |")
        print("|---:|---:|---:|")
        for workers in (0, 1, 2):
            delivered = loader_rate(small, workers, args.batches)
            consumed = trainer_rate(small, workers, args.steps)
            print(f"| {workers} | {delivered:,.0f} | {consumed:,.1f} |", flush=True)
        if args.skip_rss:
            return
        print(f"\n| images | peak RSS of `difftk train` (MiB), workers 2, batch {BATCH}, {args.rss_steps} steps |")
        print("|---:|---:|")
        rss = {}
        for n in (5000, 50000):
            folder = small if n == args.images else make_folder(Path(tmp) / f"n{n}", n)
            rss[n] = peak_rss(folder, 2, args.rss_steps)
            print(f"| {n:,} | {rss[n]:,.0f} |", flush=True)
        print(f"\n50,000 / 5,000: {rss[50000] / rss[5000]:.2f}× (goal ≤ 1.5×)")


if __name__ == "__main__":
    main()
