"""Improved DDPM against its formulas: cosine β, KL and discretized likelihood, learned-range variance,
respacing, the hybrid loss's stop-gradient, importance sampling, exact resume, and the bound."""

import math

import attrs
import difftk
import difftk.testing.toys as toys
import numpy as np
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.data.pipeline_data import load_dataset
from difftk.errors import IncompatibleError
from difftk.maths.diffusion import posterior
from difftk.maths.grids import time_grid
from difftk.maths.likelihood import discretized_gaussian_log_likelihood, normal_kl, prior_kl
from difftk.options import option
from difftk.testing import GaussianOracle, check_objective, check_sampler
from difftk.training.config import TrainConfig
from difftk.training.job import resume_state, train
from difftk_iddpm.metric import vlb_bits
from difftk_iddpm.process import learned_log_variance, process
from hypothesis import example, given, settings
from hypothesis import strategies as st

# --- the cosine schedule (eq. 17) ----------------------------------------------------------------


@pytest.mark.parametrize("T", [1000, 4000, 50])
def test_cosine_betas_are_exact_in_float64(T):
    s = 0.008
    f = [math.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]  # written apart from the plugin
    expected = np.array([min(1 - f[i] / f[i - 1], 0.999) for i in range(1, T + 1)])
    disc = difftk.create("schedule", "cosine", T=T).discretize(T)
    assert np.array_equal(disc.betas, expected) or np.max(np.abs(disc.betas - expected)) < 1e-15
    unclipped = expected < 0.999
    assert np.allclose(disc.alphas_cumprod[unclipped], np.array(f[1:])[unclipped] / f[0], rtol=1e-12, atol=0)
    assert disc.betas[-1] == 0.999 and disc.alphas_cumprod[-1] > 0


# --- the likelihood pieces, against independent computations ---------------------------------------------


@given(st.floats(-3, 3), st.floats(-3, 3), st.floats(-3, 1.5), st.floats(-3, 1.5))
@settings(max_examples=40)
def test_normal_kl_matches_numerical_integration(m1, m2, lv1, lv2):
    s1, s2 = math.exp(0.5 * lv1), math.exp(0.5 * lv2)
    x = np.linspace(m1 - 12 * s1, m1 + 12 * s1, 20001)
    p = np.exp(-0.5 * ((x - m1) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
    log_ratio = (-0.5 * ((x - m1) / s1) ** 2 - math.log(s1)) - (-0.5 * ((x - m2) / s2) ** 2 - math.log(s2))
    expected = np.trapezoid(p * log_ratio, x)
    got = float(normal_kl(torch.tensor([m1], dtype=torch.float64), lv1, torch.tensor([m2], dtype=torch.float64), lv2))
    assert math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-7)


@given(st.integers(0, 255), st.floats(-1.2, 1.2), st.floats(-6, 0))
@settings(max_examples=60)
@example(0, -1.0, -5.0)
@example(255, 1.0, -5.0)
def test_discretized_log_likelihood_is_the_mass_of_the_bin(u, mean, log_scale):
    x = u / 127.5 - 1
    sigma = math.exp(log_scale)
    cdf = lambda z: 0.5 * (1 + math.erf((z - mean) / (sigma * math.sqrt(2))))  # noqa: E731
    lo = -math.inf if u == 0 else x - 1 / 255
    hi = math.inf if u == 255 else x + 1 / 255
    mass = (1.0 if hi == math.inf else cdf(hi)) - (0.0 if lo == -math.inf else cdf(lo))
    got = float(discretized_gaussian_log_likelihood(torch.tensor([x], dtype=torch.float64),
                                                    torch.tensor([mean], dtype=torch.float64),
                                                    torch.tensor([log_scale], dtype=torch.float64)))
    assert math.isclose(got, math.log(max(mass, 1e-12)), rel_tol=1e-6, abs_tol=1e-9)


def test_discretized_likelihood_sums_to_one_over_the_256_values():
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, log_scale in ((0.1, -2.0), (-0.97, -4.0), (0.5, 0.3)):
        ll = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, log_scale))
        assert math.isclose(float(ll.exp().sum()), 1.0, rel_tol=1e-9)


