"""The Fréchet distance is exact to round-off with singular covariances: against a 30-digit reference
(mpmath, the textbook symmetric form) on covariances of any rank, dead units included."""

import math

import pytest
import torch
from difftk.maths.stats import frechet_distance, psd_factor, sqrtm_psd
from difftk.testing.precise import frechet_distance_precise, moments_precise
from hypothesis import example, given, settings
from hypothesis import strategies as st


@st.composite
def singular_gaussians(draw):
    """(μ₁, Σ₁, μ₂, Σ₂) in D ≤ 6 dimensions with Σᵢ = LᵢLᵢᵀ of any rank 0..D: small-integer factors, so
    that Σᵢ is exact in float64 and exactly singular; a zero row of Lᵢ is a dead unit."""
    d = draw(st.integers(1, 6))
    entries = st.integers(-2, 2)

    def gaussian():
        rank = draw(st.integers(0, d))
        factor = torch.tensor(draw(st.lists(st.lists(entries, min_size=rank, max_size=rank), min_size=d, max_size=d)),
                              dtype=torch.float64).reshape(d, rank)
        mu = torch.tensor(draw(st.lists(st.integers(-3, 3), min_size=d, max_size=d)), dtype=torch.float64) / 4
        return mu, factor @ factor.T

    return (*gaussian(), *gaussian())


@settings(max_examples=60, deadline=5000)
@given(singular_gaussians())
@example((torch.zeros(3), torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64)), torch.zeros(3),
          torch.diag(torch.tensor([0.0, 1.0, 9.0], dtype=torch.float64))))  # disjoint dead units: d² = 4 + 9
def test_frechet_distance_of_singular_covariances_is_the_high_precision_value(gaussians):
    """|d² − d²_ref| ≤ 1e-12 × (tr Σ₁ + tr Σ₂ + ‖μ₁ − μ₂‖²): round-off of the terms d² is a difference of.
    The square root of a product with round-off eigenvalues (√ε ≈ 1e-8 relative) would fail this."""
    mu1, sigma1, mu2, sigma2 = gaussians
    got = frechet_distance(mu1, sigma1, mu2, sigma2)
    ref = frechet_distance_precise(mu1.numpy(), sigma1.numpy(), mu2.numpy(), sigma2.numpy())
    scale = float(torch.trace(sigma1) + torch.trace(sigma2) + (mu1 - mu2).square().sum())
    assert abs(got - ref) <= 1e-12 * scale + 1e-300, (got, ref)


def test_frechet_distance_of_rank_2_covariances_sharing_one_direction_is_the_closed_form():
    """Σ₁ = 3e₁e₁ᵀ + e₂e₂ᵀ and Σ₂ = 2e₂e₂ᵀ + 5e₃e₃ᵀ in 6 dimensions (a random orthonormal basis e):
    Σ₁^½Σ₂Σ₁^½ = 2e₂e₂ᵀ, so d² = 4 + 7 − 2√2. Rounded to float64, Σ₁ and Σ₂ have eigenvalues of order
    1e-16 where the ideal ones are 0: clamped as round-off, they leave the closed form to 1e-13 (taken as
    exact, as the 30-digit reference takes its inputs, they moved it by 2e-9 on the machine this was
    written on: the reason the property above draws exactly singular matrices)."""
    g = torch.Generator().manual_seed(0)
    e, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    sigma1 = 3 * torch.outer(e[:, 0], e[:, 0]) + torch.outer(e[:, 1], e[:, 1])
    sigma2 = 2 * torch.outer(e[:, 1], e[:, 1]) + 5 * torch.outer(e[:, 2], e[:, 2])
    mu = torch.zeros(6, dtype=torch.float64)
    exact = 11 - 2 * math.sqrt(2)
    assert math.isclose(frechet_distance(mu, sigma1, mu, sigma2), exact, rel_tol=1e-13)
    assert psd_factor(sigma1).shape == (6, 2) and psd_factor(torch.zeros(3, 3)).shape == (3, 0)
    assert torch.allclose(sqrtm_psd(sigma1) @ sqrtm_psd(sigma1), sigma1, atol=1e-14)


@pytest.mark.parametrize("n", [3, 40])
def test_extended_precision_moments_are_the_float64_moments_to_round_off(n):
    from difftk.maths.stats import moments

    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(n), dtype=torch.float32)
    mu, sigma = moments(x)
    mu_l, sigma_l = moments_precise(x)
    assert torch.allclose(mu, torch.from_numpy(mu_l.astype("float64")), rtol=0, atol=1e-15)
    assert torch.allclose(sigma, torch.from_numpy(sigma_l.astype("float64")), rtol=1e-14, atol=1e-15)
