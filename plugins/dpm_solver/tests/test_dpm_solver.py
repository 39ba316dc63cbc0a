"""DPM-Solver++: the conformance kit, the steps' exactness, the order of convergence on exact oracles,
step-for-step agreement with diffusers, per-example noise, guidance and every parameterisation."""

import math

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.diffusion import posterior
from difftk.maths.grids import time_grid
from difftk.maths.ode import dopri5
from difftk.maths.schedules import alpha_bar_table, beta_of
from difftk.maths.terminal import for_sampling
from difftk.sampling.draw import generate
from difftk.sampling.noise import ExampleNoise
from difftk.sampling.steps import batch_time, predict
from difftk.testing import GaussianMixtureOracle, GaussianOracle, check_sampler
from difftk.testing import strategies as dst
from difftk.testing.reference import WithLearnedVariance
from difftk_dpm_solver.samplers import ode_step, sde_step
from hypothesis import example, given, settings
from hypothesis import strategies as st

SAMPLERS = ("dpm-solver-2m", "dpm-solver-3m", "dpm-solver-2m-sde")
ODE_SAMPLERS = ("dpm-solver-2m", "dpm-solver-3m")
F64 = torch.float64


def schedule(name, **options):
    return difftk.create("schedule", name, **options)


def alpha_bar(s, t):
    return float(alpha_bar_table(s, np.array([t]))[0])


def gaussian_flow(s, mean, std, x_T, t):
    """The probability-flow ODE's solution at t from x_T at t = 1 for data N(mean, std²·I): the flow of
    a Gaussian is affine and keeps the marginals N(√ᾱ·μ, v·I), v = ᾱ·std² + 1 − ᾱ, so
    x_t = √ᾱ_t·μ + √(v_t/v_1)·(x_T − √ᾱ_1·μ)."""
    ab1, ab = alpha_bar(s, 1.0), alpha_bar(s, t)
    v1, v = ab1 * std**2 + 1 - ab1, ab * std**2 + 1 - ab
    return ab**0.5 * mean + (v / v1) ** 0.5 * (x_T - ab1**0.5 * mean)


def flow_by_dopri5(s, oracle, x_T, t):
    """The probability-flow ODE's solution at t, dx/dt = −½β(t)/(1−ᾱ)·α·(x̂₀ − α·x) (i.e. dx/dλ = α·(x̂₀ − α·x),
    λ = log(α/σ)), by the core's Dormand–Prince at rtol 1e-11: a reference independent of the solvers tested."""

    def f(time, x):
        tt = torch.tensor([time], dtype=F64)
        ab, beta = float(s.alpha_bar(tt)), float(beta_of(s, tt))
        x0 = predict(oracle, x, batch_time(time, x), ab).x0
        return (-0.5 * beta / (1 - ab) * math.sqrt(ab)) * (x0 - math.sqrt(ab) * x), None

    return dopri5(f, x_T.clone(), 1.0, t, rtol=1e-11, atol=1e-12)[0]


def denoised(s, oracle, x, t):
    """x̂₀ at time t: what the samplers return from their last grid time."""
    return predict(oracle, x, batch_time(t, x), alpha_bar(s, t)).x0


def slope(steps, errors):
    """−d log(error)/d log(steps) by least squares: the order of convergence."""
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


