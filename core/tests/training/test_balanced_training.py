"""``balance``: each example's diffusion loss weighed by N/(K·n_k), so a batch holding the whole data scores the
mean over classes of each class's loss; refused in one line for a run without classes."""

from __future__ import annotations

import attrs
import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.data.arrays import ArrayDataset
from difftk.data.pipeline_data import size_to_data
from difftk.errors import OptionError
from difftk.training.config import TrainConfig
from difftk.training.trainer import Trainer

LOSS_OF_CLASS = torch.tensor([1.0, 10.0, 100.0])


class ClassLoss:
    """Every example's loss is a constant of its class (plus 0 × the denoiser's output, so the graph reaches the
    weights): the batch's mean is then known in closed form."""

    def loss(self, denoiser, schedule, x0, cond=None, generator=None):
        out = denoiser(x0, torch.full((len(x0),), 0.5), cond)
        return LOSS_OF_CLASS[cond] + 0.0 * out.flatten(1).sum(1)


def trainer(labels: list[int], *, balance: bool, conditional: bool = True) -> Trainer:
    y = torch.tensor(labels)
    data = ArrayDataset(data=torch.randint(0, 256, (len(y), 1, 8, 8), dtype=torch.uint8),
                        labels=y if conditional else None, num_classes=3 if conditional else 0, name="toy",
                        class_names=("a", "b", "c") if conditional else ())
    spec = difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler="ddim", denoiser="tiny",
                          objective="simple").spec
    live, _ = size_to_data(spec, data)
    config = TrainConfig(steps=1, batch_size=len(y), warmup=0, sample_every=0, balance=balance)
    return Trainer(attrs.evolve(live, objective=ClassLoss()), data, config)


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def test_a_whole_batch_scores_the_mean_over_classes(toy):
    labels = [0] * 6 + [1] * 3 + [2] * 1  # classes of 6, 3 and 1 examples
    plain, _ = trainer(labels, balance=False).train_step()
    balanced, _ = trainer(labels, balance=True).train_step()
    assert plain == pytest.approx(float((6 * 1 + 3 * 10 + 1 * 100) / 10))  # each example alike: 13.6
    assert balanced == pytest.approx(float(LOSS_OF_CLASS.mean()))  # each class alike: 37


def test_balanced_data_is_left_as_it_is(toy):
    labels = [0, 1, 2] * 3
    assert trainer(labels, balance=True).train_step()[0] == pytest.approx(trainer(labels, balance=False).train_step()[0])


def test_a_run_without_classes_is_refused_in_one_line(toy):
    with pytest.raises(OptionError, match="drop balance") as error:
        trainer([0] * 4, balance=True, conditional=False)
    assert "\n" not in str(error.value)
