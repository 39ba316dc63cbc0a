"""precision-recall: k-NN manifolds against brute force, then real digits, and real digits missing classes."""

import pytest
import torch
from difftk.errors import OptionError
from difftk_metrics.precision_recall import inside, knn_radii, precision_recall
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(4, 30), st.integers(1, 3))
def test_knn_radii_are_the_kth_smallest_distance_to_another_point(seed, n, k):
    phi = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    brute = torch.tensor([sorted(float((phi[i] - phi[j]).norm()) for j in range(n) if j != i)[k - 1] for i in range(n)],
                         dtype=torch.float64)
    assert torch.allclose(knn_radii(phi, k), brute, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 30))
def test_a_set_covers_itself_and_not_a_far_away_set(seed, n):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, 4, generator=g, dtype=torch.float64)
    assert precision_recall(phi, phi, k=3) == (1.0, 1.0)  # every point is the centre of a ball
    far = torch.randn(n, 4, generator=g, dtype=torch.float64) + 100
    assert precision_recall(far, phi, k=3) == (0.0, 0.0)


def test_a_point_on_a_ball_boundary_is_inside():
    phi = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    radii = knn_radii(phi, 1)  # both 1
    assert inside(torch.tensor([[0.0, 1.0], [2.0, 0.0], [2.5, 0.0]]), phi, radii).tolist() == [True, True, False]


def test_a_subset_of_modes_keeps_precision_and_loses_recall():
    """Samples drawn from 2 of 4 well-separated clusters: all of them are real-looking, half the data is missed."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)
    real = centres[torch.arange(400) % 4] + torch.randn(400, 2, generator=g, dtype=torch.float64)
    fake = centres[torch.arange(400) % 2] + torch.randn(400, 2, generator=g, dtype=torch.float64)
    p, r = precision_recall(fake, real, k=3)
    assert p > 0.95 and 0.4 < r < 0.55


# --- on digits ------------------------------------------------------------------------------------


def test_real_digits_have_high_precision_and_recall(digits, measure_images):
    train_x, *_ = digits
    result = measure_images("precision-recall", train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:500]])
    assert result.name == "precision-recall" and result.n == 500 and not result.caveat
    assert result.value == result.details["precision"] > 0.75 and result.details["recall"] > 0.75, result.details
    assert result.spread == pytest.approx((result.value * (1 - result.value) / 500) ** 0.5)


def test_dropping_half_the_classes_loses_recall_and_keeps_precision(digits, measure_images):
    """500 training digits of classes 0–4 only, against 500 of all ten: the held-out digits 5–9 are
    outside the samples' manifold (recall falls by ≥ 0.3), while every sample still looks real."""
    train_x, train_y, *_ = digits
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    full = measure_images("precision-recall", train_x[order[:500]])
    half = measure_images("precision-recall", train_x[order[train_y[order] < 5][:500]])
    assert half.details["recall"] < full.details["recall"] - 0.3, (full.details, half.details)
    assert half.details["recall"] < 0.6
    assert half.value > full.value - 0.05, (full.details, half.details)


def test_sets_of_unequal_size_are_compared_at_equal_size(digits, measure_images):
    train_x, *_ = digits
    result = measure_images("precision-recall", train_x[:800])
    assert result.n == 500 and "500 of the 800 samples were used" in result.caveat
    assert "cannot see missing variety" in measure_images("precision-recall", train_x[:30]).caveat
    assert "500 images" in result.details["reference"]
    with pytest.raises(OptionError, match=r"k=20 needs more than k samples.*give k < 15"):
        measure_images("precision-recall", train_x[:15], k=20)
