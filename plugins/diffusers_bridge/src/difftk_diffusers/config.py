"""A diffusers scheduler config (``scheduler_config.json``) read as difftk components, key by key.

The β keys become the ``diffusers`` schedule's options; ``prediction_type`` the denoiser's
``prediction``; the scheduler class and its keys the default sampler, the registered one that
steps as that class does (:data:`SCHEDULERS`):

=================================  ==============================================================
DDPMScheduler                      ancestral (variance_type → variance)
DDIMScheduler                      ddim, η = 0
EulerDiscreteScheduler             ddim, η = 0 (Euler's step in σ is DDIM's, Song et al. 2020 §4.3)
EulerAncestralDiscreteScheduler    ddim, η = 1 (its σ_up, σ_down are DDIM's η = 1 noise and mean)
HeunDiscreteScheduler              heun (Karras et al. 2022, Alg. 1) from σ(1)
DPMSolverMultistepScheduler        dpmsolver++: ddim (order 1), dpm-solver-2m, dpm-solver-3m
                                   (third_order reference); sde-dpmsolver++: ddim η = 1 (order 1),
                                   dpm-solver-2m-sde
DPMSolverSinglestepScheduler       order 1 only: ddim
UniPCMultistepScheduler            unipc (solver_order, solver_type → variant, lower_order_final)
FlowMatchEulerDiscreteScheduler    flow-euler (shift) on the ``flow`` schedule, the UNet on the flow clock
=================================  ==============================================================

``use_karras_sigmas`` is the core grid's ``karras`` spacing (σ with ρ = 7 from σ(1) to σ(1/T),
as diffusers); ``timestep_spacing`` the core spacing of the same name. A key difftk cannot
honour is one :class:`CheckpointError` line naming the key and what is supported; every key is
checked for type and range before it is used (:mod:`difftk_diffusers.validate`). Nothing here
imports diffusers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from difftk.errors import CheckpointError, OptionError

from difftk_diffusers.schedule import BETA_SCHEDULES
from difftk_diffusers.validate import boolean, choice, integer, number, numbers, read_json

#: diffusers' prediction_type -> difftk's prediction
PREDICTIONS: dict[str, str] = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
#: DDPMScheduler's variance_type -> the ancestral sampler's variance (σ² = β̃ or β)
VARIANCES: dict[str, str] = {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde", "fixed_large": "beta"}
#: timestep_spacing values; each is the core grid's spacing of the same name
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")
#: the most training timesteps a config may declare (the diffusers-unet denoiser's bound)
MAX_T = 1_000_000

#: diffusers' defaults of the keys every scheduler class has
COMMON: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "prediction_type": "epsilon", "timestep_spacing": "linspace", "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}
#: keys of the σ-grid schedulers that difftk reads only at diffusers' default (any other value is refused)
_SIGMA_GRID = {"use_exponential_sigmas": False, "use_beta_sigmas": False}
_CLIP = {"clip_sample": False, "clip_sample_range": 1.0}
_THRESHOLD = {"thresholding": False}


@attrs.frozen
class SchedulerClass:
    """What difftk reads of one diffusers scheduler class: its keys with diffusers' defaults, the keys it
    accepts only at one value (with why), and the sampler (``{"name", "options"}``) its values mean."""

    defaults: Mapping[str, Any]
    sampler: Callable[[Mapping[str, Any]], dict[str, Any]]
    fixed: Mapping[str, tuple[Any, str]] = attrs.field(factory=dict)
    #: whether the class computes its grid with K + 1 points (linspace, leading) and drops the last
    plus_one: bool = False
    #: whether its linspace timesteps are left fractional (σ interpolated between them), not rounded
    fractional: bool = False


def _clip(v: Mapping[str, Any]) -> float | None:
    return float(v["clip_sample_range"]) if v["clip_sample"] else None


def _spacing(v: Mapping[str, Any]) -> str:
    return "karras" if v.get("use_karras_sigmas") else v["timestep_spacing"]


def _ddpm(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "ancestral", "options": {"spacing": v["timestep_spacing"], "clip_x0": _clip(v),
                                             "variance": VARIANCES[v["variance_type"]]}}


def _ddim(v: Mapping[str, Any], eta: float = 0.0) -> dict[str, Any]:
    return {"name": "ddim", "options": {"spacing": _spacing(v), "clip_x0": _clip(v) if "clip_sample" in v else None,
                                        "eta": eta}}


def _heun(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "heun", "options": {"spacing": _spacing(v), "sigma_max": None, "clip_x0": _clip(v)}}


def _dpm_solver(v: Mapping[str, Any]) -> dict[str, Any]:
    """dpmsolver++ of solver_order 1, 2, 3 and sde-dpmsolver++ of order 1, 2. diffusers' last step goes to σ = 0 at
    first order (x̂₀), which difftk's samplers always do: its lower_order_final is difftk's false (see docs/diffusers.md)."""
    order, sde = v["solver_order"], v["algorithm_type"] == "sde-dpmsolver++"
    if order == 1:
        return _ddim(v, eta=1.0 if sde else 0.0)
    if sde and order == 3:
        raise CheckpointError("algorithm_type sde-dpmsolver++ with solver_order 3 is not supported (supported: "
                              "sde-dpmsolver++ of order 1 or 2, dpmsolver++ of order 1, 2 or 3)")
    name = "dpm-solver-2m-sde" if sde else f"dpm-solver-{order}m"
    options: dict[str, Any] = {"spacing": _spacing(v), "lower_order_final": False, "clip_x0": None}
    if order == 3:
        options["third_order"] = "reference"
    return {"name": name, "options": options}


def _singlestep(v: Mapping[str, Any]) -> dict[str, Any]:
    if v["solver_order"] != 1:
        raise CheckpointError(f"DPMSolverSinglestepScheduler of solver_order {v['solver_order']} is not supported: difftk "
                              "has no singlestep DPM-Solver (supported: solver_order 1, which is DDIM; or use "
                              "DPMSolverMultistepScheduler, which difftk's dpm-solver-2m/3m equal)")
    return _ddim({**v, "timestep_spacing": "linspace"})  # the class has no timestep_spacing: its grid is linspace


def _unipc(v: Mapping[str, Any]) -> dict[str, Any]:
    if v["solver_order"] == 1:
        return _ddim(v)
    return {"name": "unipc", "options": {"spacing": _spacing(v), "order": v["solver_order"], "variant": v["solver_type"],
                                         "corrector": True, "lower_order_final": v["lower_order_final"], "clip_x0": None}}


_NO_THRESHOLD = {"thresholding": (False, "dynamic thresholding of x̂₀ has no difftk counterpart")}
_ZERO_END = {"final_sigmas_type": ("zero", "difftk's samplers end at x̂₀, σ = 0")}
def _flow_euler(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "flow-euler", "options": {"spacing": "flow", "shift": float(v["shift"])}}


_NO_SHIFT = {"use_dynamic_shifting": (False, "a flow-matching grid")}
_NO_FANCY_SIGMAS = {"use_exponential_sigmas": (False, "use use_karras_sigmas or timestep_spacing"),
                    "use_beta_sigmas": (False, "use use_karras_sigmas or timestep_spacing")}

#: the scheduler classes difftk reads, each with the sampler that steps as it does
SCHEDULERS: dict[str, SchedulerClass] = {
    "DDPMScheduler": SchedulerClass(
        {**COMMON, "timestep_spacing": "leading", "clip_sample": True, "clip_sample_range": 1.0,
         "variance_type": "fixed_small", **_THRESHOLD}, _ddpm, _NO_THRESHOLD),
    "DDIMScheduler": SchedulerClass(
        {**COMMON, "timestep_spacing": "leading", "clip_sample": True, "clip_sample_range": 1.0, **_THRESHOLD}, _ddim,
        _NO_THRESHOLD),
    "EulerDiscreteScheduler": SchedulerClass(
        {**COMMON, "use_karras_sigmas": False, **_SIGMA_GRID, "interpolation_type": "linear", "timestep_type": "discrete",
         "final_sigmas_type": "zero", "sigma_min": None, "sigma_max": None}, _ddim,
        {**_NO_FANCY_SIGMAS, **_ZERO_END, "interpolation_type": ("linear", "difftk interpolates between timesteps itself"),
         "timestep_type": ("discrete", "the UNet's timestep is the DDPM one"),
         "sigma_min": (None, "difftk's σ run from σ(1) to σ(1/T)"), "sigma_max": (None, "difftk's σ run from σ(1)")},
        fractional=True),
    "EulerAncestralDiscreteScheduler": SchedulerClass(COMMON, lambda v: _ddim(v, eta=1.0), fractional=True),
    "HeunDiscreteScheduler": SchedulerClass(
        {**COMMON, "beta_start": 0.00085, "beta_end": 0.012, "use_karras_sigmas": False, **_SIGMA_GRID, **_CLIP}, _heun, _NO_FANCY_SIGMAS, fractional=True),
    "DPMSolverMultistepScheduler": SchedulerClass(
        {**COMMON, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
         "lower_order_final": True, "euler_at_final": False, "use_karras_sigmas": False, **_SIGMA_GRID,
         "use_lu_lambdas": False, "use_flow_sigmas": False, "final_sigmas_type": "zero",
         "lambda_min_clipped": -float("inf"), "variance_type": None, "use_dynamic_shifting": False, **_THRESHOLD},
        _dpm_solver,
        {**_NO_THRESHOLD, **_NO_FANCY_SIGMAS, **_ZERO_END,
         "algorithm_type": (("dpmsolver++", "sde-dpmsolver++"), "difftk's DPM-Solvers predict x̂₀ (DPM-Solver++)"),
         "solver_type": ("midpoint", "the second-order update of Lu et al. 2022b, Algorithm 2"),
         "use_lu_lambdas": (False, "use use_karras_sigmas or timestep_spacing"),
         "use_flow_sigmas": (False, "a flow-matching grid"),
         "lambda_min_clipped": (-float("inf"), "difftk does not clip λ"),
         "variance_type": (None, "learned-variance UNets are not supported"), **_NO_SHIFT}, plus_one=True),
    "DPMSolverSinglestepScheduler": SchedulerClass(
        {**COMMON, "solver_order": 2, "algorithm_type": "dpmsolver++", "use_karras_sigmas": False, **_SIGMA_GRID,
         "final_sigmas_type": "zero", **_THRESHOLD}, _singlestep,
        {**_NO_THRESHOLD, **_NO_FANCY_SIGMAS, **_ZERO_END,
         "algorithm_type": ("dpmsolver++", "difftk's DPM-Solvers predict x̂₀ (DPM-Solver++)")}, plus_one=True),
    "UniPCMultistepScheduler": SchedulerClass(
        {**COMMON, "solver_order": 2, "predict_x0": True, "solver_type": "bh2", "lower_order_final": True,
         "disable_corrector": [], "solver_p": None, "use_karras_sigmas": False, **_SIGMA_GRID,
         "final_sigmas_type": "zero", "use_flow_sigmas": False, "use_dynamic_shifting": False, "sigma_min": None,
         "sigma_max": None, "shift_terminal": None, **_THRESHOLD}, _unipc,
        {**_NO_THRESHOLD, **_NO_FANCY_SIGMAS, **_ZERO_END,
         "predict_x0": (True, "difftk's UniPC predicts x̂₀"),
         "disable_corrector": ([], "difftk's UniPC corrects every step but the last"),
         "solver_p": (None, "UniPC's own predictor is used"), "use_flow_sigmas": (False, "a flow-matching grid"),
         "sigma_min": (None, "difftk's σ run from σ(1) to σ(1/T)"), "sigma_max": (None, "difftk's σ run from σ(1)"),
         "shift_terminal": (None, "a flow-matching grid"), **_NO_SHIFT}, plus_one=True),
    "FlowMatchEulerDiscreteScheduler": SchedulerClass(
        {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False, "invert_sigmas": False,
         "shift_terminal": None, "use_karras_sigmas": False, **_SIGMA_GRID, "stochastic_sampling": False}, _flow_euler,
        {**_NO_FANCY_SIGMAS, "use_dynamic_shifting": (False, "a fixed shift is the sampler's shift"),
         "invert_sigmas": (False, "σ runs from 1 (noise) to 0 (data)"), "shift_terminal": (None, "the grid ends at σ = 0"),
         "use_karras_sigmas": (False, "the flow grid is evenly spaced in σ"),
         "stochastic_sampling": (False, "flow-euler is deterministic")}),
}
#: the scheduler classes of a flow-matching model: velocity prediction on the flow schedule, no β
FLOW_CLASSES = ("FlowMatchEulerDiscreteScheduler",)


@attrs.frozen
class SchedulerConfig:
    """A scheduler config as difftk reads it: the schedule, prediction and default sampler it means."""

    path: Path
    class_name: str
    values: Mapping[str, Any]  # every key read here, the config's value or diffusers' default

    @property
    def T(self) -> int:
        return int(self.values["num_train_timesteps"])

    @property
    def flow(self) -> bool:
        """Whether this is a flow-matching scheduler: the UNet predicts the velocity ε − x₀ at timestep σ·T."""
        return self.class_name in FLOW_CLASSES

    @property
    def prediction(self) -> str:
        """difftk's name of the config's ``prediction_type``: eps, v or x0 (flow for a flow-matching scheduler)."""
        return "flow" if self.flow else PREDICTIONS[self.values["prediction_type"]]

    @property
    def schedule(self) -> dict[str, Any]:
        """The schedule, ``{"name", "options"}``: ``diffusers`` with the config's β, or ``flow`` (τ = t; the shift is
        the sampler's, so that the UNet's σ is the time itself)."""
        if self.flow:
            return {"name": "flow", "options": {"shift": 1.0}}
        return {"name": "diffusers", "options": self.schedule_options}

    @property
    def schedule_options(self) -> dict[str, Any]:
        """The options of the ``diffusers`` schedule that reproduces the config's β."""
        v = self.values
        opts: dict[str, Any] = {"T": self.T, "zero_terminal_snr": bool(v["rescale_betas_zero_snr"])}
        if v["trained_betas"] is not None:
            opts["trained_betas"] = tuple(float(b) for b in v["trained_betas"])
        else:
            opts.update(beta_schedule=v["beta_schedule"], beta_start=float(v["beta_start"]), beta_end=float(v["beta_end"]))
        return opts

    @property
    def sampler(self) -> dict[str, Any]:
        """The default sampler, ``{"name", "options"}``: stepping as the config's scheduler class does."""
        try:
            return SCHEDULERS[self.class_name].sampler(self.values)
        except CheckpointError as err:
            raise CheckpointError(f"{self.path}: {err}") from None


