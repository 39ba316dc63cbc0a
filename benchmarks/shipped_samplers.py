"""Every registered sampler on a trained model, x̂₀ clipping off (and on where a sampler has it).

For each sampler at its default (or a given) step count it draws n unguided class-conditional
samples (classes in equal numbers, seed 0 or ``--seed``) and prints, side by side: the denoiser evaluations
(NFE) per sample, the wall time per 100 samples on this machine, the fraction of pixels beyond
±1.05, the shipped classifier's accuracy on the requested digits (binomial standard error), and
FID against the held-out digits (bootstrap standard error). For a model of other data, ``--judge``
names a classifier of its classes (from ``difftk train-classifier``, read at t = 0), whose
accuracy replaces the digit classifier's; FID is then left out (no feature network for that data). Then it checks the one identity a
real model can be held to: DDIM (η = 0) and the probability-flow ODE discretize the same ODE,
so from the same x_T they should agree as DDIM's steps grow.

    python benchmarks/shipped_samplers.py                       # mnist-cfg, n = 500, every sampler
    python benchmarks/shipped_samplers.py -n 100 --only ddim,ode --steps ddim=25
    python benchmarks/shipped_samplers.py --agreement-only --agreement-n 32
    python benchmarks/shipped_samplers.py --model emoji-flow --judge JUDGE.safetensors -n 100 --no-clip
"""

from __future__ import annotations

import argparse
import time

import attrs
import difftk
import torch
from difftk.checkpoint.classifier_file import load_classifier
from difftk.evaluation.compare import held_out_data
from difftk.maths.stats import bootstrap_standard_error, frechet_distance, moments
from difftk.model import load
from difftk.sampling import latent
from difftk.sampling.draw import class_labels
from difftk_metrics.features import MnistFeatures, held_out_features
from difftk_metrics.network import embed


def out_of_range(x: torch.Tensor, bound: float = 1.05) -> float:
    """The fraction of values beyond ±bound: an image model's samples should stay in [−1, 1]."""
    return float((x.abs() > bound).double().mean())


def score(x: torch.Tensor, labels: torch.Tensor, real_features: torch.Tensor) -> dict[str, float]:
    """Accuracy on the requested digits and FID against the held-out digits, each with its spread."""
    features, logits = embed(x.clamp(-1, 1))
    p = float((logits.argmax(dim=1) == labels).double().mean())
    mu_r, sigma_r = moments(real_features)
    fid = frechet_distance(*moments(features), mu_r, sigma_r)
    fid_se = bootstrap_standard_error(lambda f: frechet_distance(*moments(f), mu_r, sigma_r), features,
                                      resamples=20, generator=torch.Generator().manual_seed(1))
    return {"accuracy": p, "accuracy_se": (p * (1 - p) / len(x)) ** 0.5, "fid": fid, "fid_se": fid_se}


