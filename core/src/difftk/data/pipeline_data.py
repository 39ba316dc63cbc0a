"""The data a pipeline trains on: read it, describe it, size the denoiser's data options to it and check them.

A pipeline file says which denoiser to train, not how big the data is. Before the model is
built, the options that describe the data — whichever of :data:`DATA_OPTIONS` the denoiser
has — are taken from the dataset; the options the denoiser derives from them (those left
unset, ``none``, such as unet-attn's attention resolutions) are then written out, so the
spec a checkpoint stores holds every value. The built denoiser is called once on two
examples, so that data it cannot take is a one-line error before training starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.components import plugins
from difftk.components.autoencoding import space_shape, to_latent
from difftk.components.protocols import derived_options, learned_variance_of, num_classes_of
from difftk.data.examples import Examples
from difftk.data.images import point_bounds
from difftk.errors import DifftkError, IncompatibleError, OptionError
from difftk.pipeline.compose import Pipeline, compose_spec, create_component, spec_of
from difftk.pipeline.spec import ComponentSpec, PipelineSpec

#: denoiser options that describe the data, filled from the dataset before the model is built
DATA_OPTIONS: tuple[str, ...] = ("in_channels", "image_size", "num_classes")


def load_dataset(name: str, path: str | None = None, split: str = "train",
                 options: Mapping[str, Any] | None = None) -> tuple[Examples, ComponentSpec]:
    """Create dataset component ``name`` (with ``path`` and ``options`` if given: strings are
    parsed, as from a command line), load ``split``, and describe it.

    An unknown name or option gets the registry's did-you-mean; a dataset that does not read
    from a path, a missing path and a failed load are one-line errors.
    """
    info = plugins.registry().get("dataset", name)
    options = dict(options or {})
    fields = info.option_fields()
    if path is not None:
        if "path" not in fields:
            raise OptionError(f"dataset '{name}' does not read from a path: use data={name}")
        options["path"] = path
    elif "path" in fields and fields["path"].default is attrs.NOTHING and "path" not in options:
        raise OptionError(f"dataset '{name}' needs option(s) path: give it as data={name}:PATH")
    component = create_component("dataset", name, options)
    try:
        data = component.load(split)
    except DifftkError:
        raise
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise DifftkError(f"dataset '{name}' cannot be read: {err.strerror or err}{where}") from None
    except Exception as err:
        raise DifftkError(f"dataset '{name}' failed to load: {type(err).__name__}: {' '.join(str(err).split())}") from None
    if not isinstance(data, Examples):
        raise IncompatibleError(f"dataset '{name}' returned a {type(data).__name__}, which lacks the surface of "
                                "difftk.data.examples.Examples (an ArrayDataset or IndexedImages has it)")
    return data, spec_of("dataset", component)


def describe_dataset(dataset: Examples, spec: ComponentSpec | None = None) -> dict[str, Any]:
    """What a checkpoint records about its data: enough to sample, to load it again on a resume
    (name and options, the path among them) and to tell it from other data (``fingerprint``)."""
    info: dict[str, Any] = {
        "name": spec.name if spec is not None else dataset.name,
        "kind": dataset.kind, "shape": list(dataset.shape), "size": len(dataset),
        "num_classes": dataset.num_classes, "class_names": list(dataset.class_names),
        "fingerprint": dataset.fingerprint(),
    }
    if spec is not None:
        info["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.options}
        if spec.plugin:
            info["plugin"] = spec.plugin
    if dataset.kind == "points":
        info["bounds"] = list(point_bounds(dataset.data))
    return info


def data_options(denoiser: ComponentSpec, dataset: Examples, shape: tuple[int, ...] | None = None) -> dict[str, int]:
    """The values of :data:`DATA_OPTIONS` the denoiser has, read from the dataset; ``shape`` is the
    shape the denoiser works in when it is not the data's (an autoencoder's latents)."""
    fields = plugins.registry().get("denoiser", denoiser.name).option_fields()
    label = f"denoiser '{denoiser.name}'"
    kind = dataset.kind if shape is None else ("image" if len(shape) == 3 else "points")
    shape = dataset.shape if shape is None else shape
    out: dict[str, int] = {}
    if kind == "image":
        C, H, W = shape
        if "in_channels" in fields:
            out["in_channels"] = C
        if "image_size" in fields:
            if H != W:
                raise IncompatibleError(f"{label} takes square images, but {dataset.name} has {H}×{W} images")
            out["image_size"] = H
    else:
        if "image_size" in fields:
            raise IncompatibleError(f"{label} takes images (it has an image_size option), but {dataset.name} holds "
                                    f"{shape[0]}-D points: use a denoiser for vectors")
        if "in_channels" in fields:
            out["in_channels"] = shape[0]
    if "num_classes" in fields:
        out["num_classes"] = dataset.num_classes
    return out


def size_to_data(pipeline: PipelineSpec | Pipeline, dataset: Examples, *, source: str = "pipeline",
                 kinds: tuple[str, ...] = ("denoiser", "objective")) -> tuple[Pipeline, dict[str, Any]]:
    """Compose ``pipeline`` with the denoiser's data options (channels, size, classes) taken from ``dataset``, and the options
    it derives from them written out.

    Returns the live pipeline (whose spec holds every value) and the options that were filled
    or derived. The denoiser is then called once on two examples, so that data it cannot take
    (an image size its architecture does not allow) is a one-line error here rather than a
    traceback in the first step. ``kinds`` are the components the pipeline must have.
    """
    spec = pipeline.spec if isinstance(pipeline, Pipeline) else pipeline
    for kind in kinds:
        if kind not in spec:
            raise OptionError(f"{source} has no {kind}, so it cannot be trained: compose it with {kind}=NAME")
    den = spec["denoiser"]
    first = spec.get("autoencoder")
    autoencoder = create_component("autoencoder", first.name, first.options_dict, from_strings=False) if first else None
    filled = data_options(den, dataset, latent_shape(autoencoder, dataset) if autoencoder is not None else None)
    new = ComponentSpec(den.name, {**den.options_dict, **filled}, den.plugin, den.version)
    spec = PipelineSpec({**dict(spec.components), "denoiser": new})
    try:
        live = compose_spec(spec, source=source)
    except OptionError as err:
        if not str(err).startswith(f"denoiser '{den.name}'") or not filled:
            raise  # another component's own option (e.g. schedule T='abc'): not the data's doing
        given = ", ".join(f"{k}={v}" for k, v in filled.items())
        reason = str(err).removeprefix(f"denoiser '{den.name}': ")
        raise OptionError(f"{dataset.name} gives {given}, which denoiser '{den.name}' cannot take: {reason}") from None
    if not isinstance(live.denoiser, torch.nn.Module) or not any(True for _ in live.denoiser.parameters()):
        raise IncompatibleError(f"denoiser '{den.name}' has no trainable parameters (it must be a torch.nn.Module)")
    derived = derived_options(live.denoiser)
    if derived:  # the same network, its spec with every value written out
        built = live.spec["denoiser"]
        written = ComponentSpec(den.name, {**built.options_dict, **derived}, built.plugin, built.version)
        live = attrs.evolve(live, spec=PipelineSpec({**dict(live.spec.components), "denoiser": written}))
    _probe(live.denoiser, dataset, den.name, live.autoencoder)
    return live, {**filled, **derived}


def latent_shape(autoencoder: Any, dataset: Examples) -> tuple[int, ...]:
    """The shape of one latent of ``dataset``'s examples; data the autoencoder cannot take is one line."""
    try:
        return space_shape(autoencoder, tuple(dataset.shape))
    except DifftkError:
        raise
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise IncompatibleError(f"the autoencoder cannot take {dataset.name} examples of shape {tuple(dataset.shape)}: "
                                f"{type(err).__name__}: {reason}") from None


