"""EDM's samplers (Karras et al. 2022, Algorithms 1 and 2) on exact Gaussian denoisers.

For data N(μ, s²I) the EDM-frame denoiser is D(x; σ) = μ + s²/(s²+σ²)·(x − μ), and the
probability-flow ODE dx/dσ = (x − D)/σ has the closed-form solution
x(σ) − μ = (x(σ_0) − μ)·√(s²+σ²)/√(s²+σ_0²). difftk's GaussianOracle is that denoiser in the VP
frame, so every error below is measured against the truth.
"""

import math

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.grids import SPACINGS, time_grid
from difftk.maths.schedules import ContinuousSchedule, alpha_bar_table
from difftk.sampling.draw import generate
from difftk.testing import (
    GaussianMixtureOracle,
    GaussianOracle,
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    check_sampler,
)
from difftk.testing.reference import WithLearnedVariance
from difftk_edm.frame import sigma_of
from hypothesis import example, given, settings
from hypothesis import strategies as st

SCHEDULES = {"discrete": ReferenceLinearSchedule(T=100), "continuous": ReferenceVPSchedule()}
NAMES = ("heun", "edm")
#: the moment tests compare with exact data: ε_i of unit variance (S_noise > 1 offsets a network's loss of detail)
OPTIONS = {"heun": {}, "edm": {"S_noise": 1.0}}
MU, S = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5
quick = settings(max_examples=25, deadline=None)


def exact_D(x, sigma, mu, s):
    """D(x; σ) = E[x₀ | x] for x = x₀ + σ·n, x₀ ~ N(μ, s²I)."""
    return mu + s**2 / (s**2 + sigma**2) * (x - mu)


def exact_flow(x, sigma_from, sigma_to, mu, s):
    """The probability-flow ODE's solution from σ_from to σ_to, for x₀ ~ N(μ, s²I) (EDM frame)."""
    return mu + (x - mu) * math.sqrt(s**2 + sigma_to**2) / math.sqrt(s**2 + sigma_from**2)


