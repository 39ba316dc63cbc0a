"""Per-example noise: sample i of a draw depends on the seed and on i only.

:class:`ExampleNoise` is a ``torch.Generator`` that also holds one generator per example. The
core's :func:`difftk.sampling.steps.noise_like`, through which every first-party sampler draws
its noise, draws row b from example b's own stream. So the same seed gives the same sample i
whatever the batch size, the other samples in the batch (their labels, their count) or how
the draw is split over processes — the reproducibility diffusers users ask for (#6222) and
k-diffusion gets from Brownian trees. A sampler that calls ``torch.randn(..., generator=g)``
itself still works (``ExampleNoise`` is a generator), only without that guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def example_seed(seed: int, index: int) -> int:
    """A 63-bit seed for example ``index`` of a draw seeded ``seed``, from NumPy's SeedSequence
    (distinct, well-mixed streams for every (seed, index) pair)."""
    words = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31 ^ int(words[1])) & ((1 << 63) - 1)


class ExampleNoise(torch.Generator):
    """A generator per example, for the examples ``indices`` of a draw seeded ``seed``.

    As a ``torch.Generator`` it is seeded with ``seed`` itself (for samplers that draw directly);
    :meth:`randn` draws row b of a batch from example b's stream.
    """

    def __new__(cls, seed: int, indices: Iterable[int], device: torch.device | str = "cpu"):
        return super().__new__(cls, torch.device(device))

    def __init__(self, seed: int, indices: Iterable[int], device: torch.device | str = "cpu") -> None:
        self.manual_seed(int(seed))
        self.indices = list(indices)
        self.streams = [torch.Generator(device=torch.device(device)).manual_seed(example_seed(seed, i))
                        for i in self.indices]

    def __len__(self) -> int:
        return len(self.streams)

    def randn(self, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> torch.Tensor:
        """Standard normal noise of ``shape`` = [B, ...], row b from example b's stream."""
        if shape[0] != len(self.streams):
            raise ValueError(f"noise for {shape[0]} rows from the streams of {len(self.streams)} examples")
        device = self.device if device is None else device
        return torch.stack([torch.randn(shape[1:], generator=g, dtype=dtype, device=device) for g in self.streams])
