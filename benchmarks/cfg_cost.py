"""Cost of one classifier-free-guidance step against an unguided step at twice the batch.

cfg (Ho & Salimans 2022, eq. 6) needs ε(x, c) and ε(x, ∅) at every step; difftk's ``cfg``
runs both as one batch of 2B, so a guided step at batch B should cost what an unguided step
at batch 2B costs, plus the concatenation, the split and (1+w)·ε_c − w·ε_u. Both sides are
timed in the same process, interleaved, on the same inputs: the denoiser call alone, and a
whole DDIM step (denoiser plus update). The ratio is taken on the fastest repeat of each side
(as ``timeit`` advises: slower repeats measure other processes on a shared machine); the
medians are printed beside it. The denoiser is ``unet-attn`` at a small MNIST
configuration when that plugin is installed, else the core's TinyDenoiser.

    python benchmarks/cfg_cost.py [--batch 32] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import attrs
import difftk
import torch
from difftk.sampling.steps import run_affine
from difftk.testing import TinyDenoiser

SMALL_UNET = dict(in_channels=1, image_size=28, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(14,), num_heads=4, dropout=0.0, num_classes=10, norm_groups=8)


def make_denoiser(device):
    """unet-attn (small MNIST config) if installed, else TinyDenoiser; in eval mode."""
    torch.manual_seed(0)
    if "unet-attn" in difftk.available("denoiser"):
        return "unet-attn " + ",".join(f"{k}={v}" for k, v in SMALL_UNET.items()), \
            difftk.create("denoiser", "unet-attn", **SMALL_UNET).to(device).eval()
    return "TinyDenoiser (unet-attn not installed)", TinyDenoiser(in_channels=1, num_classes=10).to(device).eval()


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="B: the guided batch (the unguided one is 2B)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    name, net = make_denoiser(device)
    schedule = difftk.create("schedule", "linear")
    sampler = difftk.create("sampler", "ddim")
    guided = difftk.create("guidance", "cfg", scale=3.0).wrap(net, schedule)
    B = args.batch
    g = torch.Generator(device=device).manual_seed(0)
    x_b = torch.randn((B, 1, 28, 28), generator=g, device=device)
    x_2b = torch.randn((2 * B, 1, 28, 28), generator=g, device=device)
    y_b = torch.arange(B, device=device) % 10
    y_2b = torch.arange(2 * B, device=device) % 10
    t_b, t_2b = torch.full((B,), 0.5, device=device), torch.full((2 * B,), 0.5, device=device)
    plan = sampler.plan(schedule, 1000)
    one = attrs.evolve(plan, times=plan.times[500:502], alpha_bars=plan.alpha_bars[500:502], c_x0=plan.c_x0[500:501],
                       c_eps=plan.c_eps[500:501], sigma=plan.sigma[500:501])  # one DDIM step, from t = 0.5

    cases = {
        "denoiser call": (lambda: guided(x_b, t_b, cond=y_b), lambda: net(x_2b, t_2b, cond=y_2b)),
        "DDIM step": (lambda: run_affine(guided, x_b, one, cond=y_b), lambda: run_affine(net, x_2b, one, cond=y_2b)),
    }
    print(f"denoiser: {name}")
    print(f"device {device}, torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads; "
          f"batch B={B}, {args.repeats} interleaved repeats: fastest (median)")
    print(f"{'what':<16}{'cfg at B (ms)':>22}{'unguided at 2B (ms)':>24}{'ratio':>9}{'median ratio':>14}")
    worst = 0.0
    for what, (fn_cfg, fn_plain) in cases.items():
        for _ in range(2):  # warm-up
            fn_cfg(), fn_plain()
        a, b = [], []
        for _ in range(args.repeats):
            a.append(timed(fn_cfg, device))
            b.append(timed(fn_plain, device))
        ms_a, ms_b = 1e3 * min(a), 1e3 * min(b)
        med_a, med_b = 1e3 * statistics.median(a), 1e3 * statistics.median(b)
        worst = max(worst, ms_a / ms_b)
        print(f"{what:<16}{ms_a:>10.1f} ({med_a:>7.1f}){ms_b:>12.1f} ({med_b:>7.1f}){ms_a / ms_b:>8.3f}×{med_a / med_b:>13.3f}×")
    print(f"worst ratio: {worst:.3f}× (target ≤ 1.05×)")


if __name__ == "__main__":
    main()
