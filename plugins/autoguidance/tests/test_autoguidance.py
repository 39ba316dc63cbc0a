"""Autoguidance as maths on exact denoisers, on the shipped weaker model, against diffusers' guider,
and its refusals.

The exact denoisers are GaussianMixtureOracle: D₁ the mixture, D₀ the same mixture with wider
components (a "weaker" model whose errors point the way D₁'s would: too much spread).
"""

import difftk
import pytest
import torch
from difftk.errors import DifftkError, IncompatibleError
from difftk.maths.diffusion import PREDICTIONS, convert
from difftk.sampling.draw import generate
from difftk.testing import GaussianMixtureOracle, ReferenceLinearSchedule, check_guidance
from difftk_autoguidance.guidance import AutoguidedDenoiser
from hypothesis import given, settings
from hypothesis import strategies as st

MEANS = torch.tensor([[-2.0, 1.0], [1.5, 1.5], [1.0, -2.0]], dtype=torch.float64)
STDS = [0.3, 0.6, 0.45]
K = len(MEANS)
SCHEDULE = ReferenceLinearSchedule(T=100)


def strong(prediction="eps"):
    return GaussianMixtureOracle(SCHEDULE, MEANS, stds=STDS, prediction=prediction)


def weak(prediction="eps", widen=2.0):
    return GaussianMixtureOracle(SCHEDULE, MEANS, stds=[widen * s for s in STDS], prediction=prediction)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), w=st.floats(0.0, 6.0), ours=st.sampled_from(PREDICTIONS),
       theirs=st.sampled_from(PREDICTIONS), conditional=st.booleans())
def test_autoguidance_is_one_plus_w_model_minus_w_guide_in_any_parameterisation(seed, w, ours, theirs, conditional):
    """(1+w)·D₁ − w·D₀ (Karras et al. 2024), checked in ε; D₀ may predict in another parameterisation,
    and an unconditional pair (cond = None) is guided too."""
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn((4, 2), generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(4, generator=g, dtype=torch.float64)
    c = torch.randint(0, K, (4,), generator=g) if conditional else None
    D1, D0 = strong(ours), weak(theirs)
    with torch.no_grad():
        out = AutoguidedDenoiser(D1, D0, w, SCHEDULE)(x, t, cond=c)
    ab = SCHEDULE.alpha_bar(t)
    eps = convert(ours, out, "eps", x, ab)
    e1, e0 = (convert(m.prediction, m(x, t, c), "eps", x, ab) for m in (D1, D0))
    torch.testing.assert_close(eps, (1 + w) * e1 - w * e0, rtol=1e-7, atol=1e-7 * (1 + w))


def test_guided_samples_keep_the_components_mean_and_sharpen_its_spread():
    """Mean and std on the exact mixture: guided by itself (D₀ = D₁) the samples are component c's Gaussian
    (mean μ_c, std s_c) at any w; guided away from a blurrier D₀ they stay centred on μ_c, with a smaller std."""
    n, c = 600, torch.full((600,), 1)
    ddim = difftk.create("sampler", "ddim")

    def moments(guide, w):
        x = generate(AutoguidedDenoiser(strong(), guide, w, SCHEDULE), SCHEDULE, ddim, (2,), n, steps=50, cond=c, seed=2)
        return x.double().mean(0), x.double().std(0)

    mean, std = moments(strong(), 3.0)
    assert torch.allclose(mean, MEANS[1], atol=4 * STDS[1] / n**0.5)
    assert torch.allclose(std, torch.full((2,), STDS[1], dtype=torch.float64), rtol=0.12)
    mean, std = moments(weak(), 2.0)
    assert torch.allclose(mean, MEANS[1], atol=4 * STDS[1] / n**0.5)
    assert float(std.max()) < 0.85 * STDS[1]


def test_agrees_with_diffusers_auto_guidance():
    """diffusers' AutoGuidance combines pred_cond (D₁) and pred_uncond (its weakened pass, here D₀) as
    pred_u + γ·(pred_c − pred_u), γ = 1 + w; equal to 1e-6 in float64 on the same predictions."""
    from diffusers.guiders import AutoGuidance

    g = torch.Generator().manual_seed(0)
    C, U = (torch.randn((3, 2, 4, 4), generator=g, dtype=torch.float64) for _ in range(2))

    class Table(torch.nn.Module):
        prediction, num_classes, learned_variance = "eps", K, False

        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x_t, t, cond=None):
            return self.out

    x = torch.zeros_like(C)
    for w in (0.5, 2.0, 5.0):
        with torch.no_grad():
            ours = AutoguidedDenoiser(Table(C), Table(U), w, SCHEDULE)(x, torch.full((3,), 0.5), cond=torch.arange(3))
        theirs = AutoGuidance(guidance_scale=1 + w, auto_guidance_layers=[0], dropout=1.0).forward(C, U).pred
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


# --- the shipped weaker companion ------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow():
    return difftk.load("mnist-flow")


def test_guides_mnist_flow_with_its_shipped_weaker_companion(flow):
    guidance = difftk.create("guidance", "autoguidance", guide="mnist-flow-weak", scale=1.0)
    check_guidance(guidance, flow.schedule, denoiser=flow.denoiser, shape=(2, 1, 28, 28))
    x = flow.sample(2, steps=2, guidance=guidance, labels=[3, 7])
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()


@pytest.mark.parametrize("guide,message", [("mnist-cfg", "another noise schedule"), ("no-such-model", "no-such-model")])
def test_a_guide_of_another_schedule_or_none_is_refused_in_one_line(flow, guide, message):
    with pytest.raises(DifftkError) as err:
        difftk.create("guidance", "autoguidance", guide=guide).wrap(flow.denoiser, flow.schedule)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_guide_of_other_classes_is_refused_in_one_line():
    class Unconditional(torch.nn.Module):
        prediction, num_classes = "eps", 0

    with pytest.raises(IncompatibleError, match="conditioned on 0 classes and the model on 3"):
        AutoguidedDenoiser(strong(), Unconditional(), 1.0, SCHEDULE)
