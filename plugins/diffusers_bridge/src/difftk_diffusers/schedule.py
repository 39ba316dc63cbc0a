"""The ``diffusers`` schedule: the β of a diffusers scheduler config, bit for bit as diffusers has them.

diffusers computes its named schedules in float32 (``torch.linspace(..., dtype=float32)``, the
cosine β cast to float32), and a model it trained learned those numbers. This schedule holds
exactly them, widened to float64, so that a diffusers model sampled by difftk sees the noise
levels it was trained on: on the grid t_i = i/T its β_i equal the scheduler's ``betas[i − 1]``.
``trained_betas`` are held as the config lists them, in float64 (diffusers narrows them to
float32 when it reads them; the two agree whenever the values are float32 numbers, as they are
when diffusers wrote them).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch
from difftk.maths.schedules import DiscreteSchedule
from difftk.options import option, option_error

#: the named ``beta_schedule`` values this schedule reproduces
BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")

#: the offset s and the β clip of the cosine schedule diffusers names ``squaredcos_cap_v2``
COSINE_S, COSINE_MAX_BETA = 0.008, 0.999


def cosine_betas(T: int) -> np.ndarray:
    """β_i = min(1 − f(i/T)/f((i−1)/T), 0.999), f(t) = cos²((t + s)/(1 + s)·π/2), s = 0.008
    (Nichol & Dhariwal 2021, eq. 17), in float64 as Python's math computes it."""
    f = [math.cos((i / T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2 for i in range(T + 1)]
    return np.array([min(1 - f[i + 1] / f[i], COSINE_MAX_BETA) for i in range(T)], dtype=np.float64)


def rescale_zero_terminal_snr_float32(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Alg. 1, in float32 as diffusers runs it: √ᾱ shifted so that √ᾱ_T = 0 and
    scaled so that √ᾱ_1 is kept, then β_i = 1 − ᾱ_i/ᾱ_{i−1} (β_1 = 1 − ᾱ_1, β_T = 1)."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    return 1 - torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])


def float32_betas(beta_schedule: str, beta_start: float, beta_end: float, T: int) -> torch.Tensor:
    """The float32 β_1..β_T of a named diffusers ``beta_schedule`` (DDPMScheduler's definitions)."""
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if beta_schedule == "scaled_linear":  # √β linear (latent diffusion)
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        return torch.tensor(cosine_betas(T), dtype=torch.float32)
    # sigmoid (GeoDiff): σ(linspace(−6, 6, T))·(β_end − β_start) + β_start
    return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float32)) * (beta_end - beta_start) + beta_start


@attrs.frozen
class DiffusersSchedule(DiscreteSchedule):
    """The β of a diffusers scheduler config (DDPMScheduler/DDIMScheduler), exact on the grid i/T.

    ``T`` is ``num_train_timesteps``; ``beta_schedule``, ``beta_start``, ``beta_end`` and
    ``trained_betas`` are the config's keys (``beta_start``/``beta_end`` are not rescaled with
    T, unlike ddpm's ``linear``); ``zero_terminal_snr`` is ``rescale_betas_zero_snr`` (Lin et
    al. 2024, Alg. 1, run in float32 as diffusers runs it; then β_T = 1 and ᾱ_T = 0). The UNet's
    timestep k is the time t = (k + 1)/T.
    """

    beta_schedule: str = option("linear", help="diffusers' beta_schedule (unused with trained_betas)", choices=BETA_SCHEDULES)
    beta_start: float | None = option(None, help="diffusers' beta_start: β_1 of linear, scaled_linear and sigmoid; none = "
                                      "diffusers' 1e-4 at T = 1000, scaled by 1000/T", gt=0.0, lt=1.0, optional=True)
    beta_end: float | None = option(None, help="diffusers' beta_end: β_T of linear, scaled_linear and sigmoid; none = "
                                    "diffusers' 0.02 at T = 1000, scaled by 1000/T", gt=0.0, lt=1.0, optional=True)
    trained_betas: tuple[float, ...] | None = option(None, help="diffusers' trained_betas: β_1..β_T given outright (T of them)",
                                                     gt=0.0, le=1.0, optional=True)

    def __attrs_post_init__(self) -> None:
        if self.trained_betas is not None and len(self.trained_betas) != self.T:
            raise option_error(self, f"trained_betas has {len(self.trained_betas)} values but T={self.T}: give T={len(self.trained_betas)}")
        start, end = self.ends
        if self.trained_betas is None and self.beta_schedule != "squaredcos_cap_v2" and not start <= end < 1:
            raise option_error(self, f"β from beta_start={start:g} to beta_end={end:g} must rise and stay below 1: "
                               "give beta_start and beta_end")
        super().__attrs_post_init__()

    @property
    def ends(self) -> tuple[float, float]:
        """(beta_start, beta_end), a default one being diffusers' default for T = 1000 (1e-4, 0.02) times 1000/T,
        so that the schedule reaches noise at any T (diffusers' own default does not scale with T)."""
        scale = 1000.0 / self.T
        return (self.beta_start if self.beta_start is not None else 1e-4 * scale,
                self.beta_end if self.beta_end is not None else 0.02 * scale)

    def paper_betas(self) -> np.ndarray:
        """β_1..β_T as diffusers' scheduler holds them, in float64."""
        if self.trained_betas is not None:  # rescaled, when asked, by the core (float64, Lin et al. Alg. 1)
            return np.asarray(self.trained_betas, dtype=np.float64)
        betas = float32_betas(self.beta_schedule, *self.ends, self.T)
        if self.zero_terminal_snr:
            betas = rescale_zero_terminal_snr_float32(betas)
        return betas.to(torch.float64).numpy()
