"""unet-attn against diffusers' UNet2DModel on the CPU, same network, same run.

Both models are the DDPM/ADM U-Net for 1×28×28 images: widths 64-128-128, two residual blocks
per level (three on the way up), self-attention with 4 heads after every residual block at
14×14 and in the middle, scale-shift time conditioning, 32 GroupNorm groups, dropout 0.1,
unconditional. The parameter counts are printed (they must agree within 10%).

Timed: a training step (forward, ε-MSE loss, backward, AdamW step) in train mode and inference
(forward under ``torch.inference_mode`` in eval mode, as difftk samples), float32, the same batch
and inputs. The models take turns within every repeat (in alternating order), so that load from
other processes hits all alike, and the **minimum** over the repeats is reported: on cores shared
with other jobs, the least time is the estimate that their load moves least. unet-attn runs three
ways: with its 3×3 convolution algorithms chosen by measurement (the default, timed afresh in this
run's warm-up: the cache file is off here), and forced to NNPACK and to oneDNN for every eligible
convolution.

Achieved GFLOP/s divide each model's own FLOPs (``torch.utils.flop_counter``: convolutions and
matrix products, forward, plus backward for a training step; the AdamW step is not counted) by its
time; the sgemm rate is the best of float32 2048×2048 matrix products on the same threads, two
timed after every round of the models. ``--profile`` adds the top operators of one step of each model.

    python benchmarks/unet_vs_diffusers.py [--batch 64] [--repeats 5] [--warmup 2] [--threads N] [--profile]

diffusers is needed for this script only: ``pip install diffusers``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import time
from collections.abc import Callable

# The OpenMP setting the `difftk` command runs with (cli/src/difftk_cli/__init__.py); it must be
# set before torch loads. Both models are timed under it. Override from the shell to compare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Measure the convolution choices in this run rather than read an earlier run's.
os.environ.setdefault("DIFFTK_CONV3X3_CACHE", "off")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


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
        self.flops: dict[str, int] = {}

    def train_step(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = (self.call(self.model, x, t) - eps).pow(2).mean()
        loss.backward()
        self.opt.step()

    def infer(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> None:
        self.model.eval()
        with torch.inference_mode():
            self.call(self.model, x, t)

    def step(self, what: str) -> Callable:
        return self.train_step if what == "train" else self.infer

    def run(self, what: str, args: tuple, record: bool) -> None:
        with self.context():
            start = time.perf_counter()
            self.step(what)(*args)
            elapsed = time.perf_counter() - start
        if record:
            self.times[what].append(elapsed * 1e3)

    def count_flops(self, args: tuple) -> None:
        """FLOPs of a training step's forward and backward, and of a forward pass (oneDNN's
        convolutions are the ones the counter knows; NNPACK computes the same functions)."""
        from difftk_unet_attn import force_conv3x3

        x, t, _ = args
        with force_conv3x3("onednn"):
            self.model.train()
            with FlopCounterMode(display=False) as counter:
                self.call(self.model, x, t).pow(2).mean().backward()
            self.flops["train"] = counter.get_total_flops()
            self.model.zero_grad(set_to_none=True)
            self.model.eval()
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self.call(self.model, x, t)
            self.flops["infer"] = counter.get_total_flops()


class Sgemm:
    """The machine's float32 matrix-product rate: n×n products on the current threads, timed
    between the models' runs; the best is kept."""

    def __init__(self, n: int = 2048) -> None:
        g = torch.Generator().manual_seed(2)
        self.n, self.a, self.b = n, torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        self.best = float("inf")
        torch.mm(self.a, self.b)

    def run(self, repeats: int = 2) -> None:
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(self.a, self.b)
            self.best = min(self.best, time.perf_counter() - start)

    @property
    def gflops(self) -> float:
        return 2 * self.n**3 / self.best / 1e9


def cpu_name() -> str:
    from difftk_unet_attn.conv_choice import cpu_model

    return cpu_model()


