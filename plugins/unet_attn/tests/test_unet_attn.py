"""unet-attn: the Denoiser contract, discovery, option checks, conditioning, gradients, training."""

from __future__ import annotations

from importlib import metadata

import difftk
import pytest
import torch
import torch.nn.functional as F
from difftk.components.plugins import host
from difftk.errors import OptionError
from difftk.maths.embedding import timestep_embedding
from difftk.testing import check_denoiser
from difftk_unet_attn import UNetAttn, UNetAttnConfig, fast_cpu_conv
from difftk_unet_attn.layers import AttentionBlock
from hypothesis import given, settings
from hypothesis import strategies as st

#: A network small enough for a test to run it many times: levels 28 and 14, attention at 14.
TINY = dict(base_channels=16, norm_groups=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(14,),
            num_heads=2)


def tiny(**options) -> UNetAttn:
    torch.manual_seed(0)
    return UNetAttn(**{**TINY, **options})


def unzeroed(model: UNetAttn) -> UNetAttn:
    """The model with its zero-initialised tensors (block outputs, attention projections, output
    layer, GroupNorm biases) redrawn, so every path carries signal; in eval mode (no dropout)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def inputs(model: UNetAttn, batch: int = 3, seed: int = 0):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c.in_channels, c.image_size, c.image_size, generator=g)
    return x, torch.rand(batch, generator=g)


CONFIGS = {
    "1ch-28": dict(),
    "3ch-32": dict(in_channels=3, image_size=32, channel_mult=(1, 2, 2), attention_resolutions=(16, 8)),
    "class-conditional": dict(num_classes=10),
    "learned-variance": dict(learned_variance=True),
    "x0": dict(prediction="x0"),
    "v": dict(prediction="v", num_classes=3, learned_variance=True),
    "additive-embedding": dict(scale_shift=False, attention_resolutions=()),
}


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_conformance(options):
    model = tiny(**options)
    c = model.config
    check_denoiser(model, (3, c.in_channels, c.image_size, c.image_size), num_classes=c.num_classes)
    check_denoiser(unzeroed(model), (3, c.in_channels, c.image_size, c.image_size), num_classes=c.num_classes)
    assert model.prediction == c.prediction and model.learned_variance == c.learned_variance
    assert model.num_classes == c.num_classes


def test_discovered_through_its_entry_point():
    assert "unet-attn" in difftk.available("denoiser")
    info = host().registry.get("denoiser", "unet-attn")
    assert info.cls is UNetAttn and info.options_cls is UNetAttnConfig
    (ep,) = [ep for ep in metadata.entry_points(group="difftk") if ep.name == "unet_attn"]
    assert ep.value == "difftk_unet_attn.plugin" and ep.dist.name == "difftk-unet-attn"
    model = difftk.create("denoiser", "unet-attn", **TINY, num_classes=4)
    assert isinstance(model, UNetAttn) and model.config == UNetAttnConfig(**TINY, num_classes=4)


def test_built_from_a_config_or_from_options():
    assert UNetAttn(UNetAttnConfig(**TINY)).config == tiny().config
    assert tiny().state_dict().keys() == UNetAttn(UNetAttnConfig(**TINY)).state_dict().keys()
    with pytest.raises(TypeError):
        UNetAttn(UNetAttnConfig(), base_channels=32)


def test_command_line_strings_parse_into_tuples():
    model = host().registry.get("denoiser", "unet-attn").instantiate(
        {"channel_mult": "1,2", "attention_resolutions": "14", "base_channels": "16", "norm_groups": "8"},
        from_strings=True)
    assert model.config.channel_mult == (1, 2) and model.config.attention_resolutions == (14,)


@pytest.mark.parametrize(("options", "message"), [
    (dict(image_size=30), r"image_size=30 must be divisible by 2\*\*\(len\(channel_mult\)-1\)=4.*use a multiple of 4"),
    (dict(attention_resolutions=(16,)), r"attention_resolutions has 16, but the feature maps are 28, 14, 7: use attention_resolutions=14 "),
    (dict(base_channels=48, norm_groups=32), r"width 48 .* not divisible by norm_groups=32: use base_channels a multiple of 32"),
    (dict(base_channels=40, channel_mult=(2, 4), norm_groups=16, attention_resolutions=()), r"width 40 \(base_channels"),
    (dict(image_size=4, channel_mult=(1, 1, 1), base_channels=32, norm_groups=32, attention_resolutions=()),
     r"GroupNorm needs more than one value per group, but the 1×1 level has 32 channels in norm_groups=32"),
    (dict(num_heads=3), r"num_heads=3 does not divide the attention width 64: use a divisor of 64"),
    (dict(channel_mult=()), r"channel_mult is empty"),
    (dict(channel_mult=(1, 0)), r"option channel_mult=0 is out of range"),
    (dict(channel_mult=2), r"channel_mult=2 must be a list of values"),
    (dict(prediction="score"), r"prediction='score' is not allowed"),
    (dict(in_channels=0), r"in_channels=0 is out of range"),
    (dict(dropout=1.0), r"dropout=1.0 is out of range"),
    (dict(num_head=4), r"has no option 'num_head'; did you mean 'num_heads'\?"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(OptionError, match=message) as info:
        difftk.create("denoiser", "unet-attn", **options)
    assert "\n" not in str(info.value) and str(info.value).startswith("denoiser 'unet-attn'")


@settings(max_examples=40, deadline=None)
@given(image_size=st.integers(1, 40), levels=st.integers(1, 4), attention=st.lists(st.integers(1, 40), max_size=2),
       base=st.sampled_from([8, 12, 16]), groups=st.sampled_from([1, 4, 8]), heads=st.integers(1, 5))
def test_any_options_build_or_fail_in_one_line(image_size, levels, attention, base, groups, heads):
    """Every combination either builds a network whose attention sits exactly at the requested
    feature-map sizes (and in the middle), or is refused with one OptionError line."""
    options = dict(image_size=image_size, channel_mult=tuple(range(1, levels + 1)), attention_resolutions=tuple(attention),
                   base_channels=base, norm_groups=groups, num_heads=heads, num_res_blocks=1)
    try:
        model = UNetAttn(**options)
    except OptionError as err:
        assert "\n" not in str(err)
        return
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, AttentionBlock)]
    x = torch.randn(1, 1, image_size, image_size)
    with torch.no_grad():
        assert model(x, torch.full((1,), 0.5)).shape == x.shape
    for h in hooks:
        h.remove()
    smallest = image_size // 2 ** (levels - 1)
    # per attended level: num_res_blocks blocks down + (num_res_blocks + 1) up; plus the middle
    expected = sorted([s for s in set(attention) for _ in range(3)] + [smallest])
    assert sorted(seen) == expected


def test_null_class_is_cond_none():
    model = unzeroed(tiny(num_classes=5))
    x, t = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t, cond=torch.full((3,), 5)))
        assert not torch.allclose(model(x, t), model(x, t, cond=torch.tensor([0, 1, 2])))


def test_output_depends_on_t_and_cond_per_example():
    """Changing one example's t or class changes that example's output and no other's."""
    model = unzeroed(tiny(num_classes=5))
    x, t = inputs(model)
    cond = torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = model(x, t, cond)
        t2 = t.clone()
        t2[1] = 1.0 - t2[1]
        cond2 = cond.clone()
        cond2[2] = 4
        for moved, changed in ((model(x, t2, cond), 1), (model(x, t, cond2), 2)):
            diff = (moved - out).flatten(1).abs().amax(dim=1)
            assert diff[changed] > 1e-3
            assert torch.all(diff[[i for i in range(3) if i != changed]] == 0)


