"""Training a ``kl`` autoencoder on a difftk dataset, and setting its latent scale.

The loss (Rombach et al. 2022, App. G, without the adversarial and perceptual terms) is per example

    L = Σ_pixels ℓ(x, D(z)) + β · KL(q(z | x) ‖ N(0, I)),   z ~ q(z | x) (reparameterised),

with ℓ the absolute (``l1``, the paper's) or squared (``l2``) error and β small (10⁻⁶ by default),
so the latents stay close to the data while their variance stays bounded. After training, the scale
is set as the paper does (§4.3.2): scale = 1/σ̂, σ̂ the standard deviation of latents z ~ q(z | x)
over (up to ``scale_examples``) training examples; ``shift`` is 0, or their mean with ``center``.

Run it as a command::

    python -m difftk_autoencoder.train --data mnist --steps 3000 --out mnist-kl.safetensors --set pad=2

It writes the weights file (atomically) every ``--checkpoint-every`` steps with the optimizer state
beside it (``OUT.state.safetensors``), and ``--resume`` continues from there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from difftk.checkpoint.files import flatten_optimizer, unflatten_optimizer
from difftk.components.autoencoding import LatentDistribution
from difftk.data.pipeline_data import load_dataset
from difftk.errors import DifftkError, OptionError, OutputError
from difftk.pipeline.compose import create_component
from difftk.runtime.files import atomic_write_bytes
from safetensors import safe_open
from safetensors.torch import load_file, save

from difftk_autoencoder.weights import architecture
from difftk_autoencoder.weights import save as save_weights

LOSSES = ("l1", "l2")


@attrs.frozen
class AutoencoderTraining:
    """How an autoencoder is trained."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    beta: float = 1e-6
    loss: str = "l1"
    seed: int = 0
    scale_examples: int = 2048
    center: bool = False
    checkpoint_every: int = 500
    log_every: int = 100

    def __attrs_post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise OptionError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        for name in ("steps", "batch_size", "scale_examples", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name}={getattr(self, name)} must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)) or not (self.beta >= 0 and math.isfinite(self.beta)):
            raise OptionError(f"lr={self.lr} must be > 0 and beta={self.beta} ≥ 0")


def reconstruction(x: torch.Tensor, x_hat: torch.Tensor, loss: str) -> torch.Tensor:
    """Σ_pixels |x − x̂| (``l1``) or (x − x̂)² (``l2``), per example."""
    d = (x - x_hat).abs() if loss == "l1" else (x - x_hat).pow(2)
    return d.flatten(1).sum(1)


def autoencoder_loss(
    autoencoder: torch.nn.Module,
    x: torch.Tensor,
    beta: float,
    loss: str = "l1",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L per example, reconstruction term, KL term) of the module docstring."""
    q: LatentDistribution = autoencoder.encode(x)
    x_hat = autoencoder.decode(q.sample(generator))
    rec, kl = reconstruction(x, x_hat, loss), q.kl()
    return rec + beta * kl, rec, kl


@torch.no_grad()
def latent_statistics(
    autoencoder: torch.nn.Module, dataset: Any, count: int, seed: int, batch_size: int = 256
) -> tuple[float, float]:
    """(mean, standard deviation) of latents z ~ q(z | x) over the first ``count`` examples of a seeded
    permutation of ``dataset`` (Rombach et al. 2022, §4.3.2: the scale is 1/σ̂)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=g)[:count]
    total, total_sq, n = 0.0, 0.0, 0
    was = autoencoder.training
    autoencoder.eval()
    for part in index.split(batch_size):
        x, _ = dataset.batch(part)
        z = autoencoder.encode(x).sample(g).double()
        total, total_sq, n = total + z.sum().item(), total_sq + z.pow(2).sum().item(), n + z.numel()
    autoencoder.train(was)
    mean = total / n
    return mean, math.sqrt(max(total_sq / n - mean * mean, 0.0))


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.safetensors")


def _save_state(out: Path, optimizer: torch.optim.Optimizer, step: int, g: torch.Generator) -> None:
    tensors, rest = flatten_optimizer(optimizer.state_dict())
    tensors = {**tensors, "generator": g.get_state()}
    atomic_write_bytes(_state_path(out), save(tensors, metadata={"step": str(step), "optimizer": json.dumps(rest)}))


