"""cfg's rescale and interval, CFG++, APG and CFG-Zero* as maths, on exact denoisers.

The exact denoisers are GaussianMixtureOracle (as in test_cfg.py): with ``cond=k`` the conditional
denoiser of component k, with ``cond=K`` the unconditional one, in any parameterisation, with the
class posterior known in closed form. Each rule is checked against what its paper says it does,
computed here from the oracle's exact ε̂ / x̂₀ / velocity, and at the sampler level where the rule
is about steps (CFG++'s re-noising, zero-init, the momentum across a draw).
"""

import re

import difftk
import pytest
import torch
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import PREDICTIONS, convert
from difftk.maths.guidance import sigma_of
from difftk.maths.terminal import for_sampling
from difftk.sampling.draw import generate
from difftk.testing import GaussianMixtureOracle, ReferenceLinearSchedule, ReferenceVPSchedule, check_guidance
from hypothesis import given, settings
from hypothesis import strategies as st

MEANS = torch.tensor([[-2.0, 1.0], [1.5, 1.5], [1.0, -2.0]], dtype=torch.float64)
STDS = [0.3, 0.6, 0.45]
WEIGHTS = [0.5, 0.3, 0.2]
K = len(MEANS)
SCHEDULES = {"discrete": ReferenceLinearSchedule(T=100), "continuous": ReferenceVPSchedule()}

quick = settings(max_examples=20, deadline=None)


def guidance(name, **options):
    return difftk.create("guidance", name, **options)


def oracle(schedule, prediction="eps"):
    return GaussianMixtureOracle(schedule, MEANS, stds=STDS, weights=WEIGHTS, prediction=prediction)


def draw(seed, batch, lo=0.05, hi=0.95):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn((batch, 2), generator=g, dtype=torch.float64)
    t = lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64)
    return x, t, torch.randint(0, K, (batch,), generator=g)


def exact(model, x, t, cond, to):
    """The oracle's exact prediction in ``to`` (cond = K: unconditional)."""
    ab = model.schedule.alpha_bar(t)
    return convert(model.prediction, model(x, t, cond), to, x, ab)


def null(c):
    return torch.full_like(c, K)


cases = dict(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 5), w=st.floats(0.0, 6.0),
             prediction=st.sampled_from(PREDICTIONS), kind=st.sampled_from(sorted(SCHEDULES)))


# --- cfg: rescale (Lin et al. 2024 §3.4) and interval (Kynkäänniemi et al. 2024) -----------------------


@quick
@given(**cases, phi=st.floats(0.0, 1.0))
def test_rescale_brings_the_guided_outputs_std_to_the_conditional_ones(seed, batch, w, prediction, kind, phi):
    """φ·g·std(c)/std(g) + (1−φ)·g with g = eq. 6, in the model's own parameterisation: at φ = 1 the std
    of each example's output is the conditional output's."""
    schedule = SCHEDULES[kind]
    model = oracle(schedule, prediction)
    x, t, c = draw(seed, batch)
    with torch.no_grad():
        out = guidance("cfg", scale=w, rescale=phi).wrap(model, schedule)(x, t, cond=c)
    pc, pu = model(x, t, c), model(x, t, null(c))
    g = (1 + w) * pc - w * pu
    ratio = pc.std(dim=1, keepdim=True) / g.std(dim=1, keepdim=True)
    torch.testing.assert_close(out, phi * g * ratio + (1 - phi) * g, rtol=1e-9, atol=1e-9)
    if phi == 1.0:
        torch.testing.assert_close(out.std(dim=1), pc.std(dim=1), rtol=1e-9, atol=1e-12)


@quick
@given(**cases, lo=st.floats(0.0, 2.0), width=st.floats(0.1, 5.0))
def test_interval_guides_inside_the_sigma_range_and_is_the_conditional_model_outside(seed, batch, w, prediction, kind, lo, width):
    schedule = SCHEDULES[kind]
    model = oracle(schedule, prediction)
    x, t, c = draw(seed, batch, lo=0.01, hi=0.99)
    with torch.no_grad():
        out = guidance("cfg", scale=w, interval=(lo, lo + width)).wrap(model, schedule)(x, t, cond=c)
    sigma = sigma_of(schedule.alpha_bar(t))
    inside = ((sigma > lo) & (sigma <= lo + width))[:, None]
    eps = convert(prediction, out, "eps", x, schedule.alpha_bar(t))
    e_c, e_u = exact(model, x, t, c, "eps"), exact(model, x, t, null(c), "eps")
    torch.testing.assert_close(eps, torch.where(inside, (1 + w) * e_c - w * e_u, e_c), rtol=1e-7, atol=1e-7 * (1 + w))


