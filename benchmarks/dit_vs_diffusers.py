"""dit against diffusers' DiTTransformer2DModel on the CPU: the same network with the same weights, in one run.

diffusers' model is built at the configuration below (class-conditional, learned σ: 2C output
channels), its parameters drawn at random, and its per-block time-and-class embeddings set equal
(as in every DiT checkpoint converted from the paper's); it is saved with ``save_pretrained`` and
read back by the diffusers bridge as difftk's ``dit``, so the two compute the same function: the
outputs are compared before anything is timed (≤ 1e-5 of the output's scale, float32).

Timed, alternating the two so that load from other processes hits both alike: a training step
(forward, MSE loss on the output, backward, AdamW step) and inference (forward under
``torch.no_grad``), float32, the same inputs, after warm-up; the minimum of the repeats is
reported (on shared cores the minimum is the run least disturbed by others), both of the wall
clock and of the process's CPU time (all threads together: under ``OMP_WAIT_POLICY=PASSIVE``
idle threads sleep, so it counts the work done and little of the waiting for cores that other
processes hold). The ratio is diffusers' time over dit's. A third row runs dit with its linear maps forced onto ``F.linear``
(:mod:`difftk_dit.linear` off), to show what the fused oneDNN products contribute at inference.

Achieved GFLOP/s count the network's multiply-adds by formula (2 FLOPs each: every linear map,
the two attention products, the embeddings; a training step as 3× the forward, the usual
backward = 2× forward) and divide by the time; the same count is used for both, so diffusers'
extra work (one embedding network per block) is not credited to it. The fraction is of this
machine's sgemm rate (a float32 1024² matrix product at the same threads), measured between
the repeats of the same run, the best of those measurements, on the same clock.

    python benchmarks/dit_vs_diffusers.py [--batch 32] [--size 16] [--channels 4] [--patch 2]
        [--width 384] [--depth 6] [--heads 6] [--repeats 7] [--warmup 2] [--threads N]

diffusers is needed for this script only.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable

# The OpenMP setting the `difftk` command runs with (cli/src/difftk_cli/__init__.py); it must be
# set before torch loads. Both models are timed under it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

FREQUENCY_DIM = 256


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def forward_flops(a: argparse.Namespace, classes: bool = True) -> float:
    """FLOPs of one forward pass of one example (2 per multiply-add)."""
    N, d, m = (a.size // a.patch) ** 2, a.width, 4 * a.width
    patch_in, patch_out = a.patch**2 * a.channels, a.patch**2 * 2 * a.channels
    block = 2 * N * d * 3 * d + 2 * 2 * N * N * d + 2 * N * d * d + 2 * 2 * N * d * m
    embed = 2 * FREQUENCY_DIM * d + 2 * d * d + 2 * d * (6 * a.depth + 2) * d
    return 2 * N * patch_in * d + a.depth * block + embed + 2 * N * d * patch_out


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> tuple[float, float]:
    """The best float32 n×n×n matrix-product rate at the current threads: GFLOP per second of wall
    clock, and GFLOP per second of the process's CPU time (all threads together)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, used = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - used)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / cpu / 1e9


def build_pair(a: argparse.Namespace, folder: str):
    """diffusers' DiT with random weights and difftk's dit read from its folder through the bridge."""
    from difftk_diffusers.transformer import load_dit
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    ref = DiTTransformer2DModel(
        num_attention_heads=a.heads,
        attention_head_dim=a.width // a.heads,
        in_channels=a.channels,
        out_channels=2 * a.channels,
        num_layers=a.depth,
        sample_size=a.size,
        patch_size=a.patch,
        num_embeds_ada_norm=a.classes,
    )
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(0.02 * torch.randn(p.shape))
        first = ref.transformer_blocks[0].norm1.emb.state_dict()
        for block in ref.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first)
    ref.save_pretrained(folder)
    return ref, load_dit(folder)


