"""A diffusers scheduler config (``scheduler_config.json``) read as difftk components, key by key.

The β keys become the ``diffusers`` schedule's options; ``prediction_type`` the denoiser's
``prediction``; the scheduler class names the default sampler (DDIMScheduler → ``ddim``,
DDPMScheduler → ``ancestral``, by registry name), and ``timestep_spacing``, ``clip_sample`` and
``variance_type`` its options. A key difftk cannot honour is one :class:`CheckpointError` line
naming the key and what is supported. Nothing here imports diffusers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from difftk.errors import CheckpointError, OptionError

from difftk_diffusers.schedule import BETA_SCHEDULES

#: scheduler class -> the registered sampler that steps as it does
SAMPLERS: dict[str, str] = {"DDPMScheduler": "ancestral", "DDIMScheduler": "ddim"}
#: diffusers' prediction_type -> difftk's prediction
PREDICTIONS: dict[str, str] = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
#: DDPMScheduler's variance_type -> the ancestral sampler's variance (σ² = β̃ or β)
VARIANCES: dict[str, str] = {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde", "fixed_large": "beta"}
#: timestep_spacing values; each is the core grid's spacing of the same name
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")

#: diffusers' defaults for the keys read here (DDPMScheduler's and DDIMScheduler's agree on them)
DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "prediction_type": "epsilon", "clip_sample": True, "clip_sample_range": 1.0,
    "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0, "rescale_betas_zero_snr": False,
    "variance_type": "fixed_small", "set_alpha_to_one": True,
}


def _choice(where: str, key: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise CheckpointError(f"{where}: {key} {value!r} is not supported (supported: {', '.join(map(str, allowed))})")


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
    def prediction(self) -> str:
        """difftk's name of the config's ``prediction_type``: eps, v or x0."""
        return PREDICTIONS[self.values["prediction_type"]]

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
        v = self.values
        options: dict[str, Any] = {"spacing": v["timestep_spacing"],
                                   "clip_x0": float(v["clip_sample_range"]) if v["clip_sample"] else None}
        if self.class_name == "DDPMScheduler":
            options["variance"] = VARIANCES[v["variance_type"]]
        else:
            options["eta"] = 0.0  # DDIMPipeline's default
        return {"name": SAMPLERS[self.class_name], "options": options}


def read_scheduler_config(path: str | Path, default_class: str = "DDPMScheduler") -> SchedulerConfig:
    """Read and check ``scheduler_config.json``; a config without ``_class_name`` is taken as ``default_class``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such scheduler config file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read as a scheduler config: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: a scheduler config is a JSON object, not a {type(raw).__name__}")
    class_name = raw.get("_class_name", default_class)
    _choice(str(path), "scheduler class (_class_name)", class_name, SAMPLERS)
    values = {key: raw.get(key, default) for key, default in DEFAULTS.items()}
    check_values(str(path), values)
    return SchedulerConfig(path=path, class_name=class_name, values=values)


def check_values(where: str, v: Mapping[str, Any]) -> None:
    """One line for the first key difftk cannot honour, naming it and what is supported."""
    T = v["num_train_timesteps"]
    if not isinstance(T, int) or isinstance(T, bool) or T < 2:
        raise CheckpointError(f"{where}: num_train_timesteps {T!r} must be an integer ≥ 2")
    trained = v["trained_betas"]
    if trained is not None:
        betas = np.asarray(trained, dtype=np.float64) if isinstance(trained, list) else np.array([np.nan])
        if betas.ndim != 1 or not np.all((betas > 0) & (betas <= 1)):
            raise CheckpointError(f"{where}: trained_betas must be a list of numbers in (0, 1]")
        if betas.size != T:
            raise CheckpointError(f"{where}: trained_betas has {betas.size} values but num_train_timesteps is {T}")
    else:
        _choice(where, "beta_schedule", v["beta_schedule"], (*BETA_SCHEDULES, "or trained_betas"))
    _choice(where, "prediction_type", v["prediction_type"], PREDICTIONS)
    _choice(where, "timestep_spacing", v["timestep_spacing"], SPACINGS)
    _choice(where, "variance_type", v["variance_type"], VARIANCES)
    if v["thresholding"]:
        raise CheckpointError(f"{where}: thresholding true (dynamic thresholding of x̂₀) is not supported: set it to "
                              "false (clip_sample clips x̂₀ instead)")
    if not isinstance(v["steps_offset"], int) or v["steps_offset"] < 0:
        raise CheckpointError(f"{where}: steps_offset {v['steps_offset']!r} must be an integer ≥ 0")


def scheduler_times(config: SchedulerConfig | Mapping[str, Any], steps: int) -> tuple[float, ...]:
    """The difftk times t = (k + 1)/T of the timesteps k that diffusers' ``set_timesteps(steps)`` gives
    for this config (its ``timestep_spacing`` and ``steps_offset``), decreasing: pass them as the
    sampler's ``times`` to walk exactly diffusers' grid (e.g. with steps_offset = 1).

    leading: k = j·⌊T/K⌋ + steps_offset; trailing: k = round(T − j·T/K) − 1; linspace:
    k = round(j·(T − 1)/(K − 1)), j = 0..K−1 (the schedules of Lin et al. 2024, Table 2).
    """
    values = config.values if isinstance(config, SchedulerConfig) else {**DEFAULTS, **config}
    T, K = int(values["num_train_timesteps"]), int(steps)
    if not 1 <= K <= T:
        raise OptionError(f"steps={K}: diffusers' schedulers take 1..{T} steps (num_train_timesteps={T})")
    j = np.arange(K, dtype=np.float64)
    if values["timestep_spacing"] == "leading":
        k = j * (T // K) + int(values["steps_offset"])
    elif values["timestep_spacing"] == "trailing":
        k = np.round(T - j * (T / K)) - 1
    else:
        k = np.round(np.linspace(0, T - 1, K))
    k = np.unique(k.astype(np.int64))[::-1]
    if k[0] >= T or len(k) != K:
        raise OptionError(f"steps={K} with steps_offset={values['steps_offset']} leaves diffusers' grid 0..{T - 1}")
    return tuple(float(i + 1) / T for i in k)
