"""L = min(SNR(t), γ)/SNR(t)·‖ε − ε̂‖²: L_simple with the min-SNR-γ weighting (Hang et al. 2023, eq. 9)."""

import attrs
import torch
from difftk.maths.diffusion import q_sample
from difftk.maths.objectives import mean_flat, sample_times
from difftk.options import option
from difftk.sampling.steps import predict


@attrs.frozen
class MyPluginLoss:
    """Min-SNR-γ weighted ε-MSE; γ = ∞ is L_simple (Ho et al. 2020)."""

    gamma: float = option(5.0, help="clip of the signal-to-noise ratio in the weight", gt=0.0)

    def loss(self, denoiser, schedule, x0, cond=None, generator=None):
        t = sample_times(schedule, x0.shape[0], generator, x0.device)
        alpha_bar = schedule.alpha_bar(t.to(torch.float64))
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = q_sample(x0, alpha_bar.to(x0.dtype), eps)
        eps_hat = predict(denoiser, x_t, t.to(x0.dtype), alpha_bar.to(x0.dtype), cond).eps
        snr = alpha_bar / (1 - alpha_bar)
        weight = (snr.clamp(max=self.gamma) / snr).to(x0.dtype)
        return weight * mean_flat((eps - eps_hat) ** 2)
