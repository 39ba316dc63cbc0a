"""classifier-score: the Inception Score recipe's bounds and extremes, then real digits, noise and the shipped model."""

import math

import pytest
import torch
from difftk.errors import OptionError
from difftk_metrics.classifier_score import classifier_score, split_scores
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(2, 10), st.floats(0.1, 20))
def test_the_score_lies_between_one_and_the_number_of_classes(seed, n, k, temperature):
    logits = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * temperature
    score = classifier_score(logits)
    assert 1 - 1e-12 <= score <= k * (1 + 1e-12)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    assert classifier_score(logits[perm]) == pytest.approx(score, rel=1e-12)


def test_confident_balanced_labels_score_k_and_one_repeated_label_scores_one():
    confident = torch.eye(10, dtype=torch.float64).repeat(3, 1) * 100  # each class 3 times, p(y|x) ≈ one-hot
    assert classifier_score(confident) == pytest.approx(10, rel=1e-9)
    assert classifier_score(confident[::10]) == pytest.approx(1, rel=1e-9)  # always class 0
    assert classifier_score(torch.zeros(5, 10)) == pytest.approx(1, rel=1e-12)  # no confidence at all


def test_the_score_is_exp_of_the_entropy_gap():
    """E_x KL(p(y|x) ‖ p(y)) = H(p(y)) − E_x H(p(y|x))."""
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = logits.softmax(1)
    entropy = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    assert classifier_score(logits) == pytest.approx(math.exp(entropy(p.mean(0)) - entropy(p).mean()), rel=1e-12)
    assert split_scores(logits, 5).tolist() == pytest.approx([classifier_score(logits[i:i + 10]) for i in range(0, 50, 10)])


# --- on digits ------------------------------------------------------------------------------------


def test_real_digits_score_near_ten_and_noise_near_one(digits, measure_images):
    """The held-out digits come in classes 0, 1, …, 9, 0, … as a class-conditional model draws them,
    so each split of 50 holds 5 of each: ≈ 9.8. In a random order each split's p(y) is a multinomial
    draw of 50, less even, and the score lower (≈ 9.2)."""
    *_, test_x, _ = digits
    balanced = measure_images("classifier-score", test_x)
    shuffled = measure_images("classifier-score", test_x[torch.randperm(500, generator=torch.Generator().manual_seed(0))])
    noise = measure_images("classifier-score", torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert balanced.value > 9.6 and balanced.spread > 0 and balanced.n == 500 and not balanced.caveat
    assert 8.5 < shuffled.value < balanced.value
    assert noise.value < 1.1
    assert balanced.spread_kind == "standard error over 10 splits"


def test_the_shipped_model_scores_like_real_digits(measure_images, shipped_samples):
    """200 samples in 4 splits of 50, as the real digits' splits above."""
    result = measure_images("classifier-score", shipped_samples, splits=4)
    assert 9.0 < result.value <= 10 and result.spread > 0 and not result.caveat


def test_small_splits_score_lower_and_say_so(digits, measure_images):
    *_, test_x, _ = digits
    small = measure_images("classifier-score", test_x[torch.randperm(500, generator=torch.Generator().manual_seed(0))[:200]])
    assert "20 samples per split is biased low" in small.caveat and "n ≥ 500" in small.caveat
    assert small.value < 9


def test_too_few_samples_for_the_splits_is_one_line(digits, measure_images):
    *_, test_x, _ = digits
    with pytest.raises(OptionError, match=r"n=15 is too few for splits=10: give n ≥ 20"):
        measure_images("classifier-score", test_x[:15])
    assert measure_images("classifier-score", test_x[:20], splits=1).value > 1
