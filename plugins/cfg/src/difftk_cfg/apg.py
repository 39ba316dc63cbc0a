"""Adaptive projected guidance (Sadat et al. 2024)."""

from __future__ import annotations

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.diffusion import convert
from difftk.maths.guidance import apg
from difftk.options import option

from difftk_cfg.guidance import LabelDropout, PairedDenoiser


@attrs.frozen
class AdaptiveProjectedGuidance(LabelDropout):
    """APG (Sadat et al. 2024), on the denoised predictions D = x̂₀:

        Δ_k = D_c − D_u + β·Δ_{k−1}        (momentum over the draw's denoiser calls, Δ_{−1} = 0)
        Δ ← Δ·min(1, r/‖Δ‖)                (norm threshold r; r = 0: off)
        Δ∥ = (⟨Δ, D_c⟩/‖D_c‖²)·D_c,  Δ⊥ = Δ − Δ∥
        D̂ = D_c + w·(Δ⊥ + η·Δ∥)

    ``scale`` is the paper's w − 1 (our w = 0 is the conditional model); η = 1, r = 0, β = 0 is cfg.
    The parallel part is what oversaturates, so the paper's η is 0; β < 0 (−0.5 in the paper)
    pushes away from the previous steps' update. The momentum is state across the steps of one
    draw, per example: the core resets it before every batch (``reset``), so batches and repeated
    draws never share it.
    """

    scale: float = option(3.0, help="guidance weight w ≥ 0 (the paper's w − 1): D_c + w·(Δ⊥ + η·Δ∥); 0 = the conditional model",
                          ge=0.0, le=1000.0)
    eta: float = option(0.0, help="η: weight of the update's part parallel to D_c (1 with r = 0, β = 0 is cfg)", ge=0.0, le=1.0)
    norm_threshold: float = option(0.0, help="r: the update's norm per example is clipped to r (0 = off)", ge=0.0, le=1e6)
    momentum: float = option(0.0, help="β: Δ_k = D_c − D_u + β·Δ_{k−1} over the draw's steps (0 = off; −0.5 in the paper)",
                             gt=-1.0, lt=1.0)
    p_uncond: float = option(0.1, help="training: probability of replacing a label by the null class", ge=0.0, lt=1.0)

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> APGDenoiser:
        """The guided denoiser; the schedule converts its output to x̂₀ and back."""
        self.check_denoiser(denoiser)
        return APGDenoiser(denoiser, self.scale, schedule, eta=self.eta, norm_threshold=self.norm_threshold,
                           momentum=self.momentum)


class APGDenoiser(PairedDenoiser):
    """D̂ of :class:`AdaptiveProjectedGuidance`, answered in the wrapped denoiser's parameterisation.
    ``average`` holds Δ_{k−1} of the current draw (``None`` before its first call)."""

    name = "apg"

    def __init__(self, denoiser: Denoiser, scale: float, schedule: NoiseSchedule, *, eta: float,
                 norm_threshold: float, momentum: float) -> None:
        super().__init__(denoiser, scale, schedule)
        self.eta, self.norm_threshold, self.momentum = float(eta), float(norm_threshold), float(momentum)
        self.average: torch.Tensor | None = None

    def reset(self) -> None:
        self.average = None

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        cond = self.labels(cond)
        if self.scale == 0.0:
            return self.inner_output(x_t, t, cond)
        pred_c, pred_u, var_c = self.pair(x_t, t, cond)
        alpha_bar = self.alpha_bar(t)
        D_c = convert(self.prediction, pred_c, "x0", x_t, alpha_bar)
        diff = D_c - convert(self.prediction, pred_u, "x0", x_t, alpha_bar)
        if self.momentum != 0.0:
            if self.average is not None and self.average.shape == diff.shape:  # another shape: another draw
                diff = diff + self.momentum * self.average
            self.average = diff
        D = apg(D_c, diff, self.scale, self.eta, self.norm_threshold)
        return convert("x0", D, self.prediction, x_t, alpha_bar), var_c