def test_an_interval_must_be_two_increasing_noise_levels():
    for bad in [(1.0,), (2.0, 1.0), (1.0, 2.0, 3.0)]:
        with pytest.raises(OptionError, match="σ_lo < σ_hi"):
            guidance("cfg", interval=bad)


def test_samples_guided_in_an_empty_interval_are_the_conditional_components():
    """Mean and std on the exact mixture: with no σ in the interval every step is the conditional model,
    whose samples are component c's Gaussian (mean μ_c, std s_c), whatever w."""
    schedule = SCHEDULES["discrete"]
    model = oracle(schedule)
    n, c = 600, torch.full((600,), 1)
    ddim = difftk.create("sampler", "ddim")
    x = generate(guidance("cfg", scale=5.0, interval=(1e5, 2e5)).wrap(model, schedule), schedule, ddim, (2,), n,
                 steps=50, cond=c, seed=3).double()
    assert torch.allclose(x.mean(0), MEANS[1], atol=4 * STDS[1] / n**0.5)
    assert torch.allclose(x.std(0), torch.full((2,), STDS[1], dtype=torch.float64), rtol=0.12)
    y = generate(guidance("cfg", scale=5.0).wrap(model, schedule), schedule, ddim, (2,), n, steps=50, cond=c, seed=3)
    assert float(y.double().std(0).max()) < 0.8 * STDS[1]  # the test can fail: guided everywhere, the std shrinks


# --- CFG++ (Chung et al. 2024) ----------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["eps", "v", "flow"])
def test_cfgpp_ddim_step_is_cfg_at_the_step_dependent_weight(prediction):
    """One DDIM step t → s with CFG++ at λ lands where CFG in the γ-convention does at
    γ = λ·σ_t/(σ_t − σ_s) (x̂₀ from ε_λ, re-noised with ε_u), computed here from the step's two σ."""
    schedule = SCHEDULES["continuous"]
    model = oracle(schedule, prediction)
    t0, t1, lam = 0.6, 0.5, 0.7  # a short step: γ > 1, so cfg can express it with w = γ − 1 ≥ 0
    sig_t, sig_s = (float(sigma_of(schedule.alpha_bar(torch.tensor(v, dtype=torch.float64)))) for v in (t0, t1))
    gamma = lam * sig_t / (sig_t - sig_s)
    ddim = difftk.create("sampler", "ddim", times=(t0, t1))
    x, _, c = draw(5, 6)
    steps = {}

    def keep(name):
        return lambda info: steps.setdefault(name, info.x) if info.index == 0 else None

    with torch.no_grad():
        ddim.sample(guidance("cfg++", scale=lam).wrap(model, schedule), schedule, x, cond=c, callback=keep("cfgpp"))
        ddim.sample(guidance("cfg", scale=gamma - 1).wrap(model, schedule), schedule, x, cond=c, callback=keep("cfg"))
    torch.testing.assert_close(steps["cfgpp"], steps["cfg"], rtol=1e-9, atol=1e-9)
    assert gamma > 1.0  # the weight cfg would need is larger than λ: CFG++ is not cfg at λ


def test_cfgpp_refuses_other_samplers_and_edits_in_one_line():
    g = guidance("cfg++", scale=0.5)
    g.check_sampler(difftk.create("sampler", "ddim", eta=0.3), False)
    for name in ("ancestral", "flow-euler", "dpm-solver-2m", "heun"):
        with pytest.raises(IncompatibleError) as err:
            g.check_sampler(difftk.create("sampler", name), False)
        assert "\n" not in str(err.value) and f"'{name}'" in str(err.value) and "ddim" in str(err.value)
    with pytest.raises(IncompatibleError, match="cannot edit"):
        g.check_sampler(difftk.create("sampler", "ddim"), True)


# --- APG (Sadat et al. 2024) ------------------------------------------------------------------------------


def apg_by_hand(D_c, diffs, w, eta, r):
    """D_c + w·(Δ⊥ + η·Δ∥) for the last of ``diffs`` (already momentum-averaged), written out."""
    d = diffs
    if r > 0:
        d = d * torch.clamp(r / d.norm(dim=1, keepdim=True), max=1.0)
    along = (d * D_c).sum(1, keepdim=True) / (D_c * D_c).sum(1, keepdim=True) * D_c
    return D_c + w * ((d - along) + eta * along)


