"""Editing real images with any sampler: SDEdit (start part-way, from a noised image) and inpainting.

Neither needs a sampler to know about it: both are a schedule and a denoiser that every sampler
already takes.

**SDEdit** (Meng et al. 2022, §3): noise the image x₀ to x_s ~ q(x_s | x₀) at the strength s ∈ (0, 1]
and solve back to t = 0. A sampler always runs its clock from 1 to 0, so :class:`TruncatedSchedule`
gives it the clock t' = t/s: ᾱ'(t') = ᾱ(s·t'), and :class:`ShiftedTimeDenoiser` asks the network at
t = s·t'. Every step of every sampler then lies in [0, s], on the grid it would use there. On a
discrete schedule of T steps, s is snapped to the grid (s·T whole), so the truncated schedule is
again discrete, with s·T steps that are exactly the original's.

**Inpainting** by replacement in x̂₀: :class:`InpaintingDenoiser` replaces the denoiser's x̂₀ by the
known pixels where ``mask`` is 0 and keeps its own where ``mask`` is 1, and answers with the ε̂
consistent with that x̂₀ at the x_t it was given, in the wrapped denoiser's own parameterisation.
A DDIM step then moves the known region exactly to √ᾱ_s·x₀ + √(1−ᾱ_s)·ε̂ — the replacement method
of Song et al. 2021 (App. I.2) and of RePaint's known-region update (Lugmayr et al. 2022, eq. 8), with
the noise of x_t carried forward instead of drawn afresh — and the generated region sees the known
one through the network at every step.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch

from difftk.components.protocols import Denoiser, NoiseSchedule, grid_size_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import OptionError
from difftk.maths.diffusion import eps_and_x0, eps_from_x0, expand, target_of
from difftk.maths.schedules import Discretization, alpha_bar_table, beta_of, time_of


def snap_strength(schedule: NoiseSchedule, strength: float) -> float:
    """``strength`` checked to lie in (0, 1] and, on a discrete schedule of T steps, rounded to the
    nearest grid time k/T with k ≥ 1."""
    if not 0.0 < strength <= 1.0:
        raise OptionError(f"strength={strength} must lie in (0, 1]: the time the image is noised to (1 = pure noise)")
    T = grid_size_of(schedule)
    if T is None:
        return float(strength)
    return max(1, round(strength * T)) / T


class TruncatedSchedule:
    """``base`` on [0, s], seen through the clock t' = t/s ∈ [0, 1]: ᾱ'(t') = ᾱ(s·t')."""

    def __init__(self, base: NoiseSchedule, strength: float) -> None:
        self.base, self.s = base, snap_strength(base, strength)
        T = grid_size_of(base)
        #: a discrete base keeps its grid: s·T of its steps
        self.grid_size = round(self.s * T) if T is not None else None

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.base.alpha_bar(t * self.s)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β'(t') = −d log ᾱ(s·t')/dt' = s·β(s·t')."""
        return self.s * beta_of(self.base, t * self.s)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        return time_of(self.base, alpha_bar) / self.s

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar(t.to(torch.float64))
        return (torch.log(ab) - torch.log1p(-ab)).to(t.dtype)

    def discretize(self, T: int) -> Discretization:
        return Discretization.from_alphas_cumprod(alpha_bar_table(self, np.arange(1, T + 1, dtype=np.float64) / T))


class ShiftedTimeDenoiser(DenoiserWrapper):
    """``inner`` asked at t = s·t' when a sampler running on :class:`TruncatedSchedule` asks at t'."""

    def __init__(self, inner: Denoiser, strength: float) -> None:
        super().__init__(inner)
        self.s = float(strength)

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        return self.inner_output(x_t, t * self.s, cond)


