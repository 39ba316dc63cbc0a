"""Quality per CPU minute: difftk's recipe against diffusers' training recipe, the same minutes,
digits and cores, scored the same way in one run.

    python benchmarks/time_to_quality.py [--minutes 11] [--marks 3,6,9,11] [--n 1000] [--steps 10]
                                         [--out runs/time-to-quality] [--plot docs/img/time_to_quality.png]

Both arms train a class-conditional U-Net of about 1.6–1.7 M parameters on the 4,500 training digits
shipped with difftk-datasets, for --minutes of wall-clock training each (one after the other, so
neither slows the other), and keep their EMA weights at every --marks minute. The clock counts
training only: process start-up counts for difftk (each segment is a `difftk train` process),
saving a mark counts for neither.

  difftk     `difftk train` with this repository's recipe (RECIPE below): flow matching with
             logit-normal τ centred toward noise (m = 0.5; Lipman et al. 2023; Esser et al. 2024),
             cfg label dropout 0.1, unet-attn shaped for the CPU budget (widths 16, 64, 96 at 28, 14
             and 7 pixels: a narrow full-resolution level, where the convolutions cost most, and the
             width at 7×7, where they are cheap; no dropout), batch 64, AdamW lr 2e-3 (100 warm-up
             steps) decayed by a half cosine to 0 at the run's last step (estimated from the
             warm-up's rate: `--lr-schedule cosine --decay-steps N`), gradient clip 1, EMA 0.999
             (warmed up), channels-last. Marks are reached by resuming the run (`--resume`), which
             continues it exactly.
  diffusers  diffusers' own recipe, the defaults of its train_unconditional.py example:
             UNet2DModel (three levels, its block types, two ResNet blocks per level, attention at
             14×14, 32 GroupNorm groups) widened to (32, 64, 64) to match difftk's parameter count,
             with `num_class_embeds=10`, DDPMScheduler (T = 1000,
             linear β, ε-prediction), batch 16, AdamW lr 1e-4, β = (0.95, 0.999), weight decay
             1e-6, cosine learning rate with 500 warm-up steps over the run's estimated length,
             gradient clip 1, EMAModel (inv_gamma 1, power 3/4, max decay 0.9999).

Every mark is then scored with `difftk compare` (the baseline's folders through the diffusers
bridge): DDIM η = 0, --steps steps, --n samples with the classes in equal numbers, seed 0, by
KID, FID and accuracy, against the 500 held-out digits. The baseline samples with x̂₀ clipped to
[−1, 1], as its scheduler config (`clip_sample: true`) asks; difftk samples without clipping. The
shipped `mnist-cfg` is scored the same way (w = 0, unguided) as the quality to reach. Last, the
share of pixels beyond ±1.05 in 100 samples of each, drawn the same way but with 100 DDIM steps:
the grain left by a model that has learned the low-noise end poorly, which KID, FID and accuracy
hardly register and 10 steps hardly show (they cross that end in one or two steps). The baseline
is not measured there: it clips x̂₀, so none of its pixels can leave [−1, 1].

diffusers is needed for this script only: ``pip install diffusers`` (core's test extra has it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the `difftk` command's OpenMP setting, for both arms

import torch  # noqa: E402
from study import DIFFTK, lower_is_better, sh  # noqa: E402

RECIPE = ["--schedule", "flow", "--objective", "flow-matching", "--sampler", "ddim", "--guidance", "cfg",
          "--denoiser", "unet-attn", "--set", "denoiser.prediction=flow", "--set", "denoiser.base_channels=16",
          "--set", "denoiser.norm_groups=8", "--set", "denoiser.channel_mult=1,4,6", "--set", "denoiser.num_res_blocks=1",
          "--set", "denoiser.attention_resolutions=7", "--set", "denoiser.dropout=0", "--set", "guidance.p_uncond=0.1",
          "--set", "objective.loc=0.5"]
WARMUP = 100
TRAIN = ["--data", "mnist", "--batch-size", "64", "--lr", "2e-3", "--warmup", str(WARMUP), "--grad-clip", "1",
         "--ema-decay", "0.999", "--seed", "0", "--sample-every", "0", "--channels-last"]
METRICS = ("kid", "fid", "accuracy")
RANGE_N, RANGE_STEPS = 100, 100  # samples and DDIM steps for the share of pixels out of the data's range: fine
# steps, because grain is made at the low-noise end, which 10 steps cross in one or two


def log_rate(run: Path, since: int) -> float | None:
    """Seconds per step over the log.jsonl records of the segment that began after step ``since``
    (None when it logged fewer than two records)."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "time" in r and "loss" in r and r["step"] > since]
    if len(records) < 2:
        return None
    a, b = records[0], records[-1]
    return (b["time"] - a["time"]) / max(b["step"] - a["step"], 1)


