"""CFG++ (Chung et al. 2024): the guided x̂₀, re-noised with the unconditional ε̂."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule, renoise_of
from difftk.errors import IncompatibleError
from difftk.options import option

from difftk_cfg.guidance import LabelDropout, PairedDenoiser


@attrs.frozen
class CFGPlusPlus(LabelDropout):
    """CFG++: x̂₀ from ε_λ = ε(x,∅) + λ·(ε(x,c) − ε(x,∅)), re-noised with ε(x,∅) (Chung et al. 2024,
    their DDIM update: x_s = √ᾱ_s·x̂₀(ε_λ) + √(1−ᾱ_s)·ε(x,∅)).

    Defined for the samplers whose step is DDIM's, x_s = √ᾱ_s·x̂₀ + c·ε̂ (+ σ·z), taking x̂₀ and ε̂
    apart (those that declare ``renoise``: ``ddim``, any η; the paper's is η = 0). Every other sampler
    reads one prediction per step, where the two roles cannot be told apart, and is refused; so are
    edits (SDEdit, inpainting), which read one output. λ ∈ [0, 1] interpolates (the paper's range):
    λ = 0 is the unconditional model, and CFG++ at λ is DDIM-CFG at the step-dependent weight
    γ_k = λ·σ_t/(σ_t − σ_s) (σ = √((1−ᾱ)/ᾱ), from t to s), which grows to ≫ 1 as steps shrink.
    """

    scale: float = option(0.6, help="λ ∈ [0, 1] of CFG++: x̂₀ from ε(x,∅) + λ·(ε(x,c) − ε(x,∅)), re-noised with ε(x,∅)",
                          ge=0.0, le=1.0)
    p_uncond: float = option(0.1, help="training: probability of replacing a label by the null class", ge=0.0, lt=1.0)

    def check_sampler(self, sampler: Any, editing: bool = False) -> None:
        """Refuse, in one line, a sampler whose step does not re-noise x̂₀ with ε̂, and edits."""
        if not renoise_of(sampler):
            name = getattr(type(sampler), "component_label", f"sampler {type(sampler).__name__}")
            raise IncompatibleError(f"{self.label} is defined for samplers whose step re-noises x̂₀ with ε̂ (DDIM's: "
                                    f"sampler=ddim), and {name} is not one: use ddim, or guidance=cfg")
        if editing:
            raise IncompatibleError(f"{self.label} cannot edit images (an edit reads one prediction per step): "
                                    "sample without init, or use guidance=cfg")

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> CFGPlusPlusDenoiser:
        """The guided denoiser; the schedule is not needed (λ is the same at every t)."""
        self.check_denoiser(denoiser)
        return CFGPlusPlusDenoiser(denoiser, self.scale)


class CFGPlusPlusDenoiser(PairedDenoiser):
    """``split_output``: (out_u + λ·(out_c − out_u), out_u), the outputs x̂₀ and ε̂ are read from
    (:func:`difftk.sampling.steps.predict`); its plain output is the first, x̂₀'s. Both combinations
    are affine with weights summing to one, so they hold in any parameterisation."""

    name = "cfg++"

    def split_output(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        pred_c, pred_u, var_c = self.pair(x_t, t, self.labels(cond))
        return pred_u + self.scale * (pred_c - pred_u), pred_u, var_c

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        out_x0, _, var_c = self.split_output(x_t, t, cond)
        return out_x0, var_c
