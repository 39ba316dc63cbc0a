"""classifier-score of real digits: the shipped MNIST test and train digits scored as a set of images, through
the same metric `difftk evaluate --metric classifier-score` runs (the shipped MNIST feature network), to say
what a perfect sampler of MNIST would score. The train digits are the ones the feature network was trained on.

    python benchmarks/real_classifier_score.py
"""

from __future__ import annotations

import difftk
import torch
from difftk.data.arrays import ArrayDataset, to_uint8_images
from difftk.data.pipeline_data import load_dataset
from difftk.evaluation.context import EvalContext


def main() -> None:
    for split in ("test", "train"):
        data, _ = load_dataset("mnist", split=split)
        x, y = data.batch(torch.arange(len(data)))
        images = ArrayDataset(to_uint8_images(x), y, num_classes=data.num_classes, name=f"mnist-{split}")
        metric = difftk.create("metric", "classifier-score", n=len(data))
        print(f"{split:5s} {metric.evaluate(EvalContext.from_images(images, None))}")


if __name__ == "__main__":
    main()
