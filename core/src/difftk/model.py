"""The trained model: what :func:`difftk.load` returns, and the one way anything draws samples.

A :class:`Model` is a pipeline, its denoiser (the EMA weights, in eval mode) and the
description of the data it was trained on. ``difftk sample``, ``difftk evaluate`` and
``compare``, every metric (through :class:`difftk.evaluation.context.EvalContext`) and the
trainer's sample grids all call :meth:`Model.sample`; the batch loop it runs
(:func:`difftk.sampling.draw.generate`) is called from nowhere else.

Rules that hold on every path, because they are written only here:

- the schedule is the model's own (the noise process is part of what it learned), so any
  registered sampler samples any model;
- ``guidance=None`` means the pipeline's own guidance, applied when the model is
  class-conditional; a guidance given by name (or ``scale``/options) is always applied;
  ``guidance=False`` samples unguided;
- a conditional model draws labels 0, 1, …, C−1, 0, … unless ``labels`` says otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.checkpoint.files import Checkpoint, read_checkpoint
from difftk.checkpoint.trained import trained_pipeline
from difftk.components import plugins
from difftk.components.protocols import num_classes_of
from difftk.data.images import grid_shape
from difftk.errors import CheckpointError, OptionError, UnknownComponentError
from difftk.pipeline.compose import Absent, Pipeline, create_component
from difftk.pipeline.spec import PipelineSpec
from difftk.sampling import latent
from difftk.sampling.draw import class_labels, class_rows, generate, parse_label
from difftk.sampling.edit import Edit
from difftk.sampling.steps import StepInfo


@attrs.frozen(eq=False)
class Model:
    """A pipeline with its trained denoiser, ready to sample.

    :param pipeline: the live pipeline (schedule, sampler, guidance, … as trained).
    :param denoiser: the network to sample with (a checkpoint's EMA weights), in eval mode.
    :param data: the description of the training data, as checkpoints store it (``kind``,
        ``shape``, ``num_classes``, ``class_names``, ``bounds``, ``name``, ``options``).
    :param checkpoint: the checkpoint it was read from; ``None`` for a model being trained.
    """

    pipeline: Pipeline
    denoiser: torch.nn.Module
    data: Mapping[str, Any] = attrs.field(converter=lambda d: describe(d))
    checkpoint: Checkpoint | None = None

    @classmethod
    def load(cls, source: str | Path, device: torch.device | str = "cpu") -> Model:
        """:func:`load`."""
        return load(source, device)

    # -- what it is ----------------------------------------------------------------------------

    @property
    def schedule(self) -> Any:
        """The noise schedule the model was trained with (and samples with)."""
        return self.pipeline.schedule

    @property
    def device(self) -> torch.device:
        """Where the denoiser's weights are."""
        parameters = getattr(self.denoiser, "parameters", None)
        first = next(iter(parameters()), None) if callable(parameters) else None
        return first.device if first is not None else torch.device("cpu")

    @property
    def data_kind(self) -> str:
        """``"image"`` or ``"points"``: what the model was trained on."""
        return self.data.get("kind", "image")

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (1, 28, 28)."""
        return tuple(self.data["shape"])

    @property
    def num_classes(self) -> int:
        """Classes the denoiser is conditioned on (0 when unconditional)."""
        return num_classes_of(self.denoiser)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data.get("class_names") or ())

    @property
    def step(self) -> int | None:
        """The training step of the checkpoint (``None`` for a model being trained)."""
        return self.checkpoint.step if self.checkpoint is not None else None

    def examples(self, split: str, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Examples ``indices`` of the ``split`` ("train" or "test") of the data the model was trained
        on, as float32 (images in [−1, 1]), with their labels: real images to edit."""
        name = self.data.get("name")
        if not name:
            raise CheckpointError("the model does not name its dataset: give the image to edit as a file")
        dataset = create_component("dataset", name, dict(self.data.get("options") or {}), from_strings=False).load(split)
        bad = [i for i in indices if not 0 <= i < len(dataset)]
        if bad:
            raise OptionError(f"example {bad[0]} is out of range: the {split} split of {name} has 0..{len(dataset) - 1}")
        return dataset.batch(torch.tensor(list(indices), dtype=torch.long))

    def plugin_mismatches(self) -> list[str]:
        """Plugins whose installed version differs from the one the checkpoint was made with."""
        if self.checkpoint is None:
            return []
        notes = []
        for name, version in sorted(self.checkpoint.plugins.items()):
            record = plugins.records().get(name)
            if record is not None and version and record.version and record.version != version:
                notes.append(f"plugin '{name}' is {record.version}; the checkpoint was made with {version}")
        return notes

    def using(self, spec: PipelineSpec, *, source: str = "pipeline") -> Model:
        """This model sampled with the sampler and guidance of ``spec`` (a pipeline file's); the
        schedule, if ``spec`` has one, must be the model's (the noise process is part of what the
        model learned), and whatever ``spec`` leaves out stays the model's."""
        merged = spec.sampling_part(self.pipeline.spec, source=source)
        sampler = create_component("sampler", None, None, base=merged["sampler"])
        guidance = create_component("guidance", None, None, base=merged["guidance"]) if "guidance" in merged else None
        pipeline = attrs.evolve(self.pipeline, spec=merged, sampler=sampler, guidance=guidance)
        return attrs.evolve(self, pipeline=pipeline)

    # -- how it samples --------------------------------------------------------------------------

    def sampler(self, sampler: Any = None, options: Mapping[str, Any] | None = None) -> Any:
        """The sampler ``sampler`` (a registered name, an instance, or ``None`` for the pipeline's)
        with ``options`` (values or command-line strings) over the pipeline's own when the name is its."""
        if sampler is not None and not isinstance(sampler, str):
            if options:
                raise OptionError("sampler options cannot be applied to a sampler given as an instance")
            return sampler
        if isinstance(self.pipeline.sampler, Absent) and (sampler is None or sampler == self.pipeline.sampler.name):
            raise self.pipeline.sampler.error()
        if sampler is None and not options:
            return self.pipeline.sampler
        return create_component("sampler", sampler, options, base=self.pipeline.spec.get("sampler"))

    def guidance(self, guidance: Any = None, options: Mapping[str, Any] | None = None, *,
                 scale: float | None = None) -> Any:
        """The guidance to sample with: ``None`` and nothing set gives the pipeline's own (or
        ``None``); ``False`` gives none; a name (or options, or ``scale``) builds one over the
        pipeline's options. A guidance that needs something of training (cfg: the null class)
        checks that the model had it."""
        if guidance is False:
            if scale is not None or options:
                raise OptionError("guidance=False samples unguided: drop scale and the guidance options")
            return None
        if guidance is not None and not isinstance(guidance, str):
            wrapper = guidance
        elif isinstance(self.pipeline.guidance, Absent) and (guidance is None or guidance == self.pipeline.guidance.name):
            raise self.pipeline.guidance.error()
        elif guidance is None and scale is None and not options:
            return self.pipeline.guidance
        else:
            merged = {**(options or {}), **({"scale": scale} if scale is not None else {})}
            wrapper = create_component("guidance", guidance, merged, base=self.pipeline.spec.get("guidance"))
        check = getattr(wrapper, "check_trained", None)
        if check is not None:
            check(self.pipeline.spec)
        return wrapper

    def guided_denoiser(self, guidance: Any = None, options: Mapping[str, Any] | None = None, *,
                        scale: float | None = None) -> tuple[Any, Any]:
        """(the denoiser to sample, the guidance wrapped around it or ``None``), by the rule of
        the module docstring: the pipeline's own guidance steers class-conditional models only."""
        explicit = guidance is not None or scale is not None or bool(options)
        if not explicit and self.num_classes == 0:
            return self.denoiser, None
        wrapper = self.guidance(guidance, options, scale=scale)
        if wrapper is None:
            return self.denoiser, None
        return wrapper.wrap(self.denoiser, self.schedule), wrapper

    #: the earlier name of :meth:`guided_denoiser`
    guided = guided_denoiser

    def labels(self, n: int, labels: Any = None, denoiser: Any = None) -> torch.Tensor | None:
        """The class labels of ``n`` samples from ``denoiser`` (default: the model's): 0, 1, …,
        C−1, 0, … when ``labels`` is ``None``; all one class for an index or a class name; or
        one per sample from a sequence. ``None`` for an unconditional model."""
        classes = num_classes_of(denoiser if denoiser is not None else self.denoiser)
        if labels is None or isinstance(labels, int | str):
            return class_labels(n, classes, labels, self.class_names)
        given = torch.as_tensor(labels, dtype=torch.long).flatten().cpu()
        if given.numel() != n:
            raise OptionError(f"labels has {given.numel()} entries for {n} samples: give one per sample, or one class")
        for value in sorted(set(given.tolist())):
            parse_label(value, classes, self.class_names)  # the range check, with its message
        return given

    def sample(self, n: int, *, sampler: Any = None, steps: int | None = None, guidance: Any = None,
               scale: float | None = None, labels: Any = None, seed: int = 0, batch_size: int | None = None,
               callback: Callable[[int, StepInfo], None] | None = None, ranks: Any = None,
               guidance_options: Mapping[str, Any] | None = None, init: torch.Tensor | None = None,
               strength: float | None = None, mask: torch.Tensor | None = None, **sampler_options: Any) -> torch.Tensor:
        """``n`` samples [n, *shape], float32 on the CPU.

        :param sampler: a registered name or an instance; ``None``: the pipeline's.
        :param steps: sampler steps; ``None``: the sampler's default.
        :param guidance: ``None`` (the pipeline's), ``False`` (none), a name or an instance.
        :param scale: the guidance scale (cfg's w, classifier guidance's s).
        :param labels: ``None`` (every class in turn), a class index or name, or one per sample.
        :param seed: seeds x_T and the sampler's noise: the same seed, the same samples.
        :param batch_size: samples drawn at once (``None``: all ``n``).
        :param callback: ``callback(batch, info)`` after every step of every batch.
        :param guidance_options: more guidance options (e.g. ``classifier`` for classifier guidance).
        :param init: images to edit, [n or 1, *shape] in the data's range: noised to ``strength``
            and sampled back (SDEdit, Meng et al. 2022); with ``mask``, inpainted.
        :param strength: s ∈ (0, 1], the time ``init`` is noised to (1: from noise); ``None`` = 1.
        :param mask: [n or 1, 1 or C, *spatial], 1 where pixels are generated, 0 where ``init`` is kept.
        :param sampler_options: the sampler's options, e.g. ``eta=0.5``.
        :param ranks: share the draw over these processes (:class:`~difftk.runtime.distributed.Ranks`):
            process 0 gets all ``n`` samples, as one process would draw them; the others ``None``.

        Any sampler edits: :mod:`difftk.sampling.edit` hands it a truncated clock and a denoiser.
        """
        chosen = self.sampler(sampler, sampler_options)
        denoiser, wrapper = self.guided_denoiser(guidance, guidance_options, scale=scale)
        cond = self.labels(n, labels, denoiser)
        edit = self.edit(n, init, strength, mask, steps)
        check = getattr(wrapper, "check_sampler", None)
        if check is not None:  # a guidance defined for some samplers only (CFG++) refuses the others
            check(chosen, edit is not None)
        shape = latent.shape_of(self.pipeline.autoencoder, self.data_shape)  # the latents' with a first stage
        x = generate(denoiser, self.schedule, chosen, shape, n, steps=steps, cond=cond, seed=seed,
                     device=self.device, batch_size=batch_size, callback=callback, edit=edit, ranks=ranks)
        return latent.decoded(self.pipeline.autoencoder, x)

    def edit(self, n: int, init: torch.Tensor | None, strength: float | None, mask: torch.Tensor | None,
             steps: int | None = None) -> Edit | None:
        """The :class:`~difftk.sampling.edit.Edit` of ``init`` (checked against the model's data and, with
        ``steps``, against the schedule below the strength), or ``None``."""
        return latent.edit_of(self.pipeline.autoencoder, self.schedule, self.data_shape, n, init, strength, mask, steps)

    def grid_labels(self, n: int | None, denoiser: Any = None) -> tuple[int, torch.Tensor]:
        """The number of samples and their labels for a picture of a guided class-conditional model given
        no label: one class per row of the grid (:func:`~difftk.data.images.grid_shape`); ``n = None``
        draws C² samples, C rows of C."""
        classes = num_classes_of(denoiser if denoiser is not None else self.denoiser)
        n = classes * classes if n is None else n
        return n, class_rows(n, classes, grid_shape(n)[1])


def describe(data: Any) -> dict[str, Any]:
    """The data description a :class:`Model` keeps: a mapping as checkpoints store it, or one made
    from an :class:`~difftk.data.arrays.ArrayDataset` (its kind, example shape and name)."""
    if isinstance(data, Mapping):
        return dict(data)
    shape, kind = getattr(data, "shape", None), getattr(data, "kind", None)
    if shape is None or kind is None:
        raise TypeError(f"a model's data is a description (a mapping) or a dataset, not {type(data).__name__}")
    return {"kind": kind, "shape": list(shape), "name": getattr(data, "name", "")}


def load(source: str | Path, device: torch.device | str = "cpu") -> Model:
    """The trained model in ``source``: a checkpoint file, a run directory, the name of a model a plugin
    ships (``difftk plugins`` lists them), or else what a plugin's ``difftk_load_model`` reads (the diffusers
    bridge: a diffusers model folder). Its pipeline is built, the EMA weights loaded (eval mode, on ``device``).

    A component whose plugin is not installed is named (``… needs denoiser 'unet-attn' from
    plugin 'unet_attn' 0.1.0, which is not installed``): at once for the schedule and the denoiser,
    and only when it would be used for the sampler, guidance and objective
    (:data:`~difftk.checkpoint.trained.SAMPLING_ONLY`), so any installed sampler still samples the model.
    """
    try:
        ckpt = read_checkpoint(source)
    except (CheckpointError, UnknownComponentError) as not_a_checkpoint:  # no plugin claims it: the error stands
        failed: list[str] = []
        model = plugins.first_result("difftk_load_model", failures=failed, source=source, device=device)
        if model is None:  # the error of the path, and what each plugin that tried to read it said
            raise type(not_a_checkpoint)("; ".join([str(not_a_checkpoint), *failed])) from None
        for message in failed:
            warnings.warn(message, plugins.PluginWarning, stacklevel=2)
        return model
    pipeline, denoiser = trained_pipeline(ckpt, device)
    return Model(pipeline=pipeline, denoiser=denoiser, data=ckpt.dataset, checkpoint=ckpt)

