"""The five parts of a diffusion model (and its first stage, an autoencoder), as protocols. The core knows no concrete algorithm.

Conventions shared by every protocol: time is continuous, t ∈ [0, 1] (t=0 data, t=1 noise),
given to networks as a float tensor of shape [B]; the process is variance preserving,
x_t = √ᾱ(t)·x₀ + √(1−ᾱ(t))·ε. Components are frozen attrs classes whose fields are their
options (a denoiser is an ``nn.Module`` carrying a frozen attrs ``Config``).
:mod:`difftk.testing` checks each contract below.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from difftk.maths.schedules import Discretization, grid_size_of  # noqa: F401 (re-exported: the schedule's declared attribute)
from difftk.maths.terminal import for_sampling


@runtime_checkable
class NoiseSchedule(Protocol):
    """ᾱ(t): how much signal is left at time t.

    Contract: ``alpha_bar(t)`` returns a tensor of ``t``'s shape and dtype with values in
    (0, 1], non-increasing in t, ᾱ(0) ≈ 1 and ᾱ(1) ≈ 0. ``discretize(T)`` returns T float64
    values ``betas`` in (0, 1) and ``alphas_cumprod`` = cumprod(1 − betas) equal to
    ᾱ(i/T); a discrete schedule reproduces its paper's β exactly on its own grid.

    Declared attribute (read through :func:`grid_size_of`, default ``None``): ``grid_size``, the
    T of a discrete schedule's native grid i/T, ``None`` for a continuous one.
    """

    grid_size: int | None

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor: ...

    def discretize(self, T: int) -> Discretization: ...


@runtime_checkable
class Denoiser(Protocol):
    """The network: predicts ε, x₀, v, the score, the flow velocity or EDM's F_θ from (x_t, t, cond).

    Contract: ``denoiser(x_t, t, cond=None)`` with x_t of shape [B, ...] and t of shape [B]
    returns a tensor shaped like x_t (twice the channels when ``learned_variance`` is true:
    the second half is the interpolation v of Nichol & Dhariwal 2021). ``cond`` is an integer
    class tensor [B] (index ``num_classes`` is the null class of cfg) or ``None``.

    Declared attributes (read through :func:`num_classes_of` and :func:`learned_variance_of`,
    whose defaults are 0 and ``False``): ``prediction``, one of
    :data:`difftk.maths.diffusion.PREDICTIONS` (converted in the core only); ``num_classes``,
    the classes it is conditioned on; ``learned_variance``. A denoiser that calls another
    (guidance, edits) derives from :class:`difftk.components.wrapping.DenoiserWrapper`, which
    carries all three and the variance channels. Optionally ``split_output(x_t, t, cond)`` returns
    (the output x̂₀ is read from, the output ε̂ is read from, the variance channels or ``None``) when
    the two differ (CFG++); :func:`difftk.sampling.steps.predict` then uses them.
    An option whose default is ``none`` = "derived from the data options" is resolved by the
    config's ``derived_options()`` (see :func:`derived_options`), so a stored spec holds its value.
    """

    prediction: str
    num_classes: int
    learned_variance: bool

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class Objective(Protocol):
    """The training loss.

    Contract: ``loss(denoiser, schedule, x0, cond=None, generator=None)`` returns a
    per-example loss of shape [B], finite, differentiable with respect to the denoiser's
    parameters, and reproducible under a seeded ``generator``. An objective that keeps state
    across steps (a loss history for importance sampling of t) also defines ``state_dict()``
    -> dict of tensors and ``load_state_dict(state)``; the training engine stores that state in
    every checkpoint, so a resumed run continues exactly.
    """

    def loss(self, denoiser: Denoiser, schedule: NoiseSchedule, x0: torch.Tensor,
             cond: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """Turns noise into data with a denoiser.

    Contract: ``sample(denoiser, schedule, x_T, steps=…, cond=None, generator=None,
    callback=None)`` returns a tensor of x_T's shape, dtype and device; with the same seeded
    ``generator`` it returns the same result. Samplers are stateless: the step grid is
    derived inside ``sample`` from ``schedule`` and ``steps``. ``callback``, if given, is
    called after every step with a :class:`difftk.sampling.steps.StepInfo` (index 0, 1, …, the
    total, decreasing times). x_T is left untouched.

    Declared (defaults in :class:`difftk.sampling.steps.GridSampler`, read through
    :func:`default_steps_of` and :func:`nfe_of`): ``default_steps``, the steps taken when none
    are given; ``nfe(steps, schedule)``, the denoiser evaluations of one ``sample`` call
    (``None`` for a sampler that chooses its own steps); optionally ``convergence_order``, the
    order its error falls at, which :func:`difftk.testing.check_sampler` holds it to; optionally
    ``renoise`` (default ``False``, read through :func:`renoise_of`): ``True`` when every step is
    x_s = √ᾱ_s·x̂₀ + c·ε̂ (+ σ·z), x̂₀ and ε̂ taken from the prediction that
    :func:`difftk.sampling.steps.predict` returns (DDIM's form, Song et al. 2020, eq. 12). Only then
    may a denoiser give the two different roles (CFG++, Chung et al. 2024).

    The core hands ``sample`` and ``nfe`` the schedule through
    :func:`difftk.maths.terminal.for_sampling` (a zero-terminal-SNR schedule's ᾱ(1) = 0 raised to a
    floor), so a sampler never applies it itself.
    """

    default_steps: int
    nfe: Callable[..., int | None]

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               callback: Callable[[Any], None] | None = None) -> torch.Tensor: ...


@runtime_checkable
class Guidance(Protocol):
    """Steers a denoiser toward a condition.

    Contract: ``wrap(denoiser, schedule)`` returns a new :class:`Denoiser` (samplers never
    know guidance exists); at zero guidance strength it equals the wrapped denoiser.

    Optional: ``check_trained(spec)``, called with the model's pipeline spec before sampling,
    refuses a model that lacks what the guidance needs of training (cfg: label dropout);
    ``check_sampler(sampler, editing)``, called with the sampler and whether the draw edits images,
    refuses a sampler the method is not defined for (CFG++: only samplers that declare ``renoise``).
    Both raise a one-line :class:`~difftk.errors.DifftkError`. A wrapped denoiser that keeps state
    across the steps of one draw (APG's momentum) is a
    :class:`~difftk.components.wrapping.DenoiserWrapper` whose ``reset`` the core calls before every
    batch it samples.
    """

    def wrap(self, denoiser: Denoiser, schedule: NoiseSchedule) -> Denoiser: ...


@runtime_checkable
class Autoencoder(Protocol):
    """The first stage of a latent diffusion model (Rombach et al. 2022, §3): data to latents and back.

    Contract: ``encode(x)`` with x of shape [B, *data_shape] in the data's range returns the
    posterior q(z | x) as a :class:`difftk.components.autoencoding.LatentDistribution` (``mean``,
    ``logvar``, ``sample(generator)``) or, for a deterministic encoder, the latent tensor itself;
    ``decode(z)`` returns [B, *data_shape]; ``latent_shape(data_shape)`` is the shape of one
    example's latent (what ``encode`` gives for that data shape), or raises a one-line
    :class:`~difftk.errors.DifftkError` for data it cannot take. Both work on raw latents z.

    Declared (defaults in :class:`difftk.components.autoencoding.AutoencoderBase`, read through
    :func:`difftk.components.autoencoding.scale_of` and ``shift_of``): ``scale`` and ``shift``, which
    bring the latents to unit variance, z_scaled = (z − shift)·scale (§4.3.2 and App. G: scale = 1/σ̂
    of the latents over the data; diffusers' ``scaling_factor`` and ``shift_factor``). The diffusion
    model only ever sees z_scaled; the core applies both.
    """

    scale: float
    shift: float

    def encode(self, x: torch.Tensor) -> Any: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]: ...


class TrainingCondition(Protocol):
    """An optional Guidance method the training engine calls on every batch's labels.

    ``training_condition(cond, num_classes, generator)`` returns the labels the denoiser is
    trained on, e.g. with a fraction replaced by the null class ``num_classes`` (label
    dropout, Ho & Salimans 2022, Algorithm 1). It must draw only from ``generator`` (the
    objective's, whose state every checkpoint stores), so a resumed run stays exact.
    """

    def training_condition(self, cond: torch.Tensor, num_classes: int,
                           generator: torch.Generator | None) -> torch.Tensor: ...


@runtime_checkable
class Classifier(Protocol):
    """A noise-aware classifier: logits of p(y | x_t) from (x_t, t) (Dhariwal & Nichol 2021, §4).

    Contract: ``classifier(x_t, t)`` with x_t of shape [B, ...] and t of shape [B] in [0, 1]
    returns logits of shape [B, num_classes]; the attribute ``num_classes`` says K.
    """

    num_classes: int

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Dataset(Protocol):
    """A dataset component: its options say where the data is; ``load()`` reads it.

    Contract: ``load(split)`` returns :class:`difftk.data.examples.Examples` (an in-memory
    :class:`~difftk.data.arrays.ArrayDataset`, or :class:`~difftk.data.indexed.IndexedImages`
    for image files decoded as they are read), or raises a
    one-line :class:`~difftk.errors.DifftkError` naming a missing path or a wrong format.
    ``split`` is ``"train"`` or ``"test"``.
    """

    def load(self, split: str = "train") -> Any: ...


@runtime_checkable
class Metric(Protocol):
    """Contract: ``evaluate(context)`` returns a :class:`difftk.evaluation.context.MetricResult`,
    deterministic for a given ``context.seed``, and raises a one-line
    :class:`~difftk.errors.DifftkError` when the model or data cannot be measured by it (e.g.
    bits/dim of 2-D points). ``context`` is a :class:`difftk.evaluation.context.EvalContext`.
    """

    def evaluate(self, context: Any) -> Any: ...


@runtime_checkable
class Logger(Protocol):
    """A tracker that receives what a training run records (``difftk train --log-to NAME``).

    Contract: ``start(run)`` once, before the first step, with a
    :class:`difftk.training.tracking.TrackedRun` (the run directory, the step it starts at and the
    run's configuration); ``log(record)`` with every record appended to log.jsonl, loss records
    (``step``, ``loss``, ``lr``, ``grad_norm``, ``time``) and measurements (``step``, ``metric``,
    ``value``, ``spread``, …); ``image(path, step)`` with every sample grid written (a PNG);
    ``finish()`` once, however the run ends. A library the logger needs and cannot import is a
    one-line :class:`~difftk.errors.DifftkError` when the logger is created, naming what to install.
    """

    def start(self, run: Any) -> None: ...

    def log(self, record: Any) -> None: ...

    def image(self, path: Any, step: int) -> None: ...

    def finish(self) -> None: ...


#: the protocol each component kind is checked against when a plugin registers it
PROTOCOLS: dict[str, type] = {
    "schedule": NoiseSchedule,
    "denoiser": Denoiser,
    "objective": Objective,
    "sampler": Sampler,
    "guidance": Guidance,
    "autoencoder": Autoencoder,
    "classifier": Classifier,
    "dataset": Dataset,
    "metric": Metric,
    "logger": Logger,
}


# --- reading what a protocol declares, with its default ---------------------------------------


def num_classes_of(denoiser: Any) -> int:
    """Classes a denoiser is conditioned on: its ``num_classes`` attribute or option (0 = none)."""
    value = getattr(denoiser, "num_classes", None)
    if value is None:
        value = getattr(getattr(denoiser, "config", None), "num_classes", 0)
    return int(value or 0)


def learned_variance_of(denoiser: Any) -> bool:
    """Whether a denoiser also outputs the variance interpolation v (twice the channels; default no)."""
    return bool(getattr(denoiser, "learned_variance", False))


def default_steps_of(sampler: Any) -> int | None:
    """The steps a sampler takes when given none (``None`` when it does not say)."""
    return getattr(sampler, "default_steps", None)


def nfe_of(sampler: Any, steps: int | None, schedule: Any) -> int | None:
    """Denoiser evaluations of one ``sample`` call with ``steps`` on a model's ``schedule``; ``None``
    when the sampler chooses its own steps or does not say. The sampler is asked about the schedule
    as samplers are handed it (:func:`difftk.maths.terminal.for_sampling`, which the core's drawing
    loop applies: ᾱ(1) = 0 raised to a floor every sampler can step from)."""
    nfe = getattr(sampler, "nfe", None)
    return nfe(steps, for_sampling(schedule)) if callable(nfe) else None


def renoise_of(sampler: Any) -> bool:
    """Whether a sampler's steps re-noise x̂₀ with ε̂ as DDIM's do (its ``renoise``; default no)."""
    return bool(getattr(sampler, "renoise", False))


def derived_options(denoiser: Any) -> dict[str, Any]:
    """Options a denoiser left unset (``none``) and derived from its data options, with their values:
    its config's ``derived_options()`` if it has one (unet-attn's attention resolutions), else none."""
    derive = getattr(getattr(denoiser, "config", None), "derived_options", None)
    return dict(derive()) if callable(derive) else {}


# --- checking a class against its kind's protocol, at registration --------------------------------


def _methods(protocol: type) -> list[str]:
    """The methods a protocol asks for: its own callables, ``__call__`` included."""
    own = [name for name, value in vars(protocol).items() if callable(value) and (not name.startswith("_") or name == "__call__")]
    return [name for name in own if name not in ("_is_protocol", "_is_runtime_protocol")]


def _signature_text(function: Any) -> str:
    parameters = list(inspect.signature(function).parameters.values())[1:]  # without self
    return ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in parameters)


def protocol_problem(kind: str, cls: type) -> str | None:
    """Why ``cls`` cannot be a ``kind`` component, or ``None`` when it has every method of the
    kind's protocol (:data:`PROTOCOLS`) with the parameters callers pass.

    Callers pass a protocol method's required parameters by position and those with a default by
    keyword (``sampler.sample(denoiser, schedule, x_T, steps=…, cond=…)``), so an implementation
    must take as many positional parameters (or ``*args``) and name every keyword one (or take
    ``**kwargs``). A denoiser or classifier is an ``nn.Module``: its ``__call__`` is ``forward``.
    """
    protocol = PROTOCOLS.get(kind)
    if protocol is None:
        return None
    for name in _methods(protocol):
        wanted = getattr(protocol, name)
        target = name
        if name == "__call__" and isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            target = "forward"
        found = getattr(cls, target, None)
        shown = f"{name if target == name else target}({_signature_text(wanted)})"
        if found is None or not callable(found) or (target == "forward" and found is torch.nn.Module.forward):
            return f"it has no method {shown} ({protocol.__name__} protocol)"
        if name == "__call__" and target == name and found is type.__call__:
            return f"it has no method {shown} ({protocol.__name__} protocol)"
        try:
            have = list(inspect.signature(found).parameters.values())[1:]
        except (TypeError, ValueError):  # a builtin or C callable: nothing to inspect
            continue
        want = list(inspect.signature(wanted).parameters.values())[1:]
        varargs = any(p.kind is p.VAR_POSITIONAL for p in have)
        varkw = any(p.kind is p.VAR_KEYWORD for p in have)
        positional = [p for p in have if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in want if p.default is inspect.Parameter.empty]
        if len(positional) < len(required) and not varargs:
            return f"its {target}() takes {len(positional)} argument(s); the {protocol.__name__} protocol passes {shown}"
        names = {p.name for p in have if p.kind is not p.POSITIONAL_ONLY}
        for p in want:
            if p.default is not inspect.Parameter.empty and p.name not in names and not varkw:
                return f"its {target}() has no keyword parameter '{p.name}'; the {protocol.__name__} protocol passes {shown}"
        extra = [p.name for p in positional[len(required):] if p.default is inspect.Parameter.empty]
        if extra:
            return f"its {target}() requires {', '.join(extra)}, which the {protocol.__name__} protocol never passes"
    return None
