"""The benchmark suite: training and sampling throughput per precision and layout, with the
references of the other scripts, for the device it runs on.

    .venv/bin/python benchmarks/suite.py [--quick] [--device auto] [--compile]

Prints the device, torch version, threads and settings, then
1. training throughput (img/s: forward, L_simple, backward, AdamW, EMA — one Trainer step) and
   sampling throughput (img/s of finished samples: DDIM, 50 steps) of unet-attn in the MNIST
   1×28×28 configuration (the shipped model's, 1.19 M parameters) and a CIFAR 3×32×32
   configuration (base 64, ×(1, 2, 2, 2), 2 blocks, attention at 16×16), for fp32, bf16
   autocast and channels-last (and torch.compile with --compile) — fp32 is the reference column;
2. the sampler overhead per step against raw arithmetic (sampler_overhead.py), the cost of a
   cfg step against an unguided step of twice the batch (cfg_cost.py), and unet-attn against
   diffusers' UNet2DModel (unet_vs_diffusers.py — only when diffusers is importable:
   `pip install diffusers` into the environment first).
--quick (≈ 2–3 min on 2 CPU cores) uses small batches and few repeats.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import difftk
import torch
from difftk.data.arrays import ArrayDataset
from difftk.data.pipeline_data import size_to_data
from difftk.model import Model
from difftk.runtime.device import resolve_device
from difftk.runtime.fastpath import autocast, prepare, to_memory_format
from difftk.training.config import TrainConfig
from difftk.training.trainer import Trainer

HERE = Path(__file__).parent
CONFIGS = {
    "MNIST 1×28×28": dict(in_channels=1, image_size=28, base_channels=32, norm_groups=8, channel_mult=(1, 2, 2),
                          num_res_blocks=1, attention_resolutions=(7,), dropout=0.1, num_classes=10),
    "CIFAR 3×32×32": dict(in_channels=3, image_size=32, base_channels=64, norm_groups=32, channel_mult=(1, 2, 2, 2),
                          num_res_blocks=2, attention_resolutions=(16,), dropout=0.1, num_classes=10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def training_rate(options: dict, batch: int, repeats: int, device: torch.device, **settings) -> float:
    shape = (options["in_channels"], options["image_size"], options["image_size"])
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randint(0, 256, (max(batch * 4, 64), *shape), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (max(batch * 4, 64),), generator=g), 10, "random")
    spec = difftk.compose(schedule="cosine", sampler="ddim", objective="simple",
                          denoiser={"name": "unet-attn", "options": options}).spec
    torch.manual_seed(0)
    pipeline, _ = size_to_data(spec, data)
    trainer = Trainer(pipeline, data, TrainConfig(steps=10_000, batch_size=batch, sample_every=0, **settings), device=device)
    return batch / _timed(trainer.train_step, repeats, device)


def sampling_rate(options: dict, batch: int, steps: int, repeats: int, device: torch.device, precision: str,
                  channels_last: bool, compile: bool) -> float:
    torch.manual_seed(0)
    model = difftk.create("denoiser", "unet-attn", **options).to(device).eval()
    net = prepare(model, channels_last=channels_last, compile=compile)
    schedule = difftk.create("schedule", "cosine")
    sampler = difftk.create("sampler", "ddim", clip_x0=1.0)
    shape = (options["in_channels"], options["image_size"], options["image_size"])
    cond = torch.arange(batch) % 10

    pipeline = difftk.compose(schedule=schedule, sampler=sampler)
    sampled = Model(pipeline, net, {"kind": "image", "shape": list(shape)})

    def draw():
        with autocast(precision, device):
            x = sampled.sample(batch, steps=steps, labels=cond)
        return to_memory_format(x, channels_last)

    return batch / _timed(draw, repeats, device)


def run_script(name: str, *args: str) -> None:
    print(f"\n$ python benchmarks/{name} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / name), *args], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, few repeats (≈ 2–3 min on 2 CPU cores)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start on a CPU)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    quick = args.quick
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"device: {device} ({name}), {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    settings = [("fp32", dict(precision="fp32")), ("bf16", dict(precision="bf16")),
                ("channels-last", dict(precision="fp32", channels_last=True))]
    if args.compile:
        settings.append(("compiled", dict(precision="fp32", compile=True)))
    train_batch, sample_batch, steps, repeats = (16, 16, 10, 2) if quick else (64, 256, 50, 3)
    if device.type == "cuda":
        train_batch, sample_batch = 128, 512
    print(f"training: batch {train_batch}, median of {repeats} steps; sampling: DDIM {steps} steps, batch {sample_batch}, "
          f"median of {repeats}; img/s, higher is better; ratio against fp32 in the same run\n")
    print(f"{'configuration':16s} {'setting':14s} {'train img/s':>12s} {'×fp32':>7s} {'sample img/s':>13s} {'×fp32':>7s}")
    for label, options in CONFIGS.items():
        ref = None
        for setting, cfg in settings:
            tr = training_rate(options, train_batch, repeats, device, **cfg)
            sr = sampling_rate(options, sample_batch, steps, repeats, device, cfg["precision"],
                               cfg.get("channels_last", False), cfg.get("compile", False))
            ref = ref or (tr, sr)
            print(f"{label:16s} {setting:14s} {tr:12.1f} {tr / ref[0]:6.2f}× {sr:13.1f} {sr / ref[1]:6.2f}×", flush=True)
    run_script("sampler_overhead.py", "--steps", "50" if quick else "200", "--repeats", "2" if quick else "5")
    run_script("cfg_cost.py", "--repeats", "3" if quick else "15", "--device", str(device))
    if importlib.util.find_spec("diffusers") is not None:
        run_script("unet_vs_diffusers.py", "--repeats", "2" if quick else "5", "--warmup", "1" if quick else "2")
    else:
        print("\nunet-attn vs diffusers' UNet2DModel: skipped, diffusers is not installed "
              "(`.venv/bin/pip install diffusers`, then run benchmarks/unet_vs_diffusers.py)")


if __name__ == "__main__":
    main()
