"""The VP SDE plugin against exact oracles: the schedule's maths, DSM's exact value, every
sampler's output distribution, and the ODE likelihood against the analytic log-density."""

import math

import attrs
import difftk
import numpy as np
import pytest
import torch
from difftk.errors import DifftkError, OptionError
from difftk.maths.distances import sliced_wasserstein
from difftk.maths.schedules import ContinuousSchedule, DiscreteSchedule, Discretization, beta_of
from difftk.testing import ConformanceError, GaussianMixtureOracle, GaussianOracle, check_schedule
from difftk_vp_sde.likelihood import bits_per_dim, dequantize, ode_log_likelihood
from hypothesis import example, given
from hypothesis import strategies as st

# --- the schedule ---------------------------------------------------------------------------------


def test_vp_discretization_at_1000_is_ddpm_linear():
    """Song et al. 2021, App. B: β_i = β̄_i/N with β̄ linear from 0.1 to 20 is DDPM's 1e-4..0.02."""
    vp = difftk.create("schedule", "vp").discretize(1000)
    linear = difftk.create("schedule", "linear").discretize(1000)
    np.testing.assert_allclose(vp.betas, linear.betas, rtol=1e-14, atol=0)
    np.testing.assert_allclose(vp.alphas_cumprod, linear.alphas_cumprod, rtol=1e-12)
    assert vp.betas[0] == pytest.approx(1e-4, rel=1e-14) and vp.betas[-1] == pytest.approx(0.02, rel=1e-14)


def test_vp_discretization_approximates_the_continuous_alpha_bar_to_first_order():
    """|log ᾱ_N − log ᾱ(1)| → (1/2N)∫β² = 67/N: the measured discrepancy the kit's bound covers."""
    s = difftk.create("schedule", "vp")
    gaps = []
    for N in (100, 1000, 10000):
        d = s.discretize(N)
        gaps.append(abs(math.log(d.alphas_cumprod[-1]) - float(s.log_alpha_bar(torch.tensor(1.0, dtype=torch.float64)))))
    integral = (20.0**3 - 0.1**3) / (6 * (20.0 - 0.1))  # ½∫₀¹ β(t)² dt
    assert gaps[2] * 10000 == pytest.approx(integral, rel=0.01)
    assert gaps[0] > gaps[1] > gaps[2]


def test_vp_passes_the_conformance_kit():
    check_schedule(difftk.create("schedule", "vp"))
    check_schedule(difftk.create("schedule", "vp", beta_min=0.05, beta_max=10.0))


@given(st.floats(0.01, 1.0), st.floats(1.0, 30.0), st.floats(0.0, 1.0))
@example(0.1, 20.0, 1.0)
def test_alpha_bar_is_exp_of_minus_the_integral_of_beta(beta_min, beta_max, t):
    """ᾱ(t) = exp(−∫₀ᵗ β(s) ds), the integral by 64-point Gauss–Legendre quadrature (exact for a linear β)."""
    s = difftk.create("schedule", "vp", beta_min=beta_min, beta_max=beta_max)
    nodes, weights = np.polynomial.legendre.leggauss(64)
    u = torch.from_numpy(0.5 * t * (nodes + 1))
    integral = 0.5 * t * float((torch.from_numpy(weights) * s.beta(u)).sum())
    assert float(s.alpha_bar(torch.tensor(t, dtype=torch.float64))) == pytest.approx(math.exp(-integral), rel=1e-12)


