"""Fixed variance + L_simple against learned variance + L_hybrid (Nichol & Dhariwal 2021, §3.1, Fig. 8), on MNIST.

    .venv/bin/python benchmarks/iddpm_variance.py [--out runs/iddpm-exp] [--steps 1000] [--fid-n 100] [--bpd-n 32]

Trains two class-conditional unet-attn models on the 4,500 shipped MNIST digits with the same
budget, seed and cosine schedule — (a) L_simple with a fixed variance, (b) L_hybrid with the
learned-range variance — then measures each with bpd-vlb (the full T = 1000 bound on held-out
digits) and with FID of `respaced` samples at 1000, 100 and 50 steps, and prints a Markdown
table. Every command it runs is printed first, so each number can be reproduced alone.
Re-running continues from what is already in --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

DIFFTK = str(Path(sys.executable).with_name("difftk"))
NET = ["--set", "denoiser.base_channels=16", "--set", "denoiser.norm_groups=8", "--set", "denoiser.channel_mult=1,2,2",
       "--set", "denoiser.num_res_blocks=1", "--set", "denoiser.attention_resolutions=7", "--set", "denoiser.dropout=0"]
VARIANTS = {
    "fixed": ["--objective", "simple", *NET],
    "learned": ["--objective", "hybrid", *NET, "--set", "denoiser.learned_variance=true"],
}


def sh(*args: str) -> float:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    subprocess.run(args, check=True)
    return time.time() - start


def evaluate(ckpt: Path, out: Path, *args: str) -> dict:
    if not out.exists():
        sh(DIFFTK, "evaluate", str(ckpt), *args, "--json", str(out))
    return json.loads(out.read_text())["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/iddpm-exp")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of each model")
    parser.add_argument("--fid-n", type=int, default=100)
    parser.add_argument("--bpd-n", type=int, default=32)
    args = parser.parse_args()
    root = Path(args.out)
    rows = []
    for name, options in VARIANTS.items():
        run = root / name
        run.mkdir(parents=True, exist_ok=True)
        ckpt = run / "run" / "checkpoint.safetensors"
        if not ckpt.exists():
            sh(DIFFTK, "compose", "--schedule", "cosine", "--sampler", "respaced", "--denoiser", "unet-attn", *options,
               "-o", str(run / "pipeline.toml"))
            took = sh(DIFFTK, "train", str(run / "pipeline.toml"), "--data", "mnist", "--steps", str(args.steps),
                      "--out", str(run / "run"), "--lr", "1e-3", "--seed", "0", "--sample-every", "0",
                      "--checkpoint-every", "500")
            (run / "train_seconds.txt").write_text(f"{took:.0f}\n")
        variances = ["learned"] if name == "learned" else ["beta", "beta_tilde"]
        for variance in variances:
            bpd = evaluate(ckpt, run / f"bpd_{variance}.json", "--metric", "bpd-vlb", "-n", str(args.bpd_n),
                           "--set", f"metric.variance={variance}")
            fids = {}
            for k in (1000, 100, 50):
                if k == 1000 and variance == "beta_tilde":
                    continue  # on all T steps β and β̃ sample alike (Ho et al. 2020, §4); the cost is 1000 steps
                r = evaluate(ckpt, run / f"fid_{variance}_{k}.json", "--metric", "fid", "-n", str(args.fid_n),
                             "--sampler", "respaced", "--steps", str(k), "--set", f"sampler.variance={variance}")
                fids[k] = f"{r['value']:.0f} ± {r['spread']:.0f}"
            rows.append((name, variance, f"{bpd['value']:.3f} ± {bpd['spread']:.3f}", fids))
    print(f"\n| model | Σ | bits/dim (VLB, n={args.bpd_n}) | FID 1000 steps | FID 100 | FID 50 |  (FID n={args.fid_n})")
    print("|---|---|---|---|---|---|")
    for name, variance, bpd, fids in rows:
        print(f"| {name} | {variance} | {bpd} | {fids.get(1000, '—')} | {fids[100]} | {fids[50]} |")


if __name__ == "__main__":
    main()
