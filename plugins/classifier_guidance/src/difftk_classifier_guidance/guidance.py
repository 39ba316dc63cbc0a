"""Classifier guidance in ε-space (Dhariwal & Nichol 2021, eq. 14 and Algorithm 2)."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule, num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import convert, eps_from_score
from difftk.options import option


def classifier_classes(classifier: Any) -> int:
    """K of a classifier: its ``num_classes``, or that of the object a bound method belongs to."""
    value = getattr(classifier, "num_classes", None)
    if value is None:
        value = getattr(getattr(classifier, "__self__", None), "num_classes", 0)
    return int(value or 0)


@attrs.frozen
class ClassifierGuidance:
    """Classifier guidance: ε̃ = ε(x_t) − s·√(1−ᾱ)·∇ₓ log p_φ(y | x_t) (Dhariwal & Nichol 2021, eq. 14).

    Written on ε̂, the rule works with every sampler (their Algorithm 2 is its DDIM case;
    the ancestral Algorithm 1 shifts the mean by s·Σ·∇ log p, which is the same to first
    order). ``classifier`` is a file from ``difftk train-classifier``; in Python, ``wrap``
    also takes a classifier object — any callable (x_t, t) -> logits [B, K], e.g.
    :meth:`difftk.testing.GaussianMixtureOracle.class_log_posterior`.
    """

    scale: float = option(1.0, help="guidance scale s ≥ 0 of ε − s·√(1−ᾱ)·∇ log p(y|x_t); 0 = the denoiser", ge=0.0, le=1000.0)
    classifier: str | None = option(None, help="the noise-aware classifier file (from `difftk train-classifier`)", optional=True)

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule, classifier: Any = None) -> ClassifierGuidedDenoiser:
        """The guided denoiser; ``classifier`` (an object) takes the place of the file option."""
        if classifier is None:
            if self.classifier is None:
                raise OptionError("guidance 'classifier' needs a classifier checkpoint: give classifier=FILE "
                                  "(make one with `difftk train-classifier`)")
            from difftk.checkpoint.classifier_file import load_classifier

            device = next((p.device for p in getattr(denoiser, "parameters", lambda: iter(()))()), torch.device("cpu"))
            classifier = load_classifier(self.classifier, device)
        return ClassifierGuidedDenoiser(denoiser, schedule, classifier, self.scale)


class ClassifierGuidedDenoiser(DenoiserWrapper):
    """The wrapped denoiser with ε̂ shifted by −s·√(1−ᾱ)·∇ₓ log p_φ(y | x_t) (eq. 14).

    The output keeps the wrapped denoiser's parameterisation (ε̂ is converted to ε̃ and back)
    and its learned-variance channels. ``cond`` is the class y to guide toward; the wrapped
    denoiser receives it only if it is class-conditional. At s = 0 the wrapped denoiser's
    output is returned unchanged and the classifier is not called.
    """

    def __init__(self, denoiser: Denoiser, schedule: NoiseSchedule, classifier: Any, scale: float) -> None:
        super().__init__(denoiser)
        self.schedule, self.classifier = schedule, classifier
        self.scale = float(scale)
        self.num_classes = classifier_classes(classifier) or num_classes_of(denoiser)
        self.conditional = num_classes_of(denoiser) > 0

    def log_prob_grad(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇ₓ log p_φ(y | x_t), computed with autograd even inside ``torch.inference_mode``."""
        with torch.inference_mode(False), torch.enable_grad():
            x = x_t.detach().clone().requires_grad_(True)
            try:
                logits = self.classifier(x, t.detach().clone())
            except (RuntimeError, ValueError, IndexError) as err:  # a classifier for other data
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                raise IncompatibleError(f"the classifier cannot read this model's samples of shape "
                                        f"{list(x_t.shape[1:])} ({first}): train one on the model's data with "
                                        "`difftk train-classifier`") from None
            if logits.ndim != 2 or logits.shape[0] != x.shape[0] or int(y.max()) >= logits.shape[1]:
                raise IncompatibleError(f"the classifier gives {list(logits.shape[1:])} logits per sample, but guidance "
                                        f"asks for class {int(y.max())}: use a classifier of the model's classes")
            log_p = torch.log_softmax(logits.float(), dim=1).gather(1, y.detach().clone()[:, None]).sum()
            (grad,) = torch.autograd.grad(log_p, x)
        return grad.to(x_t.dtype)

    def transform(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        if cond is None:
            raise OptionError("guidance 'classifier' needs class labels to guide toward: give label=L "
                              f"(0..{self.num_classes - 1}) or leave it out for one row per class")
        pred, var = self.inner_output(x_t, t, cond=cond if self.conditional else None)
        if self.scale == 0.0:
            return pred, var
        alpha_bar = self.schedule.alpha_bar(t.to(torch.float64))
        eps = convert(self.prediction, pred, "eps", x_t, alpha_bar)
        # eq. 14: ε̃ = −√(1−ᾱ)·(∇log p_t(x) + s·∇log p_φ(y|x_t)) = ε̂ + s·(the classifier's score as an ε),
        # converted in float64 (1 − ᾱ is ~1e-4 near t = 0)
        grad = self.log_prob_grad(x_t, t, cond).to(torch.float64)
        eps = eps + self.scale * eps_from_score(grad, alpha_bar).to(x_t.dtype)
        return convert("eps", eps, self.prediction, x_t, alpha_bar), var
