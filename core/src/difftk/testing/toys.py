"""A plugin of tiny components for tests that train: register this module to get them.

::

    import difftk.testing.toys

    def test_training(register_plugin):
        register_plugin(difftk.testing.toys, "toys")
        pipeline = difftk.compose(schedule="linear", sampler="ddim", denoiser="tiny", objective="simple")

It registers three denoisers, three datasets and an autoencoder, each made in milliseconds, so a test can
train for a few steps in well under a second:

- ``tiny``: :class:`~difftk.testing.reference.TinyDenoiser`, any data shape;
- ``faulty``: TinyDenoiser with dropout that returns NaN or ∞, or is interrupted, at a chosen
  call — to test what a training loop does when things go wrong;
- ``sized``: takes only square images whose side is a multiple of 4 (as a U-Net with two
  down-samplings does), to test data the model cannot take;
- ``toy-points`` (Gaussian blobs in 2-D), ``toy-images`` (small images of bars) and
  ``array-file`` (examples read from a safetensors file, a dataset given by a path);
- ``blocks``: :class:`~difftk.testing.reference.ReferenceAutoencoder`, an exact first stage (each f×f block
  of pixels one latent cell), to test latent pipelines against the identity.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from difftk.components.hookspecs import hookimpl
from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError
from difftk.options import option, option_error
from difftk.testing.reference import ReferenceAutoencoder, TinyDenoiser, TinyDenoiserConfig

#: blob centres of ``toy-points``
CENTRES = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])


@attrs.frozen
class ToyPoints:
    """Four Gaussian blobs (std 0.3) at (±2, ±2), labelled by blob."""

    n: int = option(256, help="number of points", ge=4)
    labelled: bool = option(True, help="give each point its blob as class label")
    seed: int = option(0, help="seed of the points", ge=0)

    def load(self, split: str = "train") -> ArrayDataset:
        g = torch.Generator().manual_seed(self.seed + (split == "test"))
        labels = torch.arange(self.n) % len(CENTRES)
        data = CENTRES[labels] + 0.3 * torch.randn((self.n, 2), generator=g)
        if not self.labelled:
            return ArrayDataset(data, name="toy-points")
        return ArrayDataset(data, labels, len(CENTRES), "toy-points", ("sw", "nw", "se", "ne"))


@attrs.frozen
class ToyImages:
    """Small images of bars: class 0 horizontal, class 1 vertical, with a random phase and noise."""

    n: int = option(64, help="number of images", ge=2)
    size: int = option(8, help="height and width in pixels", ge=2, le=64)
    channels: int = option(1, help="1 (grey) or 3 (RGB)", choices=(1, 3))
    labelled: bool = option(True, help="give each image its bar direction as class label")
    seed: int = option(0, help="seed of the images", ge=0)

    def load(self, split: str = "train") -> ArrayDataset:
        g = torch.Generator().manual_seed(self.seed + (split == "test"))
        labels = torch.arange(self.n) % 2
        phase = torch.randint(0, 4, (self.n, 1, 1), generator=g)
        rows = torch.arange(self.size).view(1, -1, 1)
        cols = torch.arange(self.size).view(1, 1, -1)
        coord = torch.where(labels.view(-1, 1, 1) == 0, rows, cols)
        bars = (((coord + phase) // 2) % 2 == 0).to(torch.float32) * 200.0 + 25.0
        noisy = bars[:, None] + 15.0 * torch.randn((self.n, self.channels, self.size, self.size), generator=g)
        data = noisy.clamp(0, 255).round().to(torch.uint8)
        if not self.labelled:
            return ArrayDataset(data, name="toy-images")
        return ArrayDataset(data, labels, 2, "toy-images", ("horizontal", "vertical"))


@attrs.frozen
class ArrayFile:
    """Examples read from a safetensors file holding ``data`` (and optionally int64 ``labels``)."""

    path: str = option(help="the .safetensors file")

    def load(self, split: str = "train") -> ArrayDataset:
        from safetensors.torch import load_file

        path = Path(self.path)
        if not path.is_file():
            raise DifftkError(f"dataset 'array-file': {path} does not exist (give a .safetensors file with a 'data' tensor)")
        try:
            tensors = load_file(str(path))
        except Exception as err:
            raise DifftkError(f"dataset 'array-file': {path} is not a safetensors file ({err})") from None
        if "data" not in tensors:
            raise DifftkError(f"dataset 'array-file': {path} has no 'data' tensor")
        labels = tensors.get("labels")
        classes = int(labels.max()) + 1 if labels is not None else 0
        return ArrayDataset(tensors["data"], labels, classes, path.stem)


@attrs.frozen
class FaultyConfig(TinyDenoiserConfig):
    """TinyDenoiser's options, plus dropout and the fault to inject."""

    dropout: float = option(0.1, help="dropout on the hidden layer (draws from torch's global RNG)", ge=0.0, lt=1.0)
    fault: str = option("off", help="what happens at call fault_at", choices=("off", "nan", "inf", "interrupt", "sigint", "sigterm", "sighup"))
    fault_at: int = option(1, help="the training-mode call (1-based, counted per instance) that faults", ge=1)


