"""difftk's samplers on a diffusers model step as diffusers' schedulers do, and every sampler samples it."""

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.diffusion import eps_and_x0
from difftk.sampling.noise import ExampleNoise
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler
from difftk_diffusers.config import read_scheduler_config, scheduler_times

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (3, 8, 8)


def diffusers_loop(unet, scheduler, x, steps, **step_options):
    """The loop of diffusers' DDPMPipeline/DDIMPipeline, from the given x_T, without the final rescaling to [0, 1]."""
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(x, k).sample, k, x, **step_options).prev_sample
    return x


def difftk_noise(n, seed=0):
    """The x_T that Model.sample(n, seed=seed) starts from (one noise stream per example)."""
    return ExampleNoise(seed, range(n), "cpu").randn((n, *SHAPE))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("beta_schedule,spacing", [("linear", "leading"), ("squaredcos_cap_v2", "leading"),
                                                   ("linear", "trailing"), ("squaredcos_cap_v2", "trailing")])
def test_ddim_eta0_reproduces_diffusers_ddim(prediction, beta_schedule, spacing, unet, save_pipeline):
    """Song et al. 2020 eq. 12 at η = 0, 20 of 1000 steps: the same x₀ from the same x_T, to 1e-4 in float32.

    squaredcos_cap_v2 ends at ᾱ_T = 2.4e-9, below the 2⁻²⁴ = 6.0e-8 that difftk's samplers raise ᾱ(1) to
    (difftk.maths.terminal.TerminalFloor); a trailing grid starts there, so diffusers is given the same floor."""
    net = unet()
    scheduler = DDIMScheduler(beta_schedule=beta_schedule, prediction_type=prediction, timestep_spacing=spacing,
                              clip_sample=False)
    model = difftk.load(save_pipeline(net, scheduler))
    assert model.pipeline.spec["sampler"].name == "ddim" and model.denoiser.prediction == {
        "epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction]
    ours = model.sample(4, steps=20, seed=3)
    scheduler.alphas_cumprod.clamp_(min=2.0**-24)  # a no-op but for squaredcos_cap_v2's last ᾱ
    theirs = diffusers_loop(net, scheduler, difftk_noise(4, seed=3), 20, eta=0.0)
    assert (ours - theirs).abs().max() <= 1e-4 * max(1.0, float(theirs.abs().max()))


def test_ddim_walks_diffusers_grid_with_steps_offset_through_scheduler_times(unet, save_pipeline):
    """steps_offset = 1 (Stable Diffusion's configs) is no spacing of the core grid: the times themselves are passed."""
    net = unet()
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False)
    folder = save_pipeline(net, scheduler)
    model = difftk.load(folder)
    times = scheduler_times(read_scheduler_config(folder / "scheduler" / "scheduler_config.json"), 25)
    assert times[-1] == 2 / 1000  # timestep 1, not 0
    ours = model.sample(2, times=times)
    theirs = diffusers_loop(net, scheduler, difftk_noise(2), 25, eta=0.0)
    assert (ours - theirs).abs().max() <= 1e-4 * max(1.0, float(theirs.abs().max()))


