"""``fid``, ``accuracy`` and ``sliced-wasserstein``: how good a model's samples are."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.maths.distances import sliced_wasserstein
from difftk.maths.stats import bootstrap_standard_error, frechet_distance_factors, gaussian_factor, psd_factor
from difftk.options import option

from difftk_metrics import network
from difftk_metrics.features import (MnistFeatures, context_device, embed, feature_network, features_option,
                                     held_out_features, inception_weights, read_reference)


#: below this many samples FID's upward bias is larger than the differences studies look for (docs/metrics.md)
TRUSTED_FID_N = 2000


@attrs.frozen
class FID:
    """Fréchet distance between feature Gaussians of samples and held-out images (Heusel et al. 2017).

    Features come from the network the ``features`` option names (``difftk_metrics.features``): the
    shipped MNIST classifier's 128 units for 1×28×28 images, Inception-v3's pool3 from a local
    weights file for any other (``docs/metrics.md``: which, and why). The reference statistics come
    from every image of the held-out split, or from ``reference``, a ``.npz`` of ``mu`` and ``sigma``
    in pytorch-fid's layout (published statistics, or the cache file of an earlier run). Samples are
    drawn as the evaluated pipeline draws them (sampler, steps, guidance); a class-conditional model
    draws the classes in equal numbers. The spread is a bootstrap standard error over the generated
    set. FID is biased upward at small n: compare values at equal n only.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"

    n: int = option(500, help="samples generated", ge=10)
    bootstrap: int = option(20, help="bootstrap resamples for the standard error", ge=2, le=1000)
    features: str = features_option()
    reference: str | None = option(None, optional=True, help="a .npz of reference statistics mu, sigma (pytorch-fid's "
                                                              "layout) to measure against instead of the held-out split")

    def evaluate(self, context: EvalContext) -> MetricResult:
        net = feature_network(self.features, context.shape, "fid", context_device(context))
        net.check("fid", context.shape, "this model")
        if self.reference is not None:
            mu_r, sigma_r = read_reference(self.reference, net.dims, "fid")
            root_r = psd_factor(sigma_r)
            where = f"statistics of {self.reference}"
        else:
            data = context.held_out("fid")
            net.check("fid", data.shape, data.name)
            real, where = held_out_features(data, net)
            mu_r, root_r = gaussian_factor(real)
        fake, _ = embed(net, context.samples(self.n, context.balanced_labels(self.n)))
        distance = lambda f: frechet_distance_factors(*gaussian_factor(f), mu_r, root_r)  # noqa: E731
        value = distance(fake)
        g = torch.Generator().manual_seed(context.seed + 1)
        spread = bootstrap_standard_error(distance, fake, resamples=self.bootstrap, generator=g)
        scale = " (real digits score 103–140 at n = 500)" if net.kind == "mnist" else ""
        caveat = "" if self.n >= TRUSTED_FID_N else (
            f"fid at n = {self.n:,} is biased upward (it falls as n grows{scale}): "
            f"compare FIDs only at equal n, or use n ≥ {TRUSTED_FID_N:,}")
        return MetricResult(name="fid", value=value, spread=spread, n=self.n, spread_kind="bootstrap standard error",
                            details={"reference": where, "features": net.description, "steps": context.steps},
                            caveat=caveat)


