"""Student's t, its confidence intervals and Welch's test (difftk.maths.stats), and the statistics
`compare` reports with them (difftk.evaluation.summary.summarize).

Oracles: published table values, the closed forms of the t distribution for 1 and 2 degrees of
freedom and of I_x(a, b) for integer a, b (a binomial tail), the normal limit, and the density
integrated numerically — none of which shares code with the continued fraction under test."""

import math
import random

import pytest
from difftk.errors import OptionError
from difftk.evaluation.compare import GridRow
from difftk.evaluation.context import MetricResult
from difftk.evaluation.summary import summarize
from difftk.maths.stats import (
    mean_confidence_interval,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
    student_t_two_sided_p,
    welch_t_test,
)
from hypothesis import example, given
from hypothesis import strategies as st


def t_values(limit: float = 50.0) -> st.SearchStrategy[float]:
    """t ∈ [−limit, limit]: beyond it the tails are below 1e-10 for the df drawn here."""
    return st.floats(min_value=-limit, max_value=limit, allow_nan=False)


def degrees_of_freedom() -> st.SearchStrategy[float]:
    """ν ∈ [0.5, 10⁵], integers and not (Welch's ν is real)."""
    return st.one_of(st.integers(min_value=1, max_value=200).map(float), st.floats(min_value=0.5, max_value=1e5))


def t_density(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def simpson_cdf(t: float, df: float, intervals: int = 2000) -> float:
    """½ + ∫₀ᵗ f(x) dx by Simpson's rule: an oracle independent of the incomplete beta function."""
    h = t / intervals
    total = t_density(0.0, df) + t_density(t, df)
    total += sum((4 if i % 2 else 2) * t_density(i * h, df) for i in range(1, intervals))
    return 0.5 + total * h / 3


# --- known values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("t, df, p", [
    (2.0, 10, 0.0734),       # the classic table example
    (2.228139, 10, 0.05),    # t_{0.975, 10}
    (12.706205, 1, 0.05),    # t_{0.975, 1}
    (2.042272, 30, 0.05),
    (3.169273, 10, 0.01),
    (1.959964, math.inf, 0.05),
    (0.0, 7, 1.0),
])
def test_two_sided_p_matches_the_tables(t, df, p):
    assert student_t_two_sided_p(t, df) == pytest.approx(p, abs=5e-5)
    assert student_t_two_sided_p(-t, df) == student_t_two_sided_p(t, df)


@pytest.mark.parametrize("p, df, t", [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 10, 2.2281),
                                      (0.975, 30, 2.0423), (0.995, 5, 4.0321), (0.95, 1e7, 1.6449)])
def test_quantiles_match_the_tables(p, df, t):
    assert student_t_quantile(p, df) == pytest.approx(t, abs=1e-4)
    assert student_t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-4)


@given(st.integers(1, 12), st.integers(1, 12), st.floats(0.0, 1.0))
@example(1, 1, 0.5)
@example(12, 1, 0.999)
def test_incomplete_beta_of_integers_is_a_binomial_tail(a, b, x):
    """I_x(a, b) = P(Bin(a+b−1, x) ≥ a) for integer a, b (A&S 26.5.24)."""
    n = a + b - 1
    tail = math.fsum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))
    assert regularized_incomplete_beta(a, b, x) == pytest.approx(tail, abs=1e-12)


def test_incomplete_beta_refuses_what_it_is_not_defined_for():
    for a, b, x in [(0, 1, 0.5), (1, -1, 0.5), (1, 1, 1.5), (1, 1, -0.1)]:
        with pytest.raises(ValueError):
            regularized_incomplete_beta(a, b, x)


# --- properties ------------------------------------------------------------------------------------


@given(t_values(), degrees_of_freedom())
@example(1e-9, 1e5)  # t² ≪ ν: where df/(df+t²) rounds to 1
def test_cdf_is_symmetric_and_a_probability(t, df):
    c = student_t_cdf(t, df)
    assert 0.0 <= c <= 1.0
    assert c + student_t_cdf(-t, df) == pytest.approx(1.0, abs=1e-12)


@given(t_values(), t_values(), degrees_of_freedom())
def test_cdf_is_monotone_in_t(a, b, df):
    lo, hi = sorted((a, b))
    assert student_t_cdf(lo, df) <= student_t_cdf(hi, df) + 1e-14


@given(st.floats(0.0, 20.0), st.floats(0.5, 200.0), st.floats(0.5, 200.0))
def test_tails_are_heavier_with_fewer_degrees_of_freedom(t, df1, df2):
    lo, hi = sorted((df1, df2))
    assert student_t_two_sided_p(t, lo) >= student_t_two_sided_p(t, hi) - 1e-12


@given(t_values(30.0))
def test_one_and_two_degrees_of_freedom_have_closed_forms(t):
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


@given(st.floats(-6.0, 6.0))
def test_tends_to_the_normal_as_df_grows(t):
    normal = 0.5 * math.erfc(-t / math.sqrt(2))
    errors = [abs(student_t_cdf(t, df) - normal) for df in (10.0, 1e3, 1e6)]
    assert errors[2] < 1e-6 and errors[2] <= errors[1] + 1e-12 <= errors[0] + 2e-12


