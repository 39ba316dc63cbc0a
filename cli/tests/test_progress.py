"""What `difftk train` says before it starts: the precision it names is the one the trainer uses."""

from types import SimpleNamespace

import pytest
import torch
from difftk_cli.progress import describe_start


def trainer(device: str, precision: str) -> SimpleNamespace:
    """The attributes describe_start reads, of a run on ``device`` with ``precision``."""
    data = type("Data", (), {"kind": "image", "shape": (1, 8, 8), "num_classes": 0, "name": "toy",
                             "__len__": lambda self: 4})()
    spec = {"denoiser": SimpleNamespace(name="tiny")}
    return SimpleNamespace(dataset=data, dataset_info={"name": "toy"}, pipeline=SimpleNamespace(spec=spec), filled={},
                           model=torch.nn.Linear(2, 2), conditional=False, device=torch.device(device),
                           config=SimpleNamespace(precision=precision, steps=10), step=0, paths=None)


@pytest.mark.parametrize(("device", "precision", "said"), [
    ("cuda", "auto", "with bf16 autocast"), ("cuda", "bf16", "with bf16 autocast"), ("cuda", "tf32", "with TF32 matmuls"),
    ("cuda", "fp32", None), ("cpu", "auto", None), ("cpu", "bf16", "with bf16 autocast"),
])
def test_the_precision_said_is_the_one_resolved(device, precision, said):
    line = next(line for line in describe_start(trainer(device, precision)) if line.startswith("model:"))
    if said is None:
        assert "autocast" not in line and "TF32" not in line, line
    else:
        assert line.endswith(said), line
