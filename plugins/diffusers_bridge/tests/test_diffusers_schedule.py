"""Scheduler configs map onto the ``diffusers`` schedule β for β, and schedules survive the round trip."""

import json

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import IncompatibleError
from difftk.pipeline.compose import spec_of
from diffusers import DDIMScheduler, DDPMScheduler
from difftk_diffusers.config import read_scheduler_config, scheduler_times
from difftk_diffusers.export import fit_schedule
from difftk_diffusers.schedule import cosine_betas

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NAMED = [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012), ("squaredcos_cap_v2", 1e-4, 0.02), ("sigmoid", 1e-4, 0.02)]


def read_back(scheduler, tmp_path):
    """The ``diffusers`` schedule of the config ``scheduler.save_config`` writes."""
    scheduler.save_config(tmp_path)
    config = read_scheduler_config(tmp_path / "scheduler_config.json")
    return difftk.create("schedule", "diffusers", **config.schedule_options), config


def betas_of(schedule):
    return np.asarray(schedule.discretize(schedule.grid_size).betas)


@pytest.mark.parametrize("cls,name,start,end", [(cls, *named) for cls in (DDPMScheduler, DDIMScheduler) for named in NAMED
                                                  if not (cls is DDIMScheduler and named[0] == "sigmoid")])  # DDIM has none
@pytest.mark.parametrize("T", [1000, 250, 37])
def test_every_named_schedule_has_the_betas_diffusers_has(cls, name, start, end, T, tmp_path):
    theirs = cls(num_train_timesteps=T, beta_schedule=name, beta_start=start, beta_end=end)
    ours, _ = read_back(theirs, tmp_path)
    assert np.max(np.abs(betas_of(ours) - theirs.betas.double().numpy())) <= 1e-12
    # ᾱ on the grid t = (k + 1)/T is the product of exactly those β (diffusers' float32 cumprod agrees to its precision)
    grid = torch.arange(1, T + 1, dtype=torch.float64) / T
    exact = np.cumprod(1.0 - theirs.betas.double().numpy())
    np.testing.assert_allclose(ours.alpha_bar(grid).numpy(), exact, rtol=1e-12)
    np.testing.assert_allclose(exact, theirs.alphas_cumprod.double().numpy(), rtol=1e-5)


def test_trained_betas_are_held_as_the_config_lists_them(tmp_path):
    float32 = DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas.tolist()  # what diffusers writes: float32 numbers
    ours, _ = read_back(DDPMScheduler(trained_betas=float32), tmp_path)
    assert np.array_equal(betas_of(ours), np.asarray(float32))
    float64 = list(np.linspace(1e-4, 0.02, 1000))  # finer than float32: kept whole, where diffusers rounds them
    ours, _ = read_back(DDPMScheduler(trained_betas=float64), tmp_path / "f64")
    assert np.array_equal(betas_of(ours), np.asarray(float64))


@pytest.mark.parametrize("name,start,end", NAMED)
def test_rescale_betas_zero_snr_reaches_pure_noise_with_diffusers_betas(name, start, end, tmp_path):
    theirs = DDPMScheduler(beta_schedule=name, beta_start=start, beta_end=end, rescale_betas_zero_snr=True)
    ours, _ = read_back(theirs, tmp_path)
    betas = betas_of(ours)
    assert betas[-1] == 1.0 and float(ours.alpha_bar(torch.ones(1, dtype=torch.float64))[0]) == 0.0
    assert np.max(np.abs(betas - theirs.betas.double().numpy())) <= 1e-12


@pytest.mark.parametrize("make", [
    lambda: difftk.create("schedule", "linear"), lambda: difftk.create("schedule", "linear", T=250),
    lambda: difftk.create("schedule", "quadratic"), lambda: difftk.create("schedule", "sigmoid", T=500),
    lambda: difftk.create("schedule", "cosine"), lambda: difftk.create("schedule", "cosine", T=100),
    lambda: difftk.create("schedule", "diffusers", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    lambda: difftk.create("schedule", "diffusers", beta_schedule="squaredcos_cap_v2", T=300),
    lambda: difftk.create("schedule", "diffusers", T=4, trained_betas=(0.1, 0.2, 0.3, 0.4)),
], ids=["linear", "linear-250", "quadratic", "sigmoid-500", "cosine", "cosine-100", "diffusers-scaled", "diffusers-cos", "trained"])
def test_a_schedule_exported_and_read_back_is_unchanged(make, tmp_path):
    schedule = make()
    keys, how = fit_schedule(schedule, spec_of("schedule", schedule))
    written = DDPMScheduler(**keys)
    ours, _ = read_back(written, tmp_path)
    assert np.max(np.abs(betas_of(ours) - betas_of(schedule))) <= 1e-12, how
    # diffusers reads the same file as the same β, to float32 precision (it holds them in float32)
    np.testing.assert_allclose(written.betas.double().numpy(), betas_of(schedule), rtol=2e-7)


def test_a_diffusers_schedule_is_written_back_by_name_and_difftks_float64_ones_as_trained_betas():
    named = difftk.create("schedule", "diffusers", beta_schedule="squaredcos_cap_v2")
    keys, how = fit_schedule(named, spec_of("schedule", named))
    assert keys["beta_schedule"] == "squaredcos_cap_v2" and keys["trained_betas"] is None and "every β exact" in how
    # difftk's cosine is the same formula as squaredcos_cap_v2 in float64 (to 1e-12), but diffusers evaluates
    # its named schedules in float32, about 1e-10 off: only trained_betas reproduce difftk's β exactly
    cosine = difftk.create("schedule", "cosine")
    assert np.max(np.abs(betas_of(cosine) - cosine_betas(1000))) <= 1e-12
    keys, how = fit_schedule(cosine, spec_of("schedule", cosine))
    assert keys["trained_betas"] is not None and keys["beta_schedule"] == "squaredcos_cap_v2", how
    assert "squaredcos_cap_v2" in how and "float32" in how
    linear = difftk.create("schedule", "linear")
    keys, how = fit_schedule(linear, spec_of("schedule", linear))
    assert (keys["beta_schedule"], keys["beta_start"], keys["beta_end"]) == ("linear", 1e-4, 0.02)


def test_a_continuous_schedule_cannot_be_exported():
    vp = difftk.create("schedule", "vp")
    with pytest.raises(IncompatibleError, match="continuous"):
        fit_schedule(vp, spec_of("schedule", vp))


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("spacing,offset,steps", [(s, 0, k) for s in ("leading", "trailing", "linspace")
                                                  for k in (1, 3, 10, 50, 333, 1000)] + [("leading", 1, k) for k in (1, 3, 50, 333)])
def test_scheduler_times_are_diffusers_timesteps_on_difftks_clock(cls, spacing, offset, steps):
    scheduler = cls(timestep_spacing=spacing, steps_offset=offset)
    scheduler.set_timesteps(steps)
    times = scheduler_times(json.loads(scheduler.to_json_string()), steps)
    assert np.array_equal(np.round(np.asarray(times) * 1000).astype(int) - 1, scheduler.timesteps.numpy())
