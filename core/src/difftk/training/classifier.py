"""Noise-aware classifiers trained on noised data (their files: :mod:`difftk.checkpoint.classifier_file`).

Classifier guidance (Dhariwal & Nichol 2021, §4.1) needs p(y | x_t) at every noise level: the
classifier is trained with cross-entropy on x_t = √ᾱ(t)·x₀ + √(1−ᾱ(t))·ε at times t drawn as
the objectives draw them (:func:`difftk.maths.objectives.sample_times`), with the schedule of the
diffusion model it will guide. A classifier component (kind ``classifier``) is a
``torch.nn.Module`` with an attrs ``Config``; ``classifier(x_t, t)`` returns logits [B, K].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from difftk.components import plugins
from difftk.data.arrays import ArrayDataset
from difftk.data.examples import class_weights, flip_images, flip_mask
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import q_sample
from difftk.maths.objectives import sample_times
from difftk.pipeline.compose import create_component, spec_of
from difftk.pipeline.spec import ComponentSpec
from difftk.training.order import BatchOrder


def default_classifier(data_kind: str) -> str:
    """The first registered classifier whose ``data_kinds`` include ``data_kind`` (image or points)."""
    registry = plugins.registry()
    names = registry.names("classifier")
    fits = [n for n in names if data_kind in getattr(registry.get("classifier", n).cls, "data_kinds", ("image", "points"))]
    if not fits:
        listing = ", ".join(names) or "none installed"
        raise OptionError(f"no classifier for {data_kind} data is installed ({listing}): "
                          "install difftk-classifier-guidance or give classifier=NAME")
    return fits[0]


def build_classifier(name: str, dataset: ArrayDataset, options: dict[str, Any] | None = None) -> tuple[torch.nn.Module, ComponentSpec]:
    """Create classifier ``name`` with its data options (in_channels, image_size, num_classes) read from ``dataset``."""
    info = plugins.registry().get("classifier", name)
    fields = info.option_fields()
    filled: dict[str, Any] = {}
    if dataset.kind == "image":
        C, H, _ = dataset.shape
        filled.update({k: v for k, v in (("in_channels", C), ("image_size", H)) if k in fields})
    elif "in_channels" in fields:
        filled["in_channels"] = dataset.shape[0]
    if "num_classes" in fields:
        filled["num_classes"] = dataset.num_classes
    model = create_component("classifier", name, {**(options or {}), **filled})
    return model, spec_of("classifier", model)


def classifier_loss(classifier: torch.nn.Module, schedule: Any, x0: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-example cross-entropy −log p_φ(y | x_t) on x_t ~ q(x_t | x₀) at training times t
    (Dhariwal & Nichol 2021, §4.1: the classifier is trained on noisy images)."""
    t = sample_times(schedule, x0.shape[0], generator, x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha_bar = schedule.alpha_bar(t.to(torch.float64)).to(x0.dtype)
    x_t = q_sample(x0, alpha_bar, eps)
    return F.cross_entropy(classifier(x_t, t.to(x0.dtype)), y, reduction="none")


@torch.no_grad()
def noisy_accuracy(classifier: torch.nn.Module, schedule: Any, dataset: ArrayDataset, *, t_max: float = 1.0,
                   seed: int = 0, batch_size: int = 500, device: torch.device | str = "cpu",
                   balanced: bool = False) -> float:
    """Accuracy on ``dataset`` noised at t ~ U(0, t_max] (t = 0 exactly when t_max = 0: clean data).

    ``balanced``: the mean over classes of each class's accuracy, what the classifier would score
    on the same data with every class in equal numbers (classes absent from ``dataset`` left out)."""
    g = torch.Generator(device=device).manual_seed(seed)
    was_training = classifier.training
    classifier.eval()
    correct = torch.zeros(max(dataset.num_classes, 1), dtype=torch.float64)
    count = torch.zeros_like(correct)
    for start in range(0, len(dataset), batch_size):
        x0, y = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))), device)
        t = t_max * (1.0 - torch.rand(x0.shape[0], generator=g, device=device))
        ab = schedule.alpha_bar(t.to(torch.float64)).to(x0.dtype)
        x_t = q_sample(x0, ab, torch.randn(x0.shape, generator=g, device=device))
        right = (classifier(x_t, t).argmax(1) == y).to(torch.float64).cpu()
        correct.index_add_(0, y.cpu(), right)
        count.index_add_(0, y.cpu(), torch.ones_like(right))
    classifier.train(was_training)
    if balanced:
        present = count > 0
        return float((correct[present] / count[present]).mean())
    return float(correct.sum() / count.sum())


def train_classifier(classifier: torch.nn.Module, schedule: Any, dataset: ArrayDataset, *, steps: int,
                     batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                     device: torch.device | str = "cpu", balance: bool = False,
                     callback: Callable[[int, float], None] | None = None) -> float:
    """Train ``classifier`` in place with AdamW on the noised cross-entropy; returns the last loss.

    The data order and the noise draw from generators seeded with ``seed + 1`` and ``seed + 2``
    (the weights from torch's global RNG, seeded by the caller), so a seed gives the same file.
    ``balance`` weighs each example's cross-entropy by :func:`class_weights` (the loss is the
    weighted mean), so a rare class is not traded for a common one. A dataset with ``flip``
    mirrors its images at random, as the diffusion trainer does (the same seeded coins).
    """

    if dataset.labels is None or dataset.num_classes < 2:
        raise IncompatibleError(f"{dataset.name} has no class labels: a classifier needs labelled data")
    device = torch.device(device)
    classifier.to(device).train()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    order = BatchOrder(len(dataset), batch_size, seed + 1)
    noise = torch.Generator(device=device).manual_seed(seed + 2)
    weights = class_weights(dataset).to(device=device, dtype=torch.float32) if balance else None
    value = float("nan")
    for step in range(1, steps + 1):
        x0, y = dataset.batch(order.next(), device)
        if dataset.flip:
            x0 = flip_images(x0, flip_mask(seed, step, x0.shape[0]))
        per_example = classifier_loss(classifier, schedule, x0, y, noise)
        if weights is None:
            loss = per_example.mean()
        else:
            w = weights[y]
            loss = (w * per_example).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
        optimizer.step()
        value = loss.item()
        if callback is not None:
            callback(step, value)
    classifier.eval()
    return value
