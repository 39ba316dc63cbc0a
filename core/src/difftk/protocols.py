"""The five parts of a diffusion model, as protocols. The core knows no concrete algorithm.

Conventions shared by every protocol: time is continuous, t ∈ [0, 1] (t=0 data, t=1 noise),
given to networks as a float tensor of shape [B]; the process is variance preserving,
x_t = √ᾱ(t)·x₀ + √(1−ᾱ(t))·ε. Components are frozen attrs classes whose fields are their
options (a denoiser is an ``nn.Module`` carrying a frozen attrs ``Config``).
:mod:`difftk.testing` checks each contract below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from difftk.schedules import Discretization


@runtime_checkable
class NoiseSchedule(Protocol):
    """ᾱ(t): how much signal is left at time t.

    Contract: ``alpha_bar(t)`` returns a tensor of ``t``'s shape and dtype with values in
    (0, 1], non-increasing in t, ᾱ(0) ≈ 1 and ᾱ(1) ≈ 0. ``discretize(T)`` returns T float64
    values ``betas`` in (0, 1) and ``alphas_cumprod`` = cumprod(1 − betas) equal to
    ᾱ(i/T); a discrete schedule reproduces its paper's β exactly on its own grid.
    """

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor: ...

    def discretize(self, T: int) -> Discretization: ...


@runtime_checkable
class Denoiser(Protocol):
    """The network: predicts ε, x₀ or v from (x_t, t, cond).

    Contract: ``denoiser(x_t, t, cond=None)`` with x_t of shape [B, ...] and t of shape [B]
    returns a tensor shaped like x_t (twice the channels when ``learned_variance`` is true:
    the second half is the interpolation v of Nichol & Dhariwal 2021). ``prediction`` is one
    of ``"eps"``, ``"x0"``, ``"v"``. ``cond`` is an integer class tensor [B] or ``None``.
    """

    prediction: str

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class Objective(Protocol):
    """The training loss.

    Contract: ``loss(denoiser, schedule, x0, cond=None, generator=None)`` returns a
    per-example loss of shape [B], finite, differentiable with respect to the denoiser's
    parameters, and reproducible under a seeded ``generator``. An objective that keeps state
    across steps (a loss history for importance sampling of t) also defines ``state_dict()``
    -> dict of tensors and ``load_state_dict(state)``; the training engine stores that state in
    every checkpoint, so a resumed run continues exactly.
    """

    def loss(self, denoiser: Denoiser, schedule: NoiseSchedule, x0: torch.Tensor,
             cond: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """Turns noise into data with a denoiser.

    Contract: ``sample(denoiser, schedule, x_T, steps=…, cond=None, generator=None,
    callback=None)`` returns a tensor of x_T's shape, dtype and device; with the same seeded
    ``generator`` it returns the same result. Samplers are stateless: the step grid is
    derived inside ``sample`` from ``schedule`` and ``steps``. ``callback``, if given, is
    called after every step with a :class:`difftk.sampling.StepInfo`.
    """

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               callback: Callable[[Any], None] | None = None) -> torch.Tensor: ...


@runtime_checkable
class Guidance(Protocol):
    """Steers a denoiser toward a condition.

    Contract: ``wrap(denoiser, schedule)`` returns a new :class:`Denoiser` (samplers never
    know guidance exists); at zero guidance strength it equals the wrapped denoiser.
    """

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> Denoiser: ...


class TrainingCondition(Protocol):
    """An optional Guidance method the training engine calls on every batch's labels.

    ``training_condition(cond, num_classes, generator)`` returns the labels the denoiser is
    trained on, e.g. with a fraction replaced by the null class ``num_classes`` (label
    dropout, Ho & Salimans 2022, Algorithm 1). It must draw only from ``generator`` (the
    objective's, whose state every checkpoint stores), so a resumed run stays exact.
    """

    def training_condition(self, cond: torch.Tensor, num_classes: int,
                           generator: torch.Generator | None) -> torch.Tensor: ...


@runtime_checkable
class Classifier(Protocol):
    """A noise-aware classifier: logits of p(y | x_t) from (x_t, t) (Dhariwal & Nichol 2021, §4).

    Contract: ``classifier(x_t, t)`` with x_t of shape [B, ...] and t of shape [B] in [0, 1]
    returns logits of shape [B, num_classes]; the attribute ``num_classes`` says K.
    """

    num_classes: int

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


from difftk.data import Dataset  # noqa: E402  (component kinds too)
from difftk.metrics import Metric  # noqa: E402

PROTOCOLS: dict[str, type] = {
    "schedule": NoiseSchedule,
    "denoiser": Denoiser,
    "objective": Objective,
    "sampler": Sampler,
    "guidance": Guidance,
    "classifier": Classifier,
    "dataset": Dataset,
    "metric": Metric,
}
