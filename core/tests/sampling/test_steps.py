"""difftk.sampling.steps.predict with a denoiser that gives x̂₀ and ε̂ from two outputs (``split_output``),
and the sampler declaration that step on them (``renoise``)."""

import difftk
import torch
from difftk.components.protocols import renoise_of
from difftk.maths.diffusion import eps_and_x0
from difftk.sampling.steps import predict


class Split(torch.nn.Module):
    """Outputs A·x for x̂₀ and B·x for ε̂ (v-parameterised), to tell the two apart."""

    prediction, num_classes, learned_variance = "v", 0, False

    def forward(self, x_t, t, cond=None):
        return 2.0 * x_t

    def split_output(self, x_t, t, cond=None):
        return 2.0 * x_t, -0.5 * x_t, None


def test_predict_reads_x0_and_eps_from_the_two_outputs_and_clipping_keeps_that_eps():
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.full((4,), 0.4, dtype=torch.float64)
    pred = predict(Split(), x, t, 0.3)
    _, x0 = eps_and_x0("v", 2.0 * x, x, 0.3)
    eps, _ = eps_and_x0("v", -0.5 * x, x, 0.3)
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-15)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-15)
    clipped = predict(Split(), x, t, 0.3, clip_x0=0.1)
    assert float(clipped.x0.abs().max()) <= 0.1
    torch.testing.assert_close(clipped.eps, eps, rtol=0, atol=1e-15)


def test_only_ddim_declares_that_it_renoises_x0_with_eps():
    declared = [name for name in difftk.available("sampler") if renoise_of(difftk.create("sampler", name))]
    assert declared == ["ddim"]
