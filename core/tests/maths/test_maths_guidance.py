"""difftk.maths.guidance as identities: the projection splits a vector exactly, rescale restores the
std, s* is the least-squares scale, the interval is the σ range, APG reduces to cfg."""

import torch
from difftk.maths.guidance import apg, cfg_zero_star, extrapolate, in_interval, project, rescale, sigma_of, zero_star_scale
from hypothesis import given, settings
from hypothesis import strategies as st

quick = settings(max_examples=30, deadline=None)


def tensors(seed, batch=3, shape=(2, 3)):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((batch, *shape), generator=g, dtype=torch.float64) for _ in range(2))


@quick
@given(seed=st.integers(0, 2**31 - 1))
def test_project_splits_v0_into_a_part_along_v1_and_one_orthogonal_to_it(seed):
    v0, v1 = tensors(seed)
    parallel, orthogonal = project(v0, v1)
    torch.testing.assert_close(parallel + orthogonal, v0, rtol=0, atol=1e-12)
    assert torch.all((orthogonal * v1).flatten(1).sum(1).abs() < 1e-12)
    ratio = (parallel.flatten(1) / v1.flatten(1))  # parallel is a multiple of v1, per example
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-9, atol=1e-12)


@quick
@given(seed=st.integers(0, 2**31 - 1), phi=st.floats(0.0, 1.0))
def test_rescale_at_phi_one_has_the_conditional_std_and_is_linear_in_phi(seed, phi):
    guided, cond = tensors(seed)
    guided = 3 * guided
    full = rescale(guided, cond, 1.0)
    torch.testing.assert_close(full.flatten(1).std(1), cond.flatten(1).std(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(rescale(guided, cond, phi), phi * full + (1 - phi) * guided, rtol=1e-12, atol=1e-12)


@quick
@given(seed=st.integers(0, 2**31 - 1), w=st.floats(0.0, 8.0))
def test_s_star_is_the_least_squares_scale_and_zero_star_with_s_one_is_cfg(seed, w):
    v_c, v_u = tensors(seed)
    s = zero_star_scale(v_c, v_u)
    for nudge in (-1e-4, 1e-4):
        assert torch.all(((v_c - s * v_u) ** 2).flatten(1).sum(1) <= ((v_c - (s + nudge) * v_u) ** 2).flatten(1).sum(1))
    torch.testing.assert_close(cfg_zero_star(v_c, v_u, w), s * v_u + (1 + w) * (v_c - s * v_u), rtol=1e-12, atol=1e-12)
    aligned = 2.5 * v_c  # v_u ∥ v_c: s*·v_u = v_c, so the guided velocity is v_c whatever w
    torch.testing.assert_close(cfg_zero_star(v_c, aligned, w), v_c, rtol=1e-9, atol=1e-9)
    assert torch.equal(zero_star_scale(v_c, torch.zeros_like(v_u)), torch.zeros_like(s))


@quick
@given(seed=st.integers(0, 2**31 - 1), w=st.floats(0.0, 8.0))
def test_apg_with_eta_one_and_no_threshold_is_cfg(seed, w):
    D_c, D_u = tensors(seed)
    torch.testing.assert_close(apg(D_c, D_c - D_u, w, 1.0, 0.0), extrapolate(D_c, D_u, w), rtol=1e-10, atol=1e-10)


@quick
@given(seed=st.integers(0, 2**31 - 1), r=st.floats(0.01, 5.0), w=st.floats(0.1, 8.0))
def test_apg_threshold_bounds_the_update(seed, r, w):
    D_c, D_u = tensors(seed)
    update = (apg(D_c, D_c - D_u, w, 1.0, r) - D_c).flatten(1).norm(dim=1)
    assert torch.all(update <= w * r * (1 + 1e-9))


def test_in_interval_is_the_half_open_sigma_range():
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 8.0], dtype=torch.float64)
    alpha_bar = 1 / (1 + sigma**2)
    torch.testing.assert_close(sigma_of(alpha_bar), sigma, rtol=1e-12, atol=0)
    assert in_interval(alpha_bar, (0.5, 2.0)).tolist() == [False, False, True, True, False]
    assert in_interval(alpha_bar, None).all()
