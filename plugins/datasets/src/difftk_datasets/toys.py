"""2-D toy distributions for quick experiments: float32 points [n, 2], deterministic under ``seed``.

Each split draws from its own random stream, ``numpy.random.default_rng([seed, s])`` with
s = 0 for train and 1 for test: the two splits are independent samples of one distribution,
and no (seed, split) pair repeats another's points.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.options import option

from difftk_datasets.common import SPLITS, check_split


class _Toy:
    """Shared ``load``: subclasses define ``NAME``, ``n``, ``seed`` and ``draw(rng)``."""

    NAME: ClassVar[str]
    CLASS_NAMES: ClassVar[tuple[str, ...]] = ()

    def load(self, split: str = "train") -> ArrayDataset:
        """``n`` points of the split ``train`` or ``test`` (independent draws, same distribution)."""
        check_split(self.NAME, split)
        rng = np.random.default_rng([self.seed, SPLITS.index(split)])
        points, labels = self.draw(rng)
        names = self.class_names()
        return ArrayDataset(
            data=torch.from_numpy(points.astype(np.float32)),
            labels=None if labels is None else torch.from_numpy(labels.astype(np.int64)),
            num_classes=len(names),
            name=self.NAME,
            class_names=names,
        )

    def class_names(self) -> tuple[str, ...]:
        return self.CLASS_NAMES


@attrs.frozen
class GaussianMixture(_Toy):
    """Equal-weight isotropic Gaussians centred on a circle (the "8 Gaussians" toy); label = component."""

    NAME: ClassVar[str] = "gaussian-mixture"
    n: int = option(10_000, help="points per split", ge=1)
    components: int = option(8, help="number of Gaussians, evenly spaced on the circle", ge=1)
    radius: float = option(2.0, help="radius of the circle of means", ge=0.0)
    std: float = option(0.1, help="standard deviation of each Gaussian (per coordinate)", gt=0.0)
    seed: int = option(0, help="random seed (the test split uses a stream of its own)", ge=0)

    def means(self) -> np.ndarray:
        """The component means: radius·(cos 2πk/K, sin 2πk/K), k = 0..K−1."""
        angle = 2 * math.pi * np.arange(self.components) / self.components
        return self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, self.components, size=self.n)
        return self.means()[labels] + self.std * rng.standard_normal((self.n, 2)), labels

    def class_names(self) -> tuple[str, ...]:
        return tuple(str(k) for k in range(self.components))


@attrs.frozen
class TwoMoons(_Toy):
    """Two interleaving half circles (scikit-learn's make_moons), centred at the origin; label = moon."""

    NAME: ClassVar[str] = "two-moons"
    CLASS_NAMES: ClassVar[tuple[str, ...]] = ("upper", "lower")
    n: int = option(10_000, help="points per split (the upper moon gets the odd one)", ge=2)
    noise: float = option(0.05, help="standard deviation of the Gaussian noise added to each coordinate", ge=0.0)
    seed: int = option(0, help="random seed (the test split uses a stream of its own)", ge=0)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        upper = self.n - self.n // 2
        labels = np.repeat(np.array([0, 1]), [upper, self.n // 2])
        theta = rng.uniform(0.0, math.pi, size=self.n)
        # upper: (cos θ, sin θ); lower: (1 − cos θ, ½ − sin θ); then shift the pair's centre (½, ¼) to 0.
        x = np.where(labels == 0, np.cos(theta), 1.0 - np.cos(theta)) - 0.5
        y = np.where(labels == 0, np.sin(theta), 0.5 - np.sin(theta)) - 0.25
        points = np.stack([x, y], axis=1) + self.noise * rng.standard_normal((self.n, 2))
        return points, labels


@attrs.frozen
class SwissRoll(_Toy):
    """A 2-D spiral, (t·cos t, t·sin t)/5 with t uniform on [1.5π, 4.5π] (scikit-learn's swiss roll seen from above); unlabelled."""

    NAME: ClassVar[str] = "swiss-roll"
    n: int = option(10_000, help="points per split", ge=1)
    noise: float = option(0.05, help="standard deviation of the Gaussian noise added after scaling by 1/5", ge=0.0)
    seed: int = option(0, help="random seed (the test split uses a stream of its own)", ge=0)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, None]:
        t = 1.5 * math.pi * (1.0 + 2.0 * rng.uniform(size=self.n))
        points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0
        return points + self.noise * rng.standard_normal((self.n, 2)), None