class Recording(torch.nn.Module):
    """A denoiser that records the times it is asked at and counts its calls."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.times = inner, []
        self.prediction, self.num_classes = inner.prediction, getattr(inner, "num_classes", 0)
        self.learned_variance = getattr(inner, "learned_variance", False)

    def forward(self, x, t, cond=None):
        self.times.append(float(t[0]))
        return self.inner(x, t, cond=cond)


# --- the conformance kit and the grid ---------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("schedule_name", ["linear", "vp"])
def test_conformance(name, schedule_name):
    check_sampler(difftk.create("sampler", name), schedule(schedule_name))
    check_sampler(difftk.create("sampler", name, spacing="logsnr", lower_order_final=False), schedule(schedule_name))


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(SAMPLERS), spacing=st.sampled_from(["linspace", "leading", "trailing", "karras", "logsnr"]),
       steps=st.integers(1, 30), discrete=st.booleans())
@example(name="dpm-solver-3m", spacing="logsnr", steps=1, discrete=True)
def test_the_denoiser_is_asked_on_the_core_grid_and_each_step_goes_to_its_next_time(name, spacing, steps, discrete):
    """The model is queried at exactly the core's grid times, once each (nfe() of them), and the
    callback reports every step: total = steps, t → t_next along the grid, the last to t = 0."""
    s = schedule("linear", T=200) if discrete else schedule("vp")
    sampler = difftk.create("sampler", name, spacing=spacing)
    grid = time_grid(s, steps, spacing)
    net = Recording(GaussianOracle(s, mean=0.3, std=0.7, shape=(2,)))
    seen = []
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = sampler.sample(net, s, x_T, steps=steps, generator=torch.Generator().manual_seed(1), callback=seen.append)
    np.testing.assert_array_equal(net.times, grid)
    assert sampler.nfe(steps, s) == len(net.times) == steps
    assert [i.index for i in seen] == list(range(steps)) and {i.total for i in seen} == {steps}
    np.testing.assert_array_equal([i.t for i in seen], grid)
    np.testing.assert_array_equal([i.t_next for i in seen], np.append(grid[1:], 0.0))
    assert torch.equal(seen[-1].x, out) and torch.equal(out, seen[-1].x0)  # the last step returns x̂₀ at t_1


def test_explicit_times_are_the_grid():
    s = schedule("cosine")
    times = (1.0, 0.7, 0.31, 0.05, 0.004)
    for name in SAMPLERS:
        net = Recording(GaussianOracle(s, mean=0.0, std=1.0, shape=(2,)))
        sampler = difftk.create("sampler", name, times=times)
        sampler.sample(net, s, torch.randn(2, 2), generator=torch.Generator().manual_seed(0))
        assert net.times == pytest.approx(times, abs=1e-7) and sampler.nfe(None, s) == 5


def test_default_steps_and_orders():
    for name in SAMPLERS:
        sampler = difftk.create("sampler", name)
        assert sampler.default_steps == 20 and sampler.nfe(None, schedule("linear")) == 20
    three = difftk.create("sampler", "dpm-solver-3m")
    assert three.orders(20) == [1, 2] + [3] * 15 + [2, 1]  # warm-up, third order, lower orders into t_1
    assert three.orders(3) == [1, 1] and three.orders(1) == []
    assert difftk.create("sampler", "dpm-solver-3m", lower_order_final=False).orders(8) == [1, 2, 3, 3, 3, 3, 3]
    assert difftk.create("sampler", "dpm-solver-2m", lower_order_final=True).orders(5) == [1, 2, 2, 1]
    # the default grid (docs/fast_sampling.md): logsnr, or linspace where the schedule reaches pure noise
    for name in SAMPLERS:
        sampler = difftk.create("sampler", name)
        assert sampler.spacing == "auto" and sampler.lower_order_final
        np.testing.assert_array_equal(sampler.time_grid(schedule("linear"), 10), time_grid(schedule("linear"), 10, "logsnr"))
        cosine = for_sampling(schedule("cosine"))
        np.testing.assert_array_equal(sampler.time_grid(cosine, 10), time_grid(cosine, 10, "linspace"))


@pytest.mark.parametrize("name", ODE_SAMPLERS)
def test_lower_order_final_is_what_makes_linspace_work(name):
    """linspace on a discrete schedule ends with its largest λ-step, t ≈ 1/K → 1/T: multistep
    extrapolation over it (h/h0 ≈ 4) costs more than the whole rest of the solve. Taken at first
    order, the 20- and 30-step errors against the exact flow fall 5× or more (measured 8–75×)."""
    s = schedule("linear")
    mean, std = torch.tensor([0.3, -0.4], dtype=F64), 0.6
    oracle = GaussianOracle(s, mean=mean, std=std, shape=(2,))
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    for steps in (20, 30):
        t_1 = time_grid(s, steps, "linspace")[-1]
        exact = denoised(s, oracle, gaussian_flow(s, mean, std, x_T, t_1), t_1)
        on, off = (float((difftk.create("sampler", name, spacing="linspace", lower_order_final=lof).sample(oracle, s, x_T, steps=steps)
                          - exact).abs().max()) for lof in (True, False))
        assert on < off / 5, (steps, on, off)


# --- the steps: exact where the paper says they are -------------------------------------------------


def _lambda_point(lam):
    """(α, σ) at half-log-SNR λ: α² = 1/(1 + e^{−2λ}), σ = α·e^{−λ}."""
    alpha = 1.0 / math.sqrt(1.0 + math.exp(-2.0 * lam))
    return alpha, alpha * math.exp(-lam)


@settings(max_examples=25, deadline=None)
@given(lam_s=st.floats(-5, 4), hs=st.lists(st.floats(0.05, 2.0), min_size=3, max_size=3),
       c=st.lists(st.floats(-2, 2), min_size=3, max_size=3), x_s=st.floats(-3, 3))
@example(lam_s=-5.0, hs=[2.0, 0.05, 0.05], c=[1.0, -2.0, 2.0], x_s=1.0)
def test_each_order_integrates_polynomial_data_predictions_as_the_paper_says(lam_s, hs, c, x_s):
    """Against x_t = (σ_t/σ_s)·x_s + σ_t·∫ e^λ·x_θ dλ (40-point Gauss–Legendre) for x_θ a polynomial in λ:
    every order is exact for a constant; the third order for a quadratic (the reference code's D2 for
    a line only: it misses half the quadratic term); Algorithm 2's D0 + ½·D1 is the midpoint rule,
    off for a line by α_t·|c1|·h³/12 at most (its local error, O(h³))."""
    h, h0, h1 = hs
    lam_t = lam_s + h
    nodes = [lam_s, lam_s - h0, lam_s - h0 - h1]  # the last three data predictions, newest first
    (alpha_t, sigma_t), (_, sigma_s) = _lambda_point(lam_t), _lambda_point(lam_s)
    u, w = np.polynomial.legendre.leggauss(40)
    lam = lam_s + 0.5 * h * (u + 1)
    x = torch.tensor([x_s], dtype=F64)

    def check(degree):
        poly = np.polynomial.Polynomial(c[: degree + 1])
        exact = sigma_t / sigma_s * x_s + sigma_t * 0.5 * h * float(np.sum(w * np.exp(lam) * poly(lam)))
        m = [torch.tensor([poly(n)], dtype=F64) for n in nodes]
        return exact, {(order, kind): float(ode_step(x, m, [h, h0, h1], order, alpha_t, sigma_t, sigma_s, kind)[0])
                       for order in (1, 2, 3) for kind in ("taylor", "reference")}

    exact, got = check(0)
    for value in got.values():
        assert value == pytest.approx(exact, rel=1e-9, abs=1e-12)
    exact, got = check(1)
    assert got[3, "taylor"] == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert got[3, "reference"] == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert abs(got[2, "taylor"] - exact) <= alpha_t * abs(c[1]) * h**3 / 12 + 1e-12
    exact, got = check(2)
    assert got[3, "taylor"] == pytest.approx(exact, rel=1e-9, abs=1e-12)
    if abs(c[2]) > 0.1:
        assert abs(got[3, "reference"] - exact) > 1e-3 * alpha_t * abs(c[2]) * h**3


@settings(max_examples=25, deadline=None)
@given(pair=dst.alpha_bar_pairs(min_ratio=1e-3), seed=st.integers(0, 2**31 - 1))
def test_the_first_order_sde_step_is_the_ddpm_posterior(pair, seed):
    """SDE-DPM-Solver++ at order 1 draws x_t ~ q(x_t | x_s, x̂₀) exactly: mean coef_x0·x̂₀ + coef_xt·x_s
    and variance β̃ of the core's posterior (Kingma et al. 2021, eq. 31–33)."""
    ab_t, ab_s = pair  # t < s: ᾱ_t > ᾱ_s
    g = torch.Generator().manual_seed(seed)
    x, x0, z = (torch.randn(4, generator=g, dtype=F64) for _ in range(3))
    lam = [0.5 * math.log(ab / (1 - ab)) for ab in (ab_s, ab_t)]
    got = sde_step(x, [x0], [lam[1] - lam[0]], 1, ab_t**0.5, (1 - ab_t) ** 0.5, (1 - ab_s) ** 0.5, z)
    p = posterior(ab_t, ab_s)
    torch.testing.assert_close(got, p.coef_x0 * x0 + p.coef_xt * x + p.variance**0.5 * z, rtol=1e-9, atol=1e-12)


