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


class Counting(DenoiserWrapper):
    """Counts its calls within a draw, as APG's momentum or CFG-Zero*'s zero-init do."""

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def transform(self, x_t, t, cond=None):
        self.calls += 1
        return self.inner_output(x_t, t, cond)


def test_reset_all_reaches_nested_wrappers_and_the_core_resets_before_every_batch():
    import difftk
    from difftk.components.wrapping import reset_all
    from difftk.sampling.draw import generate
    from difftk.testing import ReferenceLinearSchedule

    inner = Counting(TinyDenoiser())
    outer = Doubled(inner)
    inner.calls = 5
    reset_all(outer)
    assert inner.calls == 0
    seen = []
    sampler = difftk.create("sampler", "ddim")
    generate(outer, ReferenceLinearSchedule(T=100), sampler, (1, 3, 3), 6, steps=4, batch_size=3,
             callback=lambda batch, info: seen.append((batch, inner.calls)) if info.index == 0 else None)
    assert seen == [(0, 1), (1, 1)]  # each batch's first step is the first call of its draw
