"""Fixtures the metric tests share: the shipped MNIST splits, a "model" that returns given images, and
one draw of the shipped model (made once per session: it is the slow part); an FID Inception weights
file, and a cache folder of the session's own."""

import difftk
import pytest
import torch
from difftk.evaluation.compare import context_for, held_out_data
from difftk.evaluation.context import EvalContext
from difftk.model import load
from difftk_metrics.features import CACHE_ENV, inception_weights
from difftk_metrics.testing import write_random_inception_weights

#: the one draw of the shipped model the new metrics' tests measure: cfg at w = 0, DDIM 10 steps
SHIPPED_N, SHIPPED_STEPS = 200, 10


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """The held-out features cache of each test is a fresh folder, never the user's."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory):
    """The real FID Inception weights when this machine has them, else a file of random weights."""
    try:
        return inception_weights()
    except difftk.DifftkError:
        return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


class Fixed:
    """A stand-in model whose samples are given images (real digits, noise, copies of training
    digits), with the data description of the shipped MNIST, so that metrics can measure them."""

    def __init__(self, images: torch.Tensor, data: dict | None = None):
        self.images = images
        self.data = data or {"kind": "image", "name": "mnist", "options": {"path": None}, "shape": [1, 28, 28]}
        self.data_shape = tuple(self.data["shape"])
        self.num_classes = 0

    def sample(self, n, **_):
        assert n <= len(self.images), f"the stand-in holds {len(self.images)} images, {n} were asked for"
        return self.images[:n]


@pytest.fixture(scope="session")
def mnist():
    """(train, test) ArrayDatasets of the MNIST sample shipped with difftk-datasets (4,500 and 500 digits)."""
    dataset = difftk.create("dataset", "mnist")
    return dataset.load("train"), dataset.load("test")


@pytest.fixture(scope="session")
def digits(mnist):
    """(train images, train labels, test images, test labels), images in [−1, 1]."""
    train, test = mnist
    return (*train.batch(torch.arange(len(train))), *test.batch(torch.arange(len(test))))


@pytest.fixture(scope="session")
def measure_images(mnist):
    """measure(metric, images, seed=0, **options): the metric's result on ``images`` as if a model drew
    them, against the held-out split."""

    def measure(metric: str, images: torch.Tensor, seed: int = 0, **options):
        context = EvalContext(model=Fixed(images), data=mnist[1], seed=seed)
        return difftk.create("metric", metric, n=len(images), **options).evaluate(context)

    return measure


@pytest.fixture(scope="session")
def shipped_samples():
    """SHIPPED_N samples of the shipped mnist-cfg, classes in turn, DDIM SHIPPED_STEPS steps, unguided (w = 0)."""
    model = load("mnist-cfg")
    data, why = held_out_data(model.data)
    assert data is not None, why
    context = context_for(model, data, guidance="cfg", guidance_options={"scale": "0"}, steps=SHIPPED_STEPS)
    return context.samples(SHIPPED_N, context.balanced_labels(SHIPPED_N))
