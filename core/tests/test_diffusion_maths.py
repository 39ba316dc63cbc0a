"""The shared maths of the core, stated as identities."""

import math

import numpy as np
import pytest
import torch
from difftk.maths import diffusion as D
from difftk.maths.grids import time_grid
from difftk.maths.schedules import Discretization
from difftk.testing import ReferenceLinearSchedule, ReferenceVPSchedule
from difftk.testing import strategies as dst
from hypothesis import example, given
from hypothesis import strategies as st


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


@given(dst.beta_sequences())
def test_alphas_cumprod_is_product_of_one_minus_beta(betas):
    d = Discretization.from_betas(betas)
    expected = [math.prod(1 - b for b in betas[: i + 1]) for i in range(len(betas))]
    np.testing.assert_allclose(d.alphas_cumprod, expected, rtol=1e-12)


@given(dst.beta_sequences())
def test_betas_recovered_from_alphas_cumprod(betas):
    d = Discretization.from_alphas_cumprod(Discretization.from_betas(betas).alphas_cumprod)
    np.testing.assert_allclose(d.betas, betas, rtol=1e-9, atol=1e-15)


@given(dst.beta_sequences())
def test_posterior_variance_is_at_most_beta(betas):
    d = Discretization.from_betas(betas)
    assert np.all(d.posterior_variance <= d.betas * (1 + 1e-12))
    assert d.posterior_variance[0] == 0.0  # β̃_1 = 0: x_0 is determined by x_1 and x₀


@given(dst.alpha_bar_pairs())
def test_general_posterior_variance_below_step_variance(pair):
    ab_s, ab_t = pair
    p = D.posterior(ab_s, ab_t)
    assert 0 <= p.variance <= p.beta * (1 + 1e-12)


@given(dst.alpha_bar_pairs(), st.floats(-3, 3), st.floats(-3, 3))
@example((0.9999, 0.5), 1.0, -1.0)
def test_posterior_is_bayes_rule(pair, x0, x_t):
    """q(x_s|x_t,x₀) ∝ q(x_t|x_s)·q(x_s|x₀): multiply the two Gaussians in x_s and compare."""
    ab_s, ab_t = pair
    a_ts = ab_t / ab_s
    # q(x_t | x_s) = N(√a_ts·x_s, 1−a_ts) as a function of x_s; q(x_s | x₀) = N(√ab_s·x₀, 1−ab_s)
    precision = a_ts / (1 - a_ts) + 1 / (1 - ab_s)
    var = 1 / precision
    mean = var * (math.sqrt(a_ts) * x_t / (1 - a_ts) + math.sqrt(ab_s) * x0 / (1 - ab_s))
    m, v = D.posterior_mean_variance(_t([[x0]]), _t([[x_t]]), ab_s, ab_t)
    assert v == pytest.approx(var, rel=1e-9)
    assert float(m) == pytest.approx(mean, rel=1e-8, abs=1e-9)