class Counted(torch.nn.Module):
    """A denoiser counting its calls (the NFE)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.prediction, self.calls = inner, inner.prediction, 0
        self.learned_variance = getattr(inner, "learned_variance", False)

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond=cond)




# --- conformance, defaults, NFE ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("name", NAMES)
def test_registered_and_conforming(name, kind):
    assert name in difftk.available("sampler")
    check_sampler(difftk.create("sampler", name), SCHEDULES[kind])


def test_karras_spacing_and_18_steps_are_the_defaults_and_every_spacing_stays_available():
    for name in NAMES:
        sampler = difftk.create("sampler", name)
        assert sampler.spacing == "karras" and sampler.default_steps == 18
        assert sampler.nfe(None, SCHEDULES["continuous"]) == 35  # EDM's CIFAR-10 setting: NFE = 35
        for spacing in SPACINGS:
            difftk.create("sampler", name, spacing=spacing)
    with pytest.raises(difftk.OptionError, match="not allowed"):
        difftk.create("sampler", "heun", spacing="uniform")


@quick
@given(name=st.sampled_from(NAMES), kind=st.sampled_from(sorted(SCHEDULES)), steps=st.integers(1, 40),
       spacing=st.sampled_from(SPACINGS))
@example(name="edm", kind="discrete", steps=1, spacing="karras")
def test_nfe_counts_the_denoiser_calls_and_is_two_per_step_but_the_last(name, kind, steps, spacing):
    schedule = SCHEDULES[kind]
    sampler = difftk.create("sampler", name, spacing=spacing)
    counted = Counted(GaussianOracle(schedule, mean=MU, std=S))
    sampler.sample(counted, schedule, torch.randn(3, 2, dtype=torch.float64), steps=steps,
                   generator=torch.Generator().manual_seed(0))
    assert counted.calls == sampler.nfe(steps, schedule) == 2 * steps - 1


# --- the grid: the core's, with EDM's σ_max on karras ------------------------------------------------


@quick
@given(kind=st.sampled_from(sorted(SCHEDULES) + ["cosine"]), steps=st.integers(2, 60))
def test_karras_grid_runs_from_sigma_max_to_the_cores_sigma_min(kind, steps):
    schedule = difftk.create("schedule", "cosine") if kind == "cosine" else SCHEDULES[kind]
    core = time_grid(schedule, steps, "karras")
    sigma_top, sigma_min = sigma_of(alpha_bar_table(schedule, core[[0, -1]]))
    assert sigma_top > 80  # σ(1) = 152 (linear, vp) and 2·10⁴ (cosine)
    grid = difftk.create("sampler", "heun").sigma_grid(schedule, steps)
    assert grid.sigmas[0] == pytest.approx(80.0, rel=1e-9) and grid.sigmas[-2] == pytest.approx(sigma_min, rel=1e-9)
    assert grid.sigmas[-1] == 0.0 and np.all(np.diff(grid.sigmas) < 0)
    uncapped = difftk.create("sampler", "heun", sigma_max=None).sigma_grid(schedule, steps)
    np.testing.assert_array_equal(uncapped.times[:-1], core)  # the core's grid itself, from t = 1


def test_a_schedule_below_sigma_max_and_other_spacings_get_the_cores_grid_unchanged():
    low = ReferenceVPSchedule(beta_max=5.0)  # σ(1) = 3.4
    np.testing.assert_array_equal(difftk.create("sampler", "edm").time_grid(low, 12), time_grid(low, 12, "karras"))
    for spacing in ("linspace", "leading", "trailing"):
        schedule = SCHEDULES["discrete"]
        np.testing.assert_array_equal(difftk.create("sampler", "heun", spacing=spacing).time_grid(schedule, 7),
                                      time_grid(schedule, 7, spacing))
    times = (1.0, 0.5, 0.1)
    np.testing.assert_array_equal(difftk.create("sampler", "heun", times=times).time_grid(low, None), times)


def test_option_errors_are_one_line():
    with pytest.raises(difftk.OptionError, match=r"S_tmin=2 must not exceed S_tmax=1"):
        difftk.create("sampler", "edm", S_tmin=2.0, S_tmax=1.0)
    with pytest.raises(difftk.OptionError, match=r"sigma_max=0.001 must be above this schedule's σ_min"):
        difftk.create("sampler", "heun", sigma_max=1e-3).sample(GaussianOracle(SCHEDULES["discrete"]),
                                                                SCHEDULES["discrete"], torch.zeros(1, 1), steps=5)
    with pytest.raises(difftk.OptionError, match=r"0 < S_noise ≤ 2"):
        difftk.create("sampler", "edm", S_noise=0.0)


# --- Heun against an independent reference, and its order ----------------------------------------------


def reference_heun(x, sigmas, mu, s):
    """k-diffusion's sample_heun, written here from its formula: in the EDM frame, float64, with the
    closed-form D; returns the state after every step."""
    states = []
    for i in range(len(sigmas) - 1):
        d = (x - exact_D(x, sigmas[i], mu, s)) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt  # Euler method
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - exact_D(x_2, sigmas[i + 1], mu, s)) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt  # Heun's method
        states.append(x)
    return states


@quick
@given(kind=st.sampled_from(sorted(SCHEDULES) + ["cosine"]), steps=st.integers(1, 30),
       prediction=st.sampled_from(["eps", "x0", "v"]), sigma_max=st.sampled_from([80.0, None]),
       mu=st.floats(-2.0, 2.0), s=st.floats(0.1, 2.0))
@example(kind="cosine", steps=10, prediction="eps", sigma_max=None, mu=0.5, s=0.5)  # from σ = 2·10⁴
def test_heun_equals_an_independent_reference_step_for_step(kind, steps, prediction, sigma_max, mu, s):
    schedule = difftk.create("schedule", "cosine") if kind == "cosine" else SCHEDULES[kind]
    sampler = difftk.create("sampler", "heun", sigma_max=sigma_max)
    times = np.append(sampler.time_grid(schedule, steps), 0.0)
    ab = schedule.alpha_bar(torch.from_numpy(times)).numpy()
    sigmas = np.sqrt((1 - ab) / ab)  # the same σ grid, read from the schedule
    mean = torch.tensor([mu, -mu], dtype=torch.float64)
    oracle = GaussianOracle(schedule, mean=mean, std=s, prediction=prediction)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    seen = []
    out = sampler.sample(oracle, schedule, x_T, steps=steps, callback=seen.append)
    expected = reference_heun(x_T * math.sqrt(1 + sigmas[0] ** 2), sigmas, mean, s)
    assert len(seen) == len(expected) == steps
    for i, (info, ref) in enumerate(zip(seen, expected, strict=True)):
        assert info.t == times[i] and info.t_next == times[i + 1]
        torch.testing.assert_close(info.x * math.sqrt(1 + sigmas[i + 1] ** 2), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out, expected[-1], rtol=1e-9, atol=1e-9)


KS = (16, 23, 32, 45, 64)


def convergence_slope(name):
    """−d log(error)/d log(steps) on the exact Gaussian ODE, float64, the same σ grids for both solvers.

    The error is at the output against the exact flow to the last grid level σ_{N−1} followed by
    the last step (to σ = 0: D itself, the same for Heun and Euler), so it is the integration's."""
    schedule = SCHEDULES["continuous"]
    oracle = GaussianOracle(schedule, mean=MU, std=S)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    heun = difftk.create("sampler", "heun")
    errors = []
    for K in KS:
        grid = heun.sigma_grid(schedule, K)
        s = grid.sigmas
        truth = exact_D(exact_flow(x_T * math.sqrt(1 + s[0] ** 2), s[0], s[-2], MU, S), s[-2], MU, S)
        sampler = heun if name == "heun" else difftk.create("sampler", "ddim", times=tuple(grid.times[:-1]))
        errors.append(float((sampler.sample(oracle, schedule, x_T, steps=K) - truth).abs().max()))
    return -np.polyfit(np.log(KS), np.log(errors), 1)[0], errors


