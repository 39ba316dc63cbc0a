"""The first stage of latent diffusion: what the core does with any :class:`~difftk.components.protocols.Autoencoder`.

Rombach et al. 2022 (§3, §4.3.2) train the diffusion model on z = E(x) and decode its samples with
D; the latents are rescaled to unit variance first. Here that rescaling is z_scaled = (z − shift)·scale
(diffusers' ``scaling_factor`` and ``shift_factor``), applied by :func:`to_latent` and undone by
:func:`from_latent`, so the autoencoder works on raw latents and every other part of a pipeline
only ever sees z_scaled.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from difftk.errors import IncompatibleError


class LatentDistribution:
    """A diagonal Gaussian posterior q(z | x) = N(mean, exp(logvar)) (Kingma & Welling 2014; Rombach
    et al. 2022, App. G): what an :class:`~difftk.components.protocols.Autoencoder`'s ``encode`` returns."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        # clamped as the reference code does, so exp(logvar) neither overflows nor vanishes
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + σ·ε, ε ~ N(0, I) drawn from ``generator`` (the reparameterisation trick)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self) -> torch.Tensor:
        """KL(q(z | x) ‖ N(0, I)) per example, summed over the latent's elements:
        ½ Σ (mean² + σ² − 1 − log σ²)."""
        terms = self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar
        return 0.5 * terms.flatten(1).sum(1)


def posterior(encoded: Any) -> LatentDistribution:
    """What ``encode`` returned, as a distribution: a deterministic latent is one with zero variance."""
    if isinstance(encoded, LatentDistribution):
        return encoded
    if isinstance(encoded, torch.Tensor):
        return LatentDistribution(encoded, torch.full_like(encoded, -30.0))
    mean = getattr(encoded, "mean", None)  # a distribution of another library with .mean and .logvar
    logvar = getattr(encoded, "logvar", None)
    if isinstance(mean, torch.Tensor) and isinstance(logvar, torch.Tensor):
        return LatentDistribution(mean, logvar)
    raise IncompatibleError(
        f"an autoencoder's encode returned {type(encoded).__name__}: it must return a "
        "LatentDistribution (mean, logvar) or a tensor"
    )


def scale_of(autoencoder: Any) -> float:
    """The autoencoder's ``scale`` (default 1): z_scaled = (z − shift)·scale."""
    return float(getattr(autoencoder, "scale", 1.0))


def shift_of(autoencoder: Any) -> float:
    """The autoencoder's ``shift`` (default 0): z_scaled = (z − shift)·scale."""
    return float(getattr(autoencoder, "shift", 0.0))


class AutoencoderBase(torch.nn.Module):
    """Defaults of the :class:`~difftk.components.protocols.Autoencoder` protocol: ``scale`` 1 and
    ``shift`` 0 (a subclass sets them, e.g. from its weights file), and ``latent_shape`` read from one
    ``encode`` of a zero example on PyTorch's meta device (no memory, no arithmetic). ``encode`` and
    ``decode`` are the subclass's own: without them registration refuses the class in one line."""

    scale: float = 1.0
    shift: float = 0.0

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        meta = _on_meta(self)
        with torch.no_grad():
            encoded = meta.encode(torch.zeros((1, *data_shape), device="meta"))
        return tuple(posterior(encoded).mean.shape[1:])


def _on_meta(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with its tensors on the meta device (shapes only)."""
    clone = copy.deepcopy(module)  # a first stage is small next to the denoiser; the copy is freed at once
    return clone.to("meta")


def frozen(autoencoder: Any, device: torch.device | str | None = None) -> Any:
    """``autoencoder`` in eval mode without gradients (the first stage stays fixed while the denoiser
    trains, Rombach et al. 2022, §3), on ``device`` if given."""
    if isinstance(autoencoder, torch.nn.Module):
        autoencoder.eval().requires_grad_(False)
        if device is not None:
            autoencoder.to(device)
    return autoencoder


def device_of(autoencoder: Any) -> torch.device:
    parameters = getattr(autoencoder, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def to_latent(
    autoencoder: Any, x: torch.Tensor, generator: torch.Generator | None = None, *, sample: bool = False
) -> torch.Tensor:
    """z_scaled = (z − shift)·scale of data ``x``: z the posterior mean, or with ``sample`` a draw
    z ~ q(z | x) from ``generator`` (what the diffusion model is trained on, Rombach et al. 2022, §3)."""
    with torch.no_grad():
        q = posterior(autoencoder.encode(x.to(device_of(autoencoder))))
        z = q.sample(generator) if sample else q.mean
    return ((z - shift_of(autoencoder)) * scale_of(autoencoder)).to(x.device, x.dtype)


def from_latent(autoencoder: Any, z_scaled: torch.Tensor) -> torch.Tensor:
    """The data D(z) of scaled latents: z = z_scaled/scale + shift, decoded."""
    with torch.no_grad():
        z = z_scaled.to(device_of(autoencoder)) / scale_of(autoencoder) + shift_of(autoencoder)
        return autoencoder.decode(z).to(z_scaled.device, z_scaled.dtype)


def space_shape(autoencoder: Any, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the diffusion model works in: the latent shape with an autoencoder, else the data's."""
    if autoencoder is None:
        return tuple(data_shape)
    return tuple(int(n) for n in autoencoder.latent_shape(tuple(data_shape)))