def test_prior_kl_is_the_kl_of_q_xT_to_the_standard_normal():
    x0 = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    ab = 0.01
    m, v = math.sqrt(ab) * x0, 1 - ab
    expected = 0.5 * (v + m**2 - 1 - math.log(v))  # KL(N(m, v) ‖ N(0, 1)), textbook form
    assert torch.allclose(prior_kl(x0, ab), expected)


# --- learned-range variance (eq. 15) and respacing -----------------------------------------------------------


@given(st.integers(2, 2000), st.data(), st.floats(-1, 1))
@settings(max_examples=60)
def test_learned_variance_lies_between_beta_tilde_and_beta(T, data, v):
    proc = process(difftk.create("schedule", "cosine", T=T))
    k = data.draw(st.integers(2, T))
    lb, lbt = float(proc.log_beta[k - 1]), float(proc.log_beta_tilde[k - 1])
    log_var = float(learned_log_variance(torch.tensor([v], dtype=torch.float64), lb, lbt))
    assert min(lb, lbt) - 1e-12 <= log_var <= max(lb, lbt) + 1e-12
    assert lbt <= lb + 1e-12  # β̃ ≤ β
    ends = [float(learned_log_variance(torch.tensor([e], dtype=torch.float64), lb, lbt)) for e in (-1.0, 1.0)]
    assert math.isclose(ends[0], lbt, abs_tol=1e-12) and math.isclose(ends[1], lb, abs_tol=1e-12)


@given(st.sampled_from(["cosine", "linear", "sigmoid"]), st.integers(21, 1500), st.data(),
       st.sampled_from(["linspace", "leading", "trailing"]))
@settings(max_examples=50)
def test_respaced_alpha_bar_equals_the_original_at_the_kept_steps(name, T, data, spacing):
    schedule = difftk.create("schedule", name, T=T)
    K = data.draw(st.integers(1, T))
    proc = process(schedule, K, spacing)
    full = schedule.discretize(T).alphas_cumprod
    kept = np.round(proc.times * T).astype(int)
    assert np.allclose(proc.alpha_bar, full[kept - 1], rtol=1e-12, atol=0)
    assert np.allclose(np.cumprod(1 - proc.disc.betas), proc.alpha_bar, rtol=1e-10)  # β rebuilt: ᾱ_k = ∏(1−β_j)
    assert np.array_equal(proc.times, time_grid(schedule, K, spacing)[::-1])


def test_respacing_every_step_is_the_schedules_own_process():
    schedule = difftk.create("schedule", "cosine", T=200)
    proc = process(schedule)
    disc = schedule.discretize(200)
    assert np.allclose(proc.disc.betas, disc.betas, rtol=1e-12)
    post = posterior(disc.alphas_cumprod_prev, disc.alphas_cumprod)
    assert np.allclose(proc.post.coef_x0, post.coef_x0) and np.allclose(proc.post.coef_xt, post.coef_xt)


# --- sampling with the exact denoiser ------------------------------------------------------------------------


@pytest.mark.parametrize("steps,variance", [(1000, "beta"), (100, "beta_tilde"), (50, "beta")])
def test_respaced_sampler_reproduces_gaussian_data(steps, variance):
    schedule = difftk.create("schedule", "cosine")
    mu, s, n = torch.tensor([1.0, -0.5, 0.25]), 0.5, 4000
    oracle = GaussianOracle(schedule, mean=mu, std=s)
    g = torch.Generator().manual_seed(0)
    x = difftk.create("sampler", "respaced", variance=variance).sample(
        oracle, schedule, torch.randn(n, 3, generator=g, dtype=torch.float64), steps=steps, generator=g)
    assert torch.all((x.mean(0) - mu).abs() < 4.5 * s / math.sqrt(n))
    assert torch.all((x.std(0) - s).abs() < 4.5 * s / math.sqrt(2 * n) + 0.02 * s)


def test_without_a_learned_variance_learned_means_beta_tilde():
    schedule = difftk.create("schedule", "cosine")
    oracle = GaussianOracle(schedule, mean=torch.tensor([1.0, -0.5]), std=0.5)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draw = lambda variance: difftk.create("sampler", "respaced", variance=variance).sample(  # noqa: E731
        oracle, schedule, x_T, steps=20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draw("learned"), draw("beta_tilde")) and not torch.equal(draw("learned"), draw("beta"))


def test_respaced_passes_the_conformance_kit():
    check_sampler(difftk.create("sampler", "respaced"))


# --- a denoiser with a learned variance, for the objectives --------------------------------------------------------


