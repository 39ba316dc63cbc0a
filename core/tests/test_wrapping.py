"""DenoiserWrapper: a wrapper answers the Denoiser protocol's declared attributes as the wrapped
denoiser does, and acts on the prediction channels only, keeping a learned variance's."""

import torch
from difftk.components.protocols import learned_variance_of, num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.testing import TinyDenoiser
from difftk.testing.reference import WithLearnedVariance


class Doubled(DenoiserWrapper):
    def transform(self, x_t, t, cond=None):
        pred, var = self.inner_output(x_t, t, cond)
        return 2 * pred, var


def test_a_wrapper_carries_the_declared_attributes():
    inner = WithLearnedVariance(TinyDenoiser(in_channels=2, num_classes=7, prediction="v"), fill=0.25)
    wrapped = Doubled(inner)
    assert (wrapped.prediction, num_classes_of(wrapped), learned_variance_of(wrapped)) == ("v", 7, True)
    plain = Doubled(TinyDenoiser(in_channels=2))
    assert (plain.prediction, num_classes_of(plain), learned_variance_of(plain)) == ("eps", 0, False)


def test_only_the_prediction_channels_are_transformed():
    torch.manual_seed(0)
    inner = WithLearnedVariance(TinyDenoiser(in_channels=2, num_classes=3), fill=0.25)
    x, t, y = torch.randn(5, 2, 4, 4), torch.rand(5), torch.arange(5) % 3
    out, ref = Doubled(inner)(x, t, cond=y), inner(x, t, cond=y)
    assert out.shape == ref.shape == (5, 4, 4, 4)
    torch.testing.assert_close(out[:, :2], 2 * ref[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2:], ref[:, 2:], rtol=0, atol=0)


def test_the_base_passes_the_output_through():
    inner = TinyDenoiser(in_channels=1)
    x, t = torch.randn(3, 1, 2, 2), torch.rand(3)
    assert torch.equal(DenoiserWrapper(inner)(x, t), inner(x, t))
