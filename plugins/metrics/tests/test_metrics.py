"""Metric maths (Fréchet distance, bootstrap) and the sanity of fid, accuracy and sliced-wasserstein."""

import math

import difftk
import pytest
import torch
from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError
from difftk.evaluation.compare import context_for, held_out_data, measure
from difftk.evaluation.context import EvalContext
from difftk.maths.stats import bootstrap_standard_error, frechet_distance, frechet_distance_of, moments, sqrtm_psd
from difftk.model import Model, load
from difftk.testing.oracles import GaussianMixtureOracle
from difftk_metrics.network import embed, feature_net
from hypothesis import example, given, settings
from hypothesis import strategies as st

# --- the maths ---------------------------------------------------------------------------------------


@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_sqrtm_psd_squares_back(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d + 2, generator=g, dtype=torch.float64)
    psd = a @ a.T
    root = sqrtm_psd(psd)
    assert torch.allclose(root @ root, psd, atol=1e-8 * (1 + psd.abs().max()))
    assert torch.allclose(root, root.T) and torch.linalg.eigvalsh(root).min() > -1e-9


@given(st.floats(-5, 5), st.floats(-5, 5), st.floats(0.1, 3), st.floats(0.1, 3), st.integers(1, 5))
def test_frechet_distance_of_isotropic_gaussians_is_closed_form(m1, m2, s1, s2, d):
    """For N(m1·1, s1²I) and N(m2·1, s2²I) in d dimensions, d² = d·(m1−m2)² + d·(s1−s2)²."""
    eye = torch.eye(d, dtype=torch.float64)
    got = frechet_distance(torch.full((d,), m1, dtype=torch.float64), s1**2 * eye,
                           torch.full((d,), m2, dtype=torch.float64), s2**2 * eye)
    assert math.isclose(got, d * (m1 - m2) ** 2 + d * (s1 - s2) ** 2, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=25)