def _probe(denoiser: torch.nn.Module, dataset: Examples, name: str, autoencoder: Any = None) -> None:
    """Call the denoiser once on the CPU (eval mode, no gradients) on two examples (encoded, with an
    autoencoder) and check the output shape."""
    x, y = dataset.batch(torch.arange(min(2, len(dataset))))
    if autoencoder is not None:
        x = to_latent(autoencoder, x)
    t = torch.full((len(x),), 0.5)
    cond = y if num_classes_of(denoiser) > 0 and y is not None else None
    was_training = denoiser.training
    denoiser.eval()
    try:
        with torch.no_grad():
            out = denoiser(x, t, cond=cond)
    except DifftkError:
        raise
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise IncompatibleError(f"denoiser '{name}' cannot take {dataset.name} {'latents' if autoencoder else 'examples'} "
                                f"of shape {tuple(x.shape[1:])}: {type(err).__name__}: {reason}") from None
    finally:
        denoiser.train(was_training)
    expect = list(x.shape)
    if learned_variance_of(denoiser):
        expect[1] *= 2
    if list(out.shape) != expect:
        raise IncompatibleError(f"denoiser '{name}' returned shape {tuple(out.shape)} for {dataset.name} examples "
                                f"of shape {tuple(x.shape)}; expected {tuple(expect)}")
