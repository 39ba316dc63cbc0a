"""UniPC: the contract, the order conditions, the order of convergence on an exact oracle, agreement
with diffusers step for step, and guidance, parameterisations, batches and NFE."""

import math

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.grids import time_grid
from difftk.maths.ode import dopri5
from difftk.maths.schedules import ContinuousSchedule, alpha_bar_table, log_snr, time_of
from difftk.sampling.draw import generate
from difftk.sampling.steps import predict
from difftk.testing import (
    GaussianMixtureOracle,
    GaussianOracle,
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    check_sampler,
)
from difftk.testing.reference import WithLearnedVariance
from difftk_unipc.coefficients import phi, update
from hypothesis import example, given, settings
from hypothesis import strategies as st

F64 = torch.float64


def unipc(**options):
    return difftk.create("sampler", "unipc", **options)


# --- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [ReferenceLinearSchedule(T=100), ReferenceVPSchedule()], ids=["discrete", "continuous"])
@pytest.mark.parametrize("options", [{}, {"order": 3, "variant": "bh1"}, {"corrector": False, "spacing": "karras"}])
def test_conformance(schedule, options):
    check_sampler(unipc(**options), schedule)


def test_options():
    """Defaults: order 2, bh2, corrector on, the reference code's lower orders at the end, 20 steps on
    the auto grid: logsnr, or trailing on a schedule reaching pure noise (docs/fast_sampling.md); trailing's last
    time is ≈ 1/K, as the reference grids, not 1/T."""
    sampler = unipc()
    assert (sampler.order, sampler.variant, sampler.corrector, sampler.lower_order_final) == (2, "bh2", True, True)
    assert sampler.spacing == "auto" and sampler.clip_x0 is None and type(sampler).default_steps == 20
    assert unipc(spacing="trailing").time_grid(ReferenceLinearSchedule(T=1000), 10)[-1] == pytest.approx(0.1)
    assert sampler.time_grid(ReferenceLinearSchedule(T=1000), 10)[-1] == pytest.approx(1e-3)  # logsnr
    cosine = difftk.create("schedule", "cosine")  # ᾱ(1) ≈ 0: trailing
    np.testing.assert_array_equal(sampler.time_grid(cosine, 10), unipc(spacing="trailing").time_grid(cosine, 10))
    with pytest.raises(difftk.OptionError, match=r"2 ≤ order ≤ 3"):
        unipc(order=4)
    with pytest.raises(difftk.OptionError, match=r"variant='bh3' is not allowed.*choose from bh1, bh2"):
        unipc(variant="bh3")


class Recording(torch.nn.Module):
    """Wraps a denoiser, recording the times it is asked at."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.times = inner, []
        self.prediction = inner.prediction
        self.learned_variance = getattr(inner, "learned_variance", False)
        self.num_classes = getattr(inner, "num_classes", 0)

    def forward(self, x, t, cond=None):
        self.times.append(float(t[0]))
        return self.inner(x, t, cond=cond)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.sampled_from(["linspace", "leading", "trailing", "karras", "logsnr"]),
       st.sampled_from([2, 3]), st.booleans(), st.booleans())
def test_every_step_goes_to_the_next_time_of_the_core_grid(steps, spacing, order, corrector, discrete):
    """The denoiser is asked once per grid time, in order (NFE = steps = nfe()), and the callback
    reports each step from one grid time to the next, the last one to t = 0 with x = x̂₀."""
    schedule = ReferenceLinearSchedule(T=200) if discrete else ReferenceVPSchedule()
    sampler = unipc(order=order, corrector=corrector, spacing=spacing)
    net = Recording(GaussianOracle(schedule, mean=0.3, std=0.7, shape=(2,)))
    seen = []
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = sampler.sample(net, schedule, x_T, steps=steps, callback=seen.append)
    grid = time_grid(schedule, steps, spacing)
    np.testing.assert_array_equal(net.times, grid)
    assert sampler.nfe(steps, schedule) == steps == len(net.times)
    assert [s.index for s in seen] == list(range(steps)) and {s.total for s in seen} == {steps}
    np.testing.assert_array_equal([s.t for s in seen], grid)
    np.testing.assert_array_equal([s.t_next for s in seen], np.append(grid[1:], 0.0))
    assert torch.equal(seen[-1].x, out) and torch.equal(seen[-1].x0, out)  # the step to t = 0 is x̂₀ at t_1


# --- the order conditions -----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.floats(-30.0, -1e-6))
@example(k=4, z=-1.0)  # the switch from the series to the recursion
@example(k=4, z=-0.9999999)
def test_phi_is_its_integral(k, z):
    """φ_k(z) = ∫_0^1 e^{(1−θ)z} θ^{k−1}/(k−1)! dθ, by 40-point Gauss–Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    theta = 0.5 * (nodes + 1.0)
    quad = 0.5 * np.sum(weights * np.exp((1 - theta) * z) * theta ** (k - 1) / math.factorial(k - 1))
    assert phi(k, z) == pytest.approx(quad, rel=1e-12)


