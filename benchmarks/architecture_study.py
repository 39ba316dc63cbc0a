"""Architecture study: pixel or latent space, U-Net or transformer, at equal CPU time, on MNIST or in colour.

    .venv/bin/python benchmarks/architecture_study.py [--data mnist|emoji] [--out runs/architecture-study-DATA]
                                                      [--budget 1200] [--n 500] [--seeds 0,1,2]
                                                      [--train-seeds 0] [--arms pixel-unet,…]

**MNIST** (the default). Four arms, each a class-conditional model of 1.19–1.23 M parameters on the cosine schedule with
v-prediction, L_simple and cfg label dropout 0.1 (the recipe of the shipped `mnist-latent`):

  pixel-unet    unet-attn, widths 32/64/64 at 28, 14 and 7 pixels, attention at 14×14 (1,192,641 parameters)
  pixel-dit     dit, 4×4 patches of the 28×28 digit (49 tokens), width 96, 7 blocks, 4 heads (1,228,144)
  latent-unet   the same unet-attn on the 8×8×3 latents of the shipped first stage `mnist-kl` (1,193,795)
  latent-dit    the same dit on those latents with 2×2 patches (16 tokens; 1,227,372)

**Equal CPU time.** Every arm gets the same budget of CPU seconds (user + system of the training
process, both cores counted), *including* the first stage for the latent arms: `mnist-kl` took
556.7 CPU s to train (docs/pretrained.md), so a latent denoiser trains for budget − 556.7. Each arm's
cost per step is measured first on this machine (two short runs, 10 and 40 steps: the difference
is the cost of 30 steps, the rest the start-up), and its step count is the budget it leaves. Every
arm then trains at batch 64, AdamW lr 1e-3 with 100 warm-up steps and a cosine decay to 0 at its
last step, gradient clip 1, EMA 0.999, seed 0; the CPU time it really took is printed.

Every checkpoint is sampled the same way — DDIM (η = 0), 25 steps, unguided (cfg scale 0), no
clipping, --n samples with labels 0..9 in turn, sampling seeds --seeds — and scored by
`difftk compare` (accuracy by the shipped classifier, KID and FID in its feature space, against
held-out digits). The table gives mean ± standard error over the sampling seeds and Welch's
two-sided p against the best arm, as `difftk compare --seed` computes it. By default one training
run per arm, so only the sampling seeds' spread is in the errors; `--train-seeds 0,1` trains each arm
once per seed (same step count) and `difftk compare` pools the runs into the arm's cell.

**Colour** (`--data emoji`: 3×32×32 emoji in 5 classes). The recipe of the shipped colour models —
flow matching on the straight path, τ logit-normal (m = 0) with a uniform share of 0.3, cfg label
dropout 0.1, random flips, batch 64, AdamW 2e-3 with 100 warm-up steps and a cosine decay to 0 at the
last step, clip 1, EMA 0.999, seed 0 — and the first stage `emoji-kl` (900.8 CPU s; 8×8×4 latents):

  pixel-unet    the shipped `emoji-flow`: unet-attn 32/64/96, attention at 8×8 (1,906,115 parameters),
                2,600 steps in 4,328 CPU s (its card)
  latent-unet   the shipped `emoji-latent`: unet-attn 48/96 on the latents (1,697,668), 12,000 steps
                in 3,233 CPU s + the first stage's 900.8 (its card)
  pixel-dit     dit, 4×4 patches of the 32×32 image (64 tokens), width 128, 6 blocks, 4 heads
  latent-dit    the same dit on the latents with 2×2 patches (16 tokens)

The U-Net arms are the shipped models, trained by `scripts/train_emoji.sh` and
`scripts/train_emoji_latent.sh` with this recipe; only the transformers are trained here, with the
budget the U-Nets had (default 4,300 CPU s, the first stage included). Accuracy is read by the shipped
emoji judge (a `difftk train-classifier` file), and KID and FID are measured in its features
(`--set metric.features=classifier:emoji-judge`): no Inception weights are needed. The U-Nets' CPU seconds are
their cards' records, taken under the conditions of their own runs (emoji-flow partly on one thread
beside another job); "equal" is to within those records, and `--budget` and `--steps` move only the
transformers. The shipped arms are one training run each, so `--train-seeds` stays 0 here.

Either study writes OUT/architecture-study.png: a panel per metric, a bar per arm, seeds as dots.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import statistics
import subprocess
import time
from pathlib import Path

from study import DIFFTK, bar_plot

#: CPU seconds that training the shipped first stages `mnist-kl` and `emoji-kl` took (docs/pretrained.md, their cards)
FIRST_STAGE_CPU_S = {"mnist": 556.7, "emoji": 900.8}
COMMON = ["--schedule", "cosine", "--sampler", "ddim", "--guidance", "cfg", "--objective", "simple",
          "--set", "denoiser.prediction=v", "--set", "guidance.p_uncond=0.1"]
UNET = ["--denoiser", "unet-attn", "--set", "denoiser.base_channels=32", "--set", "denoiser.norm_groups=8",
        "--set", "denoiser.channel_mult=1,2,2", "--set", "denoiser.dropout=0"]
DIT = ["--denoiser", "dit", "--set", "denoiser.hidden_size=96", "--set", "denoiser.depth=7",
       "--set", "denoiser.num_heads=4"]
LATENT = ["--autoencoder", "kl", "--set", "autoencoder.pad=2", "--set", "autoencoder.channels=16",
          "--set", "autoencoder.weights=mnist-kl"]
ARMS = {
    "pixel-unet": [*COMMON, *UNET],
    "pixel-dit": [*COMMON, *DIT, "--set", "denoiser.patch_size=4"],
    "latent-unet": [*COMMON, *UNET, *LATENT],
    "latent-dit": [*COMMON, *DIT, "--set", "denoiser.patch_size=2", *LATENT],
}
TRAIN = ["--data", "mnist", "--batch-size", "64", "--lr", "1e-3", "--warmup", "100", "--lr-schedule", "cosine",
         "--grad-clip", "1", "--ema-decay", "0.999", "--sample-every", "0"]

# --- colour: the shipped colour models' recipe -------------------------------------------------------------------
COLOUR = ["--schedule", "flow", "--objective", "flow-matching", "--sampler", "ddim", "--guidance", "cfg",
          "--set", "denoiser.prediction=flow", "--set", "guidance.p_uncond=0.1", "--set", "objective.loc=0",
          "--set", "objective.uniform_fraction=0.3"]
COLOUR_DIT = ["--denoiser", "dit", "--set", "denoiser.hidden_size=128", "--set", "denoiser.depth=6",
              "--set", "denoiser.num_heads=4"]
COLOUR_LATENT = ["--autoencoder", "kl", "--set", "autoencoder.in_channels=3", "--set", "autoencoder.z_channels=4",
                 "--set", "autoencoder.channels=16", "--set", "autoencoder.weights=emoji-kl"]
COLOUR_ARMS = {
    "pixel-unet": "emoji-flow",
    "pixel-dit": [*COLOUR, *COLOUR_DIT, "--set", "denoiser.in_channels=3", "--set", "denoiser.image_size=32",
                  "--set", "denoiser.patch_size=4"],
    "latent-unet": "emoji-latent",
    "latent-dit": [*COLOUR, *COLOUR_DIT, "--set", "denoiser.patch_size=2", *COLOUR_LATENT],
}
#: what the shipped arms cost to train, from their cards (docs/pretrained.md): steps and CPU seconds
SHIPPED_COST = {"emoji-flow": {"steps": 2600, "cpu_s": 4328.0, "wall_s": float("nan")},
                "emoji-latent": {"steps": 12000, "cpu_s": 3233.0, "wall_s": float("nan")}}
COLOUR_TRAIN = ["--data", "emoji", "--data-option", "flip=true", "--batch-size", "64", "--lr", "2e-3", "--warmup",
                "100", "--lr-schedule", "cosine", "--grad-clip", "1", "--ema-decay", "0.999", "--sample-every", "0"]
#: the shipped judge of the emoji classes, by the name difftk-pretrained registers it under
JUDGE = "emoji-judge"
STUDIES = {"mnist": (ARMS, TRAIN, 1200.0), "emoji": (COLOUR_ARMS, COLOUR_TRAIN, 4300.0)}


def run(*args: str) -> tuple[float, float]:
    """Run a command, echoing it; return (wall seconds, CPU seconds of the process and its children)."""
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def train(pipeline: Path, out: Path, steps: int, seed: int = 0, recipe: list[str] = TRAIN) -> dict[str, float]:
    """Train ``steps`` steps into ``out`` (kept if already there); its wall and CPU seconds."""
    record = out / "cost.json"
    if not record.exists():
        wall, cpu = run(DIFFTK, "train", str(pipeline), *recipe, "--seed", str(seed), "--steps", str(steps),
                        "--out", str(out), "--checkpoint-every", str(steps))
        record.write_text(json.dumps({"steps": steps, "wall_s": wall, "cpu_s": cpu}))
    return json.loads(record.read_text())


def steps_for(root: Path, arm: str, pipeline: Path, budget: float, recipe: list[str]) -> tuple[int, float]:
    """The steps ``budget`` CPU seconds buy for ``arm``, from two short runs; and the cost of a step."""
    short = train(pipeline, root / "pilot" / f"{arm}-10", 10, recipe=recipe)
    long = train(pipeline, root / "pilot" / f"{arm}-40", 40, recipe=recipe)
    per_step = (long["cpu_s"] - short["cpu_s"]) / 30
    start_up = max(short["cpu_s"] - 10 * per_step, 0.0)
    return max(int((budget - start_up) / per_step), 1), per_step


def parameters(run_dir: str) -> int:
    import difftk

    return sum(p.numel() for p in difftk.load(run_dir).denoiser.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(STUDIES), default="mnist", help="digits, or the colour emoji")
    parser.add_argument("--out", default=None, help="the study's folder (default: runs/architecture-study-DATA)")
    parser.add_argument("--budget", type=float, default=None, help="CPU seconds per arm, first stage included "
                        "(default: 1200 on mnist; on emoji 4300, what the shipped U-Net arms took)")
    parser.add_argument("--arms", default="pixel-unet,pixel-dit,latent-unet,latent-dit")
    parser.add_argument("--steps", type=int, default=None, help="train every arm this many steps instead (a smoke run; "
                        "the shipped arms of --data emoji stay as shipped)")
    parser.add_argument("--n", type=int, default=500, help="samples per measurement")
    parser.add_argument("--seeds", default="0,1,2", help="sampling seeds")
    parser.add_argument("--train-seeds", default="0", help="training seeds: each arm trains once per seed (seed 0 in "
                        "OUT/ARM, seed s in OUT/ARM-seedS), and `difftk compare` pools them into the arm's cell")
    parser.add_argument("--metrics", default="accuracy,kid,fid")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    study, recipe, default_budget = STUDIES[args.data]
    budget = default_budget if args.budget is None else args.budget
    root = Path(args.out or f"runs/architecture-study-{args.data}")
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "study.json"  # one folder, one study: its pilots, runs and tables are not another's
    if stamp.exists() and json.loads(stamp.read_text()).get("data") != args.data:
        raise SystemExit(f"error: {root} holds the {json.loads(stamp.read_text()).get('data')} study: give another --out")
    stamp.write_text(json.dumps({"data": args.data}))
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(study))
    if unknown:
        raise SystemExit(f"error: unknown arm {unknown[0]!r}: choose from {', '.join(study)}")
    shipped_arms = [a for a in arms if isinstance(study[a], str)]
    if shipped_arms and args.train_seeds != "0":
        raise SystemExit(f"error: {', '.join(shipped_arms)} are shipped models, trained once: --train-seeds 0 only, or "
                         "leave them out with --arms")
    for arm in shipped_arms:
        first = FIRST_STAGE_CPU_S[args.data] if arm.startswith("latent") else 0.0
        had = SHIPPED_COST[study[arm]]["cpu_s"] + first
        if abs(had - budget) > 0.05 * budget:
            print(f"note: {arm} is the shipped {study[arm]}, {had:,.0f} CPU s with its first stage; --budget "
                  f"{budget:,.0f} moves only the arms trained here", flush=True)
    runs, cost = {}, {}
    for arm in arms:
        first_stage = FIRST_STAGE_CPU_S[args.data] if arm.startswith("latent") else 0.0
        if isinstance(study[arm], str):  # a shipped model: trained once, with its cost on its card
            shipped = study[arm]
            runs[shipped] = arm
            cost[arm] = [{**SHIPPED_COST[shipped], "per_step": SHIPPED_COST[shipped]["cpu_s"] / SHIPPED_COST[shipped]
                          ["steps"], "first_stage": first_stage}]
            print(f"{arm}: the shipped {shipped}, {SHIPPED_COST[shipped]['steps']} steps in "
                  f"{SHIPPED_COST[shipped]['cpu_s']:.0f} CPU s + first stage {first_stage:.0f}", flush=True)
            continue
        pipeline = root / f"{arm}.toml"
        if not pipeline.exists():
            run(DIFFTK, "compose", *study[arm], "-o", str(pipeline))
        if budget <= first_stage:
            raise SystemExit(f"error: --budget {budget:g} leaves nothing after the first stage's {first_stage} CPU s")
        steps, per_step = ((args.steps, float("nan")) if args.steps else
                           steps_for(root, arm, pipeline, budget - first_stage, recipe))
        for seed in (int(x) for x in args.train_seeds.split(",")):
            out = root / (arm if seed == 0 else f"{arm}-seed{seed}")
            cost.setdefault(arm, []).append({**train(pipeline, out, steps, seed, recipe), "per_step": per_step,
                                             "first_stage": first_stage})
            runs[str(out)] = arm
            c = cost[arm][-1]
            print(f"{arm}, seed {seed}: {steps} steps, {per_step:.3f} CPU s a step, trained in {c['cpu_s']:.0f} CPU s "
                  f"({c['wall_s']:.0f} s wall) + first stage {first_stage:.0f}", flush=True)
    if args.train_only:
        return
    metrics = args.metrics.split(",")
    judged = ["--set", f"metric.features=classifier:{JUDGE}"] if args.data == "emoji" else []
    folder = root / ("compare" if args.train_seeds == "0" else f"compare-train{args.train_seeds.replace(',', '-')}")
    table, asked = folder / "compare.csv", {"runs": sorted(runs), "metrics": metrics, "n": args.n, "seeds": args.seeds}
    if table.exists() and json.loads((folder / "asked.json").read_text() if (folder / "asked.json").exists()
                                     else "{}") != asked:
        raise SystemExit(f"error: {table} was measured with other arms, metrics, --n or --seeds: delete {folder} to "
                         "measure again")
    if not table.exists():
        run(DIFFTK, "compare", *runs, *[a for m in metrics for a in ("--metric", m)], *judged, "--sampler", "ddim",
            "--steps", "25", "--guidance", "cfg", "--scale", "0", "-n", str(args.n), "--seed", args.seeds,
            "-o", str(folder))
        (folder / "asked.json").write_text(json.dumps(asked))
    values: dict[str, dict[str, list[float]]] = {m: {a: [] for a in arms} for m in metrics}
    for row in csv.DictReader(table.open()):
        values[row["metric"]][runs[row["checkpoint"]]].append(float(row["value"]))
    summary = csv.DictReader((folder / "summary.csv").open())  # a pooled cell: "FIRST (+k seeds)"
    tested = {(runs[row["checkpoint"].split(" (+")[0]], row["metric"]): row for row in summary}
    print(f"\n{args.data}: DDIM 25 steps, unguided, n = {args.n}, sampling seeds {args.seeds}, training seeds "
          f"{args.train_seeds}: mean ± standard error over every (training, sampling) seed; p: Welch's t against the "
          "best arm (two-sided)")
    print("| arm | parameters | steps | CPU s: denoiser + first stage | " + " | ".join(metrics) + " |")
    print("|---|---|---|---|" + "---|" * len(metrics))
    for arm in arms:
        cells = []
        for m in metrics:
            vals = values[m][arm]
            se = statistics.stdev(vals) / len(vals) ** 0.5 if len(vals) > 1 else float("nan")
            row = tested.get((arm, m), {})
            note = " (best)" if row.get("role") == "best" else f" (p = {float(row['p']):.3g})" if row.get("p") else ""
            cells.append(f"{statistics.mean(vals):.4g} ± {se:.2g}{note}")
        c = cost[arm]
        cpu = " / ".join(f"{r['cpu_s']:.0f}" for r in c)
        print(f"| {arm} | {parameters(arm_dir(runs, arm)):,} | {c[0]['steps']:,} | "
              f"{cpu} + {c[0]['first_stage']:.0f} | " + " | ".join(cells) + " |")
    plot = root / "architecture-study.png"
    spent = ", ".join(f"{a} {cost[a][0]['cpu_s'] + cost[a][0]['first_stage']:,.0f}" for a in arms)
    bar_plot(values, plot, f"{args.data}: pixel or latent, U-Net or DiT, at about equal CPU time (CPU s with the first "
             f"stage: {spent})\nDDIM 25, unguided, n = {args.n}; dots: seeds")
    print(f"plot: {plot}")


def arm_dir(runs: dict[str, str], arm: str) -> str:
    return next(path for path, a in runs.items() if a == arm)


if __name__ == "__main__":
    main()
