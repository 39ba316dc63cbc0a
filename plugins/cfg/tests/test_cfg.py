"""Classifier-free guidance as maths: eq. 6 on exact denoisers, its Bayes form, the batched call,
label dropout as a function of the generator, and its errors.

The exact denoisers are GaussianMixtureOracle: with ``cond=k`` the conditional denoiser of
component k, with ``cond=K`` (the null class ∅) the unconditional one. tests/test_guidance.py
covers w = 0 against the conditional model, eq. 6 on a learned-variance spy, the landing test
and training through the engine; these tests do not repeat them.
"""

import math

import difftk
import pytest
import torch
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import PREDICTIONS, convert, eps_from_score
from difftk.pipeline.spec import ComponentSpec
from difftk.testing import GaussianMixtureOracle, ReferenceLinearSchedule, ReferenceVPSchedule, check_guidance
from hypothesis import given, settings
from hypothesis import strategies as st

MEANS = torch.tensor([[-2.0, 1.0], [1.5, 1.5], [1.0, -2.0]], dtype=torch.float64)
STDS = [0.3, 0.6, 0.45]
WEIGHTS = [0.5, 0.3, 0.2]
K = len(MEANS)
SCHEDULES = {"discrete": ReferenceLinearSchedule(T=100), "continuous": ReferenceVPSchedule()}

quick = settings(max_examples=25, deadline=None)


def cfg(scale, **options):
    return difftk.create("guidance", "cfg", scale=scale, **options)


def oracle(schedule, prediction="eps"):
    return GaussianMixtureOracle(schedule, MEANS, stds=STDS, weights=WEIGHTS, prediction=prediction)


def draw(seed, batch, lo=0.02, hi=0.98):
    """x_t, t ∈ [lo, hi] and labels in float64 (away from ᾱ = 0 and 1, where x₀/v → ε lose digits)."""
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn((batch, 2), generator=g, dtype=torch.float64)
    t = lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64)
    return x, t, torch.randint(0, K, (batch,), generator=g)


def alpha_bar(schedule, t):
    return schedule.alpha_bar(t.to(torch.float64))


def exact_eps(model, x, t, cond):
    """E[ε | x_t] (given the class when ``cond`` is not None) from the oracle's closed-form score."""
    return eps_from_score(model.score(x, t, cond), alpha_bar(model.schedule, t))


# --- eq. 6 on exact denoisers ---------------------------------------------------------------------


@quick
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6), w=st.floats(0.0, 8.0),
       prediction=st.sampled_from(PREDICTIONS), kind=st.sampled_from(sorted(SCHEDULES)))
def test_guided_eps_is_one_plus_w_conditional_minus_w_unconditional(seed, batch, w, prediction, kind):
    """ε̃ = (1+w)·ε(x,c) − w·ε(x,∅) (eq. 6), for a denoiser in any parameterisation: the plugin combines
    outputs in the model's own parameterisation, which is affine in ε with weights summing to one."""
    schedule = SCHEDULES[kind]
    model = oracle(schedule, prediction)
    x, t, c = draw(seed, batch)
    with torch.no_grad():
        out = cfg(w).wrap(model, schedule)(x, t, cond=c)
    eps = convert(prediction, out, "eps", x, alpha_bar(schedule, t))
    expected = (1 + w) * exact_eps(model, x, t, c) - w * exact_eps(model, x, t, torch.full_like(c, K))
    torch.testing.assert_close(eps, expected, rtol=1e-7, atol=1e-7 * (1 + w))


@quick
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6), w=st.floats(0.0, 8.0),
       kind=st.sampled_from(sorted(SCHEDULES)))
def test_guidance_is_the_unconditional_score_plus_one_plus_w_times_the_implicit_classifier(seed, batch, w, kind):
    """Bayes: ∇log p(x|c) = ∇log p(x) + ∇log p(c|x), so eq. 6 is ε̃ = ε(x,∅) − (1+w)·√(1−ᾱ)·∇ₓ log p(c|x_t)
    (Ho & Salimans 2022, §3.2): classifier guidance at scale 1+w with the model's implicit classifier,
    here the exact class posterior of the mixture (gradient by autograd)."""
    schedule = SCHEDULES[kind]
    model = oracle(schedule)
    x, t, c = draw(seed, batch)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.class_log_posterior(xg, t).gather(1, c[:, None]).sum(), xg)
    ab = alpha_bar(schedule, t)
    expected = exact_eps(model, x, t, None) + (1 + w) * eps_from_score(grad, ab)
    with torch.no_grad():
        out = cfg(w).wrap(model, schedule)(x, t, cond=c)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-7 * (1 + w))