def test_heun_is_second_order_and_euler_first_order():
    """Measured: heun 2.14 (pairwise 2.24 → 2.08 as the steps double, approaching 2 from above: the
    last step, Euler, adds no error here, so the K−1 Heun intervals set it, ∝ (K−1)⁻²), DDIM — the
    Euler method in the EDM frame on the same grid (Karras et al. 2022, §3) — 0.98."""
    heun, heun_errors = convergence_slope("heun")
    euler, euler_errors = convergence_slope("ddim")
    assert abs(heun - 2.0) < 0.25, (heun, heun_errors)
    assert abs(euler - 1.0) < 0.1, (euler, euler_errors)
    assert heun_errors[-1] < 0.1 * euler_errors[-1]


# --- Algorithm 2 ------------------------------------------------------------------------------------


@quick
@given(kind=st.sampled_from(sorted(SCHEDULES)), steps=st.integers(1, 25), S_tmin=st.floats(0.0, 10.0),
       S_noise=st.floats(0.5, 2.0), prediction=st.sampled_from(["eps", "x0", "v"]))
def test_edm_without_churn_is_heun(kind, steps, S_tmin, S_noise, prediction):
    schedule = SCHEDULES[kind]
    oracle = GaussianOracle(schedule, mean=MU, std=S, prediction=prediction)
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(steps))
    heun = difftk.create("sampler", "heun").sample(oracle, schedule, x_T, steps=steps)
    edm = difftk.create("sampler", "edm", S_churn=0.0, S_tmin=S_tmin, S_tmax=max(S_tmin, 50.0), S_noise=S_noise)
    assert torch.equal(edm.sample(oracle, schedule, x_T, steps=steps, generator=torch.Generator().manual_seed(1)), heun)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_edm_with_churn_reproduces_the_data_mean_and_std(kind):
    """n = 3000 samples of N(μ, 0.5²I), 80 steps, γ_i = √2 − 1 on σ ∈ [0.05, 50]. The bounds are 4.5
    standard errors, plus μ·s/σ_max (the start at σ_max = 80, in the mean) and 1 % of s in the std
    (the discretization: measured 13 % at 18 steps, 5 % at 30, 1 % at 80, 0.5 % at 120, n = 20 000)."""
    schedule, n = SCHEDULES[kind], 3000
    oracle = GaussianOracle(schedule, mean=MU, std=S)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sampler = difftk.create("sampler", "edm", S_noise=1.0)
    x = sampler.sample(oracle, schedule, x_T, steps=80, generator=torch.Generator().manual_seed(2))
    assert torch.all((x.mean(0) - MU).abs() < 4.5 * S / math.sqrt(n) + MU.abs() * S / 80), x.mean(0)
    assert torch.all((x.std(0) - S).abs() < 4.5 * S / math.sqrt(2 * n) + 0.01 * S), x.std(0)
    again = sampler.sample(oracle, schedule, x_T[:50], steps=80, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(again, x[:50])  # the churn is random, and drawn from the generator


def test_churned_levels_are_asked_at_their_own_time():
    """σ̂_i = (1 + γ)·σ_i is off the grid: the denoiser sees t̂ with ᾱ(t̂) = 1/(1+σ̂²), between the grid times."""
    schedule = SCHEDULES["continuous"]
    times = []

    class Spy(GaussianOracle):
        def forward(self, x, t, cond=None):
            times.append(float(t[0]))
            return super().forward(x, t, cond)

    sampler = difftk.create("sampler", "edm", S_churn=1e3, S_tmin=0.0, S_tmax=1e3)
    grid = sampler.sigma_grid(schedule, 6)
    sampler.sample(Spy(schedule, mean=MU, std=S), schedule, torch.zeros(1, 2, dtype=torch.float64), steps=6)
    hats = times[0::2]  # each step: D at σ̂_i, then at σ_{i+1} (none after the last)
    sigma_hat = sigma_of(alpha_bar_table(schedule, np.array(hats)))
    np.testing.assert_allclose(sigma_hat, math.sqrt(2) * grid.sigmas[:-1], rtol=1e-9)
    assert np.all(np.array(hats) > grid.times[:-1]) and np.all(np.array(times[1::2]) == grid.times[1:-1])


# --- any schedule, parameterisation, guidance, learned variance, batch ---------------------------------


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("name", NAMES)
def test_from_the_cosine_schedules_sigma_of_2e4_in_float32(name, prediction):
    """ᾱ(1) = 2.4·10⁻⁹: σ(1) = 2·10⁴, in float32, with ε-, x₀- and v-denoisers, capped at 80 or not.
    The bounds are 4.5 standard errors (n = 2000) plus 2 % of s (Heun's error at 40 steps; edm runs 80,
    where the churn's is as small)."""
    schedule, n = difftk.create("schedule", "cosine"), 2000
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(4))
    oracle = GaussianOracle(schedule, mean=MU, std=S, prediction=prediction)
    for sigma_max in (80.0, None):
        sampler = difftk.create("sampler", name, sigma_max=sigma_max, **OPTIONS[name])
        out = sampler.sample(oracle, schedule, x_T, steps=40 if name == "heun" else 80,
                             generator=torch.Generator().manual_seed(5))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        mean, std = out.double().mean(0), out.double().std(0)
        assert torch.all((mean - MU).abs() < 4.5 * S / math.sqrt(n) + MU.abs() * S / 80), (sigma_max, mean)
        assert torch.all((std - S).abs() < 4.5 * S / math.sqrt(2 * n) + 0.02 * S), (sigma_max, std)


