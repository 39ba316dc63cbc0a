"""kid: the unbiased MMD² and its standard error against brute force, then its sanity on real digits,
the shipped model and noise."""

import math

import difftk
import pytest
import torch
from difftk.evaluation.compare import context_for, held_out_data
from difftk.model import load
from difftk_metrics.kid import kernel_distance, polynomial_kernel
from hypothesis import given, settings
from hypothesis import strategies as st


def mmd2_unbiased(x, y):
    """Gretton et al. 2012, eq. 3, written out with the whole kernel matrices."""
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean())


def two_sets(seed, n, m, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(m, d, generator=g, dtype=torch.float64) * 1.5 + shift)


# --- the maths ------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 12), st.integers(3, 12), st.integers(1, 6))
def test_the_complete_statistic_and_its_jackknife_agree_with_brute_force(seed, n, m, d):
    x, y = two_sets(seed, n, m, d, shift=0.5)
    kd = kernel_distance(x, y, subsets=3)
    assert kd.complete == pytest.approx(mmd2_unbiased(x, y), rel=1e-9, abs=1e-9)
    drop_x = torch.tensor([mmd2_unbiased(torch.cat([x[:i], x[i + 1:]]), y) for i in range(n)], dtype=torch.float64)
    drop_y = torch.tensor([mmd2_unbiased(x, torch.cat([y[:j], y[j + 1:]])) for j in range(m)], dtype=torch.float64)
    variance = (n - 1) / n * (drop_x - drop_x.mean()).square().sum() + (m - 1) / m * (drop_y - drop_y.mean()).square().sum()
    assert kd.jackknife_se == pytest.approx(math.sqrt(variance), rel=1e-7, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 10))
def test_sets_used_whole_give_the_complete_statistic_and_no_subset_spread(seed, n):
    """With m = n = N every subset is the whole set: the mean is the complete statistic, the subsets'
    standard deviation is 0 and the standard error is the jackknife's alone."""
    x, y = two_sets(seed, n, n, 3)
    kd = kernel_distance(x, y, subsets=5, subset_size=1000)
    assert kd.subset_size == n and kd.subset_std == pytest.approx(0, abs=1e-9)
    assert kd.value == pytest.approx(kd.complete, rel=1e-9, abs=1e-9)
    assert kd.standard_error == pytest.approx(kd.jackknife_se, rel=1e-9)


def test_each_subset_value_is_the_unbiased_mmd2_of_its_subsets():
    """Subsets of m = 4 of 9 and 4 of 7: the mean of brute-force MMD²s over the same subsets."""
    import difftk_metrics.kid as kid

    x, y = two_sets(3, 9, 7, 2, shift=1.0)
    kd = kernel_distance(x, y, subsets=6, subset_size=4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    px, py = kid._indicators(9, 4, 6, g), kid._indicators(7, 4, 6, g)
    values = torch.tensor([mmd2_unbiased(x[px[s].bool()], y[py[s].bool()]) for s in range(6)], dtype=torch.float64)
    assert px.sum(1).eq(4).all() and py.sum(1).eq(4).all()
    assert kd.value == pytest.approx(float(values.mean()), rel=1e-9) and kd.subset_std == pytest.approx(float(values.std()))
    assert kd.standard_error == pytest.approx(math.sqrt(kd.jackknife_se**2 + kd.subset_std**2 / 6), rel=1e-9)


def test_kid_of_two_samples_of_one_distribution_is_zero_on_average():
    """Over 200 pairs of small samples of one Gaussian the mean KID is 0 within its standard error."""
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([kernel_distance(torch.randn(8, 2, generator=g, dtype=torch.float64),
                                           torch.randn(8, 2, generator=g, dtype=torch.float64), subsets=1).complete
                           for _ in range(200)], dtype=torch.float64)
    assert abs(float(values.mean())) < 2 * float(values.std()) / math.sqrt(200)
    assert (values < 0).any()  # an unbiased estimator of a quantity that is 0 goes below it


def test_the_kernel_is_the_cubic_polynomial_of_the_paper():
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0], [0.0, 0.0]])
    assert polynomial_kernel(x, y).tolist() == [[(1 / 2 + 1) ** 3, 1.0]]


# --- on digits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 1000])
def test_real_digits_against_the_held_out_split_are_within_one_standard_error_of_zero(digits, measure_images, n):
    train_x, *_ = digits
    chosen = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(n))[:n]]
    result = measure_images("kid", chosen)
    assert result.n == n and result.spread > 0 and not result.caveat
    assert abs(result.value) < result.spread, (result.value, result.spread)
    assert result.details["subsets"] == f"100 of {min(n, 500)}" and "500 images" in result.details["reference"]


def test_kid_orders_real_digits_below_the_shipped_model_below_noise(digits, measure_images):
    """At n = 200, each gap several standard errors wide. The model is the shipped one drawn in 1
    DDIM step (x̂₀ at t = 1: a blurred digit of the class); with 10 steps see the next test."""
    train_x, *_ = digits
    g = torch.Generator().manual_seed(0)
    real = measure_images("kid", train_x[torch.randperm(len(train_x), generator=g)[:200]])
    noise = measure_images("kid", torch.rand(200, 1, 28, 28, generator=g) * 2 - 1)
    model = load("mnist-cfg")
    context = context_for(model, held_out_data(model.data)[0], guidance="cfg", guidance_options={"scale": "0"}, steps=1)
    blurred = difftk.create("metric", "kid", n=200).evaluate(context)
    assert real.value + 2 * real.spread < blurred.value - 2 * blurred.spread, (real, blurred)
    assert blurred.value + 2 * blurred.spread < noise.value - 2 * noise.spread, (blurred, noise)


def test_the_shipped_model_at_ten_steps_is_as_close_as_real_digits(measure_images, shipped_samples):
    """With 10 DDIM steps (unguided) the shipped model's KID is within 2 standard errors of 0 at n = 200."""
    result = measure_images("kid", shipped_samples)
    assert abs(result.value) < 2 * result.spread, result


def test_kid_is_seeded_and_warns_at_small_n(digits, measure_images):
    train_x, *_ = digits
    a, b, c = (measure_images("kid", train_x[:200], seed=s, subset_size=150) for s in (0, 0, 1))
    assert a.value == b.value and a.spread == b.spread and a.value != c.value
    small = measure_images("kid", train_x[:30])
    assert "kid at n = 30" in small.caveat and "n ≥ 50" in small.caveat


def test_the_standard_error_is_calibrated_on_real_digits(digits, mnist):
    """Over 20 draws of 100 training digits against the held-out split, z = KID/SE falls within ±1
    at least 14 times and within ±2 at least 19 times, and its spread is that of a standard error
    (0.4–1.2; it is conservative: the jackknife's variance is biased upward, Efron & Stein 1981)."""
    from difftk_metrics.network import embed

    train_x, *_ = digits
    pool, _ = embed(train_x[:1500])
    reference, _ = embed(mnist[1].batch(torch.arange(500))[0])
    z = []
    for seed in range(20):
        chosen = torch.randperm(1500, generator=torch.Generator().manual_seed(seed))[:100]
        kd = kernel_distance(pool[chosen], reference, generator=torch.Generator().manual_seed(seed))
        z.append(kd.value / kd.standard_error)
    z = torch.tensor(z)
    assert (z.abs() < 1).sum() >= 14 and (z.abs() < 2).sum() >= 19, z
    assert 0.4 < float(z.std()) < 1.2, z
