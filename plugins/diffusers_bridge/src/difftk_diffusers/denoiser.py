"""The ``diffusers-unet`` denoiser: a diffusers ``UNet2DModel`` called on difftk's clock.

difftk's time t ∈ [0, 1] and the UNet's integer timestep k (0..T−1) are the same grid read two
ways: k ↔ t = (k + 1)/T, so that t = 1/T is the first step and t = 1 the last (ᾱ(t) of the
``diffusers`` schedule at t = (k + 1)/T is the scheduler's ``alphas_cumprod[k]``). Between grid
points the UNet is given the real number k = t·T − 1: its sinusoidal embedding takes any real
timestep. Times within float32 precision of a grid point are snapped onto it, so on the grid
the UNet sees exactly the integer the diffusers pipeline gives it.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import torch
from difftk.errors import OptionError
from difftk.options import option


def unet_timestep(t: torch.Tensor, T: int, clock: str = "ddpm") -> torch.Tensor:
    """k = t·T − 1 as float32, exact integers on the grid t = (k + 1)/T (computed in float64); on the ``flow``
    clock k = σ·T, σ = t (FlowMatchEulerDiscreteScheduler's timestep)."""
    if clock == "flow":
        return (t.detach().to(torch.float64) * T).to(torch.float32)
    x = t.detach().to(torch.float64) * T
    r = torch.round(x)
    tol = 1e-9 if t.dtype == torch.float64 else 1e-4 * max(1.0, T / 1000)
    return (torch.where((x - r).abs() < tol, r, x) - 1).to(torch.float32)


def unet_problem(config: dict[str, Any], null_class: bool = False) -> str | None:
    """Why the UNet2DModel ``config`` cannot be a difftk denoiser, or ``None`` when it can."""
    if config.get("time_embedding_type", "positional") != "positional":
        return (f"time_embedding_type {config['time_embedding_type']!r} is not supported (supported: positional, the "
                "sinusoidal embedding of the DDPM timestep)")
    if config.get("class_embed_type") is not None:
        return f"class_embed_type {config['class_embed_type']!r} is not supported (supported: none, with num_class_embeds)"
    channels = config.get("in_channels", 3)
    if config.get("out_channels", 3) != channels:
        return (f"out_channels {config.get('out_channels', 3)} differs from in_channels {channels}: learned-variance "
                "UNets (variance_type learned/learned_range) are not supported")
    classes = config.get("num_class_embeds") or 0
    if null_class and classes < 2:
        return f"null_class needs num_class_embeds ≥ 2 (C classes and the null class ∅), but it is {classes or 'none'}"
    return None


class DiffusersUNet(torch.nn.Module):
    """A diffusers UNet2DModel as a difftk denoiser; its timestep k is t = (k + 1)/T.

    With ``num_class_embeds`` the UNet is class-conditional; with ``null_class`` its last class
    embedding (index num_class_embeds − 1) is the null class ∅ of classifier-free guidance, so
    it has C = num_class_embeds − 1 classes and ``cond=None`` means ∅ (difftk's cfg asks for ∅
    at index C). The architecture is the ``unet`` config (what ``save_pretrained`` writes to
    ``config.json``); the loader builds it with the weights of the folder it read.
    """

    @attrs.frozen
    class Config:
        unet: str = option(help="the UNet2DModel config as JSON (its config.json)")
        prediction: str = option("eps", help="what the UNet predicts (diffusers' prediction_type; flow: the velocity "
                                 "ε − x₀ of a flow-matching UNet)", choices=("eps", "v", "x0", "flow"))
        T: int = option(1000, help="num_train_timesteps: timestep k is the time t = (k + 1)/T", ge=2, le=1_000_000)
        clock: str = option("ddpm", help="ddpm: timestep k = t·T − 1 of a DDPM-type scheduler, the UNet given the VP "
                            "state; flow: k = σ·T with σ = t on the flow schedule (FlowMatchEulerDiscreteScheduler), "
                            "the UNet given the flow state (1 − σ)·x₀ + σ·ε", choices=("ddpm", "flow"))
        null_class: bool = option(False, help="the last class embedding is the null class ∅ of cfg (C = num_class_embeds − 1)")

    def __init__(self, config: Config, unet: torch.nn.Module | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        try:
            settings = json.loads(config.unet)
        except json.JSONDecodeError as err:
            raise OptionError(f"denoiser 'diffusers-unet': option unet is not JSON ({err})") from None
        problem = unet_problem(settings, config.null_class)
        if problem is not None:
            raise OptionError(f"denoiser 'diffusers-unet': {problem}")
        self.config = config
        self.unet = unet if unet is not None else UNet2DModel.from_config(settings)
        self.prediction = config.prediction
        self.T = config.T
        self.class_embeds = int(settings.get("num_class_embeds") or 0)
        self.num_classes = self.class_embeds - 1 if config.null_class else self.class_embeds

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, T={self.T}, num_classes={self.num_classes}, null_class={self.config.null_class}"

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        labels = None
        if self.class_embeds:
            if cond is None and not self.config.null_class:
                raise OptionError(f"this diffusers UNet is class-conditional ({self.num_classes} classes) and has no null "
                                  "class: give labels (label=L), or set null_class if its last class embedding is ∅")
            labels = cond.long() if cond is not None else torch.full((x_t.shape[0],), self.num_classes, device=x_t.device)
            if int(labels.min()) < 0 or int(labels.max()) >= self.class_embeds:
                raise OptionError(f"class labels must lie in 0..{self.num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
        k = unet_timestep(t, self.T, self.config.clock).to(x_t.device)
        if self.config.clock == "flow":  # x_τ = x_t/(α+σ) = x_t·√((1−τ)² + τ²) on the flow schedule, τ = t
            tau = t.detach().to(torch.float64).clamp(0.0, 1.0)
            scale = ((1 - tau) ** 2 + tau**2).sqrt().to(x_t.dtype).to(x_t.device)
            x_t = x_t * scale.view(-1, *([1] * (x_t.dim() - 1)))
        return self.unet(x_t, k, class_labels=labels).sample