@pytest.mark.parametrize("w", [0.0, 2.5])
def test_one_call_of_the_wrapped_denoiser_per_step(w):
    """w > 0: one batch of 2B, (x, x), (t, t) and the labels then B null classes; w = 0: one call on the
    B examples with their labels, whose output is returned as it is."""
    calls = []

    class Spy(torch.nn.Module):
        prediction, learned_variance, num_classes = "eps", False, K

        def forward(self, x_t, t, cond=None):
            calls.append((x_t, t, cond))
            return x_t * (1.0 + cond[:, None]) - t[:, None]

    x, t, c = draw(0, 5)
    out = cfg(w).wrap(Spy(), SCHEDULES["discrete"])(x, t, cond=c)
    assert len(calls) == 1
    x_in, t_in, c_in = calls[0]
    if w == 0.0:
        assert x_in is x and t_in is t and c_in is c
        assert torch.equal(out, x * (1.0 + c[:, None]) - t[:, None])
    else:
        assert torch.equal(x_in, torch.cat([x, x])) and torch.equal(t_in, torch.cat([t, t]))
        assert torch.equal(c_in, torch.cat([c, torch.full_like(c, K)]))


def test_passes_the_conformance_kit_on_image_shaped_data():
    schedule = SCHEDULES["discrete"]
    means = torch.stack([torch.full((1, 4, 4), v, dtype=torch.float64) for v in (-1.0, 0.0, 1.0)])
    for w in (0.0, 3.0):
        check_guidance(cfg(w), schedule, denoiser=GaussianMixtureOracle(schedule, means, stds=0.5), shape=(3, 1, 4, 4))


# --- label dropout (training) ----------------------------------------------------------------------


@quick
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), num_classes=st.integers(1, 20),
       p=st.floats(0.0, 0.99))
def test_label_dropout_is_one_uniform_per_label_from_the_given_generator(seed, n, num_classes, p):
    """c ← ∅ = num_classes exactly where u < p_uncond, u ~ U[0, 1) one per label from ``generator``: the
    same seed gives the same labels, the generator advances by those n draws and the global RNG not at all."""
    y = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed)
    global_state = torch.random.get_rng_state()
    out = cfg(1.0, p_uncond=p).training_condition(y, num_classes, g)
    assert torch.equal(torch.random.get_rng_state(), global_state)
    reference = torch.Generator().manual_seed(seed)
    u = torch.rand(y.shape, generator=reference)
    assert torch.equal(out, torch.where(u < p, torch.full_like(y, num_classes), y))
    assert out.dtype == y.dtype and out.shape == y.shape
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=reference))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_label_dropout_drops_a_fraction_p_uncond(p):
    n = 20000
    y = torch.arange(n) % 7
    dropped = cfg(1.0, p_uncond=p).training_condition(y, 7, torch.Generator().manual_seed(3)) == 7
    assert abs(float(dropped.float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)  # ±5σ of a binomial fraction
    for k in range(7):  # independent of the label: each class loses the same fraction
        assert abs(float(dropped[y == k].float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / (n / 7))


# --- refusals: one line each -------------------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_missing_labels_are_a_one_line_option_error():
    guided = cfg(2.0).wrap(oracle(SCHEDULES["discrete"]), SCHEDULES["discrete"])
    x, t, _ = draw(0, 3)
    with pytest.raises(OptionError) as err:
        guided(x, t)
    assert "needs class labels" in one_line(err) and f"0..{K - 1}" in str(err.value)


def test_an_unconditional_denoiser_is_refused_in_one_line():
    class Unconditional(torch.nn.Module):
        prediction, num_classes = "eps", 0

    with pytest.raises(IncompatibleError) as err:
        cfg(1.0).wrap(Unconditional(), SCHEDULES["discrete"])
    assert "unconditional" in one_line(err)


class Spec:
    """The part of a PipelineSpec that check_trained reads."""

    def __init__(self, guidance):
        self.guidance = guidance

    def get(self, kind):
        return self.guidance if kind == "guidance" else None


@pytest.mark.parametrize("spec", [None, Spec(None), Spec(ComponentSpec("cfg", {"scale": 3.0, "p_uncond": 0.0})),
                                  Spec(ComponentSpec("classifier", {"scale": 1.0}))],
                         ids=["no-spec", "no-guidance", "p_uncond=0", "other-guidance"])
def test_a_model_trained_without_label_dropout_is_refused_in_one_line(spec):
    with pytest.raises(IncompatibleError) as err:
        cfg(1.0).check_trained(spec)
    assert "trained without cfg" in one_line(err)
    assert "guidance=cfg" in str(err.value) and "--" not in str(err.value)  # library terms; the CLI says them as flags


def test_a_model_trained_with_label_dropout_is_accepted():
    cfg(1.0).check_trained(Spec(ComponentSpec("cfg", {"scale": 3.0, "p_uncond": 0.1})))
