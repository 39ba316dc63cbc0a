"""difftk's components on diffusers models: class labels, cfg with a null class, likelihood metrics, SDEdit."""

import difftk
import pytest
import torch
from difftk.data.arrays import ArrayDataset
from difftk.errors import IncompatibleError, OptionError
from difftk.evaluation.context import EvalContext
from diffusers import DDIMScheduler, DDPMScheduler

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def conditional(unet, save_pipeline):
    """A UNet with 4 class embeddings, read twice: 4 classes, or 3 classes and the null class ∅ = 3."""
    net = unet(classes=4, seed=4)
    plain = difftk.load(save_pipeline(net, DDIMScheduler(clip_sample=False), "plain"))
    nulled = difftk.load(save_pipeline(net, DDIMScheduler(clip_sample=False), "nulled", settings={"null_class": True}))
    return net, plain, nulled


def test_class_labels_reach_the_unets_class_embedding(conditional):
    net, plain, _ = conditional
    assert plain.num_classes == 4 and plain.pipeline.guidance is None
    x, t = torch.randn(4, 3, 8, 8), torch.full((4,), 0.25)
    cond = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        assert torch.equal(plain.denoiser(x, t, cond=cond), net(x, torch.full((4,), 249.0), class_labels=cond).sample)
    sevens = plain.sample(2, labels=3, steps=5)
    assert torch.isfinite(sevens).all()
    with pytest.raises(OptionError, match="give labels"):
        plain.denoiser(x, t)
    with pytest.raises(OptionError, match=r"out of range: the model has classes 0\.\.3"):
        plain.sample(2, labels=4, steps=5)


def test_cfg_guides_toward_a_class_against_the_unets_last_embedding(conditional):
    """Ho & Salimans 2022, eq. 6, with ∅ the last class embedding: (1+w)·ε(x, c) − w·ε(x, ∅)."""
    net, plain, nulled = conditional
    assert nulled.num_classes == 3 and nulled.pipeline.spec["guidance"].name == "cfg"
    guided, wrapper = nulled.guided_denoiser("cfg", scale=2.0)
    x, t, cond = torch.randn(3, 3, 8, 8), torch.full((3,), 0.6), torch.tensor([0, 1, 2])
    k = torch.full((3,), 599.0)
    with torch.inference_mode():
        expected = 3.0 * net(x, k, class_labels=cond).sample - 2.0 * net(x, k, class_labels=torch.full((3,), 3)).sample
        assert torch.allclose(guided(x, t, cond=cond), expected, atol=1e-5)
        assert torch.equal(nulled.denoiser(x, t), net(x, k, class_labels=torch.full((3,), 3)).sample)  # cond=None is ∅
    samples = nulled.sample(6, guidance="cfg", scale=3.0, steps=5)
    assert samples.shape == (6, 3, 8, 8) and torch.isfinite(samples).all()
    with pytest.raises(IncompatibleError, match="label dropout"):  # without a null class there is no ε(x, ∅)
        plain.sample(2, guidance="cfg", scale=1.0, steps=5)


@pytest.fixture
def held_out():
    return ArrayDataset(data=torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8),
                        name="random-images")


@pytest.mark.parametrize("metric,options", [("bpd-vlb", {"n": 2, "steps": 10, "variance": "beta_tilde"}),
                                            ("bpd-ode", {"n": 2, "rtol": 1e-3, "atol": 1e-3})])
def test_likelihood_metrics_measure_a_diffusers_model(metric, options, unet, save_pipeline, held_out):
    model = difftk.load(save_pipeline(unet(), DDPMScheduler(clip_sample=False)))
    result = difftk.create("metric", metric, **options).evaluate(EvalContext(model=model, data=held_out))
    assert result.n == 2 and result.value > 0 and torch.isfinite(torch.tensor(result.value))


def test_sdedit_and_inpainting_edit_with_a_diffusers_model(ddim_folder):
    """Meng et al. 2022: init noised to t = strength and sampled back; with a mask, x̂₀ outside it is the init,
    so DDIM's last step (to ᾱ = 1, which returns x̂₀) keeps those pixels (to float32 precision: x̂₀ passes
    through the ε-model's parameterisation and back)."""
    model = difftk.load(ddim_folder)
    init = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    edited = model.sample(2, init=init, strength=0.4, steps=8, seed=1)
    assert torch.isfinite(edited).all() and torch.equal(edited, model.sample(2, init=init, strength=0.4, steps=8, seed=1))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0  # generate the left half, keep the right
    filled = model.sample(2, init=init, strength=1.0, mask=mask, steps=8, seed=1)
    assert float((filled[..., 4:] - init[..., 4:]).abs().max()) <= 1e-5, float((filled[..., 4:] - init[..., 4:]).abs().max())
    assert not torch.allclose(filled[..., :4], init[..., :4], atol=1e-2)


def test_the_diffusers_denoiser_passes_the_kit(ddim_folder):
    """diffusers-unet keeps the Denoiser contract: shape, finite output, and x_t and t both read."""
    from difftk.testing import check_denoiser

    check_denoiser(difftk.load(ddim_folder).denoiser, (2, 3, 8, 8))
