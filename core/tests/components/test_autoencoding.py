"""The first stage's maths in the core: the diagonal Gaussian posterior, the scaling
z_scaled = (z − shift)·scale and its inverse, the Autoencoder protocol and its conformance check."""

import math

import attrs
import difftk
import pytest
import torch
from difftk.components.autoencoding import (
    AutoencoderBase,
    LatentDistribution,
    from_latent,
    posterior,
    space_shape,
    to_latent,
)
from difftk.components.registry import Registrar, RegistrationError
from difftk.options import option
from difftk.testing import ConformanceError, ReferenceAutoencoder, check_autoencoder
from difftk.testing.reference import ReferenceAutoencoderConfig
from hypothesis import given, settings
from hypothesis import strategies as st

SHAPE = (2, 8, 8)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-3, 3), st.floats(-4, 2))
def test_kl_is_the_closed_form_of_torch_distributions(seed, m, lv):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn((3, 2, 2), generator=g, dtype=torch.float64) + m
    logvar = torch.randn((3, 2, 2), generator=g, dtype=torch.float64) + lv
    q = LatentDistribution(mean, logvar)
    p = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(p, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(q.kl(), expected, rtol=1e-10, atol=1e-10)


def test_a_draw_is_mean_plus_sigma_times_the_generators_noise():
    mean, logvar = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    q = LatentDistribution(mean, logvar)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(q.sample(torch.Generator().manual_seed(7)), mean + (0.5 * logvar).exp() * eps)


def test_a_tensor_is_a_posterior_without_variance():
    z = torch.randn(2, 3, 4, 4)
    q = posterior(z)
    assert torch.equal(q.mean, z) and float(q.std.max()) < 1e-6
    with pytest.raises(difftk.IncompatibleError, match="LatentDistribution"):
        posterior("not a latent")


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 20), st.floats(-2, 2), st.sampled_from([1, 2, 4]))
def test_scaling_is_applied_then_undone_exactly(scale, shift, f):
    ae = ReferenceAutoencoder(ReferenceAutoencoderConfig(factor=f, scale=scale, shift=shift))
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = to_latent(ae, x)
    torch.testing.assert_close(z, (torch.nn.functional.pixel_unshuffle(x, f) - shift) * scale)
    torch.testing.assert_close(from_latent(ae, z), x, rtol=1e-5, atol=1e-5)
    assert space_shape(ae, SHAPE) == (2 * f * f, 8 // f, 8 // f) and space_shape(None, SHAPE) == SHAPE


def test_a_sampled_latent_has_the_posteriors_spread():
    ae = ReferenceAutoencoder()
    x = torch.zeros(512, *SHAPE)
    z = to_latent(ae, x, torch.Generator().manual_seed(0), sample=True)
    # z = (mean + 0.01 ε − shift)·scale: the spread is 0.01·scale about −shift·scale
    assert abs(float(z.std()) - 0.01 * ae.scale) < 0.001 and abs(float(z.mean()) + ae.shift * ae.scale) < 0.001


def test_the_reference_autoencoder_passes_the_conformance_check():
    check_autoencoder(ReferenceAutoencoder(), SHAPE)


class LyingShape(ReferenceAutoencoder):
    def latent_shape(self, data_shape):
        return (1, *data_shape[1:])


class IgnoresBatch(ReferenceAutoencoder):
    def encode(self, x):
        q = super().encode(x)
        return LatentDistribution(q.mean + x.mean(), q.logvar)


class BadScale(ReferenceAutoencoder):
    def __init__(self):
        super().__init__()
        self.scale = -1.0


class Unfinished(ReferenceAutoencoder):
    def decode(self, z):
        return super().decode(z) * math.inf


@pytest.mark.parametrize(
    "broken, message",
    [
        (LyingShape, "promises"),
        (IgnoresBatch, "alone than in a batch"),
        (BadScale, "scale = -1.0"),
        (Unfinished, "not finite"),
    ],
)
def test_the_conformance_check_fails_a_broken_autoencoder(broken, message):
    with pytest.raises(ConformanceError, match=message):
        check_autoencoder(broken(), SHAPE)


def test_registration_holds_an_autoencoder_to_its_protocol():
    @attrs.frozen
    class Options:
        size: int = option(1, help="a size")

    class NoDecode(torch.nn.Module):
        Config = Options

        def encode(self, x):
            return x

        def latent_shape(self, data_shape):
            return data_shape

    with pytest.raises(RegistrationError, match=r"no method decode\(z\)"):
        Registrar("test").add_autoencoder("no-decode", NoDecode)


def test_an_autoencoder_is_built_frozen(register_plugin):
    import difftk.testing.toys as toys

    assert register_plugin(toys, "toys")
    ae = difftk.create("autoencoder", "blocks", factor=4)
    assert not ae.training and not any(p.requires_grad for p in ae.parameters())
    assert difftk.available("autoencoder") == sorted(set(difftk.available("autoencoder")) | {"blocks"})


class StridedConv(AutoencoderBase):
    """An autoencoder that says nothing of its latent shape: the base class reads it from an encode on meta."""

    def __init__(self):
        super().__init__()
        self.down, self.up = torch.nn.Conv2d(2, 6, 3, stride=2, padding=1), torch.nn.ConvTranspose2d(3, 2, 2, stride=2)

    def encode(self, x):
        mean, logvar = self.down(x).chunk(2, dim=1)
        return LatentDistribution(mean, logvar)

    def decode(self, z):
        return self.up(z)


@pytest.mark.parametrize("shape", [(2, 8, 8), (2, 6, 10)])
def test_the_base_class_reads_the_latent_shape_without_computing(shape):
    ae = StridedConv()
    assert ae.latent_shape(shape) == tuple(ae.encode(torch.zeros(1, *shape)).mean.shape[1:])
    assert ae.down.weight.device.type == "cpu" and (ae.scale, ae.shift) == (1.0, 0.0)
    check_autoencoder(ae, (2, 8, 8))


def test_the_base_gives_no_encode_or_decode_so_registration_names_the_missing_one():
    from difftk.components.protocols import protocol_problem

    class EncodeOnly(AutoencoderBase):
        def encode(self, x):
            return x

    assert protocol_problem("autoencoder", EncodeOnly) == "it has no method decode(z) (Autoencoder protocol)"