def test_unconditional_network_ignores_cond():
    model = unzeroed(tiny())
    x, t = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t, cond=torch.tensor([1, 2, 3])))


def test_time_embedding_scales_t_by_1000():
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    assert torch.allclose(emb[:, 0], torch.sin(1000 * t), atol=1e-4)  # the highest frequency is 1
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_gradients_reach_every_parameter():
    model = unzeroed(tiny(num_classes=3, learned_variance=True)).train()
    x, t = inputs(model, batch=4)
    model(x, t, cond=torch.tensor([0, 1, 2, 3])).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_input_errors_are_one_line():
    model = tiny(num_classes=3)
    x, t = inputs(model)
    for call, message in [
        (lambda: model(x[:, :, :14], t), r"expects x_t of shape \[B, 1, 28, 28\], got \[3, 1, 14, 28\]"),
        (lambda: model(x, t[:2]), r"expects t of shape \[3\]"),
        (lambda: model(x, t, cond=torch.tensor([0, 1, 4])), r"class indices must lie in 0\.\.2 \(3 = the null class\)"),
        (lambda: model(x, t, cond=torch.zeros(3)), r"expects cond as integer class indices"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch._nnpack_available(), reason="this torch build has no NNPACK")
def test_cpu_fast_path_changes_only_rounding():
    """The network with every 3×3 convolution forced to NNPACK gives its values and gradients with
    oneDNN (test_conv_choice.py checks each mix of the two, layer by layer)."""
    model = unzeroed(tiny(num_classes=3)).train()
    x, t = inputs(model, batch=16)
    cond = torch.arange(16) % 4
    outs, grads = [], []
    for enabled in (True, False):
        with fast_cpu_conv(enabled):
            torch.manual_seed(5)  # the same dropout masks
            model.zero_grad()
            out = model(x, t, cond)
            out.square().mean().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5 * grads[1].abs().max())
    assert not torch.equal(outs[0], outs[1])  # the fast path was taken