def read_scheduler_config(path: str | Path, default_class: str = "DDPMScheduler") -> SchedulerConfig:
    """Read and check ``scheduler_config.json``; a config without ``_class_name`` is taken as ``default_class``."""
    path = Path(path)
    raw = read_json(path, "a scheduler config")
    class_name = raw.get("_class_name", default_class)
    choice(str(path), "scheduler class (_class_name)", class_name, tuple(SCHEDULERS))
    values = {key: raw.get(key, default) for key, default in SCHEDULERS[class_name].defaults.items()}
    check_values(str(path), values, class_name)
    config = SchedulerConfig(path=path, class_name=class_name, values=values)
    config.sampler  # noqa: B018 - a combination of keys with no difftk sampler is refused here, not at sampling
    return config


def check_values(where: str, v: dict[str, Any], class_name: str = "DDPMScheduler") -> None:
    """Check the type and range of every key read, in place (whole floats become ints); one line for the first
    key difftk cannot honour, naming it and what is supported."""
    v["num_train_timesteps"] = T = integer(where, "num_train_timesteps", v["num_train_timesteps"], 2, MAX_T)
    if class_name in FLOW_CLASSES:
        v["shift"] = number(where, "shift", v["shift"], 0.0, 1000.0, open_lo=True)
        for key in ("use_dynamic_shifting", "invert_sigmas", "use_karras_sigmas", "stochastic_sampling"):
            boolean(where, key, v[key])
        _check_fixed(where, v, class_name)
        return
    if v["trained_betas"] is not None:
        betas = numbers(where, "trained_betas", v["trained_betas"], 0.0, 1.0, MAX_T)
        if len(betas) != T:
            raise CheckpointError(f"{where}: trained_betas has {len(betas)} values but num_train_timesteps is {T}")
    else:
        choice(where, "beta_schedule", v["beta_schedule"], (*BETA_SCHEDULES, "or trained_betas"))
        start = number(where, "beta_start", v["beta_start"], 0.0, 1.0, open_lo=True)
        end = number(where, "beta_end", v["beta_end"], 0.0, 1.0, open_lo=True)
        if v["beta_schedule"] != "squaredcos_cap_v2" and not start <= end < 1:
            raise CheckpointError(f"{where}: beta_start {start:g} to beta_end {end:g} must rise and stay below 1")
    choice(where, "prediction_type", v["prediction_type"], tuple(PREDICTIONS))
    choice(where, "timestep_spacing", v["timestep_spacing"], SPACINGS)
    v["steps_offset"] = integer(where, "steps_offset", v["steps_offset"], 0, T - 1)
    boolean(where, "rescale_betas_zero_snr", v["rescale_betas_zero_snr"])
    for key in ("clip_sample", "use_karras_sigmas", "lower_order_final", "euler_at_final"):
        if key in v:
            boolean(where, key, v[key])
    if v.get("use_karras_sigmas") and v["rescale_betas_zero_snr"]:
        raise CheckpointError(f"{where}: use_karras_sigmas with rescale_betas_zero_snr is not read: the Karras grid starts "
                              "at σ(1), which is infinite on a zero-terminal-SNR schedule; set use_karras_sigmas to false "
                              "(timestep_spacing then gives the grid)")
    if "clip_sample_range" in v:
        number(where, "clip_sample_range", v["clip_sample_range"], 0.0, 1e6, open_lo=True)
    if "variance_type" in v and class_name == "DDPMScheduler":
        choice(where, "variance_type", v["variance_type"], tuple(VARIANCES))
    if "solver_order" in v:
        v["solver_order"] = integer(where, "solver_order", v["solver_order"], 1, 3)
    if "solver_type" in v and class_name == "UniPCMultistepScheduler":
        choice(where, "solver_type", v["solver_type"], ("bh1", "bh2"))
    _check_fixed(where, v, class_name)


