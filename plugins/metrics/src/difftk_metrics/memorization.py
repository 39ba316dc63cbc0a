"""``memorization``: how many samples are near-copies of a training image.

For each sample x̂ the two nearest training images x₁, x₂ in pixel space (ℓ2) give the ratio
ℓ2(x̂, x₁)/ℓ2(x̂, x₂); a sample whose ratio is below 1/3 is flagged as a near-copy of x₁: it is
three times closer to one training image than to any other. Carlini et al. 2023 ("Extracting
training data from diffusion models") judge a copy by its ℓ2 distance to a training image relative
to its distances to its other nearest training images; the nearest/second-nearest form with the
threshold 1/3 is the one Gu et al. 2023 ("On memorization in diffusion models", after Yoon et al.
2023) count memorized samples with.

Pixel space, not the MNIST features, because a copy is a pixel-level event: a classifier's
features are trained to bring all 7s together, so two different 7s can be near neighbours there,
while a copy of one training 7 is far nearer to it than to any other 7 only in pixels. Pixels
also need no network, so the metric works for any image or point data. Exact duplicates in the
training split are merged first (a copy of a duplicated image would have two nearest images at
distance 0); near-duplicates are not, and hide copies of themselves (ratio ≈ 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import attrs
import torch
from difftk.data.images import CAPTION, PAD, image_grid, save_png
from difftk.errors import DifftkError, OptionError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.options import option
from difftk.pipeline.compose import create_component
from difftk.runtime.files import check_output
from PIL import Image, ImageDraw, ImageFont

#: training images compared at once (bounds the memory to n × CHUNK float64 distances)
CHUNK = 8192


def nearest_two(samples: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ℓ2 distances d₁ ≤ d₂ [n] from each sample to its two nearest rows of ``train`` (flattened, float64),
    and the index [n] of the nearest; needs at least 2 training rows."""
    if len(train) < 2:
        raise ValueError(f"the two nearest training examples need at least 2 of them, got {len(train)}")
    x = samples.reshape(len(samples), -1).to(torch.float64)
    x2 = x.square().sum(dim=1, keepdim=True)
    best_d = torch.full((len(x), 2), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((len(x), 2), dtype=torch.long)
    for start in range(0, len(train), CHUNK):
        t = train[start:start + CHUNK].reshape(-1, x.shape[1]).to(torch.float64)
        d2 = (x2 + t.square().sum(dim=1) - 2 * x @ t.T).clamp(min=0)  # ‖x − t‖², exact enough in float64
        d, i = d2.topk(min(2, len(t)), dim=1, largest=False)
        merged_d, merged_i = torch.cat([best_d, d], dim=1), torch.cat([best_i, i + start], dim=1)
        order = merged_d.argsort(dim=1)[:, :2]
        best_d, best_i = merged_d.gather(1, order), merged_i.gather(1, order)
    distances = best_d.sqrt()
    return distances[:, 0], distances[:, 1], best_i[:, 0]


def copy_ratios(samples: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ℓ2(x̂, x₁)/ℓ2(x̂, x₂) [n] of each sample, and the index of its nearest training row. ``train``
    must hold no exact duplicates (then d₂ > 0)."""
    d1, d2, nearest = nearest_two(samples, train)
    return d1 / d2, nearest


def training_split(context: EvalContext, metric: str) -> torch.Tensor:
    """The distinct examples of the training split of the data the model was trained on, in its range."""
    name = context.model.data.get("name")
    if not name:
        raise DifftkError(f"metric '{metric}' compares samples with the training data, but the model does not name "
                          "its dataset")
    try:
        data = create_component("dataset", name, dict(context.model.data.get("options") or {}),
                               from_strings=False).load("train")
    except DifftkError:
        raise
    except Exception as err:  # a dataset plugin's own failure, said in one line
        raise DifftkError(f"metric '{metric}': dataset '{name}' failed to load its training split: "
                          f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    x = data.batch(torch.arange(len(data)))[0]
    return torch.unique(x.reshape(len(x), -1), dim=0).reshape(-1, *x.shape[1:])


def pairs_picture(samples: torch.Tensor, nearest: torch.Tensor, ratios: torch.Tensor) -> Image.Image:
    """Two rows of images in [−1, 1], the samples on top, each above its nearest training image, under a
    band that gives each column's ratio ℓ2(x̂, x₁)/ℓ2(x̂, x₂)."""
    grid = image_grid(torch.cat([samples, nearest]).clamp(-1, 1), cols=len(samples))
    picture = Image.new("RGB", (grid.width, grid.height + CAPTION), "white")
    picture.paste(grid, (0, CAPTION))
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    width = samples.shape[-1] + PAD
    for c, r in enumerate(ratios.tolist()):
        draw.text((PAD + c * width, 1), f"{r:.2f}", fill=(0, 0, 0), font=font)
    return picture


@attrs.frozen
class Memorization:
    """The fraction of samples that are near-copies of a training image: ℓ2(x̂, x₁)/ℓ2(x̂, x₂) < threshold.

    x₁, x₂ are the sample's two nearest distinct training examples in pixel space (the whole
    training split the model was trained on). The spread is the binomial standard error
    √(p(1−p)/n); with no sample flagged the details give the 95 % upper bound 1 − 0.05^(1/n)
    instead. ``pairs=FILE.png`` writes the ``shown`` samples of lowest ratio above their nearest
    training images, each column captioned with its ratio.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"

    n: int = option(500, help="samples generated", ge=1)
    threshold: float = option(1 / 3, help="nearest/second-nearest distance ratio below which a sample is a copy",
                              gt=0, lt=1)
    pairs: str | None = option(None, help="write the most copy-like samples above their nearest training images to "
                                          "this PNG", optional=True)
    shown: int = option(16, help="samples the pairs picture shows, lowest ratio first", ge=1, le=256)

    def evaluate(self, context: EvalContext) -> MetricResult:
        if self.pairs is not None:
            if context.model.data.get("kind", "image") != "image":
                raise OptionError("memorization: option pairs draws images, but this model makes points: leave it out")
            check_output(Path(self.pairs))  # before sampling, so no work is lost to a bad path
        train = training_split(context, "memorization")
        if len(train) < 2:
            raise DifftkError(f"metric 'memorization' needs at least 2 distinct training examples, got {len(train)}")
        samples = context.samples(self.n, context.balanced_labels(self.n))
        ratio, nearest = copy_ratios(samples, train)
        flagged = ratio < self.threshold
        p, k = float(flagged.double().mean()), int(flagged.sum())
        details = {"flagged": f"{k} of {self.n}", "median ratio": round(float(ratio.median()), 4),
                   "threshold": round(self.threshold, 4), "training examples": f"{len(train):,} distinct",
                   "distance": "ℓ2 in pixels"}
        if k == 0:
            details["95% upper bound"] = round(1 - 0.05 ** (1 / self.n), 4)
        if self.pairs is not None:
            order = ratio.argsort()[: self.shown]
            save_png(pairs_picture(samples[order], train[nearest[order]], ratio[order]), self.pairs)
            details["pairs"] = f"wrote {self.pairs} ({len(order)} samples above their nearest training images)"
        return MetricResult(name="memorization", value=p, spread=math.sqrt(p * (1 - p) / self.n), n=self.n,
                            spread_kind="binomial standard error", details=details)
