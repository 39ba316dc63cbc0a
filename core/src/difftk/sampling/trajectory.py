"""Recording a sampling run's x̂₀ at a few steps, for the trajectory strip of ``difftk sample``.
"""

from __future__ import annotations

import numpy as np
import torch

from difftk.sampling.steps import StepInfo


def trajectory_indices(total: int, frames: int) -> list[int]:
    """Up to ``frames`` step indices spread evenly over ``total`` steps, the first and (for two
    or more frames) the last included."""
    return sorted({int(i) for i in np.round(np.linspace(0, total - 1, max(1, min(frames, total))))})


class TrajectoryRecorder:
    """A sampling callback that keeps x̂₀ of the first batch at up to ``frames`` steps.

    x̂₀ = E[x₀ | x_t] as the denoiser sees it (:attr:`StepInfo.x0`): blurry averages at
    large t that sharpen into the sample as t → 0. ``keep`` limits how many examples each
    frame stores.
    """

    def __init__(self, frames: int = 8, keep: int | None = None) -> None:
        self.count, self.keep = frames, keep
        self.frames: list[torch.Tensor] = []
        self.times: list[float] = []
        self._wanted: set[int] | None = None

    def __call__(self, batch: int, info: StepInfo) -> None:
        if batch != 0:
            return
        if self._wanted is None:
            self._wanted = set(trajectory_indices(info.total, self.count))
        if info.index in self._wanted:
            x0 = info.x0 if self.keep is None else info.x0[: self.keep]
            self.frames.append(x0.detach().float().cpu())
            self.times.append(float(info.t))