def exact_update(x_s, poly, lambda_s, h, alpha_t, sigma_ratio):
    """x_t = (σ_t/σ_s)·x_s + α_t·∫_0^h e^{−(h−u)}·P(λ_s+u) du for x̂₀ = P(λ), by Gauss–Legendre."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    u = 0.5 * h * (nodes + 1.0)
    return sigma_ratio * x_s + alpha_t * 0.5 * h * np.sum(weights * np.exp(-(h - u)) * np.polyval(poly, lambda_s + u))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.booleans(), st.sampled_from(["bh1", "bh2"]), st.floats(0.02, 2.0),
       st.lists(st.floats(0.3, 2.5), min_size=2, max_size=2), st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4),
       st.floats(-6.0, 4.0))
def test_updates_integrate_polynomials_in_lambda_exactly(p, corrector, variant, h, gaps, poly, lambda_s):
    """With N differences solved from the order conditions (N ≥ 2), an update integrates every x̂₀
    that is a polynomial of degree ≤ N in λ exactly (the paper's order of UniP-p: N = p − 1, and of
    UniC-p: N = p); with one difference (a₁ = ½) or none it is exact for a constant x̂₀. And
    where the conditions are solved, B(h) cancels: bh1 and bh2 are the same update."""
    lambdas = [lambda_s]
    for gap in gaps[:p - 1]:  # earlier outputs, gap·h apart
        lambdas.append(lambdas[-1] - gap * h)
    lambda_t = lambda_s + h
    alpha_t = 1 / math.sqrt(1 + math.exp(-2 * lambda_t))
    sigma_ratio = 0.8
    n_diff = (p - 1) + int(corrector)
    degree = n_diff if n_diff >= 2 else 0
    P = np.array(poly[-(degree + 1):])  # highest power first
    c_x, c = update(lambdas, lambda_t, alpha_t, sigma_ratio, variant, corrector=corrector)
    points = ([lambda_t] if corrector else []) + lambdas
    assert len(c) == len(points) and c_x == sigma_ratio
    got = c_x * 0.7 + sum(c_j * np.polyval(P, lam) for c_j, lam in zip(c, points, strict=True))
    assert got == pytest.approx(exact_update(0.7, P, lambda_s, h, alpha_t, sigma_ratio), abs=1e-11)
    if n_diff >= 2:
        other = "bh1" if variant == "bh2" else "bh2"
        np.testing.assert_allclose(update(lambdas, lambda_t, alpha_t, sigma_ratio, other, corrector=corrector)[1], c,
                                   rtol=1e-9, atol=1e-13)


class ConstantX0(torch.nn.Module):
    """x̂₀ = c whatever x_t: the ODE is then solved in closed form, (x_t − α_t·c)/σ_t is constant."""

    prediction = "x0"

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, t, cond=None):
        return torch.full_like(x, self.c)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.sampled_from(["linspace", "trailing", "karras"]), st.sampled_from([2, 3]),
       st.sampled_from(["bh1", "bh2"]), st.booleans(), st.booleans(), st.booleans())
def test_a_constant_x0_is_followed_exactly(steps, spacing, order, variant, corrector, lower_order_final, discrete):
    """Every state UniPC visits is the exact ODE solution when x̂₀ is constant (the first-order part is
    exact and every difference D_m vanishes), on every grid and with every option."""
    schedule = ReferenceLinearSchedule(T=100) if discrete else ReferenceVPSchedule()
    c = 0.4
    x_T = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    seen = []
    unipc(order=order, variant=variant, corrector=corrector, lower_order_final=lower_order_final, spacing=spacing).sample(
        ConstantX0(c), schedule, x_T, steps=steps, callback=seen.append)
    t = np.array([seen[0].t] + [s.t_next for s in seen])
    ab = alpha_bar_table(schedule, t)
    alpha, sigma = np.sqrt(ab), np.sqrt(1 - ab)
    for k, s in enumerate(seen):
        expected = alpha[k + 1] * c + sigma[k + 1] * (x_T - alpha[0] * c) / sigma[0]
        torch.testing.assert_close(s.x, expected, atol=1e-12, rtol=0)


# --- order of convergence on the exact Gaussian oracle -------------------------------------------

MU, S = torch.tensor([1.0, -0.5, 0.3], dtype=F64), 0.3
T_MIN = 0.01


def gaussian_x0_at(schedule, x_T, t_1):
    """E[x₀ | x_{t_1}] on the ODE path from x_T at t = 1, for data N(μ, s²I): the flow keeps
    z = (x_t − √ᾱ_t·μ)/√v_t, v_t = ᾱ_t·s² + 1 − ᾱ_t, fixed (it is affine and maps each Gaussian
    marginal onto the next), and E[x₀ | x_t] = μ + √ᾱ_t·s²/v_t·(x_t − √ᾱ_t·μ) = μ + √ᾱ_t·s²·z/√v_t."""
    ab_T, ab_1 = alpha_bar_table(schedule, np.array([1.0, t_1]))
    z = (x_T - math.sqrt(ab_T) * MU) / math.sqrt(ab_T * S**2 + 1 - ab_T)
    return MU + math.sqrt(ab_1) * S**2 * z / math.sqrt(ab_1 * S**2 + 1 - ab_1)


def logsnr_times(schedule, K, t_min=T_MIN):
    """K times from t = 1 to t_min, evenly spaced in log-SNR."""
    lam = log_snr(schedule, torch.tensor([1.0, t_min], dtype=F64)).numpy()
    ab = 1 / (1 + np.exp(-np.linspace(lam[0], lam[1], K)))
    times = time_of(schedule, torch.from_numpy(ab)).numpy()
    times[0], times[-1] = 1.0, t_min
    return tuple(float(t) for t in times)


CONVERGENCE_STEPS = (64, 101, 161, 256)
#: (options, slope): UniP-p alone has order p; the corrector adds one (UniPC-2: 3). UniPC-3 is 4th order
#: inside, but its output inherits the 3rd-order error of the reference rule's UniP-2 step before the last
#: (lower_order_final); without that rule it is 4th order.
ORDERS = [
    ({"order": 2, "corrector": False}, 2.0),
    ({"order": 3, "corrector": False}, 3.0),
    ({"order": 2}, 3.0),
    ({"order": 3}, 3.0),
    ({"order": 3, "lower_order_final": False}, 4.0),
]


def convergence_slope(options, variant):
    """−d log(error)/d log(steps), the log-log least-squares fit over CONVERGENCE_STEPS, float64."""
    schedule = ReferenceVPSchedule()
    oracle = GaussianOracle(schedule, mean=MU, std=S, shape=(3,))
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    errors = []
    for K in CONVERGENCE_STEPS:
        out = unipc(variant=variant, times=logsnr_times(schedule, K), **options).sample(oracle, schedule, x_T)
        errors.append(float((out - gaussian_x0_at(schedule, x_T, T_MIN)).abs().max()))
    return -np.polyfit(np.log(CONVERGENCE_STEPS), np.log(errors), 1)[0], errors


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize(("options", "slope"), ORDERS, ids=[str(o) for o, _ in ORDERS])
def test_order_of_convergence(options, slope, variant):
    """The error of the final x̂₀ against the closed-form ODE solution falls as steps^−slope, to ±0.35
    (measured 2.0–3.3 where 2 or 3 is expected, 3.9 where 4 is: docs/unipc.md), on 64–256 steps
    evenly spaced in log-SNR from t = 1 to t = 0.01 (fewer steps are not yet asymptotic)."""
    measured, errors = convergence_slope(options, variant)
    assert abs(measured - slope) < 0.35, (measured, errors)


# --- agreement with diffusers --------------------------------------------------------------------

T_DIFFUSERS = 1000


def diffusers_states(schedule, oracle, x_T, steps, spacing, order, variant):
    """Run diffusers' UniPCMultistepScheduler on the oracle, float64: its x after every step, its
    timesteps k (as times t = (k+1)/T) and its last x̂₀. ``set_timesteps`` rounds its σ table to
    float32; the table is replaced by float64 σ = √((1−ᾱ)/ᾱ) of the same schedule at the same k."""
    diffusers = pytest.importorskip("diffusers")
    ab = schedule.discretize(T_DIFFUSERS).alphas_cumprod  # ᾱ_{k+1} at index k
    prediction_type = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}[oracle.prediction]
    scheduler = diffusers.UniPCMultistepScheduler(num_train_timesteps=T_DIFFUSERS, solver_order=order, solver_type=variant,
                                                  prediction_type=prediction_type, timestep_spacing=spacing)
    scheduler.alphas_cumprod = torch.from_numpy(ab.copy())
    scheduler.set_timesteps(steps)
    k = scheduler.timesteps.numpy()
    scheduler.sigmas = torch.from_numpy(np.append(np.sqrt((1 - ab[k]) / ab[k]), 0.0))

    def model(x, timestep):  # the oracle as a diffusers model(x, k)
        return oracle(x, torch.full((x.shape[0],), (timestep + 1) / T_DIFFUSERS, dtype=F64))

    x, states = x_T.clone(), []
    for timestep in k:
        x = scheduler.step(model(x, int(timestep)), int(timestep), x).prev_sample
        states.append(x)
    return tuple(float(t) for t in (k + 1) / T_DIFFUSERS), states, scheduler.model_outputs[-1]


def max_difference_to_diffusers(steps, spacing, order, variant, prediction):
    """The largest |x_ours − x_diffusers| over every step on diffusers' grid, and at the output."""
    schedule = ReferenceLinearSchedule(T=T_DIFFUSERS)  # β linear 1e-4 … 0.02: diffusers' default "linear"
    oracle = GaussianOracle(schedule, mean=torch.tensor([0.7, -0.3, 0.2], dtype=F64), std=0.4, shape=(3,),
                            prediction=prediction)
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    times, theirs, last_x0 = diffusers_states(schedule, oracle, x_T, steps, spacing, order, variant)
    ours = []
    out = unipc(order=order, variant=variant, times=times).sample(oracle, schedule, x_T.clone(), callback=lambda s: ours.append(s.x))
    assert len(ours) == len(theirs) == steps
    inner = max((float((a - b).abs().max()) for a, b in zip(ours[:-1], theirs[:-1], strict=True)), default=0.0)
    final = theirs[-1]
    if variant == "bh1" and torch.isnan(final).all():
        # diffusers 0.42's bh1 step to σ = 0 is B(h)·0 = (−∞)·0 = NaN; that step is x̂₀ in any variant
        final = last_x0
    return inner, float((out - final).abs().max())


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy 2 on diffusers' set_timesteps
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.sampled_from(["linspace", "leading", "trailing"]), st.sampled_from([2, 3]),
       st.sampled_from(["bh1", "bh2"]), st.sampled_from(["eps", "x0", "v"]))