class InpaintingDenoiser(DenoiserWrapper):
    """``inner`` with its x̂₀ replaced by ``known`` where ``mask`` is 0 (see the module docstring).

    ``known`` is [B, *shape] (or one example, broadcast), ``mask`` broadcasts against it: 1 where
    the pixels are generated, 0 where they are kept. The output is in ``inner``'s parameterisation,
    so every sampler takes it as it takes ``inner``.
    """

    def __init__(self, inner: Denoiser, schedule: NoiseSchedule, known: torch.Tensor, mask: torch.Tensor) -> None:
        if not torch.all((mask == 0) | (mask == 1)):
            raise OptionError("mask must hold 0 (keep the pixel) or 1 (generate it) only")
        super().__init__(inner)
        self.schedule = schedule
        self.known, self.mask = known, mask.to(known.dtype)

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        out, var_interp = self.inner_output(x_t, t, cond)
        alpha_bar = self.schedule.alpha_bar(t.to(torch.float64))
        ab = expand(alpha_bar, x_t)
        _, x0 = eps_and_x0(self.prediction, out.to(torch.float64), x_t.to(torch.float64), ab)
        known, mask = self.known.to(x_t.device, torch.float64), self.mask.to(x_t.device, torch.float64)
        x0 = mask * x0 + (1 - mask) * known
        eps = eps_from_x0(x_t.to(torch.float64), x0, ab)
        return target_of(self.prediction, x0, eps, ab).to(out.dtype), var_interp


@attrs.frozen(eq=False)
class Edit:
    """What to edit: ``init`` images [n or 1, *shape] in the data's range, noised to ``strength``
    (``None`` = from pure noise) and, with ``mask`` ([n or 1, 1 or C, *spatial]; 1 = generate,
    0 = keep), inpainted. The batch loop applies it batch by batch (:meth:`for_batch`)."""

    init: torch.Tensor
    strength: float | None = None
    mask: torch.Tensor | None = None

    @classmethod
    def of(cls, schedule: NoiseSchedule, shape: tuple[int, ...], n: int, init: Any, strength: float | None,
           mask: Any, steps: int | None = None) -> Edit | None:
        """The edit of ``init`` for n samples of examples of ``shape``, checked before any work (one-line
        errors); ``None`` when there is nothing to edit. On a discrete schedule of T steps, ``steps`` may
        not exceed the grid points below the strength s (round(s·T)): there are no others to visit."""
        if init is None:
            if strength is not None or mask is not None:
                raise OptionError(f"{'strength' if strength is not None else 'mask'} needs the image to edit: give init")
            return None
        init = torch.as_tensor(init, dtype=torch.float32)
        if init.ndim == len(shape):
            init = init.unsqueeze(0)
        if tuple(init.shape[1:]) != tuple(shape) or init.shape[0] not in (1, n):
            raise OptionError(f"init of shape {list(init.shape)} does not fit the model's examples {list(shape)} "
                              f"(give 1 or {n} of them)")
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)
            while mask.ndim < init.ndim:
                mask = mask.unsqueeze(0)
            try:
                torch.broadcast_shapes(mask.shape[1:], init.shape[1:])
            except RuntimeError:
                raise OptionError(f"mask of shape {list(mask.shape)} does not fit the images {list(init.shape)}") from None
            if mask.shape[0] not in (1, n):
                raise OptionError(f"mask has {mask.shape[0]} rows for {n} samples: give 1 or {n}")
        s = snap_strength(schedule, strength if strength is not None else 1.0)  # the range check, before any work
        T = grid_size_of(schedule)
        if T is not None and steps is not None and strength is not None and steps > round(s * T):
            raise OptionError(f"steps={steps} is more than the {round(s * T)} steps of the schedule below strength={strength:g} "
                              f"(T={T}): use steps=1..{round(s * T)}, or a larger strength")
        return cls(init=init, strength=strength, mask=mask)

    def rows(self, tensor: torch.Tensor, start: int, size: int) -> torch.Tensor:
        return tensor if tensor.shape[0] == 1 else tensor[start:start + size]

    def for_batch(self, denoiser: Denoiser, schedule: NoiseSchedule, start: int, x_T: torch.Tensor) -> tuple[Any, Any, torch.Tensor]:
        """(denoiser, schedule, x to start from) for the batch of rows start … start + len(x_T)."""
        size = x_T.shape[0]
        init = self.rows(self.init, start, size).to(x_T.device, x_T.dtype)
        mask = self.rows(self.mask, start, size).to(x_T.device) if self.mask is not None else None
        if mask is not None:
            denoiser = InpaintingDenoiser(denoiser, schedule, init, mask)
        s = snap_strength(schedule, self.strength if self.strength is not None else 1.0)
        ab = float(alpha_bar_table(schedule, np.array([s]))[0])
        x_start = ab**0.5 * init + (1.0 - ab) ** 0.5 * x_T  # x_s ~ q(x_s | x₀), with x_T's noise as ε
        if s < 1.0:
            return ShiftedTimeDenoiser(denoiser, s), TruncatedSchedule(schedule, s), x_start
        return denoiser, schedule, x_start
