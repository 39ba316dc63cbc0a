"""The Laplace noise schedule (Hang et al. 2024, "Improved Noise Schedule for Diffusion Training").

Training draws t ~ U(0, 1); a schedule decides which log-SNR λ = log(ᾱ/(1−ᾱ)) that t means, and
so how the training effort is spread over noise levels. Hang et al. choose λ(t) so that uniform
t gives λ ~ Laplace(μ, b): most of the effort near λ = μ, the crossover between signal and
noise, and exponentially little at the ends.
"""

from __future__ import annotations

import attrs
import torch
from difftk.maths.schedules import ContinuousSchedule
from difftk.options import option, option_error


@attrs.frozen
class LaplaceSchedule(ContinuousSchedule):
    """λ(t) = μ − b·sgn(½ − t)·log(1 − 2|t − ½|), ᾱ(t) = sigmoid(λ(t)) (Hang et al. 2024).

    λ(t) is the Laplace(μ, b) quantile function run backwards, t = 1 − F(λ) with
    F(λ) = ½e^{(λ−μ)/b} below μ and 1 − ½e^{−(λ−μ)/b} above, so λ(U) ~ Laplace(μ, b) for
    U ~ U(0, 1), and :meth:`time_of` is F itself. The formula is ±∞ at t = 0 and 1; λ is clamped
    to [``logsnr_min``, ``logsnr_max``], which only acts within ½e^{−15/b} of the ends for the
    defaults, so that ᾱ(0) < 1 and ᾱ(1) > 0 as every difftk schedule has.
    """

    mu: float = option(0.0, help="μ: the log-SNR the training effort is centred on (ᾱ(½) = sigmoid(μ))", ge=-10.0, le=10.0)
    b: float = option(0.5, help="b: the Laplace scale; larger spreads training over more log-SNRs", gt=0.0, le=10.0)
    logsnr_min: float = option(-15.0, help="λ at t = 1: the formula's −∞, clamped (ᾱ(1) = sigmoid(logsnr_min))",
                               ge=-40.0, le=0.0)
    logsnr_max: float = option(15.0, help="λ at t = 0: the formula's +∞, clamped", ge=0.0, le=40.0)

    def __attrs_post_init__(self) -> None:
        if not self.logsnr_min < self.mu < self.logsnr_max:
            raise option_error(self, f"mu={self.mu:g} must lie between logsnr_min={self.logsnr_min:g} and "
                               f"logsnr_max={self.logsnr_max:g}")

    def _unclamped(self, t: torch.Tensor) -> torch.Tensor:
        """The paper's λ(t) in float64, using 1 − 2|t − ½| = 2·min(t, 1 − t) (no cancellation near t = 0)."""
        t = t.to(torch.float64)
        return self.mu - self.b * torch.sign(0.5 - t) * torch.log(2.0 * torch.minimum(t, 1.0 - t))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ(t), clamped to [logsnr_min, logsnr_max]; same shape and dtype as ``t``."""
        return self._unclamped(t).clamp(self.logsnr_min, self.logsnr_max).to(t.dtype)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t) = sigmoid(λ(t)), since λ = log(ᾱ/(1−ᾱ))."""
        return torch.sigmoid(self.log_snr(t.to(torch.float64))).to(t.dtype)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −d log ᾱ/dt = (1 − ᾱ)·(−dλ/dt) = (1 − ᾱ)·b/min(t, 1 − t); 0 where λ is clamped."""
        t64 = t.to(torch.float64)
        lam = self._unclamped(t64)
        rate = torch.sigmoid(-lam) * self.b / torch.minimum(t64, 1.0 - t64)
        inside = (lam > self.logsnr_min) & (lam < self.logsnr_max)
        return torch.where(inside, rate, torch.zeros_like(rate)).to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """The inverse of ᾱ(t) in closed form (float64): t = 1 − F(λ), λ = log(ᾱ/(1−ᾱ)) clamped like
        λ(t), so ᾱ beyond the schedule's range maps to the clamped ends."""
        ab = alpha_bar.detach().to(torch.float64)
        lam = (torch.log(ab) - torch.log1p(-ab)).clamp(self.logsnr_min, self.logsnr_max)
        z = (lam - self.mu) / self.b
        return torch.where(z >= 0, 0.5 * torch.exp(-z.abs()), 1.0 - 0.5 * torch.exp(-z.abs()))
