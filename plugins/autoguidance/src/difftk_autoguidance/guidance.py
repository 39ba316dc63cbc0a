"""Autoguidance (Karras et al. 2024): guide a model with a weaker version of itself."""

from __future__ import annotations

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule, learned_variance_of, num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import convert
from difftk.maths.guidance import extrapolate
from difftk.maths.terminal import for_sampling
from difftk.options import option

#: times at which the two models' ᾱ(t) must agree (relative 1e-6): the same noise process
CHECK_TIMES = torch.linspace(0.0, 1.0, 65, dtype=torch.float64)


@attrs.frozen
class Autoguidance:
    """Autoguidance: D̃(x; σ, c) = (1+w)·D₁(x; σ, c) − w·D₀(x; σ, c) (Karras et al. 2024, with
    their weight 1 + w).

    D₁ is the model sampled, D₀ (``guide``) a weaker model of the same task and conditioning: in
    the paper a smaller network trained for a shorter time; their errors point the same way, and
    guidance moves away from D₀'s. Unlike cfg it needs no unconditional model, so it guides
    unconditional models too and does not trade variety for class fidelity in the same way.
    The combination is affine with weights summing to one, so it is the same in every
    parameterisation; D₀'s output is converted to D₁'s (the core's conversion) when they differ.
    """

    guide: str = option(help="the weaker model D₀: a checkpoint file, a run directory or a shipped model's name "
                        "(e.g. mnist-flow-weak)")
    scale: float = option(1.0, help="guidance weight w ≥ 0 of (1+w)·D₁ − w·D₀ (Karras' w is 1 + w); 0 = the model itself",
                          ge=0.0, le=1000.0)

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> AutoguidedDenoiser:
        """The guided denoiser, with D₀ loaded (on D₁'s device) and checked against D₁."""
        import difftk  # the loader lives at the package's top; imported here, after plugin loading

        parameter = next(denoiser.parameters(), None) if isinstance(denoiser, torch.nn.Module) else None
        guide = difftk.load(self.guide, parameter.device if parameter is not None else "cpu")
        return AutoguidedDenoiser(denoiser, guide.denoiser, self.scale, schedule,
                                  guide_schedule=guide.schedule, guide_shape=tuple(guide.data_shape), guide_name=self.guide)


class AutoguidedDenoiser(DenoiserWrapper):
    """(1+w)·D₁ − w·D₀ in D₁'s parameterisation; D₁'s variance channels are kept."""

    def __init__(self, denoiser: Denoiser, guide: Denoiser, scale: float, schedule: NoiseSchedule, *,
                 guide_schedule: NoiseSchedule | None = None, guide_shape: tuple[int, ...] | None = None,
                 guide_name: str = "the guide") -> None:
        super().__init__(denoiser)
        if num_classes_of(guide) != self.num_classes:
            raise IncompatibleError(f"guidance 'autoguidance': {guide_name} is conditioned on {num_classes_of(guide)} classes "
                                    f"and the model on {self.num_classes}: guide with a weaker model of the same classes")
        if guide_schedule is not None:
            ours = schedule.alpha_bar(CHECK_TIMES)
            theirs = guide_schedule.alpha_bar(CHECK_TIMES)
            if not torch.allclose(theirs.to(torch.float64), ours.to(torch.float64), rtol=1e-6, atol=1e-12):
                raise IncompatibleError(f"guidance 'autoguidance': {guide_name} was trained on another noise schedule than "
                                        "the model (ᾱ(t) differs): guide with a weaker model of the same schedule")
        self.guide, self.scale, self.guide_shape, self.guide_name = guide, float(scale), guide_shape, guide_name
        self.schedule = for_sampling(schedule)

    def guide_output(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """D₀'s prediction channels, in D₁'s parameterisation."""
        if self.guide_shape is not None and tuple(x_t.shape[1:]) != self.guide_shape:
            raise OptionError(f"guidance 'autoguidance': {self.guide_name} makes {list(self.guide_shape)} examples and the model "
                              f"{list(x_t.shape[1:])}: guide with a weaker model of the same data")
        out = self.guide(x_t, t, cond=cond)
        if learned_variance_of(self.guide):
            out = out.chunk(2, dim=1)[0]
        if self.guide.prediction != self.prediction:
            out = convert(self.guide.prediction, out, self.prediction, x_t, self.schedule.alpha_bar(t).to(x_t.dtype))
        return out

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        pred, var = self.inner_output(x_t, t, cond)
        if self.scale == 0.0:
            return pred, var
        return extrapolate(pred, self.guide_output(x_t, t, cond), self.scale), var