def train_difftk(root: Path, marks: list[float]) -> dict[float, tuple[Path, int]]:
    """Train the recipe in `difftk train` segments that end at each mark; {minutes: (checkpoint, step)}."""
    pipeline, run = root / "difftk.toml", root / "difftk-run"
    sh(DIFFTK, "compose", *RECIPE, "-o", str(pipeline))
    if run.exists():
        shutil.rmtree(run)
    spent, step, out, per_step, startup, decay = 0.0, 0, {}, None, 5.0, []
    for mark in marks:
        while True:
            left = mark * 60 - spent
            more = WARMUP if per_step is None else int((left - startup) / per_step)
            if more < 1:
                break
            if per_step is not None and not decay:  # the run's length in steps, from the warm-up's rate
                segments = len([m for m in marks if m >= mark])
                total = step + int((marks[-1] * 60 - spent - segments * startup) / per_step)
                decay = ["--lr-schedule", "cosine", "--decay-steps", str(total)]
                print(f"difftk: {per_step:.3f} s a step; the learning rate decays to 0 at step {total}", flush=True)
            took = sh(DIFFTK, "train", str(pipeline), "--out", str(run), "--steps", str(step + more),
                      "--checkpoint-every", str(step + more), *TRAIN, *decay, *(["--resume"] if step else []))
            spent += took
            per_step = log_rate(run, step) or per_step or took / more
            step += more
            startup = max(took - more * per_step, 0.0)
            if per_step * 20 > mark * 60 - spent:  # within 20 steps of the mark: close enough
                break
        keep = root / f"difftk-{mark:g}min.safetensors"
        shutil.copyfile(run / "checkpoint.safetensors", keep)
        out[mark] = (keep, step)
        print(f"difftk: {mark:g} min mark at step {step} ({spent:.0f} s of training)", flush=True)
    return out


def build_baseline():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
                       num_class_embeds=10)


def save_baseline(unet, ema, scheduler, folder: Path) -> None:
    """The EMA weights as a bare UNet folder the difftk bridge reads, with the held-out data named."""
    import copy

    shadow = copy.deepcopy(unet)
    ema.copy_to(shadow.parameters())
    shadow.save_pretrained(folder)
    scheduler.save_config(folder)
    (folder / "difftk.json").write_text(json.dumps({"dataset": {"name": "mnist"}}) + "\n")