def train_autoencoder(
    dataset: Any,
    options: Mapping[str, Any],
    config: AutoencoderTraining,
    out: str | Path,
    *,
    dataset_name: str = "",
    resume: bool = False,
    report=print,
) -> dict[str, Any]:
    """Train a ``kl`` autoencoder with ``options`` on ``dataset`` and write it to ``out``; returns the
    training record stored in the file (steps, final losses, σ̂, CPU seconds)."""
    out = Path(out)
    torch.manual_seed(config.seed)
    options = {k: v for k, v in options.items() if k not in ("weights", "weights_sha256")}
    if "in_channels" not in options and dataset.kind == "image":
        options["in_channels"] = dataset.shape[0]
    step, cpu_before = 0, 0.0
    if resume:
        options = {**options, "weights": str(out)}
    model = create_component("autoencoder", "kl", options, from_strings=False)
    model.latent_shape(tuple(dataset.shape))  # data it cannot take: one line now
    model.train().requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(config.seed + 1)
    if resume:
        from difftk_autoencoder.weights import read

        _, meta = read(str(out))
        state = load_file(_state_path(out))
        with safe_open(_state_path(out), "pt") as fh:
            head = fh.metadata()
        step = int(head["step"])
        g.set_state(state.pop("generator"))
        optimizer.load_state_dict(unflatten_optimizer(state, json.loads(head["optimizer"])))
        cpu_before = float(meta["training"].get("cpu_seconds", 0.0))
    started = time.process_time()
    window: list[float] = []
    record: dict[str, Any] = dict(meta["training"]) if resume else {}  # a finished run stays as it was
    while step < config.steps:
        index = torch.randint(len(dataset), (config.batch_size,), generator=g)
        x, _ = dataset.batch(index)
        total, rec, kl = autoencoder_loss(model, x, config.beta, config.loss, g)
        optimizer.zero_grad(set_to_none=True)
        total.mean().backward()
        optimizer.step()
        step += 1
        window.append(rec.mean().item())
        if step % config.log_every == 0 or step == config.steps:
            report(
                f"step {step}: reconstruction {sum(window) / len(window):.3f} per example, KL {kl.mean().item():.1f}"
            )
            window.clear()
        if step % config.checkpoint_every == 0 or step == config.steps:
            mean, std = latent_statistics(model, dataset, config.scale_examples, config.seed + 3)
            shift = mean if config.center else 0.0  # scale = 1/σ̂ either way, as the paper sets it
            record = {
                "steps": step,
                "data": dataset_name,
                "loss": config.loss,
                "beta": config.beta,
                "lr": config.lr,
                "batch_size": config.batch_size,
                "seed": config.seed,
                "latent_mean": mean,
                "latent_std": std,
                "cpu_seconds": round(cpu_before + time.process_time() - started, 1),
            }
            save_weights(out, model, scale=1.0 / std, shift=shift, training=record)
            _save_state(out, optimizer, step, g)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m difftk_autoencoder.train",
        description="Train a kl autoencoder (Rombach et al. 2022) on a difftk dataset.",
    )
    parser.add_argument("--data", required=True, help="dataset NAME[:PATH], e.g. mnist")
    parser.add_argument("--out", required=True, help="the weights file to write (.safetensors)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=1e-6, help="weight β of the KL term")
    parser.add_argument("--loss", choices=LOSSES, default="l1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--center", action="store_true", help="also shift the latents by their mean")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="continue the run written to --out")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="an option of the kl autoencoder, e.g. pad=2; repeatable",
    )
    args = parser.parse_args(argv)
    try:
        name, _, path = args.data.partition(":")
        dataset, _ = load_dataset(name, path or None)
        options: dict[str, Any] = {}
        for pair in args.sets:
            key, sep, value = pair.partition("=")
            if not sep:
                raise OptionError(f"--set {pair!r} is not OPTION=VALUE (e.g. --set pad=2)")
            options[key.strip()] = value.strip()
        options = _parsed(options)
        config = AutoencoderTraining(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            beta=args.beta,
            loss=args.loss,
            seed=args.seed,
            center=args.center,
            checkpoint_every=args.checkpoint_every,
        )
        out = Path(args.out)
        if not args.resume and (out.exists() or _state_path(out).exists()):
            raise OutputError(
                f"{args.out} exists: continue that run with --resume, or write the new one to another --out"
            )
        record = train_autoencoder(dataset, options, config, args.out, dataset_name=name, resume=args.resume)
    except DifftkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: σ̂ = {record['latent_std']:.4f}, scale = {1 / record['latent_std']:.4f}, "
        f"{record['cpu_seconds']} CPU s"
    )
    return 0


def _parsed(options: Mapping[str, str]) -> dict[str, Any]:
    """Command-line strings parsed as the kl autoencoder's option types (one-line errors)."""
    from difftk.components import plugins

    info = plugins.registry().get("autoencoder", "kl")
    return info.check_options(dict(options), from_strings=True)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["AutoencoderTraining", "architecture", "autoencoder_loss", "latent_statistics", "main", "train_autoencoder"]
