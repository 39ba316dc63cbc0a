"""Classifier guidance as maths: eq. 14 with a classifier whose ∇ₓ log p(y | x_t) is closed form,
what the guided denoiser passes through untouched, and its one-line refusals.

The classifier is a linear-Gaussian toy: classes y ~ π with x₀ | y ~ N(μ_y, s²I) give
x_t | y ~ N(√ᾱ·μ_y, vI), v = ᾱs² + 1 − ᾱ, so log p(y | x_t) = log softmax_y(ℓ) with logits
linear in x, ℓ_k = (√ᾱ·μ_k·x − ½ᾱ‖μ_k‖²)/v + log π_k, and
∇ₓ log p(y | x_t) = (√ᾱ/v)·(μ_y − Σ_k p(k | x_t)·μ_k).
tests/test_guidance.py covers s = 0 against the denoiser, the exact conditional at s = 1, the
landing test and the command line; these tests do not repeat them.
"""

import difftk
import pytest
import torch
from difftk.errors import IncompatibleError, OptionError
from difftk.maths.diffusion import PREDICTIONS, convert
from difftk.testing import GaussianMixtureOracle, GaussianOracle, ReferenceLinearSchedule, ReferenceVPSchedule
from hypothesis import given, settings
from hypothesis import strategies as st

MEANS = torch.tensor([[-2.0, 0.5], [1.5, 1.5], [1.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
PRIORS = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
STD = 0.5
K = len(MEANS)
SCHEDULES = {"discrete": ReferenceLinearSchedule(T=100), "continuous": ReferenceVPSchedule()}

quick = settings(max_examples=25, deadline=None)


class LinearGaussianClassifier:
    """The exact noise-aware classifier of K Gaussian classes N(μ_k, s²I) with priors π (module docstring)."""

    num_classes = K

    def __init__(self, schedule):
        self.schedule = schedule

    def _terms(self, x_t, t):
        ab = self.schedule.alpha_bar(t.to(torch.float64))[:, None]  # [B, 1]
        v = ab * STD**2 + 1 - ab
        logits = (ab.sqrt() * x_t.to(torch.float64) @ MEANS.T - 0.5 * ab * (MEANS**2).sum(1)) / v + PRIORS.log()
        return ab, v, logits

    def __call__(self, x_t, t):
        return self._terms(x_t, t)[2]

    def grad_log_prob(self, x_t, t, y):
        """∇ₓ log p(y | x_t) = (√ᾱ/v)·(μ_y − Σ_k p_k·μ_k), in closed form."""
        ab, v, logits = self._terms(x_t, t)
        p = torch.softmax(logits, dim=1)
        return ab.sqrt() / v * (MEANS[y] - p @ MEANS)


class Unconditional(torch.nn.Module):
    """A denoiser without classes (num_classes = 0) that records what it is called with."""

    def __init__(self, inner, learned_variance=False):
        super().__init__()
        self.inner, self.prediction, self.num_classes = inner, inner.prediction, 0
        self.learned_variance = learned_variance
        self.conds = []

    def forward(self, x_t, t, cond=None):
        self.conds.append(cond)
        out = self.inner(x_t, t)
        return torch.cat([out, torch.tanh(x_t) - t[:, None]], dim=1) if self.learned_variance else out


def guidance(scale):
    return difftk.create("guidance", "classifier", scale=scale)


def draw(seed, batch, lo=0.02, hi=0.98):
    """x_t, t ∈ [lo, hi] and labels in float64 (away from ᾱ = 0 and 1, where x₀/v → ε lose digits)."""
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn((batch, 2), generator=g, dtype=torch.float64)
    t = lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64)
    return x, t, torch.randint(0, K, (batch,), generator=g)


def test_the_toy_is_the_exact_class_posterior_of_the_mixture():
    """The toy's log softmax is the core oracle's exact log p(k | x_t), and its closed-form gradient
    is autograd's: the two checks the tests below stand on."""
    for schedule in SCHEDULES.values():
        clf = LinearGaussianClassifier(schedule)
        x, t, y = draw(1, 8, lo=0.0, hi=1.0)
        exact = GaussianMixtureOracle(schedule, MEANS, stds=STD, weights=PRIORS).class_log_posterior(x, t)
        torch.testing.assert_close(torch.log_softmax(clf(x, t), dim=1), exact, rtol=1e-12, atol=1e-12)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.log_softmax(clf(xg, t), dim=1).gather(1, y[:, None]).sum(), xg)
        torch.testing.assert_close(clf.grad_log_prob(x, t, y), grad, rtol=1e-12, atol=1e-12)


# --- eq. 14 ----------------------------------------------------------------------------------------


@quick
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6), scale=st.floats(0.0, 20.0),
       prediction=st.sampled_from(PREDICTIONS), kind=st.sampled_from(sorted(SCHEDULES)))
def test_guidance_shifts_eps_by_minus_s_sigma_grad_log_p(seed, batch, scale, prediction, kind):
    """ε̃ = ε̂ − s·√(1−ᾱ)·∇ₓ log p(y | x_t) (Dhariwal & Nichol 2021, eq. 14), the output in the wrapped
    denoiser's own parameterisation."""
    schedule = SCHEDULES[kind]
    clf = LinearGaussianClassifier(schedule)
    denoiser = Unconditional(GaussianOracle(schedule, mean=[0.5, -0.5], std=0.8, prediction=prediction))
    x, t, y = draw(seed, batch)
    out = guidance(scale).wrap(denoiser, schedule, clf)(x, t, cond=y)
    ab = schedule.alpha_bar(t)
    eps, eps_hat = (convert(prediction, o, "eps", x, ab) for o in (out, denoiser(x, t)))
    shift = -scale * (1 - ab).sqrt()[:, None] * clf.grad_log_prob(x, t, y)
    # the log-softmax is taken in float32: ∇ log p holds ~7 digits
    torch.testing.assert_close(eps - eps_hat, shift, rtol=1e-5, atol=1e-6 * (1 + scale))