# --- order of convergence on exact oracles ----------------------------------------------------------


@pytest.fixture(scope="module")
def vp():
    return schedule("vp")


@pytest.fixture(scope="module")
def x_T():
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


def test_2m_converges_at_second_order_to_the_exact_gaussian_flow(vp, x_T):
    """float64, steps uniform in λ on the continuous VP schedule (so t_1 = t(λ_max) whatever the steps):
    the error against the closed-form flow (then x̂₀ at t_1) falls as steps^−2 (measured slope 1.94)."""
    mean, std = torch.tensor([0.5, -1.0], dtype=F64), 0.5
    oracle = GaussianOracle(vp, mean=mean, std=std, shape=(2,))
    steps = [16, 24, 32, 48, 64, 96]
    t_1 = time_grid(vp, 2, "logsnr")[-1]
    exact = denoised(vp, oracle, gaussian_flow(vp, mean, std, x_T, t_1), t_1)
    sampler = difftk.create("sampler", "dpm-solver-2m", spacing="logsnr")
    errors = [float((sampler.sample(oracle, vp, x_T, steps=k) - exact).abs().max()) for k in steps]
    assert 1.7 < slope(steps, errors) < 2.3, errors
    three = difftk.create("sampler", "dpm-solver-3m", spacing="logsnr")
    assert float((three.sample(oracle, vp, x_T, steps=64) - exact).abs().max()) < errors[-2] / 10