@given(st.integers(0, 2**31 - 1))
@example(seed=41482)  # a covariance of condition number 2.6e8: FD(x, x) was 1.7e-7 by the square root of the product
def test_frechet_distance_is_zero_on_itself_symmetric_and_order_free(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    y = torch.randn(40, 5, generator=g, dtype=torch.float64) + 0.5
    _, sigma = moments(x)
    eigenvalues = torch.linalg.eigvalsh(sigma)
    # zero up to the round-off of (Σ^½ Σ Σ^½)^½, which grows with Σ's condition number
    roundoff = 1e-14 * float(eigenvalues.max() / eigenvalues.min()) * float(torch.trace(sigma))
    assert frechet_distance_of(x, x) <= 1e-8 + roundoff
    assert math.isclose(frechet_distance_of(x, y), frechet_distance_of(y, x), rel_tol=1e-8)
    assert math.isclose(frechet_distance_of(x[torch.randperm(60, generator=g)], y), frechet_distance_of(x, y), rel_tol=1e-9)


@pytest.mark.slow  # the 30-digit reference: two mpmath eigendecompositions of 73×73 matrices, ≈ 15 s of CPU
def test_shipped_mnist_fd_is_the_high_precision_value_to_1e_9(digits):
    """FD between the MNIST features of the 500 held-out and 500 training digits, where 55 of the 128 units
    are dead in both sets (singular covariances), against mpmath at 30 digits on moments summed in extended
    precision. A unit dead in both sets has zero rows and columns in both covariances and adds nothing, so
    the reference leaves them out (exactly); the float64 distance keeps all 128."""
    from difftk.testing.precise import frechet_distance_precise, moments_precise

    train_x, _, test_x, _ = digits
    a, b = embed(test_x)[0], embed(train_x[:500])[0]
    dead = (a == 0).all(dim=0) & (b == 0).all(dim=0)
    assert int(dead.sum()) >= 40  # the singular case this test is about
    got = frechet_distance_of(a, b)
    reference = frechet_distance_precise(*moments_precise(a[:, ~dead]), *moments_precise(b[:, ~dead]))
    assert math.isclose(got, reference, rel_tol=1e-9), (got, reference)


def test_moments_are_numpy_mean_and_unbiased_covariance():
    import numpy as np

    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu, sigma = moments(x)
    assert np.allclose(mu.numpy(), x.numpy().mean(0)) and np.allclose(sigma.numpy(), np.cov(x.numpy().T))


def test_bootstrap_standard_error_of_a_mean_is_about_s_over_root_n():
    x = torch.randn(400, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    se = bootstrap_standard_error(lambda v: float(v.mean()), x, resamples=400, generator=torch.Generator().manual_seed(1))
    assert abs(se / (float(x.std()) / 20) - 1) < 0.15


# --- the feature network --------------------------------------------------------------------------------


def test_the_shipped_feature_network_classifies_held_out_digits():
    test = difftk.create("dataset", "mnist").load("test")
    x, y = test.batch(torch.arange(len(test)))
    _, logits = embed(x)
    assert (logits.argmax(1) == y).float().mean() > 0.97
    assert not feature_net().training


# --- fid, accuracy: sanity on the shipped model -------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    model = load("mnist-cfg")
    data, why = held_out_data(model.data)
    assert data is not None, why
    return model, data


def fid(shipped, *, steps, scale=0.0, seed=0, n=200):
    model, data = shipped
    context = context_for(model, data, guidance="cfg", guidance_options={"scale": str(scale)}, steps=steps, seed=seed)
    return measure("fid", {"n": str(n), "bootstrap": "5"}, context)


def test_fid_orders_real_split_below_a_model_below_noise(shipped):
    """FID(real, real split) ≪ FID(real, model) ≪ FID(real, noise) at equal n = 200. The model is the
    shipped one sampled with 1 DDIM step (x̂₀ at t = 1: a blurred average digit of the class); with
    10+ steps it is as close to the held-out digits as other real digits are (docs/pretrained.md)."""
    _, data = shipped
    reference, _ = embed(data.batch(torch.arange(len(data)))[0])
    train = difftk.create("dataset", "mnist").load("train")
    g = torch.Generator().manual_seed(0)
    real, _ = embed(train.batch(torch.randperm(len(train), generator=g)[:200])[0])
    noise, _ = embed(torch.rand(200, 1, 28, 28, generator=g) * 2 - 1)
    fid_real, fid_noise = frechet_distance_of(real, reference), frechet_distance_of(noise, reference)
    fid_model = fid(shipped, steps=1).value
    assert 2 * fid_real < fid_model < fid_noise / 3, (fid_real, fid_model, fid_noise)


def test_fid_is_deterministic_under_a_seed(shipped):
    """The same seed gives the same value (to float32 round-off: the U-Net's CPU convolutions may sum
    in another order from run to run), another seed a different one."""
    a, b, c = fid(shipped, steps=3, n=40), fid(shipped, steps=3, n=40), fid(shipped, steps=3, n=40, seed=1)
    assert a.value == pytest.approx(b.value, rel=1e-6) and a.spread == pytest.approx(b.spread, rel=1e-6)
    assert abs(a.value - c.value) > 1e-3 * a.value
    assert a.n == 40 and a.spread > 0 and "500 images" in a.details["reference"]


def test_guided_samples_of_the_shipped_model_are_the_digits_asked_for(shipped):
    """With 10 DDIM steps, cfg w = 3 gives the requested digit nearly always, and no less often than w = 0."""
    model, data = shipped
    results = [measure("accuracy", {"n": "40"}, context_for(model, data, guidance="cfg", steps=10,
                                                           guidance_options={"scale": str(w)})) for w in (0.0, 3.0)]
    assert results[0].n == 40 and set(results[0].details["per class"]) == set(range(10))
    assert results[1].value >= max(results[0].value, 0.95)
    assert results[0].spread == pytest.approx(math.sqrt(results[0].value * (1 - results[0].value) / 40))


def test_fid_on_colour_data_needs_inception_or_refuses_mnist_features(tmp_path, monkeypatch):
    data = ArrayDataset(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), name="cifar10")
    model = Model(difftk.compose(schedule="linear", sampler="ddim"), None, {"kind": "image", "shape": [3, 32, 32]})
    context = EvalContext(model=model, data=data)
    with pytest.raises(DifftkError, match=r"features=mnist judges MNIST digits \(1×28×28\).*3×32×32"):
        difftk.create("metric", "fid", features="mnist").evaluate(context)
    monkeypatch.delenv("DIFFTK_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DifftkError, match=r"features=inception needs the FID Inception-v3 weights pt_inception"):
        difftk.create("metric", "fid").evaluate(context)


# --- sliced-wasserstein on 2-D data with the exact denoiser -----------------------------------------------------


def mixture_context(shift: float, seed: int = 0) -> EvalContext:
    schedule = difftk.create("schedule", "linear", T=200)
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    oracle = GaussianMixtureOracle(schedule, means, stds=0.3)
    held_out = oracle.sample(2000, generator=torch.Generator().manual_seed(99)).float() + shift
    pipeline = difftk.compose(schedule=schedule, sampler=difftk.create("sampler", "ddim"))
    oracle.num_classes = 0  # sample the whole mixture, unconditionally
    data = ArrayDataset(held_out, name="mixture")
    return EvalContext(model=Model(pipeline, oracle, data), data=data, steps=200, seed=seed)


def test_sliced_wasserstein_is_small_for_the_same_distribution_and_grows_with_a_shift():
    metric = difftk.create("metric", "sliced-wasserstein", n=1000, bootstrap=5)
    same, shifted = metric.evaluate(mixture_context(0.0)), metric.evaluate(mixture_context(1.0))
    assert same.value < 0.15 and shifted.value > 3 * same.value and same.spread > 0 and same.n == 1000
    assert metric.evaluate(mixture_context(0.0)).value == same.value
