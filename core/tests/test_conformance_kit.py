"""The conformance kit catches broken plugins: each mutant below is one correct component broken in
one way a plugin author has broken one, and its check must reject it with a one-line reason, while
the correct original (and a valid network whose last layer starts at zero) passes."""

from __future__ import annotations

import math
import os
from typing import ClassVar

import attrs
import numpy as np
import pytest
import torch
from difftk.maths.schedules import DiscreteSchedule, alpha_bar_table
from difftk.sampling.steps import GridSampler, StepInfo, batch_time, predict
from difftk.testing import (
    ConformanceError,
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    TinyDenoiser,
    check_denoiser,
    check_logger,
    check_objective,
    check_sampler,
    check_schedule,
)
from torch import nn

SCHEDULES = [ReferenceLinearSchedule(), ReferenceVPSchedule()]


# --- samplers ----------------------------------------------------------------------------------

@attrs.frozen
class FirstOrder(GridSampler):
    """DPM-Solver++(1), i.e. deterministic DDIM, in half log-SNR λ = log(α/σ) (Lu et al. 2022b, eq. 9):
    x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·x̂₀, h = λ_t − λ_s; the last step returns x̂₀."""

    default_steps: ClassVar[int] = 20
    convergence_order: ClassVar[int | None] = 1

    def steps_grid(self, schedule, steps):
        return self.time_grid(schedule, steps)

    def nfe(self, steps, schedule):
        return len(self.steps_grid(schedule, steps))

    def phi(self, h: float) -> float:
        return math.expm1(-h)

    def start(self, x_T: torch.Tensor) -> torch.Tensor:
        return x_T.clone()

    def update(self, x, x0, ab_s, ab_t):
        alpha_t, sigma_s, sigma_t = math.sqrt(ab_t), math.sqrt(1 - ab_s), math.sqrt(1 - ab_t)
        h = 0.5 * (math.log(ab_t / (1 - ab_t)) - math.log(ab_s / (1 - ab_s)))
        return (sigma_t / sigma_s) * x - alpha_t * self.phi(h) * x0

    def report(self, callback, k, K, t, t_next, x, x0):
        if callback is not None:
            callback(StepInfo(index=k, total=K, t=t, t_next=t_next, x=x, x0=x0))

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times = np.append(self.steps_grid(schedule, steps), 0.0)
        ab = alpha_bar_table(schedule, times)
        K = len(times) - 1
        x = self.start(x_T)
        for k in range(K):
            x0 = predict(denoiser, x, batch_time(times[k], x), float(ab[k]), cond).x0
            x = self.update(x, x0, float(ab[k]), float(ab[k + 1])) if k < K - 1 else x0
            self.report(callback, k, K, float(times[k]), float(times[k + 1]), x, x0)
        return x


@attrs.frozen
class ReturnsNoise(FirstOrder):
    """Broken: steps and reports as it should, then returns x_T as it came."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        super().sample(denoiser, schedule, x_T, steps, cond, generator, callback)
        return x_T.clone()


@attrs.frozen
class SignError(FirstOrder):
    """Broken: e^{h} − 1 where the update has e^{−h} − 1."""

    def phi(self, h: float) -> float:
        return math.expm1(h)


@attrs.frozen
class IgnoresSteps(FirstOrder):
    """Broken: always its default grid, whatever steps says (and nfe says the same)."""

    def steps_grid(self, schedule, steps):
        return self.time_grid(schedule, None)


@attrs.frozen
class LyingNFE(FirstOrder):
    """Broken: states one evaluation more than it makes."""

    def nfe(self, steps, schedule):
        return super().nfe(steps, schedule) + 1


@attrs.frozen
class InPlace(FirstOrder):
    """Broken: steps in x_T's own memory, so the caller's noise is overwritten."""

    def start(self, x_T):
        return x_T

    def update(self, x, x0, ab_s, ab_t):
        new = super().update(x, x0, ab_s, ab_t)
        return x.copy_(new)


@attrs.frozen
class SameReport(FirstOrder):
    """Broken: reports StepInfo(index=0, total=1) on every step."""

    def report(self, callback, k, K, t, t_next, x, x0):
        super().report(callback, 0, 1, t, t_next, x, x0)


@attrs.frozen
class ClaimsSecondOrder(FirstOrder):
    """Broken: a first-order update that states convergence_order 2."""

    convergence_order: ClassVar[int | None] = 2


@attrs.frozen
class IgnoresGenerator(FirstOrder):
    """Broken: adds noise from the global RNG, not from the generator it is given."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        return super().sample(denoiser, schedule, x_T, steps, cond, generator, callback) + 1e-3 * torch.randn_like(x_T)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["discrete", "continuous"])
def test_a_correct_sampler_passes(schedule):
    check_sampler(FirstOrder(), schedule)


MUTANTS = [
    (ReturnsNoise, r"does not converge to the exact answer: its mean distance to the exact ODE answer .* is 0\.\d+"),
    (SignError, r"does not converge to the exact answer|sample must be finite"),
    (IgnoresSteps, r"it ignores steps: steps=5 and steps=10 gave the same 20 evaluations"),
    (LyingNFE, r"nfe\(10, schedule\) says 11 denoiser evaluations, but sample called the denoiser 10 times"),
    (InPlace, r"it must leave x_T untouched, but overwrote it in place"),
    (SameReport, r"callback index must count the steps 0, 1, 2, …, got \[0, 0, 0"),
    (ClaimsSecondOrder, r"it states convergence_order 2, but its error falls as steps\^−[01]\.\d\d"),
    (IgnoresGenerator, r"sample must be deterministic under a seeded generator"),
]