@pytest.fixture(scope="module")
def mixture_flow(vp, x_T):
    """A three-component mixture oracle and the exact x̂₀ at t_1 of its flow from x_T (Dormand–Prince)."""
    oracle = GaussianMixtureOracle(vp, torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]]), stds=torch.tensor([0.3, 0.5, 0.4]))
    t_1 = time_grid(vp, 2, "logsnr")[-1]
    return oracle, denoised(vp, oracle, flow_by_dopri5(vp, oracle, x_T, t_1), t_1)


@pytest.mark.parametrize(("options", "order"), [({}, 3.0), ({"third_order": "reference"}, 2.0)])
def test_3m_converges_at_third_order_on_a_mixture(vp, x_T, mixture_flow, options, order):
    """3M on a Gaussian mixture, against an independent Dormand–Prince solve: slope 3 (measured 2.93); with
    the reference code's D2 (diffusers, k-diffusion) only 2 (measured 1.97), its O(h³) local error."""
    oracle, exact = mixture_flow
    steps = [24, 32, 48, 64, 96, 128]
    sampler = difftk.create("sampler", "dpm-solver-3m", spacing="logsnr", **options)
    errors = [float((sampler.sample(oracle, vp, x_T, steps=k) - exact).abs().max()) for k in steps]
    assert order - 0.3 < slope(steps, errors) < order + 0.3, errors


# --- step for step with diffusers' DPMSolverMultistepScheduler --------------------------------------