@pytest.mark.parametrize("name", NAMES)
def test_learned_variance_channels_are_ignored(name):
    schedule = SCHEDULES["discrete"]
    oracle = GaussianOracle(schedule, mean=MU, std=S, prediction="v")
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = difftk.create("sampler", name)
    plain = sampler.sample(oracle, schedule, x_T, steps=8, generator=torch.Generator().manual_seed(1))
    spied = sampler.sample(WithLearnedVariance(oracle, fill=1e6), schedule, x_T, steps=8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain, spied)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_samples_whatever_the_batch_size(name):
    schedule = SCHEDULES["continuous"]
    oracle = GaussianOracle(schedule, mean=MU, std=S)
    sampler = difftk.create("sampler", name)
    six, four = (generate(oracle, schedule, sampler, (2,), 12, steps=10, seed=3, batch_size=b) for b in (6, 4))
    assert torch.equal(six, four)  # each example its own x_T and churn noise (noise_like)


MEANS = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], dtype=torch.float64)  # overlapping at std 0.5


@pytest.mark.parametrize("name", NAMES)
def test_classifier_free_guidance_around_a_class_conditional_oracle(name):
    """w = 0 draws component c's N(μ_c, 0.5²I) for label c; w = 3 pushes the samples of class c away
    from the other components: nearer their own mean than any other, and their mean further out."""
    schedule, n = SCHEDULES["continuous"], 600
    oracle = GaussianMixtureOracle(schedule, MEANS, stds=0.5)
    labels = torch.arange(n) % 3
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sampler = difftk.create("sampler", name, **OPTIONS[name])
    centre, outward, own = MEANS.mean(0), {}, {}
    for w in (0.0, 3.0):
        guided = difftk.create("guidance", "cfg", scale=w).wrap(oracle, schedule)
        x = sampler.sample(guided, schedule, x_T, steps=40, cond=labels, generator=torch.Generator().manual_seed(7))
        own[w] = float((torch.cdist(x, MEANS).argmin(1) == labels).double().mean())
        class_means = torch.stack([x[labels == c].mean(0) for c in range(3)])
        outward[w] = (class_means - centre).norm(dim=1)
        if w == 0:  # the conditional model: 4.5 standard errors of n/3 samples, plus 2 % of s for 40 steps
            assert torch.all((class_means - MEANS).abs() < 4.5 * 0.5 / math.sqrt(n / 3) + 0.01), class_means
    assert own[0.0] > 0.85 and own[3.0] > 0.99, own
    assert torch.all(outward[3.0] > 1.2 * outward[0.0]), outward


