"""Every scheduler class the bridge maps steps as diffusers' own loop does, from the same x_T and noise."""

import inspect
import json
import math

import diffusers
import numpy as np
import pytest
import torch
from difftk.errors import CheckpointError
from difftk_diffusers import load as load_diffusers
from difftk_diffusers.config import SCHEDULERS, read_scheduler_config, scheduler_times
from difftk_diffusers.folder import build_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (3, 8, 8)
#: float32 loops of 10–16 steps agree to about 1e-6 of the samples' scale (measured 7.7e-8 to 3.4e-6)
TOLERANCE = 1e-5


def diffusers_loop(unet, scheduler, x_T, steps, seed):
    """diffusers' sampling loop (scale_model_input → UNet → step), from difftk's VP noise x_T: the σ-frame
    schedulers (Euler, Heun) start from x_T·√(1 + σ_max²), the state their frame has at σ_max."""
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    frame = float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0
    x = x_T * math.sqrt(1.0 + float(scheduler.sigmas[0]) ** 2) if frame else x_T.clone()
    noisy = "generator" in inspect.signature(scheduler.step).parameters
    scale_input = getattr(scheduler, "scale_model_input", lambda x, t: x)  # flow matching has none: x is the flow state
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(scale_input(x, t), t).sample
            x = scheduler.step(out, t, x, **({"generator": generator} if noisy else {})).prev_sample
    return x


@pytest.fixture(scope="module")
def bare_unet(unet, tmp_path_factory):
    """One tiny UNet folder (config.json and weights), read once, then built with each scheduler config in turn."""
    net = unet(seed=5)
    folder = tmp_path_factory.mktemp("unet")
    net.save_pretrained(folder)
    scheduler = tmp_path_factory.mktemp("scheduler")
    diffusers.DDPMScheduler().save_config(scheduler)
    model = load_diffusers(folder, scheduler=scheduler / "scheduler_config.json")
    return model.denoiser.unet, folder


def read_with(bare_unet, scheduler, tmp_path):
    """The model of the UNet with ``scheduler``'s config as save_config writes it (the folder loader's build step)."""
    net, folder = bare_unet
    scheduler.save_config(tmp_path)
    config = read_scheduler_config(tmp_path / "scheduler_config.json")
    unet_config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    return net, build_model(folder, unet_config, net, config, null_class=False, device="cpu")


CASES = [  # (class, config keys, steps, walk diffusers' grid through scheduler_times, the sampler it becomes)
    ("EulerDiscreteScheduler", {}, 10, False, "ddim"),
    ("EulerDiscreteScheduler", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}, 10, False, "ddim"),
    ("EulerDiscreteScheduler", {"timestep_spacing": "leading", "prediction_type": "sample"}, 10, False, "ddim"),
    ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, 10, False, "ddim"),
    ("EulerDiscreteScheduler", {}, 12, True, "ddim"),  # fractional timesteps: (T − 1)/(K − 1) is no integer
    ("EulerAncestralDiscreteScheduler", {}, 10, False, "ddim"),
    ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}, 10, False, "ddim"),
    ("HeunDiscreteScheduler", {"prediction_type": "v_prediction"}, 10, False, "heun"),  # its own β: σ_max = 14.6
    ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, 10, False, "heun"),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing"}, 10, False, "dpm-solver-2m"),
    ("DPMSolverMultistepScheduler", {"prediction_type": "v_prediction"}, 10, True, "dpm-solver-2m"),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}, 16, False, "dpm-solver-3m"),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3, "lower_order_final": False},
     10, False, "dpm-solver-3m"),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "algorithm_type": "sde-dpmsolver++"}, 10, False,
     "dpm-solver-2m-sde"),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 1}, 10, False, "ddim"),
    ("DPMSolverMultistepScheduler", {"solver_order": 1, "algorithm_type": "sde-dpmsolver++"}, 10, True, "ddim"),
    ("DPMSolverSinglestepScheduler", {"solver_order": 1}, 10, True, "ddim"),
    ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}, 10, False, "unipc"),
    ("UniPCMultistepScheduler", {"prediction_type": "v_prediction"}, 10, True, "unipc"),
    ("UniPCMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}, 16, False, "unipc"),
    ("FlowMatchEulerDiscreteScheduler", {}, 10, True, "flow-euler"),  # the UNet as a velocity model, timestep σ·T
    ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, 10, True, "flow-euler"),
]


@pytest.mark.parametrize("name,keys,steps,walk,sampler", CASES,
                         ids=[f"{c[0].removesuffix('Scheduler')}-{i}" for i, c in enumerate(CASES)])