class _Promoted:
    """A module seen with float32 promoted to float64: diffusers' scheduler casts its state and
    the sample to float32 in step(); with this in its module namespace it runs its own code in float64."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return self._module.float64 if name == "float32" else getattr(self._module, name)


@pytest.fixture
def diffusers_scheduler(monkeypatch):
    """DPMSolverMultistepScheduler(config) on a difftk discrete schedule's own β, run in float64."""
    module = pytest.importorskip("diffusers.schedulers.scheduling_dpmsolver_multistep")
    monkeypatch.setattr(module, "torch", _Promoted(torch))
    monkeypatch.setattr(module, "np", _Promoted(np))

    def make(s, **config):
        return module.DPMSolverMultistepScheduler(num_train_timesteps=s.T, trained_betas=s.discretize(s.T).betas, **config)

    return make


DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
#: diffusers 0.42 turns its torch tensors into arrays with np.array(), which numpy 2 warns about
diffusers_warnings = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def run_diffusers(scheduler, oracle, s, x, times, noises=None):
    """diffusers' loop on difftk's grid times, as integer timesteps k with t = (k + 1)/T; every x it visits."""
    T = s.T
    scheduler.set_timesteps(timesteps=[round(t * T) - 1 for t in times])
    states = []
    for i, k in enumerate(scheduler.timesteps):
        out = oracle(x, batch_time((int(k) + 1) / T, x))
        noise = None if noises is None else noises[i]
        x = scheduler.step(out, k, x, variance_noise=noise).prev_sample
        states.append(x)
    return states


def run_difftk(sampler, oracle, s, x, generator=None):
    """Our sampler's result and every x it visits (the callback's)."""
    states = []
    out = sampler.sample(oracle, s, x, generator=generator, callback=lambda info: states.append(info.x))
    return out, states


@diffusers_warnings
@pytest.mark.parametrize(("order", "prediction", "spacing", "steps"), [
    (2, "eps", "linspace", 10), (2, "v", "logsnr", 20), (3, "eps", "logsnr", 10), (3, "x0", "linspace", 20),
    (3, "v", "linspace", 16)])
def test_ode_agrees_with_diffusers_step_for_step(diffusers_scheduler, order, prediction, spacing, steps):
    """algorithm_type="dpmsolver++", solver_type="midpoint" (the D = D0 + ½·D1 of Algorithm 2), the final
    step to σ = 0 (x̂₀), lower_order_final off on both sides (on, diffusers lowers only below 15 steps:
    see the next test), the 3M with the reference code's D2: every x and the result agree to 1e-6."""
    s = schedule("linear")
    oracle = GaussianMixtureOracle(s, torch.tensor([[1.0, -1.0, 0.5], [-0.5, 1.0, 0.0]]), stds=0.4, prediction=prediction)
    times = tuple(time_grid(s, steps, spacing))
    x_T = torch.randn(5, 3, generator=torch.Generator().manual_seed(steps), dtype=F64)
    ours = difftk.create("sampler", f"dpm-solver-{order}m", times=times, lower_order_final=False,
                         **({"third_order": "reference"} if order == 3 else {}))
    out, states = run_difftk(ours, oracle, s, x_T.clone())
    scheduler = diffusers_scheduler(s, solver_order=order, prediction_type=DIFFUSERS_PREDICTION[prediction],
                                    algorithm_type="dpmsolver++", solver_type="midpoint",
                                    lower_order_final=False, final_sigmas_type="zero")
    theirs = run_diffusers(scheduler, oracle, s, x_T.clone(), times)
    assert len(theirs) == len(states) == steps
    for a, b in zip(states, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, theirs[-1], rtol=0, atol=1e-6)