class FlowPath(ContinuousSchedule):
    """ᾱ = (1−t)²/((1−t)² + t²): the rectified-flow path as VP (docs/architecture.md); ᾱ(1) = 0, σ(1) = ∞."""

    def alpha_bar(self, t):
        return (1 - t) ** 2 / ((1 - t) ** 2 + t**2)


class GaussianX0(torch.nn.Module):
    """E[x₀ | x_t] for x₀ ~ N(μ, s²I), in closed form also at ᾱ = 0 (where it is μ)."""

    prediction = "x0"

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s

    def forward(self, x, t, cond=None):
        ab = self.schedule.alpha_bar(t.to(torch.float64))[:, None]
        return (self.mu + ab.sqrt() * self.s**2 / (ab * self.s**2 + 1 - ab) * (x - ab.sqrt() * self.mu)).to(x.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_a_zero_terminal_snr_starts_with_the_euler_steps_limit(name):
    """σ(t_0) = ∞: the first step is x_1 = D + σ_1·ε̂, the limit of its Euler step; NFE = 2·steps − 2."""
    schedule, n = FlowPath(), 3000
    denoiser = Counted(GaussianX0(schedule, MU, S))
    sampler = difftk.create("sampler", name, spacing="linspace", **OPTIONS[name])
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x = sampler.sample(denoiser, schedule, x_T, steps=60, generator=torch.Generator().manual_seed(9))
    assert denoiser.calls == sampler.nfe(60, schedule) == 2 * 60 - 2
    assert torch.all((x.mean(0) - MU).abs() < 4.5 * S / math.sqrt(n))
    assert torch.all((x.std(0) - S).abs() < 4.5 * S / math.sqrt(2 * n) + 0.01 * S)