def _check_fixed(where: str, v: Mapping[str, Any], class_name: str) -> None:
    for key, (allowed, why) in SCHEDULERS[class_name].fixed.items():
        options = allowed if isinstance(allowed, tuple) else (allowed,)
        if not any(type(v[key]) is type(a) and v[key] == a for a in options):
            shown = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in options)
            said = "null" if v[key] is None else str(v[key]).lower() if isinstance(v[key], bool) else repr(v[key])
            raise CheckpointError(f"{where}: {key} {said} is not supported ({why}; supported: {shown})")


def scheduler_times(config: SchedulerConfig | Mapping[str, Any], steps: int) -> tuple[float, ...]:
    """The difftk times t = (k + 1)/T of the timesteps k that diffusers' ``set_timesteps(steps)`` gives
    for this config (its class, ``timestep_spacing`` and ``steps_offset``), decreasing: pass them as the
    sampler's ``times`` to walk exactly diffusers' grid (e.g. with steps_offset = 1).

    With K = steps (and K' = K + 1 for the multistep solvers, which drop the last of K' points):
    leading: k = j·⌊T/K'⌋ + steps_offset; trailing: k = round(T − j·T/K) − 1; linspace:
    k = round(j·(T − 1)/(K' − 1)), j = 0..K'−1 (the schedules of Lin et al. 2024, Table 2); Euler's
    and Heun's linspace timesteps are not rounded. FlowMatchEulerDiscreteScheduler's σ are
    s(linspace(1, s(1/T), K)) with the shift s(σ) = sσ/(1 + (s − 1)σ): the times returned are the
    linspace, which flow-euler (with the config's ``shift``) shifts once more.
    """
    if isinstance(config, SchedulerConfig):
        values, kind = config.values, SCHEDULERS[config.class_name]
    else:
        kind = SCHEDULERS.get(str(config.get("_class_name", "DDPMScheduler")), SCHEDULERS["DDPMScheduler"])
        values = {**kind.defaults, **config}
    T, K = int(values["num_train_timesteps"]), int(steps)
    if not 1 <= K <= T:
        raise OptionError(f"steps={K}: diffusers' schedulers take 1..{T} steps (num_train_timesteps={T})")
    if "shift" in values and "beta_start" not in values:  # flow matching: σ = s(linspace(1, s(1/T), K))
        s = float(values["shift"])
        end = s / T / (1 + (s - 1) / T)  # s(1/T), Esser et al. 2024, eq. 23; flow-euler's shift s makes the σ
        return tuple(float(x) for x in np.linspace(1.0, end, K))
    points = K + 1 if kind.plus_one else K
    j = np.arange(points, dtype=np.float64)
    if values["timestep_spacing"] == "leading":
        k = j * (T // points) + int(values["steps_offset"])
    elif values["timestep_spacing"] == "trailing":
        k, points = np.round(T - np.arange(K, dtype=np.float64) * (T / K)) - 1, K
    else:
        k = np.linspace(0, T - 1, points)
        k = k if kind.fractional else np.round(k)
    k = np.sort(np.unique(k))[::-1][:K]
    if k[0] >= T or len(k) != K:
        raise OptionError(f"steps={K} with steps_offset={values['steps_offset']} leaves diffusers' grid 0..{T - 1}")
    return tuple(float(i + 1) / T for i in k)
