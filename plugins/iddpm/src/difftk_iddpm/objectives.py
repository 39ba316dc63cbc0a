"""The hybrid and VLB objectives with importance sampling of t (Nichol & Dhariwal 2021, §3.1 and §3.3)."""

from __future__ import annotations

import attrs
import torch
from difftk.errors import IncompatibleError
from difftk.maths.diffusion import q_sample
from difftk.maths.objectives import mean_flat
from difftk.options import option
from difftk.sampling.steps import predict

from difftk_iddpm.process import process
from difftk_iddpm.vlb import step_term


@attrs.frozen
class _VLBObjective:
    """Shared by ``hybrid`` and ``vlb``: draws the step k (uniformly, or by importance), noises x₀,
    and keeps the loss history that importance sampling needs as checkpointable state."""

    importance_sampling: bool = option(False, help="draw t with p_t ∝ √E[L_t²] from the last `history` losses per t (§3.3)")
    history: int = option(10, help="losses kept per t for importance sampling (the paper's 10)", ge=1, le=1000)
    uniform_prob: float = option(0.001, help="importance sampling: probability mass spread uniformly over t", ge=0.0, le=1.0)
    _state: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)

    # -- importance sampling of t (resample.py's second-moment resampler, written from §3.3) --------

    def _buffers(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._state.get("loss_history") is None or self._state["loss_history"].shape != (T, self.history):
            self._state["loss_history"] = torch.zeros(T, self.history, dtype=torch.float64)
            self._state["loss_counts"] = torch.zeros(T, dtype=torch.int64)
        return self._state["loss_history"], self._state["loss_counts"]

    def step_probabilities(self, T: int) -> torch.Tensor | None:
        """p_t ∝ √E[L_t²] over each t's history, mixed with ``uniform_prob`` of the uniform distribution;
        ``None`` (uniform) until every t has a full history, as the paper prescribes."""
        if not self.importance_sampling:
            return None
        history, counts = self._buffers(T)
        if bool((counts < self.history).any()):
            return None
        p = history.square().mean(dim=1).sqrt()
        p = p / p.sum()
        return p * (1 - self.uniform_prob) + self.uniform_prob / T

    def _draw(self, T: int, B: int, generator: torch.Generator | None, device: torch.device):
        """1-based steps k [B] and the weights 1/(T·p_k) that keep the loss unbiased."""
        p = self.step_probabilities(T)
        gen_device = generator.device if generator is not None else device
        if p is None:
            return torch.randint(1, T + 1, (B,), generator=generator, device=gen_device).to(device), None
        p = p.to(gen_device)
        k = torch.multinomial(p, B, replacement=True, generator=generator) + 1
        return k.to(device), (1.0 / (T * p[k - 1])).to(device)

    def _record(self, k: torch.Tensor, losses: torch.Tensor, T: int) -> None:
        if not self.importance_sampling:
            return
        history, counts = self._buffers(T)
        for i, value in zip((k - 1).tolist(), losses.detach().double().cpu().tolist(), strict=True):
            if value != value or value in (float("inf"), float("-inf")):
                continue  # a non-finite step is rejected by the trainer; it must not poison the history
            if counts[i] == self.history:
                history[i, :-1] = history[i, 1:].clone()
                history[i, -1] = value
            else:
                history[i, counts[i]] = value
                counts[i] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The importance-sampling history (empty when off), saved in every checkpoint."""
        if not self.importance_sampling or "loss_history" not in self._state:
            return {}
        return {"loss_history": self._state["loss_history"].clone(), "loss_counts": self._state["loss_counts"].clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "loss_history" in state:
            self._state["loss_history"] = state["loss_history"].to(torch.float64).clone()
            self._state["loss_counts"] = state["loss_counts"].to(torch.int64).clone()

    # -- one batch ----------------------------------------------------------------------------------------

    def _terms(self, denoiser, schedule, x0, cond, generator, *, stop_gradient: bool):
        proc = process(schedule)
        k, weights = self._draw(proc.K, x0.shape[0], generator, x0.device)
        alpha_bar = proc.at(k, "alpha_bar").to(x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = q_sample(x0, alpha_bar, eps)
        pred = predict(denoiser, x_t, proc.at(k, "times").to(x0.dtype), alpha_bar, cond)
        x0_hat = pred.x0.detach() if stop_gradient else pred.x0
        l_t = step_term(proc, k, x0, x_t, x0_hat, pred.var_interp)
        return proc, k, weights, eps, pred, l_t

    def _finish(self, losses: torch.Tensor, k: torch.Tensor, weights: torch.Tensor | None, T: int) -> torch.Tensor:
        self._record(k, losses, T)
        return losses if weights is None else losses * weights.to(losses.dtype)


def _needs_learned_variance(name: str, pipeline) -> None:
    spec = pipeline.spec.get("denoiser")
    if spec is not None and "learned_variance" in spec.options_dict and not spec.options_dict["learned_variance"]:
        raise IncompatibleError(f"objective '{name}' trains the variance Σ_θ, but denoiser '{spec.name}' has "
                                "learned_variance=false: compose it with denoiser.learned_variance=true")


@attrs.frozen
class HybridLoss(_VLBObjective):
    """L_hybrid = L_simple + λ·L_vlb (Nichol & Dhariwal 2021, eq. 16), λ = 0.001.

    One t per example: L_simple = ‖ε − ε̂‖² (mean over dimensions) and the VLB estimate T·L_{t−1}
    (bits/dim, :func:`~difftk_iddpm.vlb.step_term`) with a stop-gradient on the mean, so the VLB term
    trains only the learned variance and L_simple the mean (§3.1). With T = 1000, λ·T·L_{t−1} is the
    per-step term itself, which is how the reference code adds it. Needs a denoiser with
    ``learned_variance``.
    """

    vlb_weight: float = option(0.001, help="λ of L_simple + λ·L_vlb", ge=0.0)

    def check_pipeline(self, pipeline) -> None:
        _needs_learned_variance("hybrid", pipeline)

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        proc, k, weights, eps, pred, l_t = self._terms(denoiser, schedule, x0, cond, generator, stop_gradient=True)
        losses = mean_flat((eps - pred.eps) ** 2) + self.vlb_weight * proc.K * l_t
        return self._finish(losses, k, weights, proc.K)


@attrs.frozen
class VLBLoss(_VLBObjective):
    """L_vlb alone, estimated as T·L_{t−1} in bits/dim (Nichol & Dhariwal 2021, §3.3): the bound's
    value (less the prior term) in expectation, trained through the mean and, when the denoiser
    has one, the learned variance (else Σ = β).
    The paper trains it with importance sampling of t, on here by default.
    """

    importance_sampling: bool = option(True, help="draw t with p_t ∝ √E[L_t²] from the last `history` losses per t (§3.3)")

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        proc, k, weights, _, _, l_t = self._terms(denoiser, schedule, x0, cond, generator, stop_gradient=False)
        return self._finish(proc.K * l_t, k, weights, proc.K)
