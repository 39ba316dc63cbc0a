"""``difftk export CHECKPOINT --format diffusers -o DIR``: a difftk model in diffusers' layout.

The schedule is written as the config of the diffusers scheduler that steps as the model's
sampler does (:func:`sampler_config`: ancestral → DDPMScheduler, ddim → DDIMScheduler, …), whose
β are the difftk schedule's β: a named
``beta_schedule`` when the ``diffusers`` schedule of that name reproduces every β to 1e-12, else
``trained_betas`` (every β, in full float64 precision). The named keys are still filled in with
the nearest named schedule when it agrees to float32 precision, so the file says what it is.
The weights go into ``DIR/unet`` only when the denoiser is a UNet2DModel (``diffusers-unet``):
other architectures (unet-attn's blocks, attention and embeddings) have no UNet2DModel layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import difftk
import numpy as np
import torch
from difftk.components.protocols import grid_size_of
from difftk.errors import DifftkError, IncompatibleError, OutputError
from difftk.pipeline.compose import create_component

from difftk_diffusers.config import PREDICTIONS
from difftk_diffusers.denoiser import DiffusersUNet
from difftk_diffusers.folder import SETTINGS_FILE
from difftk_diffusers.schedule import BETA_SCHEDULES, DiffusersSchedule

#: a named schedule "fits" when every β agrees to this
EXACT = 1e-12
#: ... and describes the trained_betas when they agree to float32 precision
CLOSE = 1e-7


def _candidates(betas: np.ndarray) -> list[dict[str, Any]]:
    """The named diffusers schedules that could give ``betas`` (ends read off them)."""
    lo, hi = float(betas[0]), float(betas[-1])
    s0, s1 = 1 / (1 + np.exp(6.0)), 1 / (1 + np.exp(-6.0))  # σ(−6), σ(6)
    span = (hi - lo) / (s1 - s0)
    ends = {"linear": (lo, hi), "scaled_linear": (lo, hi), "squaredcos_cap_v2": (1e-4, 0.02),
            "sigmoid": (lo - s0 * span, lo - s0 * span + span)}
    return [{"beta_schedule": name, "beta_start": ends[name][0], "beta_end": ends[name][1]} for name in BETA_SCHEDULES]


def fit_schedule(schedule: Any, spec: Any) -> tuple[dict[str, Any], str]:
    """The β keys of a scheduler config that reproduce ``schedule`` (built from the ComponentSpec
    ``spec``), and how they were chosen, in words."""
    T = grid_size_of(schedule)
    name = spec.name
    if T is None:
        raise IncompatibleError(f"schedule '{name}' is continuous: diffusers' schedulers hold T discrete β, so only a "
                                "discrete schedule (linear, cosine, diffusers, …) can be exported")
    betas = np.asarray(schedule.discretize(T).betas, dtype=np.float64)
    zero = bool(betas[-1] == 1.0)
    if isinstance(schedule, DiffusersSchedule) and schedule.trained_betas is None:
        start, end = schedule.ends
        tries = [{"beta_schedule": schedule.beta_schedule, "beta_start": start, "beta_end": end}]
    else:
        base = betas
        if zero:  # fit the schedule before Lin et al.'s rescaling, then rescale the fit
            options = {**spec.options_dict, "zero_terminal_snr": False}
            base = np.asarray(create_component("schedule", name, options, from_strings=False).discretize(T).betas)
        tries = _candidates(base)
    best, error = None, np.inf
    for keys in tries:
        try:
            candidate = DiffusersSchedule(T=T, zero_terminal_snr=zero, **keys)
        except (DifftkError, ValueError):  # ends outside (0, 1), or a core that refuses β_T = 1
            continue
        gap = float(np.max(np.abs(np.asarray(candidate.discretize(T).betas) - betas)))
        if gap < error:
            best, error = keys, gap
    common = {"num_train_timesteps": T, "rescale_betas_zero_snr": zero and error <= EXACT}
    if best is not None and error <= EXACT:
        exact = "every β exact" if error == 0 else f"every β within {error:.1e}"
        return {**best, **common, "trained_betas": None}, f"beta_schedule {best['beta_schedule']} ({exact})"
    described = best if best is not None and error <= CLOSE else {}
    if best is None:
        why = "no named schedule fits"
    elif error <= CLOSE:
        why = f"the nearest named schedule, {best['beta_schedule']}, is {error:.1e} off (diffusers computes it in float32)"
    else:
        why = f"no named schedule fits (the nearest, {best['beta_schedule']}, is {error:.1e} off)"
    return ({**described, **common, "rescale_betas_zero_snr": False, "trained_betas": [float(b) for b in betas]},
            f"trained_betas ({T} values, exact; {why})")


#: difftk's spacings that are diffusers' timestep_spacing of the same name
GRID_SPACINGS = ("leading", "trailing", "linspace")
#: the samplers a diffusers scheduler class steps as (docs/diffusers.md has the table)
EXPORTABLE = ("ancestral", "ddim", "heun", "dpm-solver-2m", "dpm-solver-3m", "dpm-solver-2m-sde", "unipc")


def _grid_keys(opts: dict[str, Any], name: str, karras: bool = True) -> dict[str, Any]:
    """timestep_spacing (and use_karras_sigmas) of a difftk sampler's spacing."""
    if opts.get("times") is not None:
        raise IncompatibleError(f"sampler '{name}' walks an explicit grid (times=…): diffusers' configs hold a spacing, "
                                "not a grid; export with spacing linspace, leading or trailing")
    spacing = opts.get("spacing", "linspace")
    if spacing == "karras" and karras:
        return {"use_karras_sigmas": True, "timestep_spacing": "linspace"}
    if spacing not in GRID_SPACINGS:
        allowed = ", ".join((*GRID_SPACINGS, "karras") if karras else GRID_SPACINGS)
        raise IncompatibleError(f"sampler '{name}' with spacing {spacing} has no diffusers scheduler (spacings it has: {allowed})")
    return {"timestep_spacing": spacing}