def judge_accuracy(judge: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The fraction of samples a classifier of the model's classes reads as the class asked for."""
    with torch.inference_mode():
        p = float((judge(x.clamp(-1, 1), torch.zeros(len(x))).argmax(dim=1) == labels).double().mean())
    return {"accuracy": p, "accuracy_se": (p * (1 - p) / len(x)) ** 0.5}


class NFECounter(torch.nn.Module):
    """Counts the denoiser's calls (one per batch evaluation) while passing everything through."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0
        self.prediction = inner.prediction
        self.learned_variance = getattr(inner, "learned_variance", False)
        self.num_classes = getattr(inner, "num_classes", 0)

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond=cond)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mnist-cfg")
    ap.add_argument("-n", type=int, default=500, help="samples per sampler")
    ap.add_argument("--only", default="", help="comma list of samplers (default: every registered one)")
    ap.add_argument("--steps", default="", help="NAME=K,... step counts (default: each sampler's own)")
    ap.add_argument("--no-clip", action="store_true", help="skip the clip_x0=1 rows")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0, help="the draws' seed (a student distilled from seed 0's noise: "
                                                        "another, so that it is not read on its training pairs)")
    ap.add_argument("--agreement-n", type=int, default=32, help="x_T's for the DDIM-vs-ODE check (0 = skip)")
    ap.add_argument("--agreement-steps", type=int, default=500)
    ap.add_argument("--agreement-only", action="store_true")
    ap.add_argument("--judge", help="a classifier file of the model's classes: its accuracy, and no FID")
    args = ap.parse_args()

    model = load(args.model)
    schedule, shape = model.pipeline.schedule, model.data_shape
    judge = load_classifier(args.judge) if args.judge else None
    if judge is None:
        data, why = held_out_data(model.data)
        if data is None:
            raise SystemExit(f"no held-out data: {why}")
        real_features, _ = held_out_features(data, MnistFeatures())
    print(f"model {args.model}: step {model.checkpoint.step:,}, prediction {model.denoiser.prediction}, "
          f"schedule {model.pipeline.spec['schedule'].name}; n = {args.n}, unguided (w = 0), seed {args.seed}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if judge is None:
        print("reference: held-out digits against themselves are 0 out of range; real digits score accuracy "
              "0.986 and FID 103–140 at n = 500 (docs/metrics.md)")

    names = [s for s in args.only.split(",") if s] or difftk.available("sampler")
    steps_for = dict(item.split("=") for item in args.steps.split(",") if item)
    labels = class_labels(args.n, model.num_classes)
    if not args.agreement_only:
        header = f"{'sampler':<28}{'steps':>6}{'NFE':>6}{'s/100':>8}{'>±1.05':>9}{'accuracy':>16}{'FID':>14}"
        print(header)
        for name in names:
            variants = [("", {})]
            if hasattr(difftk.create("sampler", name), "clip_x0") and not args.no_clip:
                variants.append((" clip_x0=1", {"clip_x0": 1.0}))
            for suffix, options in variants:
                sampler = difftk.create("sampler", name, **options)
                steps = int(steps_for[name]) if name in steps_for else None
                counter = NFECounter(model.denoiser)
                start = time.perf_counter()
                x = attrs.evolve(model, denoiser=counter).sample(args.n, sampler=sampler, steps=steps, guidance=False,
                                                                 labels=labels, seed=args.seed, batch_size=args.batch_size)
                seconds = time.perf_counter() - start
                batches = -(-args.n // args.batch_size)
                nfe = counter.calls / batches
                shown = steps if steps is not None else getattr(sampler, "default_steps", "-")
                if getattr(type(sampler), "adaptive", False) and getattr(sampler, "method", "") == "rk45":
                    shown = "adapt"
                s = judge_accuracy(judge, x, labels) if judge is not None else score(x, labels, real_features)
                row = (f"{name + suffix:<28}{shown!s:>6}{nfe:>6.0f}{100 * seconds / args.n:>8.1f}"
                       f"{100 * out_of_range(x):>8.2f}%{s['accuracy']:>9.3f} ± {s['accuracy_se']:.3f}"
                       + (f"{s['fid']:>8.1f} ± {s['fid_se']:.1f}" if judge is None else ""))
                print(row, flush=True)
    if args.agreement_n:
        n = args.agreement_n
        g = torch.Generator().manual_seed(123)
        x_T = torch.randn((n, *latent.shape_of(model.pipeline.autoencoder, shape)), generator=g)  # a latent model's ODE is in its latents
        cond = class_labels(n, model.num_classes)
        with torch.inference_mode():
            ddim = difftk.create("sampler", "ddim").sample(model.denoiser, schedule, x_T, steps=args.agreement_steps,
                                                           cond=cond)
            ode = difftk.create("sampler", "ode").sample(model.denoiser, schedule, x_T, cond=cond)
        rel = ((ddim - ode).flatten(1).norm(dim=1) / ode.flatten(1).norm(dim=1))
        print(f"DDIM η=0 at {args.agreement_steps} steps vs the ODE (rk45, defaults), {n} shared x_T: relative L2 "
              f"median {float(rel.median()):.4f}, max {float(rel.max()):.4f}; "
              + ("in latent space (the range is the decoded images', above)" if model.pipeline.autoencoder is not None
                 else f"out of range: DDIM {100 * out_of_range(ddim):.2f}%, ODE {100 * out_of_range(ode):.2f}%"))


if __name__ == "__main__":
    main()