def train_diffusers(root: Path, marks: list[float]) -> dict[float, tuple[Path, int]]:
    """diffusers' recipe in diffusers' own objects, with the clock paused while a mark is saved."""
    import difftk
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    start = time.time()
    torch.manual_seed(0)
    data = difftk.create("dataset", "mnist").load("train")
    images, labels = data.batch(torch.arange(len(data)))
    unet = build_baseline().train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75,
                   model_cls=type(unet), model_config=unet.config)
    batch, generator, order, at = 16, torch.Generator().manual_seed(0), torch.empty(0, dtype=torch.long), 0
    lr_schedule, spent, step, out = None, 0.0, 0, {}
    pending = list(marks)
    tick = time.time()
    spent = tick - start  # building the model and optimizer counts, as a process start does for difftk
    while pending:
        if at + batch > len(order):
            order, at = torch.randperm(len(images), generator=generator), 0
        index = order[at:at + batch]
        at += batch
        x0, y = images[index], labels[index]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, 1000, (batch,), generator=generator)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        if lr_schedule is not None:
            lr_schedule.step()
        ema.step(unet.parameters())
        step += 1
        now = time.time()
        spent += now - tick
        tick = now
        if step == 20:  # the run's length in steps, for the cosine schedule, from the measured rate
            total = int(marks[-1] * 60 / (spent / step))
            lr_schedule = get_scheduler("cosine", opt, num_warmup_steps=500, num_training_steps=total)
            for _ in range(step):
                lr_schedule.step()
        if spent >= pending[0] * 60:
            mark = pending.pop(0)
            folder = root / f"diffusers-{mark:g}min"
            save_baseline(unet, ema, scheduler, folder)
            out[mark] = (folder, step)
            print(f"diffusers: {mark:g} min mark at step {step} (loss {loss.item():.4f})", flush=True)
            tick = time.time()
        if step % 200 == 0:
            print(f"diffusers: step {step}, {spent:.0f} s, loss {loss.item():.4f}", flush=True)
    return out


