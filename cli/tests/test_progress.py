"""What `difftk train` says before it starts: the precision it names is the one the trainer uses."""

import pytest
import torch
from difftk.runtime.fastpath import resolve_precision
from difftk.training.config import TrainConfig
from difftk.training.reporter import RunStart
from difftk_cli.progress import describe_start


def run_start(device: str, precision: str) -> RunStart:
    """What the trainer tells the front end of a run on ``device`` with ``precision`` (Trainer.describe)."""
    data = type("Data", (), {"kind": "image", "shape": (1, 8, 8), "num_classes": 0, "name": "toy",
                             "__len__": lambda self: 4})()
    return RunStart(dataset=data, dataset_info={"name": "toy"}, denoiser="tiny", pipeline={}, filled={}, parameters=6,
                    conditional=False, device=torch.device(device),
                    precision=resolve_precision(precision, torch.device(device)), step=0,
                    config=TrainConfig(steps=10, precision=precision), paths=None)


@pytest.mark.parametrize(("device", "precision", "said"), [
    ("cuda", "auto", "with bf16 autocast"), ("cuda", "bf16", "with bf16 autocast"), ("cuda", "tf32", "with TF32 matmuls"),
    ("cuda", "fp32", None), ("cpu", "auto", None), ("cpu", "bf16", "with bf16 autocast"),
])
def test_the_precision_said_is_the_one_resolved(device, precision, said):
    """--precision fp32 on CUDA once printed "with bf16 autocast": the line now says what the trainer resolved."""
    line = next(line for line in describe_start(run_start(device, precision)) if line.startswith("model:"))
    if said is None:
        assert "autocast" not in line and "TF32" not in line, line
    else:
        assert line.endswith(said), line
