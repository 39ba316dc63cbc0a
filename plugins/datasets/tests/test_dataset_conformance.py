"""Every dataset the plugin registers keeps the Dataset contract (difftk.components.protocols.Dataset)."""

from __future__ import annotations

import attrs
import difftk
import numpy as np
import pytest
import torch
from datasets_formats import save_image
from difftk.components.plugins import host
from difftk.components.protocols import Dataset
from difftk.data.examples import Examples
from difftk.errors import DifftkError
from difftk_datasets import SPLITS


def check_dataset(component, split: str) -> Examples:
    """``load(split)`` gives non-empty Examples with consistent labels, deterministically, stored
    as uint8 images or float32 points; image batches scale to [−1, 1]; a bad split is one DifftkError line."""
    assert isinstance(component, Dataset) and attrs.has(type(component))
    ds = component.load(split)
    assert isinstance(ds, Examples) and len(ds) > 0
    stored, labels = ds.read(torch.arange(len(ds)))
    assert stored.shape == (len(ds), *ds.shape)
    if ds.kind == "image":
        assert stored.dtype == torch.uint8 and stored.ndim == 4
        assert ds.shape[0] in (1, 3)
    else:
        assert stored.dtype == torch.float32 and stored.ndim == 2 and torch.isfinite(stored).all()
        assert not ds.flip
    if ds.labels is None:
        assert ds.num_classes == 0 and ds.class_names == ()
    else:
        assert ds.labels.dtype == torch.int64 and ds.num_classes > 0
        assert ds.labels.min() >= 0 and ds.labels.max() < ds.num_classes
        assert len(ds.class_names) == ds.num_classes
    x, y = ds.batch(torch.arange(min(len(ds), 16)))
    assert x.dtype == torch.float32 and x.shape[1:] == ds.shape
    if ds.kind == "image":
        assert x.min() >= -1.0 and x.max() <= 1.0
    again = component.load(split)
    assert torch.equal(again.read(torch.arange(len(ds)))[0], stored) and again.fingerprint() == ds.fingerprint()
    if labels is not None:
        assert torch.equal(labels, ds.labels)
    with pytest.raises(DifftkError) as info:
        component.load("validation")
    assert "\n" not in str(info.value)
    return ds


@pytest.fixture
def cases(tmp_path, mnist_dir, cifar_dir):
    """Options that make each registered dataset loadable here (tiny files where one needs a path)."""
    mnist_root, _ = mnist_dir()
    cifar_root, _ = cifar_dir(per_batch=1)
    images = tmp_path / "images"
    for i in range(4):
        save_image(images / f"c{i % 2}" / f"{i}.png", np.full((6, 6, 3), 60 * i, np.uint8))
    return {
        "mnist": [{}, {"path": str(mnist_root)}],
        "cifar10": [{"path": str(cifar_root)}],
        "emoji": [{}],
        "image-folder": [{"path": str(images), "holdout": 0.5}, {"path": str(images), "holdout": 0.5, "channels": 1}],
        "gaussian-mixture": [{"n": 64}],
        "two-moons": [{"n": 64}],
        "swiss-roll": [{"n": 64}],
    }


def registered() -> list[str]:
    return sorted(info.name for info in host().registry.by_plugin("datasets") if info.kind == "dataset")


def test_every_registered_dataset_has_a_case(cases):
    assert registered() == sorted(cases)


@pytest.mark.parametrize("name", registered())
def test_conformance(cases, name):
    for options in cases[name]:
        component = difftk.create("dataset", name, **options)
        for split in SPLITS:
            check_dataset(component, split)


@pytest.mark.parametrize("name", registered())
def test_file_reading_datasets_take_their_directory_as_path(name):
    fields = host().registry.get("dataset", name).option_fields()
    if name in ("mnist", "cifar10", "image-folder"):
        assert "path" in fields and fields["path"].type in ("str", "str | None")
        assert (fields["path"].default is None) == (name == "mnist")
    else:
        assert "path" not in fields


def test_path_option_parses_from_the_command_line(cases):
    info = host().registry.get("dataset", "mnist")
    assert info.instantiate({"path": "none"}, from_strings=True).path is None
    assert info.instantiate({"path": cases["mnist"][1]["path"]}, from_strings=True).load("test").shape == (1, 28, 28)
