"""CFG-Zero* (Fan et al. 2025): the optimised scale s* and zero-init, on the flow velocity."""

from __future__ import annotations

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.diffusion import convert
from difftk.maths.guidance import cfg_zero_star
from difftk.options import option

from difftk_cfg.guidance import LabelDropout, PairedDenoiser


@attrs.frozen
class CFGZeroStar(LabelDropout):
    """CFG-Zero* (Fan et al. 2025, §4), on the flow velocity v = ε − x₀ (the core converts any model's):

        s* = ⟨v_c, v_u⟩/‖v_u‖²                  (optimised scale, §4.1, per example)
        ṽ  = s*·v_u + (1+w)·(v_c − s*·v_u)      (the paper's ω = 1 + w)
        ṽ  = 0 for the first ``zero_init_steps`` steps of a draw   (zero-init, §4.2)

    A step is a noise level the sampler visits: the k-th distinct time the denoiser is asked at
    since the core reset the draw (for first-order samplers, the k-th step). A zero velocity leaves
    the flow state x_τ = x_t/(α+σ) where it is. At w = 0 the wrapper is the conditional model, with
    no zero-init: the contract of every guidance (diffusers' guider zeroes at any scale).
    """

    scale: float = option(3.0, help="guidance weight w ≥ 0 (the paper's ω − 1): s*·v_u + (1+w)·(v_c − s*·v_u); 0 = the conditional model",
                          ge=0.0, le=1000.0)
    zero_init_steps: int = option(1, help="the first K steps of a draw get velocity 0 (zero-init; the paper: about 4 % of the steps)",
                                  ge=0, le=10000)
    p_uncond: float = option(0.1, help="training: probability of replacing a label by the null class", ge=0.0, lt=1.0)

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> ZeroStarDenoiser:
        """The guided denoiser; the schedule converts its output to the velocity and back."""
        self.check_denoiser(denoiser)
        return ZeroStarDenoiser(denoiser, self.scale, schedule, zero_init_steps=self.zero_init_steps)


class ZeroStarDenoiser(PairedDenoiser):
    """ṽ of :class:`CFGZeroStar`, answered in the wrapped denoiser's parameterisation. ``times`` holds
    the distinct times asked at in the current draw, in order (zero-init counts them)."""

    name = "cfg-zero-star"

    def __init__(self, denoiser: Denoiser, scale: float, schedule: NoiseSchedule, *, zero_init_steps: int) -> None:
        super().__init__(denoiser, scale, schedule)
        self.zero_init_steps = int(zero_init_steps)
        self.times: list[float] = []

    def reset(self) -> None:
        self.times = []

    def step_of(self, t: torch.Tensor) -> int:
        """The index of this call's time among the draw's distinct times so far."""
        now = float(t.max())
        if now not in self.times:
            self.times.append(now)
        return self.times.index(now)

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        cond = self.labels(cond)
        if self.scale == 0.0:
            return self.inner_output(x_t, t, cond)
        alpha_bar = self.alpha_bar(t)
        if self.step_of(t) < self.zero_init_steps:
            var = self.inner_output(x_t, t, cond)[1] if self.learned_variance else None  # the model's variance
            return convert("flow", torch.zeros_like(x_t), self.prediction, x_t, alpha_bar), var
        pred_c, pred_u, var_c = self.pair(x_t, t, cond)
        v_c = convert(self.prediction, pred_c, "flow", x_t, alpha_bar)
        v_u = convert(self.prediction, pred_u, "flow", x_t, alpha_bar)
        return convert("flow", cfg_zero_star(v_c, v_u, self.scale), self.prediction, x_t, alpha_bar), var_c
