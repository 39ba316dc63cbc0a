"""Classifier-free guidance (Ho & Salimans 2022, Algorithms 1 and 2, eq. 6), with the rescale of
Lin et al. 2024 (§3.4) and the guidance interval of Kynkäänniemi et al. 2024."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule, num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.guidance import extrapolate, in_interval, rescale
from difftk.maths.terminal import for_sampling
from difftk.options import option


class LabelDropout:
    """What every guidance of this plugin shares: label dropout in training (Ho & Salimans 2022,
    Algorithm 1), the check that a model was trained with it, and the refusal of an unconditional
    denoiser. A subclass declares ``p_uncond`` among its options."""

    p_uncond: float
    #: the options that change what is trained (a resumed run must keep them); the others only sample
    training_options: ClassVar[tuple[str, ...]] = ("p_uncond",)

    @property
    def label(self) -> str:
        """How messages name it: "guidance 'NAME'" as registered."""
        return getattr(type(self), "component_label", "guidance")

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
        p = dict(trained.options).get("p_uncond", 0.0) if trained is not None else 0.0
        if not p:
            raise IncompatibleError(f"{self.label} needs a denoiser trained with label dropout, but this model was "
                                    "trained without cfg in its pipeline (p_uncond=0): retrain it composed with guidance=cfg, "
                                    "or guide it with guidance=classifier")

    def check_denoiser(self, denoiser: Denoiser) -> None:
        """Refuse an unconditional denoiser: there is no class to guide toward."""
        if num_classes_of(denoiser) <= 0:
            raise IncompatibleError(f"{self.label} needs a class-conditional denoiser, but this one is unconditional "
                                    "(num_classes=0): train it on labelled data composed with guidance=cfg")


@attrs.frozen
class ClassifierFreeGuidance(LabelDropout):
    """Classifier-free guidance: ε̃ = (1+w)·ε(x_t, c) − w·ε(x_t, ∅) (Ho & Salimans 2022, eq. 6).

    ``scale`` is the paper's w ≥ 0: w = 0 is the plain conditional model, larger w trades
    diversity for fidelity to the class. Another common convention writes the same rule as
    ε(x,∅) + γ·(ε(x,c) − ε(x,∅)) with γ = 1 + w (so γ = 1 is the conditional model); give
    ``scale = γ − 1`` here. In training, a fraction ``p_uncond`` of the labels is replaced by
    the null class ∅ (index ``num_classes`` of the denoiser), so one network learns both
    ε(x, c) and ε(x, ∅) (Algorithm 1).

    ``rescale`` φ (Lin et al. 2024, §3.4): out̃ ← φ·out̃·std(out_c)/std(out̃) + (1−φ)·out̃, per
    example, in the denoiser's own parameterisation (the paper's v-model, diffusers' any).
    ``interval`` (Kynkäänniemi et al. 2024): guidance only where σ(t) ∈ (σ_lo, σ_hi]; elsewhere
    the conditional model (their weight 1, our w = 0).
    """

    scale: float = option(3.0, help="guidance weight w ≥ 0 of (1+w)·ε(x,c) − w·ε(x,∅); 0 = the conditional model", ge=0.0, le=1000.0)
    p_uncond: float = option(0.1, help="training: probability of replacing a label by the null class", ge=0.0, lt=1.0)
    rescale: float = option(0.0, help="φ of Lin et al. 2024 §3.4: bring the guided output's std back to the conditional one's "
                            "(0 = off, 0.7 in the paper)", ge=0.0, le=1.0)
    interval: tuple[float, ...] | None = option(None, help="guide only where σ = √((1−ᾱ)/ᾱ) lies in (σ_lo, σ_hi], e.g. "
                                                "0.28,5.42 (Kynkäänniemi et al. 2024); elsewhere the conditional model; "
                                                "none = every σ", ge=0.0, optional=True)

    def __attrs_post_init__(self) -> None:
        if self.interval is not None and (len(self.interval) != 2 or not self.interval[0] < self.interval[1]):
            raise OptionError(f"{self.label}: option interval={self.interval!r} must be two noise levels σ_lo < σ_hi, "
                              "e.g. 0.28,5.42")

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> CFGDenoiser:
        """The guided denoiser (the schedule gives σ(t) for ``interval``)."""
        self.check_denoiser(denoiser)
        return CFGDenoiser(denoiser, self.scale, schedule=schedule, rescale=self.rescale, interval=self.interval)


class PairedDenoiser(DenoiserWrapper):
    """A wrapper that reads the wrapped denoiser with the labels and with the null class ∅, as one
    batch of 2B (:meth:`pair`); a subclass combines the two in ``transform``. ``schedule`` gives ᾱ(t)
    (:meth:`alpha_bar`), raised to the floor samplers step from where it reaches 0."""

    #: the registered name, for messages
    name: str = "cfg"

    def __init__(self, denoiser: Denoiser, scale: float, schedule: NoiseSchedule | None = None) -> None:
        super().__init__(denoiser)
        self.scale = float(scale)
        self.schedule = for_sampling(schedule) if schedule is not None else None

    def labels(self, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            raise OptionError(f"guidance '{self.name}' needs class labels to guide toward: give label=L "
                              f"(0..{self.num_classes - 1})")
        return cond

    def pair(self, x_t: torch.Tensor, t: torch.Tensor,
             cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(out(x_t, c), out(x_t, ∅), the conditional variance channels or ``None``), from one call."""
        null = torch.full_like(cond, self.num_classes)
        pred, var = self.inner_output(torch.cat([x_t, x_t]), torch.cat([t, t]), cond=torch.cat([cond, null]))
        pred_c, pred_u = pred.chunk(2, dim=0)
        return pred_c, pred_u, var.chunk(2, dim=0)[0] if var is not None else None

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t) of the wrapped model's schedule, [B], in t's dtype."""
        return self.schedule.alpha_bar(t).to(t.dtype)


class CFGDenoiser(PairedDenoiser):
    """A denoiser whose output is (1+w)·out(x_t, c) − w·out(x_t, ∅) (Ho & Salimans 2022, eq. 6).

    The conditional and unconditional passes run as one batch of 2B. The combination is taken
    in the wrapped denoiser's own parameterisation (ε, x₀ or v): each is affine in ε with
    coefficients fixed by (x_t, ᾱ), and the weights (1+w, −w) sum to one, so the result is
    the same as combining in ε. With a learned variance only the prediction channels are
    guided; the variance channels are the conditional model's. At w = 0, or with no example's σ
    in ``interval``, it calls the wrapped denoiser once, with the labels, and returns its output.
    """

    def __init__(self, denoiser: Denoiser, scale: float, schedule: NoiseSchedule | None = None, *,
                 rescale: float = 0.0, interval: tuple[float, ...] | None = None) -> None:
        super().__init__(denoiser, scale, schedule)
        self.rescale, self.interval = float(rescale), interval

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        cond = self.labels(cond)
        guided = in_interval(self.alpha_bar(t), self.interval) if self.interval is not None else None
        if self.scale == 0.0 or (guided is not None and not bool(guided.any())):
            return self.inner_output(x_t, t, cond)
        pred_c, pred_u, var_c = self.pair(x_t, t, cond)
        w = self.scale if guided is None else self.scale * guided.to(x_t.dtype).view(-1, *[1] * (x_t.ndim - 1))
        return rescale(extrapolate(pred_c, pred_u, w), pred_c, self.rescale), var_c