def sampler_config(spec: Any, schedule: Any = None) -> tuple[str, dict[str, Any], list[str]]:
    """The diffusers scheduler class and keys that step as the sampler of ComponentSpec ``spec``, and notes
    on what differs (an empty list when diffusers steps exactly as difftk does). A sampler whose spacing
    depends on the schedule (``auto``) is resolved on ``schedule``."""
    name, opts = spec.name, dict(spec.options_dict)
    if opts.get("spacing") == "auto":
        if schedule is None:
            raise IncompatibleError(f"sampler '{name}' with spacing auto walks a grid that depends on the schedule: "
                                    "give the schedule, or set sampler.spacing")
        opts["spacing"] = difftk.create("sampler", name, **opts).spacing_for(schedule)
        if opts["spacing"] not in (*GRID_SPACINGS, "karras"):
            raise IncompatibleError(f"sampler '{name}' walks the {opts['spacing']} grid on this schedule (its default, "
                                    "spacing auto), which no diffusers scheduler has: export it with "
                                    "--set sampler.spacing=trailing (or linspace, leading, karras)")
    clip = opts.get("clip_x0")
    clip_keys = {"clip_sample": clip is not None, "clip_sample_range": float(clip) if clip is not None else 1.0}
    notes: list[str] = []
    if name == "ancestral":
        variance = "fixed_large" if opts.get("variance") == "beta" else "fixed_small"
        return "DDPMScheduler", {**_grid_keys(opts, name, karras=False), **clip_keys, "variance_type": variance}, notes
    if name == "ddim":
        eta = float(opts.get("eta", 0.0))
        if eta == 1.0 and clip is None:
            return "EulerAncestralDiscreteScheduler", _grid_keys(opts, name, karras=False), notes
        keys = _grid_keys(opts, name)
        if keys.get("use_karras_sigmas"):
            if eta != 0.0 or clip is not None:
                raise IncompatibleError("ddim on the karras grid is EulerDiscreteScheduler, which has neither eta nor "
                                        "clip_sample: export it with eta=0 and clip_x0 none")
            return "EulerDiscreteScheduler", keys, notes
        if eta != 0.0:
            notes.append(f"eta={eta:g} is an argument of the DDIM pipeline's call (pipe(eta={eta:g})), not of its config")
        return "DDIMScheduler", {**keys, **clip_keys}, notes
    if name == "heun":
        if opts.get("sigma_max") is not None:
            notes.append(f"diffusers' Heun starts at σ(1); difftk's heun was capped at sigma_max={opts['sigma_max']:g}, "
                         "which only the karras grid uses (sample with --set sampler.sigma_max=none to match)")
        return "HeunDiscreteScheduler", {**_grid_keys(opts, name), **clip_keys}, notes
    if name in ("dpm-solver-2m", "dpm-solver-3m", "dpm-solver-2m-sde", "unipc"):
        if clip is not None:
            raise IncompatibleError(f"sampler '{name}' with clip_x0={clip:g}: diffusers' multistep solvers have no "
                                    "clip_sample (only dynamic thresholding); export it with clip_x0 none")
        keys = _grid_keys(opts, name)
        if keys["timestep_spacing"] != "trailing" and not keys.get("use_karras_sigmas"):
            notes.append(f"{keys['timestep_spacing']} spacing: diffusers' multistep schedulers place K + 1 points and drop "
                         "the last, so the grids differ; trailing and karras are the same in both")
        if name == "unipc":
            if not opts.get("corrector", True):
                raise IncompatibleError("unipc without its corrector has no diffusers config (disable_corrector lists "
                                        "steps, not all of them): export it with corrector true")
            return "UniPCMultistepScheduler", {**keys, "solver_order": int(opts.get("order", 2)), "predict_x0": True,
                                               "solver_type": opts.get("variant", "bh2"),
                                               "lower_order_final": bool(opts.get("lower_order_final", True))}, notes
        if opts.get("lower_order_final", True):
            notes.append("lower_order_final: difftk lowers the step into the last grid time, diffusers the step to σ = 0 "
                         "(and the one before below 15 steps); with lower_order_final false the two agree")
        if name == "dpm-solver-3m" and opts.get("third_order") != "reference":
            notes.append("third_order taylor: diffusers' 3M uses the reference code's D2 (third_order reference)")
        algorithm = "sde-dpmsolver++" if name.endswith("sde") else "dpmsolver++"
        order = 3 if name == "dpm-solver-3m" else 2
        return "DPMSolverMultistepScheduler", {**keys, "solver_order": order, "algorithm_type": algorithm,
                                               "solver_type": "midpoint", "lower_order_final": True,
                                               "final_sigmas_type": "zero"}, notes
    raise IncompatibleError(f"sampler '{name}' has no diffusers scheduler (exportable: {', '.join(EXPORTABLE)}): "
                            "choose one with --sampler NAME")


