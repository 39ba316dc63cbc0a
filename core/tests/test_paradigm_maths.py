"""The maths of the current training paradigms, as identities: every prediction type converts to
every other, min-SNR is the x₀ weighting written per prediction, and zero terminal SNR is Lin et
al.'s Algorithm 1 on discrete schedules and on continuous ones."""

import numpy as np
import pytest
import torch
from difftk.maths import diffusion as D
from difftk.maths.objectives import loss_weight
from difftk.maths.schedules import ContinuousSchedule, DiscreteSchedule
from difftk.maths.terminal import (
    ALPHA_BAR_FLOOR,
    TerminalFloor,
    ZeroTerminalSNR,
    for_sampling,
    rescale_alpha_bar,
    rescale_alphas_cumprod,
)
from difftk.testing import ReferenceLinearSchedule, ReferenceVPSchedule
from difftk.testing import strategies as dst
from hypothesis import given, settings
from hypothesis import strategies as st

predictions = st.sampled_from(D.PREDICTIONS)


def _pair(ab, seed, shape=(3, 5)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    return x0, eps, D.q_sample(x0, ab, eps)


@settings(max_examples=60, deadline=None)
@given(dst.alpha_bars(1e-4, 1 - 1e-4), st.integers(0, 2**16), predictions, predictions)
def test_every_prediction_converts_to_every_other_and_back(ab, seed, a, b):
    """For x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, the target in a, converted to b, is b's target, and back."""
    x0, eps, x_t = _pair(ab, seed)
    y_a, y_b = D.target_of(a, x0, eps, ab), D.target_of(b, x0, eps, ab)
    torch.testing.assert_close(D.convert(a, y_a, b, x_t, ab), y_b, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(D.convert(b, D.convert(a, y_a, b, x_t, ab), a, x_t, ab), y_a, rtol=1e-7, atol=1e-7)
    e, x = D.eps_and_x0(a, y_a, x_t, ab)
    torch.testing.assert_close(e, eps, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(x, x0, rtol=1e-7, atol=1e-7)


def test_flow_velocity_is_the_straight_paths_derivative():
    """u = ε − x₀ is d/dτ of (1−τ)·x₀ + τ·ε, and that path is the VP state over α + σ at τ = σ/(α+σ)."""
    x0, eps, x_t = _pair(0.3, 1)
    a, s = 0.3**0.5, 0.7**0.5
    tau = s / (a + s)
    torch.testing.assert_close(x_t / (a + s), (1 - tau) * x0 + tau * eps)
    torch.testing.assert_close(D.target_of("flow", x0, eps, 0.3), eps - x0)


def test_edm_parameterisation_is_karras_preconditioning():
    """x̂₀ = c_skip·x_EDM + c_out·F with Table 1's c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²);
    for σ_d = 1 it is v-prediction with F = −v."""
    ab, sd = 0.2, D.EDM_SIGMA_DATA
    x0, eps, x_t = _pair(ab, 2)
    sigma = ((1 - ab) / ab) ** 0.5
    F = torch.randn_like(x0)
    x_edm = x_t / ab**0.5
    expected = sd**2 / (sigma**2 + sd**2) * x_edm + sigma * sd / (sigma**2 + sd**2) ** 0.5 * F
    _, x0_hat = D.eps_and_x0("edm", F, x_t, ab)
    torch.testing.assert_close(x0_hat, expected)
    a, b = D.edm_coefficients(ab, sigma_data=1.0)
    v = D.target_of("v", x0, eps, ab)
    torch.testing.assert_close(a * x_t + b * (-v), x0)


@settings(max_examples=30, deadline=None)
@given(dst.alpha_bars(1e-4, 1 - 1e-4), st.integers(0, 2**16))
def test_edm_eps_is_the_quotient_form_without_its_division(ab, seed):
    """ε̂ of an edm output equals (x_t − √ᾱ·x̂₀)/√(1−ᾱ) in float64, and stays finite and right in
    float32 where ᾱ rounds to 1 (the quotient form gives 0/0 there)."""
    x0, eps, x_t = _pair(ab, seed)
    F = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    e, x = D.eps_and_x0("edm", F, x_t, ab)
    torch.testing.assert_close(e, D.eps_from_x0(x_t, x, ab), rtol=1e-9, atol=1e-9)
    ab32 = torch.tensor([1 - 1e-9, 1.0], dtype=torch.float32)  # both are 1.0 in float32
    F32, x32 = F[:2].float(), x_t[:2].float()
    e32, x0_32 = D.eps_and_x0("edm", F32, x32, ab32)
    assert torch.isfinite(e32).all() and torch.isfinite(x0_32).all()
    torch.testing.assert_close(e32, -F32)  # σ = 0, D = σ_d²: ε̂ = −F
    torch.testing.assert_close(x0_32, x32)  # the boundary condition x̂₀(x, 0) = x


@pytest.mark.parametrize("prediction", ["x0", "v", "flow", "edm"])
def test_all_but_eps_stay_finite_at_pure_noise(prediction):
    x0, eps, x_t = _pair(0.0, 3)
    y = D.target_of(prediction, x0, eps, 0.0)
    e, x = D.eps_and_x0(prediction, y, x_t, 0.0)
    assert torch.isfinite(y).all() and torch.isfinite(x).all()
    torch.testing.assert_close(e, eps)


@settings(max_examples=60, deadline=None)
@given(dst.alpha_bars(1e-4, 1 - 1e-4), predictions, st.integers(0, 2**16))
def test_error_gain_is_how_an_x0_error_grows_in_each_prediction(ab, prediction, seed):
    """Perturb x̂₀ by δ at fixed x_t: the prediction moves by √gain·|δ|."""
    x0, eps, x_t = _pair(ab, seed)
    delta = 1e-3 * torch.randn_like(x0)
    y = D.convert("x0", x0, prediction, x_t, ab)
    y_moved = D.convert("x0", x0 + delta, prediction, x_t, ab)
    ratio = float(((y_moved - y) ** 2).sum() / (delta**2).sum())
    assert ratio == pytest.approx(float(D.error_gain(prediction, torch.tensor(ab, dtype=torch.float64))), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(dst.alpha_bars(1e-4, 1 - 1e-4), predictions, st.floats(0.5, 20.0))
def test_min_snr_is_the_same_weighting_whatever_the_prediction(ab, prediction, gamma):
    """weight(y)·gain(y) = min(SNR, γ), the x₀ weighting of Hang et al. 2023 (eq. 11), for every y."""
    t = torch.tensor([ab], dtype=torch.float64)
    w = loss_weight("min-snr", prediction, t, gamma) * D.error_gain(prediction, t)
    assert float(w[0]) == pytest.approx(min(ab / (1 - ab), gamma), rel=1e-9)


def test_min_snr_at_snr_zero_is_finite():
    """At pure noise (SNR = 0) the ε weight is its limit 1 and the others 0: no 0/0."""
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(loss_weight("min-snr", "eps", zero)[0]) == 1.0
    for p in ("x0", "v", "flow", "edm"):
        assert float(loss_weight("min-snr", p, zero)[0]) == 0.0


class _Linear(DiscreteSchedule):
    def paper_betas(self):
        return np.linspace(1e-4, 0.02, self.T)


def test_zero_terminal_snr_on_a_discrete_schedule_is_lin_et_al_algorithm_1():
    """β_T = 1 exactly, ᾱ_1 unchanged, √ᾱ an affine map of the original's; and the continuous
    ᾱ(t) stays exact on the grid, monotone, and inverted by time_of."""
    plain, zero = _Linear(T=1000), _Linear(T=1000, zero_terminal_snr=True)
    d0, d1 = plain.discretize(1000), zero.discretize(1000)
    assert d1.betas[-1] == 1.0 and d1.alphas_cumprod[-1] == 0.0
    assert d1.alphas_cumprod[0] == pytest.approx(d0.alphas_cumprod[0], rel=1e-12)
    root0, root1 = np.sqrt(d0.alphas_cumprod), np.sqrt(d1.alphas_cumprod)
    slope = np.polyfit(root0, root1, 1)
    np.testing.assert_allclose(np.polyval(slope, root0), root1, atol=1e-12)
    grid = torch.arange(1, 1001, dtype=torch.float64) / 1000
    np.testing.assert_allclose(zero.alpha_bar(grid).numpy(), d1.alphas_cumprod, rtol=1e-12, atol=1e-300)
    t = torch.linspace(0, 1, 4001, dtype=torch.float64)
    ab = zero.alpha_bar(t)
    assert torch.all(ab[1:] <= ab[:-1]) and float(ab[-1]) == 0.0
    inside = ab > 0
    torch.testing.assert_close(zero.time_of(ab[inside]), t[inside], atol=1e-9, rtol=0)


def test_rescale_keeps_the_first_and_zeroes_the_last():
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 50))
    out = rescale_alphas_cumprod(ab)
    assert out[0] == pytest.approx(ab[0]) and out[-1] == 0.0


def test_zero_terminal_snr_on_a_continuous_schedule_rescales_and_its_rate_is_exact():
    base = ReferenceVPSchedule(zero_terminal_snr=True)
    vp = ZeroTerminalSNR(base)
    t = torch.tensor([0.0, 0.3, 0.7, 0.95, 1.0], dtype=torch.float64)
    ab = vp.alpha_bar(t)
    assert float(ab[0]) == pytest.approx(1.0) and float(ab[-1]) == 0.0
    torch.testing.assert_close(ab, rescale_alpha_bar(base.alpha_bar(t), base.alpha_bar(t[:1]), base.alpha_bar(t[-1:])))
    from difftk.maths.schedules import _beta_by_autograd

    inner = t[1:-1]
    torch.testing.assert_close(vp.beta(inner), _beta_by_autograd(vp.alpha_bar, inner), rtol=1e-6, atol=0)
    torch.testing.assert_close(vp.time_of(vp.alpha_bar(inner)), inner, atol=1e-9, rtol=0)
    assert float(vp.time_of(torch.zeros(1, dtype=torch.float64))[0]) == pytest.approx(1.0, abs=1e-12)
    assert isinstance(base, ContinuousSchedule) and base.alpha_bar(t[-1:]) > 0  # the base itself is not rescaled


@pytest.mark.parametrize("name", ["vp", "edm", "flow"])
def test_a_continuous_schedule_built_with_zero_terminal_snr_is_the_wrapper_and_its_spec_the_option(name):
    """``zero_terminal_snr=True`` by name builds ZeroTerminalSNR(base) (no re-wrapped methods), and the
    spec written to a pipeline or checkpoint is the base's name with the option on, which builds it again."""
    import difftk
    from difftk.pipeline.compose import create_component, spec_of

    schedule = difftk.create("schedule", name, zero_terminal_snr=True)
    assert type(schedule) is ZeroTerminalSNR and schedule.base == difftk.create("schedule", name, zero_terminal_snr=True).base
    spec = spec_of("schedule", schedule)
    assert spec.name == name and spec.options_dict["zero_terminal_snr"] is True
    assert create_component("schedule", spec.name, spec.options_dict) == schedule
    assert type(difftk.create("schedule", name)) is not ZeroTerminalSNR
    given = type(schedule.base)(zero_terminal_snr=True)  # an instance made directly is wrapped by compose too
    assert difftk.compose(schedule=given, sampler="ddim").schedule == schedule


def test_samplers_get_a_floor_only_where_the_schedule_reaches_pure_noise():
    plain = ReferenceLinearSchedule()
    assert for_sampling(plain) is plain
    floored = for_sampling(_Linear(T=1000, zero_terminal_snr=True))
    assert isinstance(floored, TerminalFloor)
    one = torch.ones(1, dtype=torch.float64)
    assert float(floored.alpha_bar(one)[0]) == ALPHA_BAR_FLOOR
    assert torch.isfinite(floored.log_snr(one)).all()
    assert float(floored.time_of(torch.zeros(1, dtype=torch.float64))[0]) == 1.0
    mid = torch.tensor([0.5], dtype=torch.float64)
    assert float(floored.alpha_bar(mid)[0]) == float(floored.base.alpha_bar(mid)[0])
