"""unet-attn against diffusers' UNet2DModel on the CPU, same network, same run.

Both models are the DDPM/ADM U-Net for 1×28×28 images: widths 64-128-128, two residual blocks
per level (three on the way up), self-attention with 4 heads after every residual block at
14×14 and in the middle, scale-shift time conditioning, 32 GroupNorm groups, dropout 0.1,
unconditional. The parameter counts are printed (they must agree within 10%).

Timed, alternating the models so that load from other processes hits both alike: a training
step (forward, ε-MSE loss, backward, AdamW step) in train mode and inference (forward under
``torch.no_grad`` in eval mode), float32, the same batch and the same inputs, after warm-up;
the median of the repeats is reported. unet-attn's NNPACK Winograd path is on by default with
up to 2 threads or under ``OMP_WAIT_POLICY=PASSIVE`` (see ``difftk_unet_attn/conv.py``); the
third row forces it the other way, to show what that path contributes in the same run.

    python benchmarks/unet_vs_diffusers.py [--batch 64] [--repeats 5] [--warmup 2] [--threads N]

diffusers is needed for this script only: ``pip install diffusers``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

# The OpenMP setting the `difftk` command runs with (cli/src/difftk_cli/__init__.py); it must be
# set before torch loads. Both models are timed under it. Override from the shell to compare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def build_diffusers(dropout: float):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(64, 128, 128), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32, norm_num_groups=32, attn_norm_num_groups=32, resnet_time_scale_shift="scale_shift",
        dropout=dropout)


def build_unet_attn(dropout: float):
    import difftk

    return difftk.create("denoiser", "unet-attn", in_channels=1, image_size=28, base_channels=64,
                         channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(14,), num_heads=4,
                         norm_groups=32, scale_shift=True, dropout=dropout)


class Contender:
    """One model with its optimiser, a way to call it, and the context it runs in."""

    def __init__(self, name: str, model: torch.nn.Module, call: Callable, context: Callable = contextlib.nullcontext):
        self.name, self.model, self.call, self.context = name, model, call, context
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.params = sum(p.numel() for p in model.parameters())
        self.times: dict[str, list[float]] = {"train": [], "infer": []}

    def train_step(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = (self.call(self.model, x, t) - eps).pow(2).mean()
        loss.backward()
        self.opt.step()

    def infer(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> None:
        self.model.eval()
        with torch.no_grad():
            self.call(self.model, x, t)

    def run(self, what: str, args: tuple, record: bool) -> None:
        step = self.train_step if what == "train" else self.infer
        with self.context():
            start = time.perf_counter()
            step(*args)
            elapsed = time.perf_counter() - start
        if record:
            self.times[what].append(elapsed * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args()
    try:
        import diffusers
    except ImportError:
        raise SystemExit("diffusers is not installed; this benchmark needs it (pip install diffusers)") from None
    from difftk_unet_attn import fast_cpu_conv
    from difftk_unet_attn.conv import fast_path_enabled

    torch.set_num_threads(args.threads)
    default = "on" if fast_path_enabled() else "off"
    other = "off" if default == "on" else "on"
    contenders = []
    for name, build, call, context in (
        ("diffusers UNet2DModel", build_diffusers, lambda m, x, t: m(x, 1000.0 * t).sample, contextlib.nullcontext),
        (f"unet-attn (NNPACK {default})", build_unet_attn, lambda m, x, t: m(x, t), contextlib.nullcontext),
        (f"  forcing NNPACK {other}", build_unet_attn, lambda m, x, t: m(x, t), lambda: fast_cpu_conv(other == "on")),
    ):
        torch.manual_seed(0)
        contenders.append(Contender(name, build(args.dropout), call, context))
    base, ours = contenders[0].params, contenders[1].params
    if abs(ours - base) > 0.1 * base:
        raise SystemExit(f"parameter counts differ by more than 10%: unet-attn {ours:,} vs UNet2DModel {base:,}")

    load_before = os.getloadavg()[0]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 1, 28, 28, generator=g)
    eps = torch.randn(args.batch, 1, 28, 28, generator=g)
    t = torch.rand(args.batch, generator=g)
    for what in ("train", "infer"):
        for i in range(args.warmup + args.repeats):
            order = contenders if i % 2 == 0 else contenders[::-1]
            for c in order:
                c.run(what, (x, t, eps), record=i >= args.warmup)

    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, {platform.machine()} with {os.cpu_count()} "
          f"cores, {torch.get_num_threads()} threads, batch {args.batch}×1×28×28 float32, median of {args.repeats} "
          f"after {args.warmup} warm-up, {datetime.date.today()}, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"parameters: unet-attn {ours:,}, UNet2DModel {base:,} ({100 * (ours - base) / base:+.3f}%)")
    ref = {what: statistics.median(contenders[0].times[what]) for what in ("train", "infer")}
    print(f"{'model':28s} {'params':>10s} {'train step ms':>14s} {'inference ms':>13s} {'speed-up train':>15s} "
          f"{'speed-up infer':>15s}")
    for c in contenders:
        tr, inf = statistics.median(c.times["train"]), statistics.median(c.times["infer"])
        print(f"{c.name:28s} {c.params:>10,} {tr:>14.1f} {inf:>13.1f} {ref['train'] / tr:>14.2f}× "
              f"{ref['infer'] / inf:>14.2f}×")


if __name__ == "__main__":
    main()