@diffusers_warnings
@pytest.mark.parametrize(("order", "steps", "spacing"), [(2, 8, "linspace"), (3, 12, "logsnr"), (3, 5, "linspace")])
def test_lower_order_final_is_diffusers_ending_at_sigma_min(diffusers_scheduler, order, steps, spacing):
    """Our lower_order_final (the step into t_1 first order, the one before at most second) is DPM-Solver's
    rule; diffusers applies it, below 15 steps, with final_sigmas_type="sigma_min", where its last step
    goes to t = 1/T = t_1. So its run on our grid without t_1 is ours up to t_1 (for up to 14 of our
    steps), and our result is x̂₀ of its final x."""
    s = schedule("linear")
    oracle = GaussianMixtureOracle(s, torch.tensor([[1.0, -1.0], [-0.5, 1.0]]), stds=0.4)
    times = tuple(time_grid(s, steps, spacing))
    assert times[-1] == 1 / s.T
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(steps), dtype=F64)
    ours = difftk.create("sampler", f"dpm-solver-{order}m", times=times, lower_order_final=True,
                         **({"third_order": "reference"} if order == 3 else {}))
    out, states = run_difftk(ours, oracle, s, x_T.clone())
    scheduler = diffusers_scheduler(s, solver_order=order, algorithm_type="dpmsolver++", solver_type="midpoint",
                                    lower_order_final=True, final_sigmas_type="sigma_min")
    theirs = run_diffusers(scheduler, oracle, s, x_T.clone(), times[:-1])
    for a, b in zip(states[:-1], theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, denoised(s, oracle, theirs[-1], times[-1]), rtol=0, atol=1e-6)