def profile(contenders: list[Contender], args: tuple, rows: int) -> None:
    """The operators that take the most CPU time in one training step and one inference of each."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for c in contenders:
        for what in ("train", "infer"):
            with c.context(), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                c.step(what)(*args)
            print(f"\n== {c.name.strip()}, {'training step' if what == 'train' else 'inference'}: top operators by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS", help="print the top ROWS operators")
    args = parser.parse_args()
    try:
        import diffusers
    except ImportError:
        raise SystemExit("diffusers is not installed; this benchmark needs it (pip install diffusers)") from None
    from difftk_unet_attn import conv, force_conv3x3

    torch.set_num_threads(args.threads)
    contenders = []
    for name, build, call, context in (
        ("diffusers UNet2DModel", build_diffusers, lambda m, x, t: m(x, 1000.0 * t).sample, contextlib.nullcontext),
        ("unet-attn (measured choice)", build_unet_attn, lambda m, x, t: m(x, t), contextlib.nullcontext),
        ("  forcing NNPACK", build_unet_attn, lambda m, x, t: m(x, t), lambda: force_conv3x3("nnpack")),
        ("  forcing oneDNN", build_unet_attn, lambda m, x, t: m(x, t), lambda: force_conv3x3("onednn")),
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
    for c in contenders[:2]:
        c.count_flops((x, t, eps))
    for c in contenders[2:]:
        c.flops = contenders[1].flops
    gemm = Sgemm()
    measuring = time.perf_counter()
    for what in ("train", "infer"):
        for i in range(args.warmup + args.repeats):
            order = contenders if i % 2 == 0 else contenders[::-1]
            for c in order:
                c.run(what, (x, t, eps), record=i >= args.warmup)
            gemm.run()
    elapsed = time.perf_counter() - measuring
    sgemm = gemm.gflops
    choices = list(conv.chooser.chosen().values())

    print(f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '') or 'unset'}")
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, batch {args.batch}×1×28×28 float32, "
          f"min of {args.repeats} after {args.warmup} warm-up, models interleaved, {datetime.date.today()}, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {elapsed:.0f} s")
    print(f"parameters: unet-attn {ours:,}, UNet2DModel {base:,} ({100 * (ours - base) / base:+.3f}%)")
    print(f"FLOPs per training step (fwd+bwd) / inference: unet-attn {contenders[1].flops['train'] / 1e9:.1f} / "
          f"{contenders[1].flops['infer'] / 1e9:.1f} G, UNet2DModel {contenders[0].flops['train'] / 1e9:.1f} / "
          f"{contenders[0].flops['infer'] / 1e9:.1f} G")
    print(f"sgemm 2048² float32 on {torch.get_num_threads()} threads: {sgemm:.0f} GFLOP/s (best, timed between the models' runs)")
    print(f"measured choice: NNPACK for {choices.count('nnpack')} of {len(choices)} convolution shapes "
          f"(forward and input gradient), oneDNN for the rest; measuring took {conv.chooser.seconds:.1f} s, once")
    ref = {what: min(contenders[0].times[what]) for what in ("train", "infer")}
    print(f"{'model':28s} {'train ms':>9s} {'infer ms':>9s} {'× train':>8s} {'× infer':>8s} "
          f"{'GFLOP/s train':>14s} {'GFLOP/s infer':>14s} {'sgemm % train':>14s} {'sgemm % infer':>14s}")
    for c in contenders:
        tr, inf = min(c.times["train"]), min(c.times["infer"])
        rate = {"train": c.flops["train"] / tr / 1e6, "infer": c.flops["infer"] / inf / 1e6}
        print(f"{c.name:28s} {tr:>9.1f} {inf:>9.1f} {ref['train'] / tr:>7.2f}× {ref['infer'] / inf:>7.2f}× "
              f"{rate['train']:>14.1f} {rate['infer']:>14.1f} {100 * rate['train'] / sgemm:>13.0f}% "
              f"{100 * rate['infer'] / sgemm:>13.0f}%")
    if args.profile:
        profile(contenders[:2], (x, t, eps), args.profile)


if __name__ == "__main__":
    main()