@quick
@given(**cases, eta=st.floats(0.0, 1.0), r=st.sampled_from([0.0, 0.3, 2.0]))
def test_apg_is_the_projected_update_on_the_denoised_prediction(seed, batch, w, prediction, kind, eta, r):
    schedule = SCHEDULES[kind]
    model = oracle(schedule, prediction)
    x, t, c = draw(seed, batch)
    with torch.no_grad():
        out = guidance("apg", scale=w, eta=eta, norm_threshold=r).wrap(model, schedule)(x, t, cond=c)
    D_c, D_u = exact(model, x, t, c, "x0"), exact(model, x, t, null(c), "x0")
    D = convert(prediction, out, "x0", x, schedule.alpha_bar(t))
    torch.testing.assert_close(D, apg_by_hand(D_c, D_c - D_u, w, eta, r), rtol=1e-7, atol=1e-7 * (1 + w))
    if eta == 0.0:  # the update is orthogonal to D_c
        dot = ((D - D_c) * D_c).sum(1)
        assert torch.all(dot.abs() <= 1e-7 * (1 + w) * D_c.norm(dim=1) ** 2 + 1e-9)


@quick
@given(seed=st.integers(0, 2**31 - 1), w=st.floats(0.0, 6.0), kind=st.sampled_from(sorted(SCHEDULES)))
def test_apg_with_eta_one_and_no_threshold_or_momentum_is_cfg(seed, w, kind):
    schedule = SCHEDULES[kind]
    model = oracle(schedule, "v")
    x, t, c = draw(seed, 4)
    with torch.no_grad():
        a = guidance("apg", scale=w, eta=1.0).wrap(model, schedule)(x, t, cond=c)
        b = guidance("cfg", scale=w).wrap(model, schedule)(x, t, cond=c)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7 * (1 + w))


def test_apg_momentum_is_the_running_sum_of_one_draw_and_restarts_with_the_next():
    """Δ_k = D_c − D_u + β·Δ_{k−1} over a draw's calls; ``reset`` (which the core calls before every batch)
    starts the next draw from Δ = 0, so two draws of the same batch are equal and a batch's samples do
    not depend on the batches before it."""
    schedule = SCHEDULES["discrete"]
    model = oracle(schedule, "eps")
    beta, w = -0.5, 2.0
    guided = guidance("apg", scale=w, eta=0.0, momentum=beta).wrap(model, schedule)
    x, _, c = draw(2, 4)
    previous = None
    for k, t_value in enumerate([0.9, 0.6, 0.3]):
        t = torch.full((4,), t_value, dtype=torch.float64)
        with torch.no_grad():
            D = convert("eps", guided(x, t, cond=c), "x0", x, schedule.alpha_bar(t))
        D_c, D_u = exact(model, x, t, c, "x0"), exact(model, x, t, null(c), "x0")
        delta = D_c - D_u + (beta * previous if previous is not None else 0.0)
        torch.testing.assert_close(D, apg_by_hand(D_c, delta, w, 0.0, 0.0), rtol=1e-7, atol=1e-7)
        previous = delta
    ddim = difftk.create("sampler", "ddim")
    cond = torch.arange(12) % K
    first = generate(guided, schedule, ddim, (2,), 12, steps=10, cond=cond, seed=0)
    again = generate(guided, schedule, ddim, (2,), 12, steps=10, cond=cond, seed=0)
    halves = generate(guided, schedule, ddim, (2,), 12, steps=10, cond=cond, seed=0, batch_size=6)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    torch.testing.assert_close(first, halves, rtol=1e-6, atol=1e-6)
    plain = generate(guidance("apg", scale=w, eta=0.0).wrap(model, schedule), schedule, ddim, (2,), 12, steps=10,
                     cond=cond, seed=0)
    assert not torch.allclose(first, plain, atol=1e-3)  # the momentum does act


# --- CFG-Zero* (Fan et al. 2025) --------------------------------------------------------------------------