@attrs.frozen
class ConditionalAccuracy:
    """The fraction of samples drawn for class y that a classifier labels y.

    The classifier follows the ``features`` option the image metrics share: a classifier file of
    ``difftk train-classifier`` trained on the same classes (``classifier:FILE``, read at t = 0),
    for any images; otherwise the shipped MNIST classifier, for 1×28×28 digits. Inception's 1,008
    ImageNet logits are not a model's classes, so with ``inception`` (FID and KID in Inception's
    features) digits are still read by the MNIST classifier and other images need a classifier file.
    Classes are drawn in equal numbers; guidance, when the evaluated pipeline has one, is applied
    (``--scale`` changes its strength). The spread is the binomial standard error √(p(1−p)/n).
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "higher"

    n: int = option(500, help="samples generated", ge=1)
    features: str = option("auto", help="the classifier: classifier:FILE (a `difftk train-classifier` file of the "
                                        "model's classes), else the MNIST one for 1×28×28 digits")

    def classifier(self, context: EvalContext):
        """The network whose logits label the samples; one line when there is none for these images."""
        shape = tuple(context.shape)
        name, _, path = self.features.partition(":")
        if name == "classifier":
            net = feature_network(self.features, shape, "accuracy")
            net.check("accuracy", shape, "this model")
            if net.num_classes != context.num_classes:
                raise DifftkError(f"metric 'accuracy': the classifier ({net.description}) has {net.num_classes} "
                                  f"classes, but this model draws {context.num_classes}: give a classifier trained on "
                                  "the model's data")
            return net
        if name == "inception" and path:
            inception_weights(path)  # a named weights file that is not there: one line, as for fid
        elif self.features not in ("auto", "mnist", "inception"):
            feature_network(self.features, shape, "accuracy")  # an unknown name: one line, as for fid
        if shape == network.SHAPE:
            if context.num_classes > 10:
                raise DifftkError(f"metric 'accuracy': the MNIST classifier has 10 classes, but this model draws "
                                  f"{context.num_classes}: give --set metric.features=classifier:FILE")
            return MnistFeatures()
        what = "reads MNIST digits (1×28×28) only" if self.features == "mnist" else "has no classifier built in"
        raise DifftkError(f"metric 'accuracy' needs a classifier of this model's {context.num_classes} classes and "
                          f"{what}, but this model makes {'×'.join(map(str, shape))} images: give "
                          "--set metric.features=classifier:FILE (make one with `difftk train-classifier`; fid and "
                          "kid then read its features too)")

    def evaluate(self, context: EvalContext) -> MetricResult:
        if context.num_classes <= 0:
            raise DifftkError("metric 'accuracy' measures a class-conditional model, but this one is unconditional "
                              "(num_classes=0): use fid instead")
        net = self.classifier(context)
        labels = context.balanced_labels(self.n)
        _, logits = embed(net, context.samples(self.n, labels))
        labels = labels.cpu()
        correct = (logits.argmax(dim=1).cpu() == labels).double()
        p = float(correct.mean())
        per_class = {c: round(float(correct[labels == c].mean()), 4)  # classes the n samples hold
                     for c in range(context.num_classes) if bool((labels == c).any())}
        return MetricResult(name="accuracy", value=p, spread=(p * (1 - p) / self.n) ** 0.5, n=self.n,
                            spread_kind="binomial standard error",
                            details={"per class": per_class, "classifier": net.description})


@attrs.frozen
class SlicedWasserstein:
    """Sliced 1-Wasserstein distance between samples and held-out points (Bonneel et al. 2015).

    For point data (the 2-D toys). The spread is a bootstrap standard error over the samples.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"

    n: int = option(1000, help="samples generated", ge=10)
    projections: int = option(128, help="random directions the distance averages over", ge=1, le=10_000)
    bootstrap: int = option(20, help="bootstrap resamples for the standard error", ge=2, le=1000)

    def evaluate(self, context: EvalContext) -> MetricResult:
        data = context.held_out("sliced-wasserstein", kind="points")
        real = data.batch(torch.arange(len(data)))[0]
        fake = context.samples(self.n, context.balanced_labels(self.n))
        distance = lambda x: sliced_wasserstein(x, real, self.projections, context.seed)  # noqa: E731
        g = torch.Generator().manual_seed(context.seed + 1)
        return MetricResult(name="sliced-wasserstein", value=distance(fake), n=self.n,
                            spread=bootstrap_standard_error(distance, fake, resamples=self.bootstrap, generator=g),
                            spread_kind="bootstrap standard error",
                            details={"reference": f"{data.name} held-out split, {len(real)} points"})