class FaultyDenoiser(TinyDenoiser):
    """TinyDenoiser with dropout that misbehaves once, at its ``fault_at``-th training-mode call.

    ``nan``/``inf`` return a non-finite output; ``interrupt`` raises ``KeyboardInterrupt``
    in the middle of the forward pass; ``sigint`` sends this process SIGINT (what Ctrl-C
    does), ``sigterm`` SIGTERM (a job scheduler, ``timeout``), ``sighup`` SIGHUP (a closed
    terminal), and carries on. Calls in eval mode or without gradients are not counted.
    """

    Config = FaultyConfig

    def __init__(self, config: FaultyConfig | None = None, **options) -> None:
        config = config if config is not None else FaultyConfig(**options)
        super().__init__(config)
        self.drop = torch.nn.Dropout(config.dropout)
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.drop(super().forward(x, t, cond))
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.config.fault_at:
                fault = self.config.fault
                if fault in ("nan", "inf"):
                    return out * float(fault)
                if fault == "interrupt":
                    raise KeyboardInterrupt
                if fault in ("sigint", "sigterm", "sighup"):
                    import os
                    import signal

                    os.kill(os.getpid(), getattr(signal, fault.upper()))
        return out


@attrs.frozen
class SizedConfig:
    """Options of :class:`SizedDenoiser`."""

    in_channels: int = option(1, help="channels of the images", ge=1)
    image_size: int = option(8, help="side of the square images: a multiple of 4", ge=4, le=64)
    num_classes: int = option(0, help="classes for conditioning (0 = unconditional)", ge=0)

    def __attrs_post_init__(self) -> None:
        if self.image_size % 4:
            raise option_error(self, f"image_size={self.image_size} must be a multiple of 4 (two 2× down-samplings)")



class SizedDenoiser(torch.nn.Module):
    """A linear ε-predictor on flattened images of exactly one size (a multiple of 4)."""

    Config = SizedConfig

    def __init__(self, config: SizedConfig | None = None, **options) -> None:
        super().__init__()
        self.config = config if config is not None else SizedConfig(**options)
        self.prediction, self.learned_variance = "eps", False
        self.num_classes = self.config.num_classes
        d = self.config.in_channels * self.config.image_size**2
        self.net = torch.nn.Linear(d + 1, d)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.cat([x.flatten(1), t.view(-1, 1).to(x.dtype)], dim=1)
        return self.net(h).view_as(x)


def toy_spec(**parts):
    """The smallest pipeline that trains: the linear schedule at T = 50, ddim, the ``tiny``
    denoiser and the simple loss; ``parts`` replace or add components (e.g. ``guidance=``).
    Register this module first."""
    import difftk

    return difftk.compose(**{"schedule": {"name": "linear", "options": {"T": 50}}, "sampler": "ddim",
                             "denoiser": "tiny", "objective": "simple", **parts}).spec


def train_toy(out: str | Path, data: str = "toy-images", *, reporter=None, **config):
    """Train :func:`toy_spec` on the toy dataset ``data`` with ``TrainConfig(**config)``, writing
    the run to ``out``; returns (spec, dataset, dataset spec, the run's TrainResult)."""
    from difftk.data.pipeline_data import load_dataset
    from difftk.training.config import TrainConfig
    from difftk.training.job import train

    spec = toy_spec()
    dataset, data_spec = load_dataset(data)
    result = train(spec, dataset, TrainConfig(**config), out=out, dataset_spec=data_spec, reporter=reporter)
    return spec, dataset, data_spec, result


@hookimpl
def difftk_register_components(register):
    register.add_denoiser("tiny", TinyDenoiser)
    register.add_denoiser("faulty", FaultyDenoiser)
    register.add_denoiser("sized", SizedDenoiser)
    register.add_dataset("toy-points", ToyPoints)
    register.add_dataset("toy-images", ToyImages)
    register.add_dataset("array-file", ArrayFile)
    register.add_autoencoder("blocks", ReferenceAutoencoder)
