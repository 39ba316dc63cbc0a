"""Noise-aware classifier training: the class-balanced loss weights, balanced accuracy, and flips."""

from __future__ import annotations

import difftk
import torch
from difftk.data.arrays import ArrayDataset
from difftk.training.classifier import build_classifier, class_weights, noisy_accuracy, train_classifier
from hypothesis import given, settings
from hypothesis import strategies as st


def points(labels: list[int], num_classes: int) -> ArrayDataset:
    y = torch.tensor(labels, dtype=torch.int64)
    x = torch.nn.functional.one_hot(y, num_classes).to(torch.float32) * 2.0 - 1.0
    return ArrayDataset(data=x, labels=y, num_classes=num_classes, name="toy", class_names=tuple("abcdefgh"[:num_classes]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60))
def test_balanced_weights_give_every_present_class_the_same_total(labels):
    ds = points(labels, 5)
    w = class_weights(ds)
    n = torch.bincount(ds.labels, minlength=5).to(torch.float64)
    totals = (w * n)[n > 0]
    assert torch.allclose(totals, totals[0].expand_as(totals))  # each class weighs alike in the loss
    assert torch.isclose((w * n).sum(), n.sum())  # on average an example still weighs 1
    assert (w[n == 0] == 0).all()


class Constant(torch.nn.Module):
    """Reads every example as class 0."""

    def forward(self, x, t):
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.int64), 2).to(x.dtype)


def test_balanced_accuracy_is_the_mean_of_the_classes_accuracies():
    ds = points([0] * 9 + [1], 2)
    schedule = difftk.create("schedule", "linear")
    assert noisy_accuracy(Constant(), schedule, ds, t_max=0.0) == 0.9
    assert noisy_accuracy(Constant(), schedule, ds, t_max=0.0, balanced=True) == 0.5


def test_balance_and_flip_change_training_and_a_seed_repeats_it():
    schedule = difftk.create("schedule", "linear")
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0] * 10 + [1] * 2)

    def train(flip: bool, balance: bool) -> torch.Tensor:
        ds = ArrayDataset(data=images, labels=labels, num_classes=2, name="toy", class_names=("a", "b"), flip=flip)
        torch.manual_seed(0)
        clf, _ = build_classifier("noisy-cnn", ds, {"base_channels": 8})
        train_classifier(clf, schedule, ds, steps=3, batch_size=6, balance=balance)
        return torch.cat([p.detach().flatten() for p in clf.parameters()])

    plain = train(False, False)
    assert torch.equal(plain, train(False, False))
    assert not torch.allclose(plain, train(False, True))
    assert not torch.allclose(plain, train(True, False))