@pytest.mark.parametrize(("mutant", "reason"), MUTANTS, ids=[m.__name__ for m, _ in MUTANTS])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=["discrete", "continuous"])
def test_the_kit_rejects_a_broken_sampler_in_one_line(mutant, reason, schedule):
    with pytest.raises(ConformanceError, match=reason) as caught:
        check_sampler(mutant(), schedule)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"sampler {mutant.__name__}: ")


def test_a_sampler_that_states_no_nfe_is_rejected():
    @attrs.frozen
    class Silent:
        def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
            return FirstOrder().sample(denoiser, schedule, x_T, steps, cond, generator, callback)

    with pytest.raises(ConformanceError, match=r"it must state its denoiser evaluations: nfe\(steps, schedule\)"):
        check_sampler(Silent())


# --- denoisers ---------------------------------------------------------------------------------

class ZeroLast(nn.Module):
    """Valid: a conditional per-pixel network whose output layer starts at zero (as ADM's U-Net and
    DiT initialise theirs), so that fresh, it outputs zeros and reads neither t nor cond."""

    def __init__(self, channels: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.prediction, self.learned_variance, self.num_classes = "eps", False, num_classes
        self.embed = nn.Embedding(num_classes + 1, 8)
        self.body = nn.Linear(channels + 1, 8)
        self.out = nn.Linear(8, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, cond=None):
        h = torch.cat([x.flatten(1), t[:, None]], dim=1)
        h = torch.nn.functional.silu(self.body(h))
        if cond is not None:
            h = h + self.embed(cond)
        return self.out(h).view_as(x)


class Zeros(ZeroLast):
    """Broken: outputs zeros whatever its parameters."""

    def forward(self, x, t, cond=None):
        return torch.zeros_like(x)


class IgnoresTimeAndClass(ZeroLast):
    """Broken: declares num_classes = 10 but reads only x_t."""

    def forward(self, x, t, cond=None):
        return self.out(torch.nn.functional.silu(self.body(torch.cat([x.flatten(1), torch.zeros_like(t)[:, None]], 1)))).view_as(x)


class IgnoresClass(ZeroLast):
    """Broken: declares num_classes = 10 but never reads cond."""

    def forward(self, x, t, cond=None):
        return super().forward(x, t, None)


def test_valid_denoisers_pass_even_with_a_zero_output_layer():
    check_denoiser(ZeroLast(), (4, 2))
    check_denoiser(TinyDenoiser(in_channels=3, num_classes=5), (4, 3, 4, 4))
    check_denoiser(ZeroLast(num_classes=0), (4, 2))


@pytest.mark.parametrize(("mutant", "reason"), [
    (Zeros, "its output does not depend on x_t, even after its parameters are perturbed"),
    (IgnoresTimeAndClass, "its output does not depend on t, even after its parameters are perturbed"),
    (IgnoresClass, "it declares num_classes=10, but its output does not depend on cond"),
], ids=["zeros", "ignores-t-and-cond", "ignores-cond"])
def test_the_kit_rejects_a_broken_denoiser_in_one_line(mutant, reason):
    with pytest.raises(ConformanceError, match=reason) as caught:
        check_denoiser(mutant(), (4, 2))
    assert "\n" not in str(caught.value)


# --- schedules and objectives --------------------------------------------------------------------

@attrs.frozen
class IncreasingSchedule(DiscreteSchedule):
    """Wrong on purpose: ᾱ rises in the middle."""

    def paper_betas(self):
        return np.full(self.T, 0.01)

    def alpha_bar(self, t):
        ab = super().alpha_bar(t)
        return torch.where((t > 0.5) & (t < 0.6), ab * 1.5, ab)


def test_kit_flags_a_schedule_whose_alpha_bar_increases():
    with pytest.raises(ConformanceError, match=r"ᾱ must be non-increasing, but ᾱ\(0\.5\) = .* < ᾱ\(0\.5005\)"):
        check_schedule(IncreasingSchedule(T=1000))


@attrs.frozen
class DetachedLoss:
    """Wrong on purpose: the loss is computed on a detached prediction, so nothing trains."""

    def loss(self, denoiser, schedule, x0, cond=None, generator=None):
        t = torch.full((x0.shape[0],), 0.5)
        return (denoiser(x0, t, cond=cond).detach() ** 2).flatten(1).mean(1)


def test_kit_flags_an_objective_that_gives_no_gradient():
    with pytest.raises(ConformanceError, match=r"objective DetachedLoss: loss must be differentiable with respect to .*no gradient reached them"):
        check_objective(DetachedLoss())


class _FileLogger:
    """A minimal correct logger: one line per record in the run directory."""

    def start(self, run):
        self.file = open(run.directory / "records.txt", "w")  # noqa: SIM115 - closed in finish

    def log(self, record):
        self.file.write(f"{record}\n")

    def image(self, path, step):
        self.file.write(f"image {path} {step}\n")

    def finish(self):
        self.file.close()


class _SilentLogger(_FileLogger):
    def start(self, run):
        self.file = open(os.devnull, "w")  # noqa: SIM115


class _ElsewhereLogger(_FileLogger):
    def start(self, run):
        self.file = open(run.directory.parent / "stray.txt", "w")  # noqa: SIM115


def test_the_kit_holds_loggers_to_the_run_directory(tmp_path):
    check_logger(_FileLogger(), tmp_path / "good")
    for mutant in (_SilentLogger(), _ElsewhereLogger()):
        with pytest.raises(ConformanceError, match="wrote nothing under the run directory"):
            check_logger(mutant, tmp_path / type(mutant).__name__)