@quick
@given(**cases)
def test_zero_star_is_the_optimised_scale_on_the_velocity(seed, batch, w, prediction, kind):
    """ṽ = s*·v_u + (1+w)·(v_c − s*·v_u), s* = argmin_s ‖v_c − s·v_u‖² (checked as a minimum)."""
    schedule = SCHEDULES[kind]
    model = oracle(schedule, prediction)
    x, t, c = draw(seed, batch)
    guided = guidance("cfg-zero-star", scale=w, zero_init_steps=0).wrap(model, schedule)
    with torch.no_grad():
        v = convert(prediction, guided(x, t, cond=c), "flow", x, schedule.alpha_bar(t))
    v_c, v_u = exact(model, x, t, c, "flow"), exact(model, x, t, null(c), "flow")
    s = (v_c * v_u).sum(1, keepdim=True) / (v_u * v_u).sum(1, keepdim=True)
    torch.testing.assert_close(v, s * v_u + (1 + w) * (v_c - s * v_u), rtol=1e-7, atol=1e-7 * (1 + w))
    for nudge in (-1e-3, 1e-3):  # s* minimises the residual
        assert torch.all(((v_c - s * v_u) ** 2).sum(1) <= ((v_c - (s + nudge) * v_u) ** 2).sum(1) + 1e-12)


@pytest.mark.parametrize("sampler", ["flow-euler", "ddim"])
def test_zero_init_holds_the_flow_state_for_the_first_steps_of_every_draw(sampler):
    """A zero velocity leaves x_τ = x_t/(α+σ) where it was: after K zero-init steps the flow state is x_T's,
    in every batch (the count restarts with each draw)."""
    schedule = difftk.create("schedule", "flow")
    model = oracle(schedule, "flow")
    chosen = difftk.create("sampler", sampler)
    guided = guidance("cfg-zero-star", scale=2.0, zero_init_steps=2).wrap(model, schedule)
    states = []

    def record(batch, info):
        if info.index == 1:
            ab = float(schedule.alpha_bar(torch.tensor(info.t_next, dtype=torch.float64)))
            states.append(info.x / (ab**0.5 + (1 - ab) ** 0.5))

    cond = torch.arange(6) % K
    generate(guided, schedule, chosen, (2,), 6, steps=8, cond=cond, seed=4, batch_size=3, callback=record)
    x_T = generate(lambda x, t, cond=None: x, schedule, _Identity(), (2,), 6, cond=cond, seed=4, batch_size=3)
    top = float(for_sampling(schedule).alpha_bar(torch.tensor(1.0, dtype=torch.float64)))  # ᾱ(1) = 0 raised to the floor
    torch.testing.assert_close(torch.cat(states).float(), x_T / (top**0.5 + (1 - top) ** 0.5), rtol=1e-5, atol=1e-5)


class _Identity:
    """A 'sampler' that returns x_T: the draw's starting noise, for comparison."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        return x_T


# --- every rule: zero strength, the conformance kit, the trained check ---------------------------------------

RULES = {"cfg": {"rescale": 0.7, "interval": (0.1, 10.0)}, "apg": {"eta": 0.0, "norm_threshold": 1.0, "momentum": -0.5},
         "cfg-zero-star": {"zero_init_steps": 1}, "cfg++": {}}


@pytest.mark.parametrize("name", sorted(RULES))
def test_passes_the_conformance_kit_and_refuses_unconditional_models(name):
    schedule = SCHEDULES["discrete"]
    means = torch.stack([torch.full((1, 4, 4), v, dtype=torch.float64) for v in (-1.0, 0.0, 1.0)])
    scale = 0.5 if name == "cfg++" else 3.0
    check_guidance(guidance(name, scale=scale, **RULES[name]), schedule,
                   denoiser=GaussianMixtureOracle(schedule, means, stds=0.5), shape=(3, 1, 4, 4))

    class Unconditional(torch.nn.Module):
        prediction, num_classes = "eps", 0

    with pytest.raises(IncompatibleError, match=re.escape(f"guidance '{name}' needs a class-conditional")):
        guidance(name, scale=scale).wrap(Unconditional(), schedule)


@pytest.mark.parametrize("name", ["cfg", "apg", "cfg-zero-star"])
def test_zero_strength_is_the_conditional_model(name):
    schedule = SCHEDULES["continuous"]
    model = oracle(schedule, "v")
    x, t, c = draw(1, 5)
    with torch.no_grad():
        out = guidance(name, scale=0.0, **RULES[name]).wrap(model, schedule)(x, t, cond=c)
    assert torch.equal(out, model(x, t, c))