def score(paths: list[str], out: Path, n: int, steps: int, extra: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """{path: {metric: (value, spread)}} from one `difftk compare` over ``paths``."""
    if not (out / "compare.csv").exists():
        sh(DIFFTK, "compare", *paths, *[a for m in METRICS for a in ("--metric", m)], "--sampler", "ddim",
           "--steps", str(steps), "-n", str(n), "--seed", "0", *extra, "-o", str(out))
    values: dict[str, dict[str, tuple[float, float]]] = {}
    for row in csv.DictReader((out / "compare.csv").open()):
        values.setdefault(row["checkpoint"], {})[row["metric"]] = (float(row["value"]), float(row["spread"]))
    return values


def grain(sources: list[str], out: Path) -> dict[str, float]:
    """{source: the share of pixels beyond ±1.05} in RANGE_N unguided, unclipped DDIM samples of each
    (RANGE_STEPS steps, the classes in turn, seed 0), cached in ``out``: what the feature-space
    metrics hardly see."""
    if out.exists():
        return json.loads(out.read_text())
    import difftk
    from shipped_samplers import out_of_range

    shares = {source: out_of_range(difftk.load(source).sample(RANGE_N, sampler="ddim", steps=RANGE_STEPS,
                                                              guidance=False, seed=0))
              for source in sources}
    out.write_text(json.dumps(shares))
    return shares


def plot(curves: dict[str, dict[float, dict[str, tuple[float, float]]]], shipped: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.3 * len(METRICS), 3.6))
    for ax, metric in zip(axes, METRICS, strict=True):
        for arm, marks in curves.items():
            minutes = sorted(marks)
            ax.errorbar(minutes, [marks[m][metric][0] for m in minutes], yerr=[marks[m][metric][1] for m in minutes],
                        marker="o", capsize=3, label=arm)
        ax.axhline(shipped[metric][0], color="gray", ls="--", label="shipped mnist-cfg (6,000 steps)")
        if lower_is_better(metric):  # KID can be ≤ 0 near the data: then a scale that is linear around 0
            positive = shipped[metric][0] > 0 and all(v[metric][0] > 0 for marks in curves.values() for v in marks.values())
            ax.set_yscale("log") if positive else ax.set_yscale("symlog", linthresh=100)
        ax.set(xlabel="training minutes (2 CPU cores)", title=metric + (" (lower is better)" if lower_is_better(metric)
                                                                        else " (higher is better)"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=11.0)
    parser.add_argument("--marks", default="3,6,9,11", help="minutes at which both arms are scored")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps when scoring")
    parser.add_argument("--out", default="runs/time-to-quality")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    marks = sorted({float(m) for m in args.marks.split(",")} | {args.minutes})
    marks = [m for m in marks if m <= args.minutes]
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"marks {', '.join(f'{m:g}' for m in marks)} min", flush=True)
    import difftk

    theirs = sum(p.numel() for p in build_baseline().parameters())
    done = root / "marks.json"
    if done.exists():
        saved = json.loads(done.read_text())
        trained = {arm: {float(m): (Path(p), s) for m, (p, s) in v.items()} for arm, v in saved.items()}
    else:
        trained = {"difftk": train_difftk(root, marks), "diffusers": train_diffusers(root, marks)}
        done.write_text(json.dumps({arm: {str(m): [str(p), s] for m, (p, s) in v.items()} for arm, v in trained.items()}))
    ours = sum(p.numel() for p in difftk.load(str(root / "difftk-run")).denoiser.parameters())
    print(f"parameters: difftk {ours:,}, diffusers {theirs:,} ({theirs / ours - 1:+.1%})")
    scores = {
        "difftk": score([str(p) for p, _ in trained["difftk"].values()], root / "score-difftk", args.n, args.steps,
                        ["--guidance", "cfg", "--scale", "0"]),
        "diffusers": score([str(p) for p, _ in trained["diffusers"].values()], root / "score-diffusers", args.n,
                           args.steps, ["--set", "sampler.clip_x0=1"]),
    }
    shipped = next(iter(score(["mnist-cfg"], root / "score-shipped", args.n, args.steps,
                              ["--guidance", "cfg", "--scale", "0"]).values()))
    curves = {arm: {m: scores[arm][str(p)] for m, (p, _) in trained[arm].items()} for arm in trained}
    print(f"\nDDIM {args.steps} steps, n = {args.n}, seed 0; value ± the metric's standard error")
    print("| minutes | difftk step | difftk KID | difftk FID | difftk accuracy | diffusers step | diffusers KID | "
          "diffusers FID | diffusers accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in marks:
        cells = [f"{m:g}"]
        for arm in ("difftk", "diffusers"):
            s = curves[arm][m]
            cells += [f"{trained[arm][m][1]:,}", f"{s['kid'][0]:.4g} ± {s['kid'][1]:.2g}",
                      f"{s['fid'][0]:.4g} ± {s['fid'][1]:.2g}", f"{s['accuracy'][0]:.3f} ± {s['accuracy'][1]:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"| shipped mnist-cfg (w = 0) | 6,000 | {shipped['kid'][0]:.4g} ± {shipped['kid'][1]:.2g} | "
          f"{shipped['fid'][0]:.4g} ± {shipped['fid'][1]:.2g} | {shipped['accuracy'][0]:.3f} ± {shipped['accuracy'][1]:.3f} |"
          " | | | |")
    ours_grain = grain([str(p) for p, _ in trained["difftk"].values()], root / "range-difftk.json")
    shipped_grain = grain(["mnist-cfg"], root / "range-shipped.json")["mnist-cfg"]
    print(f"\npixels beyond ±1.05, DDIM {RANGE_STEPS} steps, {RANGE_N} samples each; diffusers is not measured: it "
          "clips x̂₀ to [−1, 1], so its share is 0 by construction")
    print("| minutes | difftk step | difftk |")
    print("|---|---|---|")
    for m in marks:
        path, step = trained["difftk"][m]
        print(f"| {m:g} | {step:,} | {ours_grain[str(path)]:.2%} |")
    print(f"| shipped mnist-cfg (w = 0) | 6,000 | {shipped_grain:.2%} |")
    final = curves["difftk"][marks[-1]]
    worse = {metric: 1.0 if lower_is_better(metric) else -1.0 for metric in METRICS}  # the sign of "worse"
    reached = {metric: worse[metric] * (final[metric][0] - shipped[metric][0])
               <= 2 * math.hypot(final[metric][1], shipped[metric][1]) for metric in METRICS}
    ahead = all(worse[k] * (curves["difftk"][m][k][0] - curves["diffusers"][m][k][0]) < 0 for m in marks for k in METRICS)
    print(f"\ndifftk at {marks[-1]:g} min within two standard errors of the shipped model: "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in reached.items()))
    print(f"difftk ahead of diffusers at every mark on every metric: {'yes' if ahead else 'no'}")
    if args.plot:
        plot(curves, shipped, Path(args.plot), f"{args.minutes:g} min of training each, DDIM {args.steps} steps, "
                                               f"n = {args.n}")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