def scheduler_config(model: Any) -> tuple[str, dict[str, Any], str]:
    """The diffusers scheduler class and keyword arguments for ``model`` and its sampler, and how its β and
    its sampler were written, in words."""
    prediction = getattr(model.denoiser, "prediction", None)
    types = {ours: theirs for theirs, ours in PREDICTIONS.items()}
    if prediction not in types:
        raise IncompatibleError(f"the denoiser predicts {prediction!r}; diffusers' schedulers take prediction_type "
                                f"for {', '.join(types)} only")
    betas, how = fit_schedule(model.schedule, model.pipeline.spec["schedule"])
    sampler = model.pipeline.spec.get("sampler")
    if sampler is None:
        class_name, keys, notes = "DDPMScheduler", {"timestep_spacing": "leading", "clip_sample": False}, []
    else:
        class_name, keys, notes = sampler_config(sampler, model.schedule)
    config = {**betas, "prediction_type": types[prediction], **keys}
    words = f"{class_name} for sampler {sampler.name if sampler else 'none'}; {how}"
    return class_name, config, "; ".join([words, *notes])


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: --format diffusers writes a folder, give -o DIR")
    if out.is_dir() and any(out.iterdir()) and not any((out / n).exists() for n in ("model_index.json", "scheduler")):
        raise OutputError(f"{out} exists and holds other files: give a new or empty folder for the diffusers model")


def export_diffusers(model: Any, output: str | Path) -> str:
    """Write ``model`` to folder ``output`` as a DDPMPipeline with the scheduler of its sampler (or that scheduler
    alone); the report, in words."""
    import diffusers
    from diffusers import DDPMPipeline

    out = Path(output)
    if getattr(model.pipeline, "autoencoder", None) is not None:  # a DDPMPipeline has no first stage to carry it
        raise DifftkError(f"a latent model (autoencoder '{model.pipeline.spec['autoencoder'].name}') cannot be written as a "
                          "DDPMPipeline, which samples pixels: export it with --format folder")
    _check_output(out)
    class_name, config, how = scheduler_config(model)
    scheduler = getattr(diffusers, class_name)(**config)
    lines = []
    denoiser = model.denoiser
    if isinstance(denoiser, DiffusersUNet):
        device = model.device
        unet = denoiser.unet.to("cpu")
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out, safe_serialization=True)
        unet.to(device)
        if denoiser.config.null_class:
            (out / SETTINGS_FILE).write_text(json.dumps({"null_class": True}) + "\n", encoding="utf-8")
        lines.append(f"wrote {out}: a DDPMPipeline (model_index.json, unet/, scheduler/); scheduler: {how}")
    else:
        scheduler.save_pretrained(out / "scheduler")
        label = model.pipeline.spec["denoiser"].name if "denoiser" in model.pipeline.spec else type(denoiser).__name__
        params = sum(p.numel() for p in denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else 0
        lines.append(f"wrote {out / 'scheduler' / 'scheduler_config.json'} ({how})")
        lines.append(f"weights not exported: denoiser '{label}' ({params:,} parameters) is not a diffusers UNet2DModel (its "
                     "blocks, attention and embeddings have no UNet2DModel layout); only the schedule was written")
    return "\n".join(lines)