@attrs.frozen
class AlphaBarOnly:
    """A third-party schedule with ᾱ only (no beta): beta_of must differentiate it."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def alpha_bar(self, t):
        return torch.exp(-self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t**2)


@given(st.floats(0.0, 1.0))
def test_beta_is_minus_the_derivative_of_log_alpha_bar(t):
    s = difftk.create("schedule", "vp")
    tt = torch.tensor([t], dtype=torch.float64)
    closed = float(s.beta(tt)[0])
    assert closed == pytest.approx(0.1 + t * 19.9, rel=1e-12)
    assert float(beta_of(AlphaBarOnly(), tt)[0]) == pytest.approx(closed, rel=1e-10)  # autograd fallback
    h = 1e-6
    lo, hi = max(t - h, 0.0), min(t + h, 1.0)
    fd = -(float(s.log_alpha_bar(torch.tensor(hi, dtype=torch.float64))) - float(s.log_alpha_bar(torch.tensor(lo, dtype=torch.float64)))) / (hi - lo)
    assert fd == pytest.approx(closed, rel=1e-4)  # one-sided at the ends: error β'h/2


@attrs.frozen
class OffByAConstant(ContinuousSchedule):
    """Wrong on purpose: discretize(T) uses β_i = 1.2·β(t_i)/T, a discretization of another rate."""

    def alpha_bar(self, t):
        return torch.exp(-0.1 * t - 9.95 * t**2)

    def discretize(self, T):
        return Discretization.from_betas(1.2 * np.linspace(0.1 / T, 20.0 / T, T))


@attrs.frozen
class DiscreteWithApproximateGrid(DiscreteSchedule):
    """Wrong on purpose for a discrete schedule: its native discretize is only first-order close."""

    def paper_betas(self):
        return np.linspace(0.1 / self.T, 20.0 / self.T, self.T)

    def discretize(self, T):
        return Discretization.from_betas(np.linspace(0.1 / T, 20.0 / T, T) * (1 + 1 / T))


def test_kit_flags_a_continuous_discretization_of_another_rate():
    with pytest.raises(ConformanceError, match=r"discretize\(50\) must approximate ᾱ on its grid to \|Δ log ᾱ\| ≤ 2·max\(1, L\)²/T = 4.04 .* at i=50"):
        check_schedule(OffByAConstant(), discretize_steps=(50,))


def test_kit_keeps_the_strict_grid_check_for_discrete_schedules():
    with pytest.raises(ConformanceError, match=r"discretize\(50\) must agree with ᾱ on its grid, but ᾱ\(50/50\)"):
        check_schedule(DiscreteWithApproximateGrid(T=200), discretize_steps=(50,))


def test_bad_options_are_one_line():
    with pytest.raises(OptionError, match=r"beta_max=1.0 must not be below beta_min=2.0"):
        difftk.create("schedule", "vp", beta_min=2.0, beta_max=1.0)
    with pytest.raises(OptionError, match="choose from sigma2, likelihood"):
        difftk.create("objective", "dsm", weighting="likelyhood")
    with pytest.raises(OptionError, match=r"method='rk4' is not allowed.*choose from rk45, heun, euler"):
        difftk.create("sampler", "ode", method="rk4")
    with pytest.raises(DifftkError, match="rk45 took 3 steps without reaching"):
        schedule = difftk.create("schedule", "vp")
        difftk.create("sampler", "ode", max_steps=3).sample(GaussianOracle(schedule, MU, S), schedule, torch.randn(4, 1))


# --- the objective --------------------------------------------------------------------------------


def test_dsm_of_the_exact_denoiser_is_the_mean_of_alpha_bar():
    """For N(0, I) data E[ε|x_t] = √(1−ᾱ)x_t and E‖ε − ε̂‖²/D = ᾱ(t): the σ²-weighted loss of the
    exact denoiser averages ᾱ over t ~ U(ε, 1) — ∫ᾱ dt/(1 − ε), by quadrature."""
    schedule = difftk.create("schedule", "vp")
    oracle = GaussianOracle(schedule, mean=0.0, std=1.0, shape=(8,))
    x0 = torch.randn(20000, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = difftk.create("objective", "dsm").loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(1e-5, 1, 200001, dtype=torch.float64)
    expected = float(torch.trapezoid(schedule.alpha_bar(t), t)) / (1 - 1e-5)
    assert abs(loss.mean().item() - expected) < 4 * loss.std().item() / math.sqrt(len(loss))


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_dsm_is_the_same_for_every_parameterisation_and_likelihood_weighting_is_beta_over_sigma2(prediction):
    schedule = difftk.create("schedule", "linear")  # a discrete schedule, through its continuous view
    mix = dict(means=[[1.0, 0.0], [-1.0, 0.5]], stds=0.5)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma2, likelihood = difftk.create("objective", "dsm"), difftk.create("objective", "dsm", weighting="likelihood")
    ref = sigma2.loss(GaussianMixtureOracle(schedule, **mix), schedule, x0, generator=torch.Generator().manual_seed(1))
    other = sigma2.loss(GaussianMixtureOracle(schedule, prediction=prediction, **mix), schedule, x0, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(other.numpy(), ref.numpy(), rtol=1e-8)
    weighted = likelihood.loss(GaussianMixtureOracle(schedule, **mix), schedule, x0, generator=torch.Generator().manual_seed(1))
    t = 1e-5 + (1 - 1e-5) * torch.rand(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ratio = schedule.beta(t) / (1 - schedule.alpha_bar(t))
    np.testing.assert_allclose(weighted.numpy(), (ratio * ref).numpy(), rtol=1e-10)


# --- the samplers ---------------------------------------------------------------------------------

SAMPLERS = [("euler-maruyama", {}, 200), ("pc", {}, 100), ("ode", {}, None), ("ode", {"method": "heun"}, 50)]
MU, S = 0.5, 0.3


def moments_match(x, mean, std):
    """Sample mean within 4 standard errors and sample std within 5% of the target, per dimension."""
    se = std / math.sqrt(x.shape[0])
    return bool(((x.mean(0) - mean).abs() < 4 * se).all() and ((x.std(0) / std - 1).abs() < 0.05).all())


@pytest.mark.parametrize("schedule_name", ["vp", "linear"])
@pytest.mark.parametrize("name, options, steps", SAMPLERS)
def test_samplers_reproduce_a_gaussian(name, options, steps, schedule_name):
    schedule = difftk.create("schedule", schedule_name)
    sampler = difftk.create("sampler", name, **options)
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sampler.sample(GaussianOracle(schedule, mean=MU, std=S, shape=(2,)), schedule, x_T, steps=steps,
                       generator=torch.Generator().manual_seed(1))
    assert moments_match(x, MU, S), (x.mean(0), x.std(0))


def test_the_moment_check_fails_for_a_wrong_oracle():
    schedule = difftk.create("schedule", "vp")
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    wrong = GaussianOracle(schedule, mean=MU, std=1.15 * S, shape=(2,))
    for name, options, steps in SAMPLERS:
        x = difftk.create("sampler", name, **options).sample(wrong, schedule, x_T, steps=steps,
                                                              generator=torch.Generator().manual_seed(1))
        assert not moments_match(x, MU, S), name


@pytest.mark.parametrize("schedule_name", ["vp", "linear"])
def test_ode_is_the_exact_transport_map_of_a_gaussian(schedule_name):
    """For N(μ, s²) data the flow of eq. 13 maps x_1 to x_ε = √ᾱ_ε μ + (σ_ε/σ_1)(x_1 − √ᾱ_1 μ),
    σ_t² = ᾱ_t s² + 1 − ᾱ_t — per sample, on the continuous vp and the discrete DDPM schedule."""
    schedule = difftk.create("schedule", schedule_name)
    x1 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-3
    x, nfe = difftk.create("sampler", "ode", eps=eps, denoise=False, rtol=1e-5, atol=1e-5).sample_with_nfe(
        GaussianOracle(schedule, MU, S, (2,)), schedule, x1)
    ab1, abe = (float(schedule.alpha_bar(torch.tensor(t, dtype=torch.float64))) for t in (1.0, eps))
    sig = lambda ab: math.sqrt(ab * S**2 + 1 - ab)  # noqa: E731
    exact = math.sqrt(abe) * MU + sig(abe) / sig(ab1) * (x1 - math.sqrt(ab1) * MU)
    assert (x - exact).abs().max() < 1e-3  # rk45 at rtol = atol = 1e-5 (β jumps on the discrete grid)
    assert nfe < 400


MIX = dict(means=[[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]], stds=[0.3, 0.5, 0.4], weights=[0.5, 0.3, 0.2])
N_MIX = 8000
#: sliced W₁ between N_MIX samples and N_MIX exact ones: two exact sets 0.016–0.022 apart, the
#: samplers below 0.025–0.035, a sampler given the stds ×1.3 or the weights shifted ≥ 0.08
SW_THRESHOLD = 0.055


def mixture_distance(sampler, oracle, schedule, steps):
    exact = GaussianMixtureOracle(schedule, **MIX).sample(N_MIX, torch.Generator().manual_seed(100))
    x_T = torch.randn(N_MIX, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sliced_wasserstein(sampler.sample(oracle, schedule, x_T, steps=steps, generator=torch.Generator().manual_seed(1)), exact)


@pytest.mark.parametrize("schedule_name, name, options, steps", [
    ("vp", "euler-maruyama", {}, 100), ("vp", "pc", {}, 50), ("vp", "ode", {}, None), ("vp", "ode", {"method": "heun"}, 25),
    ("linear", "ode", {}, None), ("linear", "euler-maruyama", {}, 100),
])
def test_samplers_reproduce_a_gaussian_mixture(schedule_name, name, options, steps):
    schedule = difftk.create("schedule", schedule_name)
    distance = mixture_distance(difftk.create("sampler", name, **options), GaussianMixtureOracle(schedule, **MIX), schedule, steps)
    assert distance < SW_THRESHOLD


@pytest.mark.parametrize("wrong", [{"stds": [0.4, 0.65, 0.5]}, {"weights": [0.35, 0.4, 0.25]}], ids=["stds", "weights"])
def test_the_distance_check_fails_for_a_wrong_oracle(wrong):
    schedule = difftk.create("schedule", "vp")
    oracle = GaussianMixtureOracle(schedule, **{**MIX, **wrong})
    assert mixture_distance(difftk.create("sampler", "ode", method="heun"), oracle, schedule, 25) > SW_THRESHOLD


@pytest.mark.parametrize("name, options, steps, expected", [
    ("euler-maruyama", {}, 7, 8), ("euler-maruyama", {"denoise": False}, 7, 7), ("pc", {"n_corrector": 2}, 5, 16),
    ("ode", {"method": "euler"}, 9, 9), ("ode", {"method": "heun"}, 9, 17), ("ode", {"method": "heun", "denoise": False}, 9, 16),
])
def test_nfe_is_counted_and_reported_through_the_callback(name, options, steps, expected):
    schedule = difftk.create("schedule", "vp")
    seen = []
    x, nfe = difftk.create("sampler", name, **options).sample_with_nfe(
        GaussianOracle(schedule), schedule, torch.randn(3, 1), steps=steps, generator=torch.Generator().manual_seed(0),
        callback=seen.append)
    assert nfe == expected and all(s.nfe is not None for s in seen) and seen[-1].nfe == nfe


def test_rk45_nfe_is_six_per_attempted_step_plus_two():
    schedule = difftk.create("schedule", "vp")
    seen = []
    _, nfe = difftk.create("sampler", "ode", denoise=False).sample_with_nfe(
        GaussianOracle(schedule, MU, S), schedule, torch.randn(3, 1), callback=seen.append)
    assert (nfe - 2) % 6 == 0 and nfe >= 6 * len(seen) + 2 and seen[-1].t_next == pytest.approx(1e-3)


# --- likelihood -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixture_points():
    schedule = difftk.create("schedule", "vp")
    mix = GaussianMixtureOracle(schedule, **MIX)
    x = mix.sample(100, torch.Generator().manual_seed(3))
    return schedule, mix, x, mix.log_prob(x)


def test_ode_likelihood_with_exact_divergence_is_the_analytic_log_density(mixture_points):
    schedule, mix, x, true = mixture_points
    result = ode_log_likelihood(mix, schedule, x, divergence="exact")
    assert ((result.log_p - true).abs() / true.abs().clamp_min(1.0)).max() < 0.01  # 1%, of at least 1 nat
    assert abs(result.log_p.mean() / true.mean() - 1) < 0.01


def test_ode_likelihood_with_rademacher_probes(mixture_points):
    """One estimate per example is noisy; averaged over 8 probes and 100 examples it is within 1%."""
    schedule, mix, x, true = mixture_points
    result = ode_log_likelihood(mix, schedule, x, divergence="rademacher", n_probes=8, generator=torch.Generator().manual_seed(0))
    assert abs(result.log_p.mean() / true.mean() - 1) < 0.01


def test_ode_likelihood_with_gaussian_probes_is_unbiased(mixture_points):
    """Gaussian probes also weigh the diagonal of ∂f/∂x (variance 2‖J‖²_F, Rademacher's only the
    off-diagonal), so here they are within 4 standard errors rather than 1%."""
    schedule, mix, x, true = mixture_points
    result = ode_log_likelihood(mix, schedule, x, divergence="gaussian", n_probes=8, generator=torch.Generator().manual_seed(0))
    error = result.log_p - true
    assert abs(float(error.mean())) < 4 * float(error.std()) / math.sqrt(len(error))


def test_ode_likelihood_detects_a_wrong_model(mixture_points):
    schedule, mix, x, true = mixture_points
    wrong = GaussianMixtureOracle(schedule, **{**MIX, "stds": [0.4, 0.65, 0.5]})
    assert abs(ode_log_likelihood(wrong, schedule, x).log_p.mean() / true.mean() - 1) > 0.05


def test_bits_per_dim_of_uniform_8_bit_data_is_8():
    """The uniform density 2^−D on [−1, 1)^D is 8 bits/dim: bpd = −log p/(D ln 2) + 7."""
    D = 12
    assert float(bits_per_dim(torch.tensor([-D * math.log(2.0)]), D)[0]) == pytest.approx(8.0, rel=1e-12)
    u = torch.arange(256, dtype=torch.uint8)
    x = dequantize(u, torch.Generator().manual_seed(0))
    assert ((x >= u.double() / 128 - 1) & (x < (u.double() + 1) / 128 - 1)).all()