def test_ddim_reproduces_the_ddim_pipeline_itself(unet, save_pipeline):
    """DDIMPipeline(generator) draws x_T with torch.randn from the generator; from that x_T difftk's ddim gives
    the pipeline's images (x₀/2 + 1/2, clamped to [0, 1])."""
    net = unet(seed=1)
    scheduler = DDIMScheduler(clip_sample=False)
    model = difftk.load(save_pipeline(net, scheduler))
    images = DDIMPipeline(unet=net, scheduler=scheduler)(batch_size=3, generator=torch.Generator().manual_seed(5),
                                                         num_inference_steps=10, eta=0.0, output_type="np").images
    x_T = torch.randn((3, *SHAPE), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        x0 = model.pipeline.sampler.sample(model.denoiser, model.schedule, x_T, steps=10)
    ours = (x0 / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours - images).max() <= 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("steps", [1000, 50])
def test_every_ancestral_step_has_ddpm_schedulers_mean_and_variance(prediction, variance, steps, unet, save_pipeline):
    """Ho et al. 2020 eq. 6–7 on each of the K steps (all 1000, or 50 respaced): the posterior mean of difftk's
    ancestral step and its variance equal those of DDPMScheduler.step on the same x_t and model output, to 1e-6.

    diffusers keeps ᾱ in float32 and takes β_t = 1 − ᾱ_t/ᾱ_{t−1} from it, which near t = 0 (β ≈ 1e-4) has a
    relative error of ~5e-4 (its mean is then 2.6e-4 off the exact one); its ᾱ are therefore the float64
    products of its own β (which are difftk's, bit for bit), so that its step formula is what is compared."""
    scheduler = DDPMScheduler(prediction_type=prediction, variance_type=variance, clip_sample=False)
    model = difftk.load(save_pipeline(unet(), scheduler))
    scheduler.alphas_cumprod = torch.cumprod(1.0 - scheduler.betas.double(), dim=0)
    sampler = model.sampler()
    assert sampler.variance == {"fixed_small": "beta_tilde", "fixed_large": "beta"}[variance]
    plan = sampler.plan(model.schedule, steps)
    scheduler.set_timesteps(steps)
    assert np.array_equal(np.round(plan.times[:-1] * 1000).astype(int) - 1, scheduler.timesteps.numpy())
    g = torch.Generator().manual_seed(0)
    worst_mean = worst_var = 0.0
    for k, timestep in enumerate(scheduler.timesteps):
        x = torch.randn((2, *SHAPE), generator=g, dtype=torch.float64)
        out = torch.randn((2, *SHAPE), generator=g, dtype=torch.float64)
        _, x0 = eps_and_x0(model.denoiser.prediction, out, x, float(plan.alpha_bars[k]))
        mean, var = plan.c_x0[k] * x0 + plan.c_xt[k] * x, float(plan.sigma[k]) ** 2
        # diffusers draws z from the generator: two draws give its σ and, from it, its mean
        draws = [scheduler.step(out, timestep, x, generator=torch.Generator().manual_seed(s)).prev_sample for s in (1, 2)]
        z = [torch.randn(x.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (1, 2)]
        dz = z[0] - z[1]
        sigma = float(((draws[0] - draws[1]) * dz).sum() / (dz * dz).sum())
        worst_mean = max(worst_mean, float((draws[0] - sigma * z[0] - mean).abs().max()))
        worst_var = max(worst_var, abs(sigma**2 - var))
    assert worst_mean <= 1e-6 and worst_var <= 1e-6, (worst_mean, worst_var)


@pytest.fixture(scope="module")
def models(unet, tmp_path_factory):
    """An ε-model (DDPM scheduler) and a v-model (DDIM scheduler), read once for the module."""
    out = {}
    for name, pipeline, scheduler in (("eps", DDPMPipeline, DDPMScheduler(clip_sample=False)),
                                      ("v", DDIMPipeline, DDIMScheduler(prediction_type="v_prediction", clip_sample=False))):
        folder = tmp_path_factory.mktemp(name)
        pipeline(unet=unet(seed=2), scheduler=scheduler).save_pretrained(folder)
        out[name] = difftk.load(folder)
    return out


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("name", difftk.available("sampler"))
def test_every_registered_sampler_samples_a_diffusers_model(name, prediction, models):
    x = models[prediction].sample(2, sampler=name, steps=4, seed=0)
    assert x.shape == (2, *SHAPE) and bool(torch.isfinite(x).all())


def test_the_unet_sees_diffusers_integer_timesteps_on_the_grid_and_t_T_minus_1_between(models):
    model = models["eps"]
    x = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for k in (0, 1, 499, 998, 999):
            t = torch.full((2,), (k + 1) / 1000)
            assert torch.equal(model.denoiser(x, t), model.denoiser.unet(x, torch.tensor([k, k])).sample)
        t = torch.full((2,), 0.43217)
        expected = model.denoiser.unet(x, torch.full((2,), 0.43217 * 1000 - 1)).sample
        assert torch.allclose(model.denoiser(x, t), expected, atol=1e-5)
