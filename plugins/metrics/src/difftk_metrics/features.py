"""The feature networks the image metrics see images through, chosen by each metric's ``features``
option, and the held-out data's features, kept in a cache.

- ``mnist``: the MNIST classifier shipped with this plugin (:mod:`difftk_metrics.network`), 128 units;
  the default for 1×28×28 images.
- ``inception`` or ``inception:FILE``: Inception-v3 in the FID variant (:mod:`difftk_metrics.inception`),
  pool3 (2048 units) and 1008 logits, from a local weights file (:func:`inception_weights` finds it);
  the default for every other image shape.
- ``classifier:FILE``: a classifier made by ``difftk train-classifier`` on the user's own data, read at
  t = 0 (clean images): the input of its last linear layer are the features, its output the logits.

A network is a small frozen class with ``check`` (one line when it cannot read images of a shape),
``embed`` (features and logits) and ``key`` (what its features depend on, for the cache).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import warnings
import weakref
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.data.arrays import ArrayDataset
from difftk.data.examples import Examples
from difftk.errors import CheckpointError, DifftkError, OptionError, did_you_mean
from difftk.maths.stats import moments
from difftk.options import option
from difftk.runtime.files import atomic_write_bytes, short_path

from difftk_metrics import inception, network

#: the files pytorch-fid and torch-fidelity distribute (the same TensorFlow graph, the same key names)
INCEPTION_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILES[0]
INCEPTION_ENV = "DIFFTK_INCEPTION_WEIGHTS"
#: where the held-out data's features are kept (default: $XDG_CACHE_HOME/difftk, or ~/.cache/difftk)
CACHE_ENV = "DIFFTK_CACHE_DIR"
#: images embedded at once (Inception-v3 at 299 px holds ≈ 40 MB of activations per image)
BATCH = {"mnist": 500, "inception": 25, "classifier": 250}


def features_option():
    """The ``features`` option every image metric has."""
    return option("auto", help="feature network: auto (mnist for 1×28×28 images, inception otherwise), mnist, "
                               "inception, inception:FILE or classifier:FILE")


# --- the networks --------------------------------------------------------------------------------------


@attrs.frozen
class MnistFeatures:
    """The shipped MNIST classifier: 128 penultimate units, 10 logits, for 1×28×28 images only."""

    kind: ClassVar[str] = "mnist"
    key: ClassVar[str | None] = None  # its features of 500 digits take milliseconds: nothing to cache
    dims: ClassVar[int] = network.FEATURES

    @property
    def description(self) -> str:
        return f"MNIST classifier, {network.FEATURES} units"

    def check(self, metric: str, shape: tuple[int, ...], what: str) -> None:
        if tuple(shape) != network.SHAPE:
            raise DifftkError(f"metric '{metric}' with features=mnist judges MNIST digits (1×28×28), but {what} has "
                              f"examples of shape {'×'.join(map(str, shape))}: give features=inception or "
                              "features=classifier:FILE")

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return network.embed(images, BATCH["mnist"])


@attrs.frozen
class InceptionFeatures:
    """Inception-v3 (FID variant) from the weights file ``path``: pool3 (2048) and the 1008 logits, computed on
    ``device`` (the evaluated model's)."""

    path: Path
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"), converter=torch.device)
    kind: ClassVar[str] = "inception"
    dims: ClassVar[int] = inception.FEATURES

    @property
    def description(self) -> str:
        return f"Inception-v3 pool3, {inception.FEATURES} units ({self.path.name}, pytorch-fid resizing)"

    @property
    def key(self) -> str:
        return f"inception-{file_digest(self.path)}"

    def check(self, metric: str, shape: tuple[int, ...], what: str) -> None:
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise DifftkError(f"metric '{metric}' with features=inception reads grey or RGB images, but {what} has "
                              f"examples of shape {'×'.join(map(str, shape))}")

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = inception_net(self.path, self.path.stat().st_mtime_ns).to(self.device)
        feats, logits = [], []
        for start in range(0, len(images), BATCH["inception"]):
            f, y = net(inception.prepare(images[start:start + BATCH["inception"]].cpu()).to(self.device))
            feats.append(f.double().cpu())
            logits.append(y.cpu())
        return torch.cat(feats), torch.cat(logits)


@attrs.frozen
class ClassifierFeatures:
    """A classifier file of ``difftk train-classifier``, at t = 0: its last linear layer's input and output."""

    path: Path
    kind: ClassVar[str] = "classifier"

    @property
    def dims(self) -> int:
        return self._parts()[1].in_features

    @property
    def num_classes(self) -> int:
        return self._parts()[1].out_features

    @property
    def description(self) -> str:
        return f"classifier {self.path.name}, {self.dims} units"

    @property
    def key(self) -> str:
        return f"classifier-{file_digest(self.path)}"

    def _parts(self) -> tuple[torch.nn.Module, torch.nn.Linear]:
        return classifier_net(self.path, self.path.stat().st_mtime_ns)

    def check(self, metric: str, shape: tuple[int, ...], what: str) -> None:
        net, _ = self._parts()
        config = getattr(net, "config", None)
        wanted = (getattr(config, "in_channels", None), getattr(config, "image_size", None))
        if len(shape) != 3 or (None not in wanted and (shape[0], shape[1], shape[2]) != (wanted[0], wanted[1], wanted[1])):
            raise DifftkError(f"metric '{metric}': the classifier {short_path(self.path)} reads "
                              f"{wanted[0]}×{wanted[1]}×{wanted[1]} images, but {what} has examples of shape "
                              f"{'×'.join(map(str, shape))}: train one on that data with `difftk train-classifier`")

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net, last = self._parts()
        seen: list[torch.Tensor] = []
        hook = last.register_forward_pre_hook(lambda _, args: seen.append(args[0].flatten(1)))
        try:
            logits = [net(x.float(), torch.zeros(len(x))) for x in torch.split(images.cpu(), BATCH["classifier"])]
        finally:
            hook.remove()
        return torch.cat(seen).double(), torch.cat(logits)


FeatureNetwork = MnistFeatures | InceptionFeatures | ClassifierFeatures

#: (id of an images tensor, network) -> (a weak reference to the tensor, its features and logits)
_EMBEDDED: dict[tuple[int, str, str | None], tuple[weakref.ref, tuple[torch.Tensor, torch.Tensor]]] = {}


def embed(net: FeatureNetwork, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``net.embed(images)``, remembered while the tensor lives: the metrics of one evaluation share
    their samples (:meth:`EvalContext.samples` returns one tensor), so they share its features too,
    and Inception runs once per sample, not once per metric."""
    key = (id(images), net.kind, getattr(net, "path", None) and str(net.path))
    found = _EMBEDDED.get(key)
    if found is not None and found[0]() is images:
        return found[1]
    result = net.embed(images)
    _EMBEDDED[key] = (weakref.ref(images), result)
    weakref.finalize(images, _EMBEDDED.pop, key, None)
    return result


def feature_network(spec: str, shape: tuple[int, ...], metric: str, device: torch.device | str = "cpu") -> FeatureNetwork:
    """The network ``features=spec`` names for images of ``shape`` (Inception runs on ``device``); one line
    when it is unknown or its file cannot be found."""
    name, _, path = spec.partition(":")
    if name == "auto" and not path:
        name = "mnist" if tuple(shape) == network.SHAPE else "inception"
    if name == "mnist" and not path:
        return MnistFeatures()
    if name == "inception":
        return InceptionFeatures(inception_weights(path or None), device)
    if name == "classifier" and path:
        return ClassifierFeatures(classifier_file(path, spec, metric))
    raise OptionError(f"metric '{metric}': option features={spec!r} is not a feature network (choose from auto, "
                      "mnist, inception, inception:FILE, classifier:FILE)")


def classifier_file(value: str, spec: str, metric: str) -> Path:
    """The classifier file ``value`` names: a path, or the name a plugin ships a classifier under
    (``register.add_weights("classifier", COMPONENT, NAME, PATH)``, e.g. ``emoji-judge``); one line when
    it is neither."""
    from difftk.components import plugins
    from difftk.components.weights import is_path

    if is_path(value):
        if not Path(value).expanduser().is_file():
            raise OptionError(f"metric '{metric}': features={spec}: no such classifier file (make one with "
                              "`difftk train-classifier`)")
        return Path(value).expanduser()
    shipped = {w.name: w.path for w in plugins.registry().weights.values() if w.kind == "classifier"}
    if value in shipped:
        return shipped[value]
    names = ", ".join(sorted(shipped)) or "none installed"
    raise OptionError(f"metric '{metric}': features={spec}: no such classifier file, nor a shipped classifier of that "
                      f"name (shipped: {names}; make one with `difftk train-classifier`)"
                      f"{did_you_mean(value, sorted(shipped))}")


def context_device(context) -> torch.device:
    """The device of the evaluated model, or the CPU when the context has none."""
    try:
        return torch.device(context.device)
    except Exception:  # noqa: BLE001 - images given without a model
        return torch.device("cpu")


# --- Inception weights -----------------------------------------------------------------------------------


def inception_weights(given: str | None = None) -> Path:
    """The Inception weights file: ``given`` (features=inception:FILE), else $DIFFTK_INCEPTION_WEIGHTS, else
    either distributed file in torch.hub's checkpoint folder (where pytorch-fid and torch-fidelity keep what
    they download). One line, saying what to fetch and where to put it, when there is none."""
    for where, value in (("features=inception:FILE", given), (f"${INCEPTION_ENV}", os.environ.get(INCEPTION_ENV))):
        if value:
            if not Path(value).is_file():
                raise OptionError(f"{where} names {value}, which is not a file: give the path of "
                                  f"{INCEPTION_FILES[0]} or {INCEPTION_FILES[1]}")
            return Path(value)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in INCEPTION_FILES:
        if (folder / name).is_file():
            return folder / name
    raise DifftkError(f"features=inception needs the FID Inception-v3 weights {INCEPTION_FILES[0]} (pytorch-fid's "
                      f"release, {INCEPTION_URL}; torch-fidelity's {INCEPTION_FILES[1]} also works), which difftk "
                      f"never downloads: put it in {folder}, set {INCEPTION_ENV}=FILE, or give features=inception:FILE")


def read_state_dict(path: Path, module: torch.nn.Module, what: str) -> dict[str, torch.Tensor]:
    """A PyTorch state dict file (a pickle: read with weights_only=True, which runs no code) checked against
    ``module``: the same names and shapes, finite floating-point values; one line for anything else."""
    try:
        with warnings.catch_warnings():  # the unpickler's notes on foreign pickles: the error below says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, a pickle that is no state dict, a hostile one
        reason = " ".join(str(err).split())
        raise CheckpointError(f"{short_path(path)} cannot be read as the {what} weights (a PyTorch state dict): "
                              f"{reason[:200]}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{short_path(path)} is not a state dict of tensors: it cannot be the {what} weights")
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # one file has them
    expected = {k: v.shape for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        parts = [f"{label} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise CheckpointError(f"{short_path(path)} does not hold the {what} weights ({'; '.join(parts)})")
    for k, shape in expected.items():
        if state[k].shape != shape:
            raise CheckpointError(f"{short_path(path)}: {k} has shape {tuple(state[k].shape)}, the {what} needs "
                                  f"{tuple(shape)}")
        if not state[k].is_floating_point() or not torch.isfinite(state[k]).all():
            raise CheckpointError(f"{short_path(path)}: {k} holds non-finite or non-float values: the file is corrupt")
    return state


@functools.lru_cache(maxsize=2)
def inception_net(path: Path, mtime: int) -> inception.InceptionV3:
    """The network with the weights of ``path`` (loaded once per file version), in eval mode on the CPU."""
    net = inception.InceptionV3()
    net.load_state_dict(read_state_dict(path, net, "FID Inception-v3"), strict=False)
    return net.eval().requires_grad_(False)


@functools.lru_cache(maxsize=2)
def classifier_net(path: Path, mtime: int) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """The classifier of ``path`` and its last linear layer (its input are the features)."""
    from difftk.checkpoint.classifier_file import load_classifier

    net = load_classifier(path)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear) and m.out_features == net.num_classes]
    if not linears:
        raise DifftkError(f"{short_path(path)}: the classifier has no linear layer to its {net.num_classes} logits, "
                          "so it has no penultimate features")
    return net, linears[-1]


@functools.lru_cache(maxsize=8)
def _digest(path: Path, size: int, mtime: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file (computed once per file version)."""
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime_ns)