class RecordingNoise(ExampleNoise):
    """Per-example noise that keeps every draw, to hand the same noise to diffusers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draws = []

    def randn(self, shape, *, dtype=torch.float32, device=None):
        z = super().randn(shape, dtype=dtype, device=device)
        self.draws.append(z)
        return z


@diffusers_warnings
@pytest.mark.parametrize(("prediction", "steps"), [("eps", 10), ("v", 20)])
def test_sde_agrees_with_diffusers_given_the_same_noise(diffusers_scheduler, prediction, steps):
    """algorithm_type="sde-dpmsolver++" fed, step by step, the noise our sampler drew through noise_like
    (none on the last step, whose noise coefficient σ_t·√(1 − e^{−2h}) is 0 at σ_t = 0 anyway)."""
    s = schedule("linear")
    oracle = GaussianMixtureOracle(s, torch.tensor([[1.0, -1.0], [-0.5, 1.0]]), stds=0.4, prediction=prediction)
    times = tuple(time_grid(s, steps, "linspace"))
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(steps), dtype=F64)
    noise = RecordingNoise(7, range(4))
    out, states = run_difftk(difftk.create("sampler", "dpm-solver-2m-sde", times=times, lower_order_final=False),
                             oracle, s, x_T.clone(), generator=noise)
    assert len(noise.draws) == steps - 1
    scheduler = diffusers_scheduler(s, solver_order=2, prediction_type=DIFFUSERS_PREDICTION[prediction],
                                    algorithm_type="sde-dpmsolver++", solver_type="midpoint", lower_order_final=False)
    theirs = run_diffusers(scheduler, oracle, s, x_T.clone(), times, noises=[*noise.draws, torch.zeros_like(x_T)])
    for a, b in zip(states, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, theirs[-1], rtol=0, atol=1e-6)


# --- samples: per example, any parameterisation and schedule, guidance, learned variance ------------


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_i_is_the_same_whatever_the_batch(name):
    s = schedule("linear", T=200)
    oracle = GaussianMixtureOracle(s, torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), stds=0.3)
    sampler = difftk.create("sampler", name)
    one = generate(oracle, s, sampler, (2,), 6, steps=8, seed=11, batch_size=6)
    split = generate(oracle, s, sampler, (2,), 6, steps=8, seed=11, batch_size=4)
    torch.testing.assert_close(split, one, rtol=0, atol=1e-6)
    other_seed = generate(oracle, s, sampler, (2,), 6, steps=8, seed=12, batch_size=6)
    assert not torch.equal(one, other_seed)


@pytest.mark.parametrize("schedule_name", ["linear", "cosine", "vp"])
@pytest.mark.parametrize("name", ODE_SAMPLERS)
def test_every_parameterisation_solves_the_same_flow(name, schedule_name):
    """ε-, x₀- and v-oracles of the same data give the same 25-step solution (the core converts), close
    to the exact flow on every schedule (the λ-uniform grid: measured errors 2e-3 to 3e-2)."""
    s = schedule(schedule_name)
    mean, std = torch.tensor([0.3, -0.4], dtype=F64), 0.6
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    t_1 = time_grid(s, 25, "logsnr")[-1]
    exact = denoised(s, GaussianOracle(s, mean=mean, std=std, shape=(2,)), gaussian_flow(s, mean, std, x_T, t_1), t_1)
    sampler = difftk.create("sampler", name, spacing="logsnr")
    outs = [sampler.sample(GaussianOracle(s, mean=mean, std=std, shape=(2,), prediction=p), s, x_T, steps=25)
            for p in ("eps", "x0", "v")]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=1e-9)
    assert float((outs[0] - exact).abs().max()) < 0.05


@pytest.mark.parametrize("schedule_name", ["linear", "vp"])
def test_sde_samples_the_data_distribution(schedule_name):
    """4000 samples of N((0.5, −1), 0.5²I) in 50 λ-uniform steps: mean and std to 0.03 (measured std
    0.512–0.517: the stochastic solver needs more steps than the ODEs; 0.503 at 100, 0.499 at 200)."""
    s = schedule(schedule_name)
    oracle = GaussianOracle(s, mean=torch.tensor([0.5, -1.0]), std=0.5, shape=(2,), prediction="v")
    sampler = difftk.create("sampler", "dpm-solver-2m-sde", spacing="logsnr")
    x = generate(oracle, s, sampler, (2,), 4000, steps=50, seed=2)
    torch.testing.assert_close(x.mean(0), torch.tensor([0.5, -1.0]), rtol=0, atol=0.03)
    torch.testing.assert_close(x.std(0), torch.tensor([0.5, 0.5]), rtol=0, atol=0.03)




@pytest.mark.parametrize("name", SAMPLERS)
def test_learned_variance_channels_are_left_to_predict(name):
    s = schedule("cosine")
    oracle = GaussianOracle(s, mean=0.2, std=0.5, shape=(1, 4, 4))
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = difftk.create("sampler", name)
    plain = sampler.sample(oracle, s, x_T, steps=12, generator=ExampleNoise(0, range(3)))
    learned = sampler.sample(WithLearnedVariance(oracle), s, x_T, steps=12, generator=ExampleNoise(0, range(3)))
    assert learned.shape == x_T.shape
    torch.testing.assert_close(learned, plain, rtol=0, atol=0)


def test_classifier_free_guidance_is_just_a_denoiser():
    """cfg around a two-class mixture oracle: at w = 0 the result is that of the class's own denoiser (and
    near its exact flow); at w = 3 the samples are pushed away from the other class (further along
    μ_0 − μ_1) and stay finite."""
    s = schedule("linear")
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=F64)
    oracle = GaussianMixtureOracle(s, means, stds=0.8)
    cond = torch.zeros(64, dtype=torch.long)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    sampler = difftk.create("sampler", "dpm-solver-2m", spacing="linspace", lower_order_final=True)
    t_1 = time_grid(s, 20, "linspace")[-1]
    own_oracle = GaussianOracle(s, mean=means[0], std=0.8, shape=(2,))
    own = sampler.sample(own_oracle, s, x_T, steps=20)
    unguided = sampler.sample(difftk.create("guidance", "cfg", scale=0.0).wrap(oracle, s), s, x_T, steps=20, cond=cond)
    torch.testing.assert_close(unguided, own, rtol=0, atol=1e-9)
    exact = denoised(s, own_oracle, gaussian_flow(s, means[0], 0.8, x_T, t_1), t_1)
    assert float((own - exact).abs().max()) < 0.03
    guided = sampler.sample(difftk.create("guidance", "cfg", scale=3.0).wrap(oracle, s), s, x_T, steps=20, cond=cond)
    assert torch.isfinite(guided).all()
    assert float(guided[:, 0].mean()) > float(unguided[:, 0].mean()) + 0.3


def test_third_order_option_is_checked():
    with pytest.raises(difftk.OptionError, match="third_order"):
        difftk.create("sampler", "dpm-solver-3m", third_order="midpoint")
