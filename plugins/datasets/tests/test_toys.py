"""2-D toys: float32 [n, 2], deterministic under seed, independent splits, the stated geometry."""

from __future__ import annotations

import math

import difftk
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

TOYS = ("gaussian-mixture", "two-moons", "swiss-roll")


@pytest.mark.parametrize("name", TOYS)
def test_shape_dtype_and_batch(name):
    ds = difftk.create("dataset", name, n=257).load()
    assert ds.kind == "points" and ds.shape == (2,) and len(ds) == 257 and ds.data.dtype == torch.float32
    x, y = ds.batch(torch.arange(10))
    assert x.dtype == torch.float32 and torch.equal(x, ds.data[:10])
    assert (y is None) == (ds.labels is None)


@pytest.mark.parametrize("name", TOYS)
@given(seed=st.integers(0, 2**32 - 1))
def test_deterministic_under_seed_and_splits_differ(name, seed):
    make = lambda s: difftk.create("dataset", name, n=50, seed=s)  # noqa: E731
    train = make(seed).load("train")
    assert torch.equal(train.data, make(seed).load("train").data)
    assert not torch.equal(train.data, make(seed).load("test").data)
    assert not torch.equal(train.data, make(seed + 1).load("train").data)
    assert not torch.equal(make(seed + 1).load("train").data, make(seed).load("test").data)  # no seed/split aliasing


def test_gaussian_mixture_labels_are_the_nearest_component():
    gm = difftk.create("dataset", "gaussian-mixture", n=4000, components=8, radius=2.0, std=0.1)
    ds = gm.load()
    means = torch.from_numpy(gm.means()).to(torch.float32)
    assert torch.equal(torch.cdist(ds.data, means).argmin(dim=1), ds.labels)
    assert ds.num_classes == 8 and ds.class_names == tuple("01234567")
    assert torch.bincount(ds.labels, minlength=8).min() > 400  # equal weights: ~500 each
    residual = ds.data - means[ds.labels]
    assert residual.mean(0).abs().max() < 0.01 and (residual.std(0) - 0.1).abs().max() < 0.005
    assert torch.allclose(means.norm(dim=1), torch.tensor(2.0))


def test_two_moons_lie_on_their_half_circles_without_noise():
    ds = difftk.create("dataset", "two-moons", n=101, noise=0.0).load()
    p = ds.data.to(torch.float64) + torch.tensor([0.5, 0.25], dtype=torch.float64)  # undo the centring
    upper, lower = p[ds.labels == 0], p[ds.labels == 1]
    assert (len(upper), len(lower)) == (51, 50) and ds.class_names == ("upper", "lower")
    assert torch.allclose(upper.norm(dim=1), torch.ones(51, dtype=torch.float64), atol=1e-6) and (upper[:, 1] >= -1e-6).all()
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose((lower - centre).norm(dim=1), torch.ones(50, dtype=torch.float64), atol=1e-6)
    assert (lower[:, 1] <= 0.5 + 1e-6).all()


def test_two_moons_are_centred():
    ds = difftk.create("dataset", "two-moons", n=20_000).load()
    assert ds.data.mean(0).abs().max() < 0.02


def test_swiss_roll_is_the_spiral_without_noise():
    ds = difftk.create("dataset", "swiss-roll", n=500, noise=0.0).load()
    assert ds.labels is None and ds.num_classes == 0 and ds.class_names == ()
    p = ds.data.to(torch.float64) * 5
    t = p.norm(dim=1)
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    assert torch.allclose(p / t[:, None], torch.stack([t.cos(), t.sin()], dim=1), atol=1e-5)


@pytest.mark.parametrize("name", TOYS)
def test_noise_option_moves_points(name):
    key = "std" if name == "gaussian-mixture" else "noise"
    a = difftk.create("dataset", name, n=2000, **{key: 0.05}).load().data
    b = difftk.create("dataset", name, n=2000, **{key: 0.2}).load().data
    assert not np.allclose(a.numpy(), b.numpy())
