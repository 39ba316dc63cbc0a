"""A noise schedule whose log-SNR λ(t) = log(ᾱ/(1−ᾱ)) falls linearly in t (Kingma et al. 2021, §3)."""

import attrs
import torch
from difftk.options import option
from difftk.maths.schedules import ContinuousSchedule


@attrs.frozen
class MyPluginSchedule(ContinuousSchedule):
    """λ(t) = λ_max + (λ_min − λ_max)·t, ᾱ(t) = sigmoid(λ(t)): continuous, closed form."""

    logsnr_max: float = option(10.0, help="λ at t = 0 (signal-to-noise of the data end)", gt=-30.0, lt=30.0)
    logsnr_min: float = option(-10.0, help="λ at t = 1 (signal-to-noise of the noise end)", gt=-30.0, lt=30.0)

    def __attrs_post_init__(self):
        if self.logsnr_min >= self.logsnr_max:
            from difftk.options import option_error

            raise option_error(self, f"logsnr_min={self.logsnr_min} must be below logsnr_max={self.logsnr_max}")

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        lam = self.logsnr_max + (self.logsnr_min - self.logsnr_max) * t.to(torch.float64)
        return torch.sigmoid(lam).to(t.dtype)
