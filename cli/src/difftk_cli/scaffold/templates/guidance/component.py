"""Classifier-free guidance limited to an interval of times (Kynkäänniemi et al. 2024, eq. 3):
(1+w)·out(x_t, c) − w·out(x_t, ∅) for t in [t_low, t_high], the conditional output elsewhere."""

import attrs
import torch
from difftk.components.protocols import num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.options import option


@attrs.frozen
class MyPluginGuidance:
    """Guidance of weight w only where it helps: not at the start (it collapses diversity) nor at the
    end (it does nothing there). The model must know the null class ∅ = num_classes (cfg's label
    dropout in training: compose with --guidance cfg)."""

    scale: float = option(2.0, help="guidance weight w ≥ 0 inside the interval", ge=0.0, le=1000.0)
    t_low: float = option(0.2, help="guidance starts below this time ...", ge=0.0, le=1.0)
    t_high: float = option(0.8, help="... and stops above this one", ge=0.0, le=1.0)

    def __attrs_post_init__(self):
        if self.t_low > self.t_high:
            raise OptionError(f"t_low={self.t_low} must not exceed t_high={self.t_high}")

    def wrap(self, denoiser, schedule):
        if num_classes_of(denoiser) <= 0:
            raise IncompatibleError("this guidance needs a class-conditional denoiser trained with label dropout")
        return MyPluginGuidanceDenoiser(denoiser, self)


class MyPluginGuidanceDenoiser(DenoiserWrapper):
    """The wrapped denoiser, guided inside [t_low, t_high]; DenoiserWrapper carries its attributes
    and keeps a learned variance's channels."""

    def __init__(self, inner, options: MyPluginGuidance) -> None:
        super().__init__(inner)
        self.options = options

    def transform(self, x_t, t, cond=None):
        pred_c, var_c = self.inner_output(x_t, t, cond)
        if cond is None or self.options.scale == 0.0:
            return pred_c, var_c
        pred_u, _ = self.inner_output(x_t, t, torch.full_like(cond, self.num_classes))
        inside = ((t >= self.options.t_low) & (t <= self.options.t_high)).to(pred_c.dtype)
        w = self.options.scale * inside.view(-1, *([1] * (pred_c.ndim - 1)))
        return pred_c + w * (pred_c - pred_u), var_c
