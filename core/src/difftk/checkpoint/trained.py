"""The trained pipeline a checkpoint holds, ready to sample: its pipeline built from the stored spec,
the EMA weights loaded and checked (finite, of the network's dtypes) and the network tried once on the
recorded data shape, so that a file that cannot sample is one line now, not a traceback later."""

from __future__ import annotations

import torch

from difftk.checkpoint.files import Checkpoint, load_weights
from difftk.checkpoint.tensors import count_non_finite
from difftk.components.autoencoding import frozen, space_shape
from difftk.components.protocols import learned_variance_of, num_classes_of
from difftk.errors import CheckpointError, OptionError
from difftk.pipeline.compose import Pipeline, compose_spec

#: pipeline parts a model can be loaded and sampled without: another sampler or guidance takes their
#: place, and the objective only trains
SAMPLING_ONLY: tuple[str, ...] = ("sampler", "guidance", "objective")


def trained_pipeline(ckpt: Checkpoint, device: torch.device | str = "cpu") -> tuple[Pipeline, torch.nn.Module]:
    """(the pipeline ``ckpt`` stores, its denoiser with the EMA weights, in eval mode on ``device``).

    A component whose plugin is not installed is named at once for the schedule and the denoiser,
    and only when it would be used for the sampler, guidance and objective (:data:`SAMPLING_ONLY`).
    """
    if "shape" not in ckpt.dataset:
        raise CheckpointError(f"{ckpt.path}: metadata 'dataset' lacks the data shape")
    try:
        pipeline = compose_spec(ckpt.spec, source=str(ckpt.path), absent_ok=SAMPLING_ONLY)
    except OptionError as err:  # options the file stores that no component takes (or too large a network)
        raise CheckpointError(f"{ckpt.path}: the stored pipeline cannot be built: {err}") from None
    if pipeline.denoiser is None or not isinstance(pipeline.denoiser, torch.nn.Module):
        raise CheckpointError(f"{ckpt.path}: the stored pipeline has no trainable denoiser")
    ema = ckpt.section("ema")
    bad, total = count_non_finite(ema)
    if bad:
        raise CheckpointError(f"{ckpt.path}: {bad:,} of its {total:,} EMA weights are NaN or infinite (the run diverged "
                              "before this checkpoint was written): sample an earlier checkpoint, or retrain with a "
                              "lower learning rate")
    load_weights(pipeline.denoiser, ema, source=str(ckpt.path), what="EMA")
    denoiser = pipeline.denoiser.to(device).eval().requires_grad_(False)
    frozen(pipeline.autoencoder, device)
    _check_fits(ckpt, denoiser, device, space_shape(pipeline.autoencoder, tuple(ckpt.dataset["shape"])))
    return pipeline, denoiser


def _check_fits(ckpt: Checkpoint, denoiser: torch.nn.Module, device: torch.device | str,
                shape: tuple[int, ...]) -> None:
    """One denoiser call on a zero example of ``shape`` (the recorded data shape, or its latent shape):
    a shape (or a class count) the network cannot take is a one-line error now, not a traceback in the
    middle of sampling."""
    x = torch.zeros((1, *shape), device=device)
    classes = num_classes_of(denoiser)
    cond = torch.zeros(1, dtype=torch.long, device=device) if classes else None
    try:
        with torch.inference_mode():
            y = denoiser(x, torch.full((1,), 0.5, device=device), cond=cond)
    except Exception as err:  # the network's own complaint, condensed to its first line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{ckpt.path}: metadata dataset.shape {list(shape)} does not fit the stored network "
                              f"({type(err).__name__}: {first[:160]})") from None
    factor = 2 if learned_variance_of(denoiser) else 1
    expected = (1, factor * shape[0], *shape[1:])
    if tuple(y.shape) != expected:
        raise CheckpointError(f"{ckpt.path}: metadata dataset.shape {list(shape)} does not fit the stored network "
                              f"(it returns {list(y.shape[1:])})")
    names = ckpt.dataset.get("class_names") or []
    if names and classes and len(names) != classes:
        raise CheckpointError(f"{ckpt.path}: metadata names {len(names)} classes but the network has {classes}")