@given(st.floats(-8.0, 8.0), st.floats(1.0, 60.0))
def test_cdf_agrees_with_the_density_integrated(t, df):
    assert student_t_cdf(t, df) == pytest.approx(simpson_cdf(t, df), abs=1e-9)


@given(st.floats(1e-6, 1 - 1e-6), degrees_of_freedom())
def test_quantile_inverts_the_cdf(p, df):
    assert student_t_cdf(student_t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)


# --- confidence intervals and Welch's test --------------------------------------------------------------


def test_confidence_interval_is_t_times_the_standard_error():
    mean, half = mean_confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_confidence_interval([5.0])[1])


def test_confidence_interval_covers_the_mean_95_percent_of_the_time():
    rng = random.Random(0)
    trials, k = 2000, 4
    covered = 0
    for _ in range(trials):
        mean, half = mean_confidence_interval([rng.gauss(3.0, 2.0) for _ in range(k)])
        covered += abs(mean - 3.0) <= half
    # a binomial(2000, 0.95) lies within ±4.5 standard deviations (±44) of 1900
    assert abs(covered - 0.95 * trials) < 4.5 * math.sqrt(trials * 0.95 * 0.05)


def test_welch_matches_a_worked_example():
    """R: t.test(c(1,2,3,4), c(2,4,6,8,10)): t = −2.2514, df = 5.5208, p = 0.06913."""
    w = welch_t_test([1, 2, 3, 4], [2, 4, 6, 8, 10])
    assert (w.t, w.df, w.p) == (pytest.approx(-2.2514, abs=1e-4), pytest.approx(5.5208, abs=1e-4),
                                pytest.approx(0.06913, abs=1e-5))


samples = st.lists(st.floats(-100, 100), min_size=2, max_size=8).filter(lambda v: max(v) - min(v) > 1e-3)


@given(samples, samples, st.floats(-50, 50))
def test_welch_is_antisymmetric_and_shift_invariant(x, y, c):
    w, back = welch_t_test(x, y), welch_t_test(y, x)
    assert back.t == pytest.approx(-w.t) and back.p == pytest.approx(w.p) and back.df == pytest.approx(w.df)
    shifted = welch_t_test([v + c for v in x], [v + c for v in y])
    assert shifted.p == pytest.approx(w.p, abs=1e-6)
    assert min(len(x), len(y)) - 1 - 1e-9 <= w.df <= len(x) + len(y) - 2 + 1e-9  # Satterthwaite's bounds


@given(samples)
def test_equal_sizes_and_variances_give_students_pooled_test(x):
    """With y = x reflected and shifted the variances and sizes are equal: Welch's t is Student's,
    on 2n − 2 degrees of freedom."""
    y = [10.0 - v for v in x]
    w = welch_t_test(x, y)
    n = len(x)
    assert w.df == pytest.approx(2 * n - 2)


def test_welch_without_spread_and_with_too_few_values():
    assert welch_t_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert welch_t_test([1.0, 1.0], [2.0, 2.0]).p == 0.0
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_t_test([1.0], [1.0, 2.0])


# --- what compare reports --------------------------------------------------------------------------------


def rows(metric, cells):
    """GridRows of ``metric``: ``cells`` maps a step count to its values (one per seed)."""
    return [GridRow(checkpoint="run", schedule="linear", sampler="ddim", steps=k, scale=None, seed=s,
                    result=MetricResult(name=metric, value=v, spread=0.1, n=100), experiment="e")
            for k, values in cells.items() for s, v in enumerate(values)]


def test_summary_tests_every_cell_against_the_best():
    grid = rows("fid", {10: [50.0, 51.0, 49.5], 50: [20.0, 21.0, 20.5], 100: [20.4, 20.1, 21.2]})
    by_steps = {s.steps: s for s in summarize(grid)}
    assert by_steps[50].role == "best" and by_steps[50].k == 3  # fid: lower is better
    assert by_steps[10].significant and by_steps[10].verdict().endswith(" *")
    assert not by_steps[100].significant
    assert by_steps[10].p == pytest.approx(welch_t_test([50.0, 51.0, 49.5], [20.0, 21.0, 20.5]).p)
    mean, half = mean_confidence_interval([20.0, 21.0, 20.5])
    assert by_steps[50].interval() == f"{mean:.4f} ± {half:.4f}"
    accuracy = {s.steps: s for s in summarize(rows("accuracy", {10: [0.5, 0.6], 50: [0.9, 0.8]}))}
    assert accuracy[50].role == "best"  # higher is better


def test_summary_against_a_reference_and_without_replicates():
    grid = rows("fid", {10: [50.0, 51.0], 50: [20.0, 21.0]})
    by_steps = {s.steps: s for s in summarize(grid, {"steps": "10"})}
    assert by_steps[10].role == "reference" and by_steps[50].p is not None
    with pytest.raises(OptionError, match=r"the reference \(steps 7\) matches 0 cells"):
        summarize(grid, {"steps": "7"})
    single = {s.steps: s for s in summarize(rows("fid", {10: [50.0], 50: [20.0]}))}
    assert single[50].role == "best" and single[10].p is None and single[10].verdict() == "-"
    assert single[10].interval() == "50.0000 ± 0.1000"  # the metric's own spread when k = 1