@quick
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6), scale=st.floats(0.0, 20.0))
def test_the_shift_is_linear_in_the_scale(seed, batch, scale):
    """ε̃(s) − ε̂ = s·(ε̃(1) − ε̂), whatever the classifier."""
    schedule = SCHEDULES["continuous"]
    clf = LinearGaussianClassifier(schedule)
    denoiser = Unconditional(GaussianOracle(schedule, mean=0.0, std=1.0, shape=(2,)))
    x, t, y = draw(seed, batch)
    eps_hat = denoiser(x, t)
    one, s = (guidance(v).wrap(denoiser, schedule, clf)(x, t, cond=y) for v in (1.0, scale))
    torch.testing.assert_close(s - eps_hat, scale * (one - eps_hat), rtol=1e-6, atol=1e-9 * (1 + scale))


# --- what passes through -----------------------------------------------------------------------------


def test_at_scale_zero_the_classifier_is_not_called_and_the_output_is_the_denoisers():
    def never(x_t, t):
        raise AssertionError("the classifier was called at s = 0")

    schedule = SCHEDULES["discrete"]
    denoiser = Unconditional(GaussianOracle(schedule, shape=(2,)), learned_variance=True)
    x, t, y = draw(2, 4)
    out = guidance(0.0).wrap(denoiser, schedule, never)(x, t, cond=y)
    assert torch.equal(out, denoiser(x, t))


def test_a_learned_variance_keeps_its_channels_and_only_the_prediction_is_guided():
    schedule = SCHEDULES["discrete"]
    clf = LinearGaussianClassifier(schedule)
    denoiser = Unconditional(GaussianOracle(schedule, shape=(2,)), learned_variance=True)
    x, t, y = draw(3, 5)
    out = guidance(2.0).wrap(denoiser, schedule, clf)(x, t, cond=y)
    plain = denoiser(x, t)
    assert out.shape == plain.shape and torch.equal(out[:, 2:], plain[:, 2:])
    shift = -2.0 * (1 - schedule.alpha_bar(t)).sqrt()[:, None] * clf.grad_log_prob(x, t, y)
    torch.testing.assert_close(out[:, :2] - plain[:, :2], shift, rtol=1e-5, atol=1e-6)


def test_the_label_reaches_the_denoiser_only_if_it_is_class_conditional():
    schedule = SCHEDULES["discrete"]
    clf = LinearGaussianClassifier(schedule)
    x, t, y = draw(4, 3)
    plain = Unconditional(GaussianOracle(schedule, shape=(2,)))
    guided = guidance(1.0).wrap(plain, schedule, clf)
    guided(x, t, cond=y)
    assert plain.conds == [None] and guided.num_classes == K  # the classes are the classifier's

    conditional = GaussianMixtureOracle(schedule, MEANS, stds=STD, weights=PRIORS)
    seen = []
    conditional.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["cond"]), with_kwargs=True)
    guidance(1.0).wrap(conditional, schedule, conditional.class_log_posterior)(x, t, cond=y)
    assert len(seen) == 1 and torch.equal(seen[0], y)


def test_the_gradient_is_taken_inside_inference_mode_too():
    schedule = SCHEDULES["continuous"]
    guided = guidance(3.0).wrap(Unconditional(GaussianOracle(schedule, shape=(2,))), schedule,
                                LinearGaussianClassifier(schedule))
    x, t, y = draw(5, 4)
    expected = guided(x, t, cond=y)
    with torch.inference_mode():
        assert torch.equal(guided(x, t, cond=y), expected)


# --- refusals: one line each -------------------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def guided_toy():
    schedule = SCHEDULES["discrete"]
    return schedule, Unconditional(GaussianOracle(schedule, shape=(2,)))


def test_a_missing_label_is_one_line(guided_toy):
    schedule, denoiser = guided_toy
    x, t, _ = draw(6, 3)
    with pytest.raises(OptionError) as err:
        guidance(1.0).wrap(denoiser, schedule, LinearGaussianClassifier(schedule))(x, t)
    assert "needs class labels" in one_line(err) and f"0..{K - 1}" in str(err.value)


def test_a_missing_classifier_is_one_line(guided_toy):
    schedule, denoiser = guided_toy
    with pytest.raises(OptionError) as err:
        guidance(1.0).wrap(denoiser, schedule)
    assert "needs a classifier checkpoint" in one_line(err)


def test_a_classifier_for_other_data_is_one_line(guided_toy):
    schedule, denoiser = guided_toy
    wrong_shape = torch.nn.Linear(3, K).double()  # reads 3 features, the model's samples have 2
    x, t, y = draw(7, 3)
    with pytest.raises(IncompatibleError) as err:
        guidance(1.0).wrap(denoiser, schedule, lambda x_t, t: wrong_shape(x_t))(x, t, cond=y)
    assert "cannot read this model's samples of shape [2]" in one_line(err)


def test_a_classifier_of_too_few_classes_is_one_line(guided_toy):
    schedule, denoiser = guided_toy
    x, t, _ = draw(8, 3)
    two_classes = lambda x_t, t: LinearGaussianClassifier(schedule)(x_t, t)[:, :2]  # noqa: E731
    with pytest.raises(IncompatibleError) as err:
        guidance(1.0).wrap(denoiser, schedule, two_classes)(x, t, cond=torch.tensor([0, 1, 3]))
    assert "asks for class 3" in one_line(err)
