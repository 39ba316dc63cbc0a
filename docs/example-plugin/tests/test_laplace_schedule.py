"""The example plugin's own tests: conformance, the paper's formula and its inverse, what uniform t
means for λ, the closed-form β, and the sampling claim of the README."""

import math

import difftk
import pytest
import torch
from difftk.testing import GaussianOracle, check_schedule
from hypothesis import assume, given, settings
from hypothesis import strategies as st

quick = settings(max_examples=25, deadline=None)
mus, bs = st.floats(-3.0, 3.0), st.floats(0.1, 3.0)
times = st.floats(1e-6, 1 - 1e-6)


def laplace(**options):
    return difftk.create("schedule", "laplace", **options)


def paper_log_snr(t: float, mu: float, b: float) -> float:
    """λ(t) = μ − b·sgn(0.5 − t)·log(1 − 2|t − 0.5|), transcribed as the paper writes it."""
    sgn = (0.5 - t > 0) - (0.5 - t < 0)
    return mu - b * sgn * math.log(1 - 2 * abs(t - 0.5))


def laplace_cdf(x: float, mu: float, b: float) -> float:
    """F(x) of Laplace(μ, b)."""
    return 0.5 * math.exp((x - mu) / b) if x < mu else 1 - 0.5 * math.exp(-(x - mu) / b)


@pytest.mark.parametrize("options", [{}, {"mu": 1.0, "b": 1.0}, {"mu": -2.0, "b": 0.25}, {"logsnr_min": -8.0}])
def test_registered_through_the_entry_point_and_conforming(options):
    assert "laplace" in difftk.available("schedule")
    check_schedule(laplace(**options))


@quick
@given(t=times, mu=mus, b=bs)
def test_log_snr_and_alpha_bar_are_the_papers(t, mu, b):
    schedule = laplace(mu=mu, b=b)
    expected = min(max(paper_log_snr(t, mu, b), -15.0), 15.0)
    tt = torch.tensor([t], dtype=torch.float64)
    assert float(schedule.log_snr(tt)[0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert float(schedule.alpha_bar(tt)[0]) == pytest.approx(1 / (1 + math.exp(-expected)), rel=1e-12)


@quick
@given(t=times, mu=mus, b=bs)
def test_time_of_inverts_alpha_bar_and_is_one_minus_the_laplace_cdf(t, mu, b):
    schedule = laplace(mu=mu, b=b)
    lam = paper_log_snr(t, mu, b)
    assume(-14.0 < lam < 14.0)  # away from the clamp, where ᾱ is flat and the inverse is an end
    ab = schedule.alpha_bar(torch.tensor([t], dtype=torch.float64))
    assert float(schedule.time_of(ab)[0]) == pytest.approx(t, rel=1e-8, abs=1e-12)
    assert float(schedule.time_of(ab)[0]) == pytest.approx(1 - laplace_cdf(lam, mu, b), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("mu,b", [(0.0, 0.5), (1.0, 2.0)])
def test_uniform_t_gives_a_laplace_log_snr(mu, b):
    """The point of the schedule: on an even grid of t (training's t ~ U(0, 1)), the share of t with
    λ(t) ≤ x is F(x), the Laplace CDF, to the grid's resolution."""
    n = 100_000
    lam = laplace(mu=mu, b=b).log_snr((torch.arange(n, dtype=torch.float64) + 0.5) / n)
    for x in (mu - 3 * b, mu - b, mu, mu + 0.5 * b, mu + 2 * b):
        assert float((lam <= x).double().mean()) == pytest.approx(laplace_cdf(x, mu, b), abs=2 / n)


@quick
@given(t=times, mu=mus, b=bs)
def test_beta_is_minus_the_derivative_of_log_alpha_bar(t, mu, b):
    schedule = laplace(mu=mu, b=b)
    assume(abs(t - 0.5) > 1e-3 and -14.0 < paper_log_snr(t, mu, b) < 14.0)  # λ has a kink at ½
    tt = torch.tensor([t], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.log(schedule.alpha_bar(tt)).sum(), tt)
    assert float(schedule.beta(tt.detach())[0]) == pytest.approx(-float(grad[0]), rel=1e-8)


def test_bad_options_are_one_line_errors():
    with pytest.raises(difftk.OptionError, match=r"0 < b"):
        laplace(b=0.0)
    with pytest.raises(difftk.OptionError, match=r"mu=-9 must lie between logsnr_min=-8 and logsnr_max=15"):
        laplace(mu=-9.0, logsnr_min=-8.0)


def test_a_linspace_grid_never_reaches_low_noise_and_karras_does():
    """σ(t) = (2t)^{b/2}·e^{−μ/2} near t = 0: with b = 0.5 a 50-step linspace grid stops at σ(1/50) = 0.45,
    and the last step, straight to x̂₀, shrinks N(μ, 0.5²) to a std of 0.5·0.5/√(0.5² + 0.45²) = 0.37;
    at 200 steps still 0.42. The karras spacing steps in σ down to 0.002: DDIM's std then converges
    to 0.5 at DDIM's first order (0.45, 0.48, 0.49 at 50, 100, 200 steps; README, "Sampling on it")."""
    schedule, n, s = laplace(), 2000, 0.5
    mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
    oracle = GaussianOracle(schedule, mean=mu, std=s)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def std(spacing, steps):
        x = difftk.create("sampler", "ddim", spacing=spacing).sample(oracle, schedule, x_T, steps=steps)
        assert torch.all((x.mean(0) - mu).abs() < 4.5 * s / math.sqrt(n)), x.mean(0)
        return x.std(0)

    ab_last = float(schedule.alpha_bar(torch.tensor([1 / 50], dtype=torch.float64))[0])
    sigma_last = math.sqrt((1 - ab_last) / ab_last)  # the grid's least noise
    assert sigma_last == pytest.approx(0.447, abs=1e-3)
    assert torch.all((std("linspace", 50) - s**2 / math.sqrt(s**2 + sigma_last**2)).abs() < 0.03)
    assert torch.all(std("linspace", 200) < 0.43)
    assert torch.all((std("karras", 200) - s).abs() < 4.5 * s / math.sqrt(2 * n) + 0.03 * s)