@example(steps=10, spacing="linspace", order=2, variant="bh1", prediction="eps")
@example(steps=10, spacing="linspace", order=2, variant="bh2", prediction="eps")
@example(steps=25, spacing="linspace", order=3, variant="bh1", prediction="eps")
@example(steps=25, spacing="linspace", order=3, variant="bh2", prediction="eps")
def test_agrees_with_diffusers_step_for_step(steps, spacing, order, variant, prediction):
    """On diffusers' own grid of a T = 1000 linear schedule (its timestep k is difftk's t = (k+1)/T,
    given through times=) and the same exact denoiser, every state agrees to 1e-11 in float64."""
    inner, final = max_difference_to_diffusers(steps, spacing, order, variant, prediction)
    assert inner < 1e-11 and final < 1e-11, (inner, final)


# --- guidance, parameterisations, batches, schedules ----------------------------------------------


def test_sample_i_is_the_same_whatever_the_batch():
    schedule = ReferenceLinearSchedule(T=200)
    oracle = GaussianMixtureOracle(schedule, torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), stds=0.3)
    for options in ({}, {"order": 3, "variant": "bh1"}):
        sampler = unipc(**options)
        one = generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=11, batch_size=6)
        split = generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=11, batch_size=4)
        torch.testing.assert_close(split, one, atol=1e-6, rtol=0)
        assert not torch.equal(one, generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=12, batch_size=6))