@attrs.frozen
class LVConfig:
    in_channels: int = option(2, help="point dimension", ge=1)
    num_classes: int = option(0, help="classes", ge=0)


class LearnedVarianceMLP(torch.nn.Module):
    """A small MLP on points that outputs ε̂ and the interpolation v."""

    Config = LVConfig
    prediction, learned_variance = "eps", True

    def __init__(self, config: LVConfig | None = None) -> None:
        super().__init__()
        self.config = config or LVConfig()
        d = self.config.in_channels
        self.num_classes = self.config.num_classes
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2 * d))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, t[:, None].to(x.dtype)], dim=1))


class LVPlugin:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_denoiser("lv-mlp", LearnedVarianceMLP)


class Leaf(torch.nn.Module):
    """Outputs two learnable constants, the mean channel (ε̂) and the variance channel (v)."""

    prediction, learned_variance = "eps", True

    def __init__(self):
        super().__init__()
        self.eps = torch.nn.Parameter(torch.tensor(0.3))
        self.v = torch.nn.Parameter(torch.tensor(-0.2))

    def forward(self, x, t, cond=None):
        return torch.cat([self.eps.expand_as(x), self.v.expand_as(x)], dim=1)


def _grads(objective, schedule):
    model = Leaf()
    x0 = torch.rand(16, 1, generator=torch.Generator().manual_seed(1)) * 2 - 1
    objective.loss(model, schedule, x0, generator=torch.Generator().manual_seed(2)).mean().backward()
    return model.eps.grad.clone(), model.v.grad.clone()


def test_hybrid_trains_the_mean_only_through_l_simple_and_the_variance_only_through_the_vlb():
    schedule = difftk.create("schedule", "cosine", T=100)
    eps0, v0 = _grads(difftk.create("objective", "hybrid", vlb_weight=0.0), schedule)
    eps1, v1 = _grads(difftk.create("objective", "hybrid", vlb_weight=0.001), schedule)
    assert torch.equal(eps0, eps1)  # the stop-gradient: λ·L_vlb adds nothing to the mean's gradient
    assert v0 == 0 and v1 != 0
    eps_vlb, v_vlb = _grads(difftk.create("objective", "vlb", importance_sampling=False), schedule)
    assert eps_vlb != 0 and v_vlb != 0  # L_vlb alone trains both


def test_hybrid_is_l_simple_plus_lambda_T_times_the_step_term():
    schedule = difftk.create("schedule", "cosine", T=100)
    x0 = torch.rand(8, 1, generator=torch.Generator().manual_seed(1)) * 2 - 1
    model = Leaf()
    losses = [difftk.create("objective", name, **opts).loss(model, schedule, x0, generator=torch.Generator().manual_seed(5))
              for name, opts in (("hybrid", {"vlb_weight": 0.001}), ("hybrid", {"vlb_weight": 0.0}),
                                 ("vlb", {"importance_sampling": False}))]
    assert torch.allclose(losses[0], losses[1] + 0.001 * losses[2], rtol=1e-5)


def test_hybrid_needs_a_learned_variance_denoiser():
    with pytest.raises(IncompatibleError, match="learned_variance=false: compose it with denoiser.learned_variance=true"):
        difftk.compose(schedule="cosine", sampler="respaced", denoiser="unet-attn", objective="hybrid")
    difftk.compose(schedule="cosine", sampler="respaced", objective="hybrid",
                   denoiser={"name": "unet-attn", "options": {"learned_variance": True}})


def test_objectives_pass_the_conformance_kit():
    for name in ("hybrid", "vlb"):
        check_objective(difftk.create("objective", name))


# --- importance sampling of t (§3.3) --------------------------------------------------------------------------------