@pytest.mark.skipif(not torch._nnpack_available(), reason="this torch build has no NNPACK")
def test_compiled_conv3x3_leaves_the_untraceable_fast_path_and_matches_conv2d():
    """torch.compile cannot trace NNPACK's op, so inside it the convolution goes to F.conv2d:
    `difftk train --compile` on the CPU works where eager code would take NNPACK."""
    from difftk_unet_attn.conv import Conv3x3

    torch.manual_seed(0)
    conv = Conv3x3(8, 12)
    x = torch.randn(16, 8, 14, 14)
    torch._dynamo.reset()
    with fast_cpu_conv(True):
        compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)  # traces forward and backward
        out = compiled(x.requires_grad_())
    out.square().mean().backward()
    ref_x = x.detach().clone().requires_grad_()
    ref = F.conv2d(ref_x, conv.weight.detach(), conv.bias.detach(), padding=1)
    ref.square().mean().backward()
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(x.grad, ref_x.grad, atol=1e-6)


def test_it_trains():
    """A few dozen AdamW steps on one fixed batch with L_simple lower the loss."""
    torch.manual_seed(0)
    model = UNetAttn(**TINY, num_classes=2)
    objective = difftk.create("objective", "simple")
    schedule = difftk.create("schedule", "linear", T=100)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(8, 1, 28, 28, generator=g) > 0.7).float() * 2 - 1
    cond = torch.arange(8) % 2

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(objective.loss(model, schedule, x0, cond, generator=torch.Generator().manual_seed(1)).mean())

    before = loss()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(20):
        opt.zero_grad()
        objective.loss(model, schedule, x0, cond, generator=torch.Generator().manual_seed(100 + step)).mean().backward()
        opt.step()
    after = loss()
    assert after < 0.5 * before, (before, after)


def test_in_a_pipeline_round_trips_through_toml_and_samples():
    from difftk.pipeline.compose import compose_spec
    from difftk.pipeline.spec import PipelineSpec

    pipe = difftk.compose(schedule={"name": "linear", "options": {"T": 100}}, sampler="ddim",
                          denoiser={"name": "unet-attn", "options": {**TINY, "num_classes": 3}}, objective="simple")
    again = compose_spec(PipelineSpec.from_toml(pipe.to_toml()))
    assert again.denoiser.config == pipe.denoiser.config
    assert again.denoiser.config.channel_mult == (1, 2)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x0 = pipe.sampler.sample(unzeroed(pipe.denoiser), pipe.schedule, x_T, steps=3, cond=torch.tensor([0, 2]))
    assert x0.shape == x_T.shape and torch.isfinite(x0).all()


def test_upsample_equals_nearest_then_conv3x3():
    """The phase form computes exactly conv3×3(nearest ×2 (x)), values and gradients."""
    from difftk_unet_attn.layers import Upsample

    torch.manual_seed(0)
    up = Upsample(6)
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    out = up(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.conv2d(F.interpolate(ref_x, scale_factor=2.0, mode="nearest"), up.conv.weight, up.conv.bias, padding=1)
    assert out.shape == (2, 6, 10, 14) and torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, up.conv.weight, up.conv.bias), g)
    ref_grads = torch.autograd.grad(ref, (ref_x, up.conv.weight, up.conv.bias), g)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize(("image_size", "attention"), [(8, (4,)), (16, (8,)), (28, (14,)), (32, (16,)), (64, (16,)),
                                                       (128, (16,))])
def test_unset_attention_is_derived_from_the_image_size(image_size, attention):
    """none = 16×16 (Ho et al. 2020, App. B) or half the image at 32 px and below; written out by
    derived_options, and an explicit value is kept as given."""
    levels = (1, 2, 2) if image_size <= 64 else (1, 1, 2, 2, 4)
    config = UNetAttn.Config(image_size=image_size, channel_mult=levels)
    assert config.attention_resolutions is None and config.attention == attention
    assert config.derived_options() == {"attention_resolutions": attention}
    explicit = UNetAttn.Config(image_size=image_size, channel_mult=levels, attention_resolutions=())
    assert explicit.attention == () and explicit.derived_options() == {}


def test_latents_of_any_channel_count_are_denoised_in_their_shape():
    """A first stage with z_channels=4 (Stable Diffusion's) or 8 gives latents that are not images:
    the network takes them as they are and answers in their shape."""
    for channels in (4, 8):
        net = difftk.create("denoiser", "unet-attn", in_channels=channels, image_size=8, base_channels=16,
                            norm_groups=8, channel_mult=(1, 2), attention_resolutions=(4,))
        x = torch.randn(2, channels, 8, 8)
        assert net(x, torch.tensor([0.3, 0.7])).shape == x.shape