def guided_ode_x0(denoiser, schedule, x_T, cond, t_1):
    """x̂₀ at t_1 of the probability-flow ODE dx/dt = −½β(t)·(x − ε̂/σ_t), solved by the core's
    Dormand–Prince to 1e-10: a reference independent of UniPC."""
    def rhs(t, x):
        tt = torch.tensor([t], dtype=F64)
        ab, beta = float(schedule.alpha_bar(tt)), float(schedule.beta(tt))
        eps = predict(denoiser, x, torch.full((x.shape[0],), t, dtype=F64), ab, cond).eps
        return -0.5 * beta * (x - eps / math.sqrt(1 - ab)), None

    x_1, _ = dopri5(rhs, x_T, 1.0, t_1, rtol=1e-10, atol=1e-10)
    ab_1 = float(alpha_bar_table(schedule, np.array([t_1]))[0])
    return predict(denoiser, x_1, torch.full((x_T.shape[0],), t_1, dtype=F64), ab_1, cond).x0


def test_cfg_guidance_wrapper_is_sampled_like_any_denoiser():
    """UniPC on cfg (scale 2) around a class-conditional exact oracle solves the guided ODE: its x̂₀
    converges to a Dormand–Prince solve of it at (at least) third order — measured 0.023 at 20 steps,
    0.0012 at 40 — and each sample lands in its class."""
    schedule = ReferenceVPSchedule()
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=F64)
    oracle = GaussianMixtureOracle(schedule, means, stds=0.4)
    guided = difftk.create("guidance", "cfg", scale=2.0).wrap(oracle, schedule)
    labels = torch.arange(12) % 3
    x_T = torch.randn(12, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    reference = guided_ode_x0(guided, schedule, x_T, labels, 0.02)
    errors = []
    for steps in (20, 40):
        out = unipc(times=logsnr_times(schedule, steps, 0.02)).sample(guided, schedule, x_T, cond=labels)
        errors.append(float((out - reference).abs().max()))
        assert torch.equal(torch.cdist(out, means).argmin(dim=1), labels)
    assert errors[1] < 3e-3 and errors[0] / errors[1] > 8, errors




@pytest.mark.parametrize("order", [2, 3])
def test_every_parameterisation_samples_the_same(order):
    """ε, x₀ and v oracles of the same data, and a learned-variance one, are one denoiser: same samples."""
    schedule = ReferenceLinearSchedule(T=1000)
    x_T = torch.randn(6, 1, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    outs = {}
    for prediction in ("eps", "x0", "v"):
        oracle = GaussianOracle(schedule, mean=0.2, std=0.6, shape=(1, 4), prediction=prediction)
        outs[prediction] = unipc(order=order).sample(oracle, schedule, x_T, steps=12)
        outs[prediction + "+lv"] = unipc(order=order).sample(WithLearnedVariance(oracle), schedule, x_T, steps=12)
    for name, out in outs.items():
        torch.testing.assert_close(out, outs["eps"], atol=1e-10, rtol=0, msg=name)


def test_clip_x0_clamps_every_estimate():
    schedule = ReferenceLinearSchedule(T=100)
    oracle = GaussianOracle(schedule, mean=0.0, std=3.0, shape=(2,))
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    seen = []
    out = unipc(clip_x0=1.0).sample(oracle, schedule, x_T, steps=10, callback=seen.append)
    assert all(float(s.x0.abs().max()) <= 1.0 for s in seen) and float(out.abs().max()) <= 1.0
    assert float(unipc().sample(oracle, schedule, x_T, steps=10).abs().max()) > 1.5  # off by default


class ToZeroSNR(ContinuousSchedule):
    """ᾱ(t) = 1 − t: pure noise at t = 1 (ᾱ = 0, log-SNR −∞), as zero-terminal-SNR schedules."""

    def alpha_bar(self, t):
        return 1.0 - t


class TanhX0(torch.nn.Module):
    prediction = "x0"

    def forward(self, x, t, cond=None):
        return torch.tanh(x) * (1 - 0.5 * t.view(-1, 1))


@pytest.mark.parametrize("options", [{"order": 2, "variant": "bh1"}, {"order": 3, "variant": "bh2"}])
def test_a_schedule_reaching_pure_noise_is_sampled(options):
    """Where ᾱ(1) = 0 the first step (from λ = −∞) is first order, x = σ_t·x_T + α_t·x̂₀, has no
    corrector, and that time never enters the history: every state stays finite."""
    schedule = ToZeroSNR()
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    seen = []
    out = unipc(**options).sample(TanhX0(), schedule, x_T, steps=10, callback=seen.append)
    assert all(torch.isfinite(s.x).all() for s in seen) and torch.isfinite(out).all()
    ab_1 = 1.0 - seen[0].t_next
    expected = math.sqrt(1 - ab_1) * x_T + math.sqrt(ab_1) * TanhX0()(x_T, torch.ones(4, dtype=F64))
    torch.testing.assert_close(seen[0].x, expected, atol=1e-14, rtol=0)


def test_the_gaussian_reference_is_the_ode_solution():
    """The closed form the convergence test measures against agrees with a Dormand–Prince solve."""
    schedule = ReferenceVPSchedule()
    oracle = GaussianOracle(schedule, mean=MU, std=S, shape=(3,))
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    reference = guided_ode_x0(oracle, schedule, x_T, None, T_MIN)
    torch.testing.assert_close(gaussian_x0_at(schedule, x_T, T_MIN), reference, atol=1e-8, rtol=0)
