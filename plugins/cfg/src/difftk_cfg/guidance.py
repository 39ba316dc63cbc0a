"""Classifier-free guidance (Ho & Salimans 2022, Algorithms 1 and 2, eq. 6)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule, num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.options import option


@attrs.frozen
class ClassifierFreeGuidance:
    """Classifier-free guidance: ε̃ = (1+w)·ε(x_t, c) − w·ε(x_t, ∅) (Ho & Salimans 2022, eq. 6).

    ``scale`` is the paper's w ≥ 0: w = 0 is the plain conditional model, larger w trades
    diversity for fidelity to the class. Another common convention writes the same rule as
    ε(x,∅) + γ·(ε(x,c) − ε(x,∅)) with γ = 1 + w (so γ = 1 is the conditional model); give
    ``scale = γ − 1`` here. In training, a fraction ``p_uncond`` of the labels is replaced by
    the null class ∅ (index ``num_classes`` of the denoiser), so one network learns both
    ε(x, c) and ε(x, ∅) (Algorithm 1).
    """

    scale: float = option(3.0, help="guidance weight w ≥ 0 of (1+w)·ε(x,c) − w·ε(x,∅); 0 = the conditional model", ge=0.0, le=1000.0)
    p_uncond: float = option(0.1, help="training: probability of replacing a label by the null class", ge=0.0, lt=1.0)

    #: the options that change what is trained (a resumed run must keep them); ``scale`` only samples
    training_options: ClassVar[tuple[str, ...]] = ("p_uncond",)

    def training_condition(self, cond: torch.Tensor, num_classes: int,
                           generator: torch.Generator | None) -> torch.Tensor:
        """Label dropout (Algorithm 1, line 3: c ← ∅ with probability p_uncond); ∅ = ``num_classes``.

        One uniform number per label is drawn from ``generator`` on cond's device, so the
        draw is part of the training run's checkpointed randomness.
        """
        u = torch.rand(cond.shape, generator=generator, device=cond.device)
        return torch.where(u < self.p_uncond, torch.full_like(cond, num_classes), cond)

    def check_trained(self, spec: Any) -> None:
        """Refuse a model whose training pipeline (``spec``, a PipelineSpec) had no label dropout:
        its network never learned ε(x, ∅), so guidance would extrapolate from an untrained input."""
        trained = spec.get("guidance") if spec is not None else None
        p = dict(trained.options).get("p_uncond", 0.0) if trained is not None and trained.name == "cfg" else 0.0
        if not p:
            raise IncompatibleError("guidance 'cfg' needs a denoiser trained with label dropout, but this model was "
                                    "trained without cfg in its pipeline (p_uncond=0): retrain with "
                                    "`difftk compose ... --guidance cfg`, or use --guidance classifier")

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> CFGDenoiser:
        """The guided denoiser (the schedule is not needed: the rule is the same at every t)."""
        if num_classes_of(denoiser) <= 0:
            raise IncompatibleError("guidance 'cfg' needs a class-conditional denoiser, but this one is unconditional "
                                    "(num_classes=0): train it on labelled data with --guidance cfg")
        return CFGDenoiser(denoiser, self.scale)


class CFGDenoiser(DenoiserWrapper):
    """A denoiser whose output is (1+w)·out(x_t, c) − w·out(x_t, ∅) (Ho & Salimans 2022, eq. 6).

    The conditional and unconditional passes run as one batch of 2B. The combination is taken
    in the wrapped denoiser's own parameterisation (ε, x₀ or v): each is affine in ε with
    coefficients fixed by (x_t, ᾱ), and the weights (1+w, −w) sum to one, so the result is
    the same as combining in ε. With a learned variance only the prediction channels are
    guided; the variance channels are the conditional model's. At w = 0 it calls the wrapped
    denoiser once, with the labels, and returns its output unchanged.
    """

    def __init__(self, denoiser: Denoiser, scale: float) -> None:
        super().__init__(denoiser)
        self.scale = float(scale)

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        if cond is None:
            raise OptionError(f"guidance 'cfg' needs class labels to guide toward: give label=L (0..{self.num_classes - 1})")
        if self.scale == 0.0:
            return self.inner_output(x_t, t, cond)
        null = torch.full_like(cond, self.num_classes)
        pred, var = self.inner_output(torch.cat([x_t, x_t]), torch.cat([t, t]), cond=torch.cat([cond, null]))
        pred_c, pred_u = pred.chunk(2, dim=0)
        var_c = var.chunk(2, dim=0)[0] if var is not None else None
        return pred_c + self.scale * (pred_c - pred_u), var_c  # = (1+w)·out_c − w·out_u