def test_importance_sampling_is_uniform_until_every_t_has_its_history_then_follows_the_second_moment():
    objective = difftk.create("objective", "vlb", history=2, uniform_prob=0.0)
    T = 4
    assert objective.step_probabilities(T) is None
    for k, loss in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (1, 1.0), (2, 2.0), (3, 3.0)]:
        objective._record(torch.tensor([k]), torch.tensor([loss]), T)
        assert objective.step_probabilities(T) is None  # t = 4 has one value of two
    objective._record(torch.tensor([4, 4]), torch.tensor([4.0, 8.0]), T)  # pushes out the oldest 4.0
    p = objective.step_probabilities(T)
    moments = torch.tensor([1.0, 2.0, 3.0, math.sqrt((16 + 64) / 2)], dtype=torch.float64)
    assert torch.allclose(p, moments / moments.sum())
    k, w = objective._draw(T, 20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    freq = torch.bincount(k - 1, minlength=T).double() / 20000
    assert torch.allclose(freq, p, atol=0.015)
    assert torch.allclose(w, 1 / (T * p[k - 1]))  # E_p[w·L_t] = (1/T)·Σ_t L_t: unbiased


def test_training_with_importance_sampling_resumes_exactly(register_plugin, tmp_path):
    assert register_plugin(toys, "toys") and register_plugin(LVPlugin(), "lv")
    spec = difftk.compose(schedule={"name": "cosine", "options": {"T": 6}}, sampler="respaced", denoiser="lv-mlp",
                          objective={"name": "vlb", "options": {"history": 1}}).spec
    data = load_dataset("toy-points")[0].subset(torch.arange(40))
    config = dict(batch_size=8, warmup=2, checkpoint_every=100, sample_every=0, log_every=2, seed=4)
    train(spec, data, TrainConfig(steps=10, **config), out=tmp_path / "whole")
    train(spec, data, TrainConfig(steps=4, **config), out=tmp_path / "part")
    ckpt, cfg = resume_state(tmp_path / "part", steps=10)
    train(spec, data, cfg, out=tmp_path / "part", resume=True, checkpoint=ckpt)
    a = read_checkpoint(tmp_path / "whole").tensors
    b = read_checkpoint(tmp_path / "part").tensors
    assert "objective/loss_history" in a and a.keys() == b.keys()
    assert int(a["objective/loss_counts"].min()) == 1  # warmed up: the later steps were importance-sampled
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --- the variational bound --------------------------------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(st.floats(-1, 1), st.floats(0.2, 1.0), st.integers(0, 1000))
def test_the_bound_is_above_the_true_nll_of_gaussian_data_and_tightens_with_T(mu, s, seed):
    """For x₀ ~ N(μ, s²) and its exact denoiser, the bound L_vlb(x₀) (continuous decoder, in bits) is
    at least the true −log₂ N(x₀; μ, s²) on average over the data, for σ² = β and σ² = β̃; with
    σ² = β̃ the gap is large at T = 25 and shrinks as T grows (Ho et al. 2020, §3.2)."""
    n = 400
    g = torch.Generator().manual_seed(seed)
    x0 = mu + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    nll_bits = (0.5 * math.log(2 * math.pi * s**2) + (x0[:, 0] - mu) ** 2 / (2 * s**2)) / math.log(2)
    gaps = {}
    for T in (25, 400):
        schedule = difftk.create("schedule", "linear", T=T)
        oracle = GaussianOracle(schedule, mean=mu, std=s)
        for variance in ("beta", "beta_tilde"):
            bits, _, _ = vlb_bits(oracle, schedule, x0, variance=variance, decoder="continuous", generator=g)
            gap = bits - nll_bits
            assert float(gap.mean()) >= -4 * float(gap.std()) / math.sqrt(n), (T, variance)
            gaps[T, variance] = float(gap.mean())
    assert gaps[400, "beta_tilde"] < gaps[25, "beta_tilde"]


def test_bpd_vlb_from_the_cli_on_a_tiny_trained_model(register_plugin, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from difftk_cli.main import cli

    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], catch_exceptions=False)  # noqa: E731
    assert run("compose", "--schedule", "cosine", "--set", "schedule.T=20", "--sampler", "respaced", "--denoiser", "tiny",
               "--objective", "simple", "-o", "p.toml").exit_code == 0
    assert run("train", "p.toml", "--data", "toy-images", "--steps", 3, "--out", "run", "--sample-every", 0).exit_code == 0
    result = run("evaluate", "run", "--metric", "bpd-vlb", "-n", 8, "--set", "metric.variance=beta_tilde")
    assert result.exit_code == 0, result.output
    value = float(result.stdout.split()[2])
    assert math.isfinite(value) and value > 0 and "prior term" in result.stdout and "steps: 20" in result.stdout
    again = run("evaluate", "run", "--metric", "bpd-vlb", "-n", 8, "--set", "metric.variance=beta_tilde")
    assert float(again.stdout.split()[2]) == value