# --- the held-out data's features ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """$DIFFTK_CACHE_DIR, else $XDG_CACHE_HOME/difftk, else ~/.cache/difftk."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "difftk"


#: images decoded at once to digest a dataset held as files
DIGEST_CHUNK = 256


def data_digest(data: Examples) -> str:
    """The first 16 hex digits of the SHA-256 of a dataset's examples (their bytes and shape). A dataset
    held in memory is hashed as it is; one held as files (an image folder) is decoded in chunks and its
    pixels hashed, so the key follows what the metrics see, whatever the folder's resize options."""
    if isinstance(data, ArrayDataset):
        h = hashlib.sha256(repr((tuple(data.data.shape), str(data.data.dtype))).encode())
        h.update(data.data.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
    h = hashlib.sha256(repr(((len(data), *data.shape), "torch.uint8")).encode())
    for start in range(0, len(data), DIGEST_CHUNK):
        images, _ = data.read(torch.arange(start, min(start + DIGEST_CHUNK, len(data))))
        h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def held_out_features(data: Examples, net: FeatureNetwork) -> tuple[torch.Tensor, str]:
    """Features [N, D] (float64) of every example of ``data`` in stored order, and where they came from.

    For a network with a ``key`` they are kept in the cache folder, in a file named by the data's and
    the network's digests that also holds their mean ``mu`` and covariance ``sigma`` (pytorch-fid's
    ``.npz`` layout, so the file can be given as fid's ``reference``). A cache file that does not read
    back as features of the right shape is computed again; one that cannot be written is skipped."""
    images = lambda: data.batch(torch.arange(len(data)))[0]  # noqa: E731
    if net.key is None:
        return net.embed(images())[0], f"{data.name} held-out split, {len(data)} images"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", data.name)[:64]  # a file name, whatever the dataset calls itself
    path = cache_dir() / "features" / f"{name}-{data_digest(data)}-{net.key}.npz"
    where = f"{data.name} held-out split, {len(data)} images (features cached in {short_path(path)})"
    try:
        with np.load(path, allow_pickle=False) as f:
            features = torch.from_numpy(f["features"]).to(torch.float64)
        if features.ndim == 2 and len(features) == len(data) and torch.isfinite(features).all():
            return features, where
    except Exception:  # noqa: BLE001 - absent, truncated or foreign: computed again below
        pass
    features = net.embed(images())[0]
    mu, sigma = moments(features)
    buffer = io.BytesIO()  # the networks compute in float32: float32 features lose nothing
    np.savez(buffer, features=features.float().numpy(), mu=mu.numpy(), sigma=sigma.numpy())
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except DifftkError:
        where = f"{data.name} held-out split, {len(data)} images"
    return features, where



def read_reference(path: str, dims: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ [D], Σ [D, D]) from a ``.npz`` in pytorch-fid's layout (arrays ``mu`` and ``sigma``), checked:
    D equal to the features' ``dims``, finite, Σ symmetric; one line for anything else."""
    where = f"metric '{metric}': reference={path}"
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile) or not {"mu", "sigma"} <= set(f.files):
                raise CheckpointError(f"{where} holds no arrays 'mu' and 'sigma': give statistics in pytorch-fid's "
                                      ".npz layout")
            mu, sigma = f["mu"], f["sigma"]
    except FileNotFoundError:
        raise OptionError(f"{where}: no such file") from None
    except DifftkError:
        raise
    except Exception as err:  # not an .npz, a truncated one (zipfile's errors), object arrays
        raise CheckpointError(f"{where} cannot be read as an .npz of arrays: {' '.join(str(err).split())[:200]}") from None
    if mu.shape != (dims,) or sigma.shape != (dims, dims):
        raise CheckpointError(f"{where} holds mu of shape {mu.shape} and sigma of shape {sigma.shape}, but the "
                              f"features have {dims} units: give statistics of the same feature network")
    if mu.dtype.kind != "f" or sigma.dtype.kind != "f" or not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise CheckpointError(f"{where} holds non-finite or non-float statistics")
    mu_t, sigma_t = torch.from_numpy(mu).to(torch.float64), torch.from_numpy(sigma).to(torch.float64)
    if not torch.allclose(sigma_t, sigma_t.T, rtol=1e-5, atol=1e-8 * float(sigma_t.abs().max())):
        raise CheckpointError(f"{where}: sigma is not symmetric, so it is no covariance")
    return mu_t, sigma_t