class Contender:
    """One model with its optimiser and a way to call it."""

    def __init__(self, name: str, model: torch.nn.Module, call: Callable, context: Callable = contextlib.nullcontext):
        self.name, self.model, self.call, self.context = name, model, call, context
        self.model.requires_grad_(True)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.params = sum(p.numel() for p in model.parameters())
        self.times: dict[str, list[float]] = {"train": [], "infer": []}  # wall clock
        self.cpu: dict[str, list[float]] = {"train": [], "infer": []}  # CPU time of the process, all threads

    def train_step(self, x, k, y, target) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        (self.call(self.model, x, k, y) - target).pow(2).mean().backward()
        self.opt.step()

    def infer(self, x, k, y, target) -> None:
        self.model.eval()
        with torch.no_grad():
            self.call(self.model, x, k, y)

    def run(self, what: str, inputs: tuple, record: bool) -> None:
        step = self.train_step if what == "train" else self.infer
        with self.context():
            start, cpu = time.perf_counter(), time.process_time()
            step(*inputs)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if record:
            self.times[what].append(elapsed)
            self.cpu[what].append(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=16, help="input side (latents: 16 for 128-px images)")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--patch", type=int, default=2)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    try:
        import diffusers
    except ImportError:
        raise SystemExit("diffusers is not installed; this benchmark needs it (pip install diffusers)") from None

    from difftk_dit.linear import fused_linear

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        ref, dit = build_pair(args, folder)
    g = torch.Generator().manual_seed(1)
    B, C, S = args.batch, args.channels, args.size
    x = torch.randn(B, C, S, S, generator=g)
    t = (torch.randint(0, 1000, (B,), generator=g).double() + 1).div(1000).float()  # difftk's time of step k
    k = t * 1000 - 1  # diffusers' step, as the dit computes it from t (so both embed the same number)
    y = torch.randint(0, args.classes + 1, (B,), generator=g)
    target = torch.randn(B, 2 * C, S, S, generator=g)
    with torch.no_grad():
        a, b = ref.eval()(x, timestep=k, class_labels=y).sample, dit.eval()(x, t, y)
    gap = float((a - b).abs().max() / a.abs().max())
    if gap > 1e-5:
        raise SystemExit(f"the two models disagree: max |Δ| = {gap:.2e} of the output's scale")

    contenders = [
        Contender("diffusers DiTTransformer2DModel", ref, lambda m, x, k, y: m(x, timestep=k, class_labels=y).sample),
        Contender("difftk dit", dit, lambda m, x, k, y: m(x, t, y)),
        Contender(
            "  dit with F.linear only", copy.deepcopy(dit), lambda m, x, k, y: m(x, t, y), lambda: fused_linear(False)
        ),
    ]
    load_before = os.getloadavg()[0]
    sgemm = []
    for what in ("train", "infer"):
        for i in range(args.warmup + args.repeats):
            sgemm.append(sgemm_gflops(repeats=2))
            for c in contenders if i % 2 == 0 else contenders[::-1]:
                c.run(what, (x, k, y, target), record=i >= args.warmup)
    rate = {"wall": max(r[0] for r in sgemm), "cpu": max(r[1] for r in sgemm)}

    fwd = forward_flops(args) * B
    N = (S // args.patch) ** 2
    print(
        f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, diffusers {diffusers.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"{datetime.date.today()}, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"network: {C}×{S}×{S} input, patch {args.patch} ({N} tokens), width {args.width}, depth {args.depth}, "
        f"{args.heads} heads, {args.classes} classes, learned σ; batch {B}, float32; min of {args.repeats} after "
        f"{args.warmup} warm-up; outputs agree to {gap:.1e} of scale; forward {fwd / 1e9:.2f} GFLOP, training step "
        f"{3 * fwd / 1e9:.2f} GFLOP"
    )
    for clock, label, unit in (("wall", "wall clock", "GFLOP/s"), ("cpu", "CPU time of the process", "GFLOP/CPU-s")):
        median = sorted(r[0 if clock == "wall" else 1] for r in sgemm)[len(sgemm) // 2]
        print(
            f"\n{label}: sgemm (1024³ float32, {torch.get_num_threads()} threads) {rate[clock]:.0f} {unit} (best of "
            f"{len(sgemm)} measurements between the repeats; median {median:.0f})"
        )
        times = {c.name: c.times if clock == "wall" else c.cpu for c in contenders}
        ref_t = {w: min(times[contenders[0].name][w]) for w in ("train", "infer")}
        print(
            f"| {'model':31s} | {'params':>10s} | {'train ms':>8s} | {'ratio':>6s} | {unit:>11s} | {'of sgemm':>8s} "
            f"| {'infer ms':>8s} | {'ratio':>6s} | {unit:>11s} | {'of sgemm':>8s} |"
        )
        print("|" + "|".join("-" * (w + 2) for w in (31, 10, 8, 6, 11, 8, 8, 6, 11, 8)) + "|")
        for c in contenders:
            tr, inf = min(times[c.name]["train"]), min(times[c.name]["infer"])
            g_tr, g_inf = 3 * fwd / tr / 1e9, fwd / inf / 1e9
            print(
                f"| {c.name:31s} | {c.params:>10,} | {1e3 * tr:>8.1f} | {ref_t['train'] / tr:>5.2f}× | {g_tr:>11.1f} | "
                f"{100 * g_tr / rate[clock]:>7.1f}% | {1e3 * inf:>8.1f} | {ref_t['infer'] / inf:>5.2f}× | "
                f"{g_inf:>11.1f} | {100 * g_inf / rate[clock]:>7.1f}% |"
            )


if __name__ == "__main__":
    main()
