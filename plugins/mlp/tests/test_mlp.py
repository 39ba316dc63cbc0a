"""mlp: the conformance kit, data options from the toys, one-line errors, and that it learns two-moons."""

from __future__ import annotations

import difftk
import pytest
import torch
from difftk.data.pipeline_data import load_dataset, size_to_data
from difftk.errors import DifftkError, IncompatibleError
from difftk.testing import check_denoiser
from difftk.training.config import TrainConfig
from difftk.training.job import train
from difftk_mlp import MLPDenoiser


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_conformance(prediction, num_classes):
    net = difftk.create("denoiser", "mlp", in_channels=5, num_classes=num_classes, hidden=16, depth=2, prediction=prediction)
    check_denoiser(net, (4, 5), num_classes=num_classes)


def test_it_starts_at_zero_and_the_class_and_time_matter_once_trained():
    net = MLPDenoiser(in_channels=2, num_classes=2, hidden=16, depth=1)
    x, t = torch.randn(3, 2), torch.rand(3)
    assert torch.equal(net(x, t), torch.zeros(3, 2))  # the output layer starts at zero
    torch.nn.init.normal_(net.proj_out.weight)
    a, b = net(x, t, cond=torch.zeros(3, dtype=torch.long)), net(x, t, cond=torch.ones(3, dtype=torch.long))
    assert not torch.allclose(a, b) and not torch.allclose(net(x, t), net(x, 1 - t))


def test_images_are_one_line():
    with pytest.raises(IncompatibleError, match=r"takes vectors \[B, 2\], got shape \(1, 3, 4, 4\): for images use"):
        MLPDenoiser()(torch.zeros(1, 3, 4, 4), torch.zeros(1))


@pytest.mark.parametrize("name, classes", [("two-moons", 2), ("swiss-roll", 0), ("gaussian-mixture", 8)])
def test_the_toys_fill_its_data_options(name, classes):
    data, _ = load_dataset(name, options={"n": 64})
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser="mlp", objective="simple").spec
    _, filled = size_to_data(spec, data)
    assert filled == {"in_channels": 2, "num_classes": classes}


def test_an_image_dataset_is_one_line(tmp_path):
    from difftk.data.arrays import ArrayDataset

    images = ArrayDataset(torch.zeros(4, 1, 4, 4, dtype=torch.uint8), name="tiles")
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser="mlp", objective="simple").spec
    with pytest.raises(DifftkError, match=r"denoiser 'mlp' takes vectors \[B, 1\], got shape \(2, 1, 4, 4\): for images use") as info:
        size_to_data(spec, images)
    assert "\n" not in str(info.value)


def nearest(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Mean distance from each sample to its nearest data point."""
    return float(torch.cdist(samples, data).min(dim=1).values.mean())


def test_it_learns_two_moons(tmp_path):
    """600 steps (a few seconds): DDIM samples lie near the moons, far nearer than the untrained
    model's (which returns Gaussian noise)."""
    data, spec_ = load_dataset("two-moons", options={"n": 2000})
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser={"name": "mlp", "options": {"hidden": 64}},
                          objective="simple").spec
    config = TrainConfig(steps=600, batch_size=128, lr=2e-3, warmup=20, sample_every=0, checkpoint_every=600, seed=0)
    train(spec, data, config, out=tmp_path / "run", dataset_spec=spec_)
    model = difftk.load(str(tmp_path / "run"))
    samples = model.sample(500, steps=30, seed=1)
    reference = load_dataset("two-moons", split="test", options={"n": 2000})[0].read(torch.arange(2000))[0]
    noise = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(samples).all()
    assert nearest(samples, reference) < 0.1 < nearest(noise, reference)
    per_class = model.sample(200, steps=30, seed=2, labels=0)  # the upper moon: y above the lower one's
    assert float(per_class[:, 1].mean()) > 0.1