@given(dst.alpha_bars(), st.integers(0, 2**31 - 1))
def test_conversions_round_trip(ab, seed):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    x_t = D.q_sample(x0, ab, eps)
    v = D.v_from_x0_eps(x0, eps, ab)
    tol = dict(rtol=1e-6, atol=1e-6 / math.sqrt(ab))
    torch.testing.assert_close(D.x0_from_eps(x_t, eps, ab), x0, **tol)
    torch.testing.assert_close(D.eps_from_x0(x_t, x0, ab), eps, rtol=1e-6, atol=1e-6 / math.sqrt(1 - ab))
    torch.testing.assert_close(D.x0_from_v(x_t, v, ab), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(D.eps_from_v(x_t, v, ab), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(D.eps_from_score(D.score_from_eps(eps, ab), ab), eps, rtol=1e-9, atol=1e-9)
    for frm, out in (("eps", eps), ("x0", x0), ("v", v)):
        for to, want in (("eps", eps), ("v", v)):
            torch.testing.assert_close(D.convert(frm, out, to, x_t, ab), want, rtol=1e-5, atol=1e-5 / math.sqrt(ab * (1 - ab)))


def test_conversions_broadcast_per_example():
    ab = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    x0, eps = torch.randn(2, 3, 2, 5, dtype=torch.float64)
    x_t = D.q_sample(x0, ab, eps)
    for i in range(3):
        torch.testing.assert_close(x_t[i], D.q_sample(x0[i], float(ab[i]), eps[i]))
    torch.testing.assert_close(D.x0_from_eps(x_t, eps, ab), x0)


def test_score_of_gaussian_marginal():
    """For x₀ ~ N(0, I) the marginal is N(0, I) for every ᾱ, so the score is −x_t."""
    x0, eps = torch.randn(2, 1000, dtype=torch.float64)
    ab = 0.3
    x_t = D.q_sample(x0, ab, eps)
    eps_opt = math.sqrt(1 - ab) * x_t  # E[ε|x_t] for unit-variance data
    torch.testing.assert_close(D.score_from_eps(eps_opt, ab), -x_t)


@given(st.integers(21, 400), st.data())
def test_discrete_schedule_exact_on_grid_and_monotone(T, data):
    s = ReferenceLinearSchedule(T=T)
    betas = s.paper_betas()
    i = data.draw(st.integers(1, T))
    assert float(s.alpha_bar(_t(i / T))) == pytest.approx(np.prod(1 - betas[:i]), rel=1e-12)
    ts = torch.sort(torch.tensor(data.draw(st.lists(dst.times(), min_size=2, max_size=30)), dtype=torch.float64)).values
    ab = s.alpha_bar(ts)
    assert torch.all(ab[1:] <= ab[:-1])


@given(st.integers(21, 300), st.data())
def test_log_linear_between_grid_points(T, data):
    s = ReferenceLinearSchedule(T=T)
    i = data.draw(st.integers(0, T - 1))
    w = data.draw(st.floats(0, 1))
    lo, hi = s.alpha_bar(_t([i / T, (i + 1) / T]))
    mid = s.alpha_bar(_t((i + w) / T))
    assert float(torch.log(mid)) == pytest.approx((1 - w) * float(torch.log(lo)) + w * float(torch.log(hi)), rel=1e-9, abs=1e-12)


def test_float32_times_hit_the_grid_exactly():
    s = ReferenceLinearSchedule(T=1000)
    t32 = torch.arange(1, 1001, dtype=torch.float32) / 1000
    np.testing.assert_allclose(s.alpha_bar(t32).double().numpy(), s.discretize(1000).alphas_cumprod, rtol=1e-6)


@given(st.integers(21, 300))
def test_rate_integrates_to_log_alpha_bar(T):
    """−log ᾱ(t_i) = ∫₀^{t_i} β(u) du with the piecewise-constant rate of a discrete schedule."""
    s = ReferenceLinearSchedule(T=T)
    mids = (torch.arange(T, dtype=torch.float64) + 0.5) / T
    integral = torch.cumsum(s.beta(mids), 0) / T
    torch.testing.assert_close(integral, -torch.log(s.alpha_bar(torch.arange(1, T + 1, dtype=torch.float64) / T)))


def test_autograd_rate_matches_closed_form():
    s = ReferenceVPSchedule()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    from difftk.maths.schedules import ScheduleBase

    torch.testing.assert_close(ScheduleBase.beta(s, t), s.beta(t))


@given(st.integers(21, 1000), st.data())
def test_time_grid_spacings(T, data):
    K = data.draw(st.integers(1, T))
    for spacing in ("linspace", "leading", "trailing"):
        times = time_grid(ReferenceLinearSchedule(T=T), K, spacing)
        assert len(times) == K, spacing
        assert np.all(np.diff(times) < 0) and times[0] <= 1 and times[-1] > 0
        assert np.allclose(times * T, np.round(times * T)), "times must be grid points"
    assert time_grid(ReferenceLinearSchedule(T=T), K, "trailing")[0] == 1.0
    assert time_grid(ReferenceLinearSchedule(T=T), K, "linspace")[0] == 1.0


def test_time_grid_continuous_and_errors():
    np.testing.assert_allclose(time_grid(ReferenceVPSchedule(), 4), [1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="is more than the model.s schedule has"):
        time_grid(ReferenceLinearSchedule(T=30), 31)



# --- spacing="logsnr": steps uniform in λ = log(α/σ) (DPM-Solver's logSNR grid) ------------------


def _half_log_snr(schedule, times):
    ab = schedule.alpha_bar(torch.as_tensor(np.asarray(times, dtype=np.float64))).numpy()
    return 0.5 * (np.log(ab) - np.log1p(-ab))


@st.composite
def grid_sizes_and_steps(draw, max_T: int = 1000) -> tuple[int, int]:
    """(T, K): a discrete schedule of T ∈ [21, max_T] steps (the reference schedule's range) and K ∈ [1, T]."""
    T = draw(st.integers(21, max_T))
    return T, draw(st.integers(1, T))


@given(grid_sizes_and_steps())
@example((1000, 1000))  # every grid point
@example((1000, 100))  # many targets snap onto the first few points, where λ changes fastest
@example((21, 21))
@example((1000, 12))  # few steps: each is the grid point nearest its target
@example((100, 5))
@example((30, 1))
def test_logsnr_grid_on_a_discrete_schedule_has_exactly_the_steps_asked(T_and_K):
    """K distinct grid points i/T, decreasing from t = 1 to t = 1/T: no repeated or zero-length step,
    exactly K of them, for every K ≤ T; where the λ-spacing is at least twice the widest gap between
    neighbouring grid points no two targets compete, and each point is the one nearest its target in λ."""
    T, K = T_and_K
    s = ReferenceLinearSchedule(T=T)
    times = time_grid(s, K, "logsnr")
    assert len(times) == K and np.all(np.diff(times) < 0)
    assert np.allclose(times * T, np.round(times * T), rtol=0, atol=1e-9), "times must be grid points"
    assert times[0] == 1.0 and (K == 1 or times[-1] == 1.0 / T)
    lam_grid = _half_log_snr(s, np.arange(1, T + 1) / T)
    if K > 1 and (lam_grid[0] - lam_grid[-1]) / (K - 1) >= 2 * np.max(-np.diff(lam_grid)):
        target = np.linspace(lam_grid[-1], lam_grid[0], K)  # from t = 1 to t = 1/T
        chosen = np.round(times * T).astype(int) - 1
        nearest = np.abs(lam_grid[None, :] - target[:, None]).argmin(axis=1)
        np.testing.assert_allclose(np.abs(lam_grid[chosen] - target), np.abs(lam_grid[nearest] - target), atol=1e-12)


@given(st.integers(1, 300))
@example(1)
@example(2)
def test_logsnr_grid_on_a_continuous_schedule_is_exactly_uniform_in_lambda(K):
    """t_k = t(λ_k) for λ evenly spaced from λ(1) to −log 0.002 (the σ_min of karras), through the
    schedule's inverse of ᾱ: strictly decreasing, K of them, from t = 1."""
    s = ReferenceVPSchedule()
    times = time_grid(s, K, "logsnr")
    assert len(times) == K and times[0] == 1.0 and np.all(np.diff(times) < 0) and times[-1] > 0
    if K > 1:
        lam = _half_log_snr(s, times)
        np.testing.assert_allclose(lam, np.linspace(lam[0], -math.log(0.002), K), rtol=0, atol=1e-8)
