"""Conditional accuracy of guided MNIST samples: how often a sample is the digit it was asked for.

A judge the guided model never saw — a small CNN trained here on *clean* MNIST train images,
its accuracy on the test split printed — classifies samples drawn for each label 0..9 at
several guidance scales. cfg (Ho & Salimans 2022, eq. 6) uses the checkpoint's own network;
with ``--classifier FILE`` classifier guidance (Dhariwal & Nichol 2021, eq. 14) is measured
too, guiding the same network with its null label (the unconditional model).

    python benchmarks/mnist_guidance_accuracy.py CHECKPOINT [--scales 0,1,3,5] [--per-class 20] [--steps 50]
                                                 [--classifier clf.safetensors --classifier-scales 0,1,3]
"""

from __future__ import annotations

import argparse
import time

import attrs
import difftk
import torch
import torch.nn.functional as F
from difftk.data.pipeline_data import load_dataset
from difftk.model import load
from torch import nn


def judge_network() -> nn.Module:
    """conv(32)–pool–conv(64)–pool–linear(128)–linear(10): ~99 % on full MNIST, enough to judge digits."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(128, 10))


def train_judge(epochs: int, seed: int) -> tuple[nn.Module, float]:
    """Train the judge on the clean train split (with ±2 px shifts); return it and its test accuracy."""
    torch.manual_seed(seed)
    train, _ = load_dataset("mnist")
    test, _ = load_dataset("mnist", split="test")
    net = judge_network()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train)).split(64):
            x, y = train.batch(idx)
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            x = torch.roll(x, (dx, dy), dims=(2, 3))
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        x, y = test.batch(torch.arange(len(test)))
        acc = float((net(x).argmax(1) == y).float().mean())
    return net, acc


def accuracy(judge: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((judge(x.clamp(-1, 1)).argmax(1) == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--scales", default="0,1,3,5", help="cfg scales w")
    parser.add_argument("--classifier", help="a noise-aware classifier file for classifier guidance")
    parser.add_argument("--classifier-scales", default="0,1,3,10", help="classifier-guidance scales s")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--judge-epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.time()
    judge, judge_acc = train_judge(args.judge_epochs, args.seed)
    print(f"judge: clean-data CNN trained on the mnist train split (4,500), test accuracy {judge_acc:.3f} "
          f"on 500 test digits ({time.time() - start:.0f} s)")
    model = load(args.checkpoint)
    sampler = model.sampler("ddim")
    labels = torch.arange(10).repeat_interleave(args.per_class)
    rows = []

    def measure(what: str, scale: float, guidance, source=model) -> None:
        t0 = time.time()
        x = source.sample(len(labels), sampler=sampler, steps=args.steps, guidance=guidance, labels=labels, seed=args.seed)
        rows.append((what, scale, accuracy(judge, x, labels), time.time() - t0))
        print(f"  {what:<22} scale {scale:>5g}: accuracy {rows[-1][2]:.3f} ({rows[-1][3]:.0f} s)", flush=True)

    for w in [float(s) for s in args.scales.split(",")]:
        measure("cfg", w, model.guidance("cfg", scale=w))
    if args.classifier:


        class NullLabel(nn.Module):
            """The checkpoint's network with the null label: the unconditional model ε(x, ∅)."""

            def __init__(self, inner):
                super().__init__()
                self.inner, self.prediction, self.num_classes = inner, inner.prediction, 0

            def forward(self, x_t, t, cond=None):
                return self.inner(x_t, t, cond=None)

        for s in [float(v) for v in args.classifier_scales.split(",")]:
            guided = difftk.create("guidance", "classifier", scale=s, classifier=args.classifier)
            measure("classifier (on ε(x,∅))", s, guided, attrs.evolve(model, denoiser=NullLabel(model.denoiser)))
    print(f"\n{len(labels)} samples ({args.per_class} per digit), ddim η=0, {args.steps} steps, seed {args.seed}; "
          f"judge test accuracy {judge_acc:.3f}")
    print("| guidance | scale | conditional accuracy |")
    print("|---|---:|---:|")
    for what, scale, acc, _ in rows:
        print(f"| {what} | {scale:g} | {acc:.3f} |")


if __name__ == "__main__":
    main()