def test_each_mapped_scheduler_samples_as_diffusers_own_loop(name, keys, steps, walk, sampler, bare_unet, tmp_path):
    """The same x_T (and, for the ancestral and SDE solvers, the same generator's draws in the same order) give the
    same x₀: Euler is DDIM in σ (Song et al. 2020 §4.3), Euler ancestral DDIM at η = 1, Heun Karras et al.'s
    Algorithm 1, DPMSolverMultistep DPM-Solver++(2M/3M) and its SDE variant, UniPC UniP-2/3 with UniC."""
    scheduler = getattr(diffusers, name)(**keys)
    net, model = read_with(bare_unet, scheduler, tmp_path)
    assert model.pipeline.spec["sampler"].name == sampler
    options = {"times": scheduler_times(read_scheduler_config(tmp_path / "scheduler_config.json"), steps)} if walk else None
    chosen = model.sampler(None, options)
    x_T = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = chosen.sample(model.denoiser, model.schedule, x_T, steps=None if walk else steps,
                             generator=torch.Generator().manual_seed(7))
    theirs = diffusers_loop(net, scheduler, x_T, steps, seed=7)
    scale = max(1.0, float(theirs.abs().max()))
    assert float((ours - theirs).abs().max()) <= TOLERANCE * scale, float((ours - theirs).abs().max()) / scale


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_karras_sigmas_of_the_multistep_solvers_are_difftks_karras_grid(name, bare_unet, tmp_path):
    """use_karras_sigmas: the σ are eq. 5 of Karras et al. 2022 from σ(1) to σ(1/T) in both (diffusers takes σ(1/T)
    from its float32 ᾱ_1 = 1 − 1e-4, which keeps four digits of 1 − ᾱ: 8.3e-5 off, and the σ between with it).
    These two classes round the UNet's timestep to an integer where difftk gives it the σ's own real timestep:
    the samples differ by that (measured 1.9e-4 of scale at 10 steps; Euler, which does not round, agrees to 1e-6)."""
    scheduler = getattr(diffusers, name)(use_karras_sigmas=True)
    net, model = read_with(bare_unet, scheduler, tmp_path)
    assert model.pipeline.spec["sampler"].options_dict["spacing"] == "karras"
    scheduler.set_timesteps(10)
    grid = model.sampler().time_grid(model.schedule, 10)
    ab = model.schedule.alpha_bar(torch.from_numpy(grid)).numpy()
    np.testing.assert_allclose(np.sqrt((1 - ab) / ab), scheduler.sigmas[:-1].double().numpy(), rtol=1e-4)
    x_T = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = model.pipeline.sampler.sample(model.denoiser, model.schedule, x_T, steps=10)
    theirs = diffusers_loop(net, scheduler, x_T, 10, seed=0)
    assert 1e-6 < float((ours - theirs).abs().max()) <= 1e-3 * max(1.0, float(theirs.abs().max()))


def test_the_defaults_read_are_diffusers_own():
    """A key a config leaves out means diffusers' default: difftk's table holds those same values."""
    for name, kind in SCHEDULERS.items():
        parameters = inspect.signature(getattr(diffusers, name).__init__).parameters
        for key, ours in kind.defaults.items():
            if key in parameters:  # a class without the key (Heun's rescale_betas_zero_snr) reads it as off
                assert parameters[key].default == ours, (name, key)


@pytest.mark.parametrize("name,keys,message", [
    ("PNDMScheduler", {}, "'PNDMScheduler' is not supported (supported: DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler"),
    ("DPMSolverSinglestepScheduler", {}, "difftk has no singlestep DPM-Solver (supported: solver_order 1"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}, "algorithm_type 'dpmsolver' is not supported"),
    ("DPMSolverMultistepScheduler", {"solver_type": "heun"}, "solver_type 'heun' is not supported"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
     "sde-dpmsolver++ with solver_order 3 is not supported"),
    ("DPMSolverMultistepScheduler", {"final_sigmas_type": "sigma_min"}, "final_sigmas_type 'sigma_min' is not supported"),
    ("DPMSolverMultistepScheduler", {"thresholding": True}, "thresholding true is not supported (dynamic thresholding"),
    ("DPMSolverMultistepScheduler", {"use_lu_lambdas": True}, "use_lu_lambdas true is not supported"),
    ("EulerDiscreteScheduler", {"interpolation_type": "log_linear"}, "interpolation_type 'log_linear' is not supported"),
    ("EulerDiscreteScheduler", {"timestep_type": "continuous"}, "timestep_type 'continuous' is not supported"),
    ("UniPCMultistepScheduler", {"disable_corrector": [0]}, "disable_corrector [0] is not supported"),
    ("UniPCMultistepScheduler", {"predict_x0": False}, "predict_x0 false is not supported"),
])
def test_a_config_without_a_difftk_counterpart_is_one_line_naming_what_is(name, keys, message, tmp_path):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": name, **keys}))
    with pytest.raises(CheckpointError) as err:
        read_scheduler_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)
