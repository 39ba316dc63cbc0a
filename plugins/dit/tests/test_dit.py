"""dit: the Denoiser contract, patches, adaLN-Zero's zero start, the null class, every objective, the CLI."""

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
from difftk_dit import DiT, DiTConfig, patchify, unpatchify
from difftk_dit.layers import FREQUENCY_DIM, sincos_2d
from hypothesis import given, settings
from hypothesis import strategies as st

#: a network small enough to run many times: 8×8 input, 2×2 patches (16 tokens), width 32, 2 blocks
TINY = dict(image_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=4)


def tiny(**options) -> DiT:
    torch.manual_seed(0)
    return DiT(**{**TINY, **options})


def unzeroed(model: DiT) -> DiT:
    """The model with its zero-initialised tensors (adaLN regression, final layer, biases) redrawn."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def inputs(model: DiT, batch: int = 3, seed: int = 0):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, c.in_channels, c.image_size, c.image_size, generator=g), torch.rand(batch, generator=g)


CONFIGS = {
    "1ch": dict(),
    "latent-4ch": dict(in_channels=4, image_size=4, patch_size=1),
    "3ch-p4": dict(in_channels=3, image_size=16, patch_size=4),
    "class-conditional": dict(num_classes=10),
    "learned-variance": dict(learned_variance=True),
    "learned-positions": dict(pos_embed="learned"),
    "x0": dict(prediction="x0"),
    "v": dict(prediction="v", num_classes=3, learned_variance=True),
    "flow": dict(prediction="flow"),
    "edm": dict(prediction="edm"),
    "diffusers-time": dict(time_embedding="diffusers", num_classes=2),
}


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_conformance(options):
    model = tiny(**options)
    c = model.config
    shape = (3, c.in_channels, c.image_size, c.image_size)
    check_denoiser(model, shape, num_classes=c.num_classes)
    check_denoiser(unzeroed(model), shape, num_classes=c.num_classes)
    assert (model.prediction, model.learned_variance, model.num_classes) == (
        c.prediction,
        c.learned_variance,
        c.num_classes,
    )


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_adaln_zero_starts_at_exactly_zero(options):
    """adaLN-Zero (Peebles & Xie 2023, §3.2): zero modulation and a zero final layer give 0 for any
    input, time and class, while the gradient still reaches the final layer and the modulation."""
    model = tiny(**options).train()
    x, t = inputs(model, batch=4)
    cond = torch.tensor([0, 1, 1, 0]) % max(1, model.num_classes) if model.num_classes else None
    out = model(x, t, cond)
    assert torch.equal(out, torch.zeros_like(out))
    (out - x.repeat(1, out.shape[1] // x.shape[1], 1, 1)).square().mean().backward()
    assert model.final_linear.weight.grad.any() and model.final_linear.bias.grad.any()


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    p=st.integers(1, 4),
    grid=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_unpatchify_inverts_patchify(batch, channels, p, grid, seed):
    """patchify is a bijection [B, C, gp, gp] ↔ [B, g², p²C]; each token holds exactly its patch."""
    x = torch.randn(batch, channels, grid * p, grid * p, generator=torch.Generator().manual_seed(seed))
    tokens = patchify(x, p)
    assert tokens.shape == (batch, grid * grid, p * p * channels)
    assert torch.equal(unpatchify(tokens, channels, p, grid), x)
    i, j = divmod(grid * grid - 1, grid)  # the last token is the bottom-right patch, in (row, column, channel) order
    assert torch.equal(tokens[:, -1], x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p].permute(0, 2, 3, 1).flatten(1))


def test_patch_embedding_is_the_papers_strided_convolution():
    """Linear on patchify(x) equals a p×p, stride-p convolution with the weight rearranged."""
    model = unzeroed(tiny(in_channels=3, image_size=8, patch_size=4))
    x, _ = inputs(model)
    d, p = model.config.hidden_size, 4
    conv_w = model.x_embedder.weight.view(d, p, p, 3).permute(0, 3, 1, 2)
    ref = F.conv2d(x, conv_w, model.x_embedder.bias, stride=p).flatten(2).transpose(1, 2)
    assert torch.allclose(model.x_embedder(patchify(x, p)), ref, atol=1e-5)


def test_sincos_positions_are_the_papers():
    """Channels [0, d/4) are sin of column·ω, [d/4, d/2) cos of it, then the same of the row; ω_i = 10⁴^(−4i/d)."""
    d, g = 16, 3
    pos = sincos_2d(d, g)
    omega = 10000.0 ** (-torch.arange(d // 4, dtype=torch.float64) / (d // 4))
    for n in range(g * g):
        row, col = divmod(n, g)
        expect = torch.cat(
            [torch.sin(col * omega), torch.cos(col * omega), torch.sin(row * omega), torch.cos(row * omega)]
        )
        assert torch.allclose(pos[n], expect, rtol=0, atol=1e-12)
    assert tiny().state_dict().keys().isdisjoint({"pos"})  # fixed: rebuilt from the options, not stored


def test_time_enters_as_unet_attns_embedding_of_1000t():
    model = unzeroed(tiny())
    t = torch.tensor([0.0, 0.3, 1.0])
    expect = model.t_embedder(timestep_embedding(t, FREQUENCY_DIM))
    assert torch.equal(model.embed(t, None), expect)


def test_null_class_is_cond_none_and_classes_matter():
    model = unzeroed(tiny(num_classes=5))
    x, t = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t, cond=torch.full((3,), 5)))
        assert not torch.allclose(model(x, t), model(x, t, cond=torch.tensor([0, 1, 2])))
    assert model.y_embedder.num_embeddings == 6


def test_unconditional_network_ignores_cond():
    model = unzeroed(tiny())
    x, t = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t, cond=torch.tensor([1, 2, 3])))
    assert model.y_embedder is None


def test_output_depends_on_t_and_cond_per_example():
    """Changing one example's t or class changes that example's output and no other's."""
    model = unzeroed(tiny(num_classes=5))
    x, t = inputs(model)
    cond = torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = model(x, t, cond)
        t2, cond2 = t.clone(), cond.clone()
        t2[1], cond2[2] = 1.0 - t2[1], 4
        for moved, changed in ((model(x, t2, cond), 1), (model(x, t, cond2), 2)):
            diff = (moved - out).flatten(1).abs().amax(dim=1)
            assert diff[changed] > 1e-3
            assert torch.all(diff[[i for i in range(3) if i != changed]] == 0)


def test_gradients_reach_every_parameter():
    model = unzeroed(tiny(num_classes=3, learned_variance=True, pos_embed="learned")).train()
    x, t = inputs(model, batch=4)
    model(x, t, cond=torch.tensor([0, 1, 2, 3])).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_discovered_through_its_entry_point():
    assert "dit" in difftk.available("denoiser")
    info = host().registry.get("denoiser", "dit")
    assert info.cls is DiT and info.options_cls is DiTConfig
    (ep,) = [ep for ep in metadata.entry_points(group="difftk") if ep.name == "dit"]
    assert ep.value == "difftk_dit.plugin" and ep.dist.name == "difftk-dit"
    model = difftk.create("denoiser", "dit", **TINY, num_classes=4)
    assert isinstance(model, DiT) and model.config == DiTConfig(**TINY, num_classes=4)
    with pytest.raises(TypeError):
        DiT(DiTConfig(), depth=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            dict(image_size=30, patch_size=4),
            r"image_size=30 is not divisible by patch_size=4: use a patch_size that divides "
            r"it \(1, 2, 3, 5, 6, 10, 15, 30\) or an image_size of 28 or 32",
        ),
        (dict(image_size=3, patch_size=4), r"image_size=3 is not divisible by patch_size=4.* an image_size of 4 or 4"),
        (dict(num_heads=5), r"num_heads=5 does not divide hidden_size=192: use a divisor, e.g. 4"),
        (dict(hidden_size=18, num_heads=3), r"hidden_size=18 must be a multiple of 4 for the 2-D sin-cos"),
        (dict(prediction="score"), r"prediction='score' is not allowed"),
        (dict(pos_embed="rope"), r"pos_embed='rope' is not allowed"),
        (dict(depth=0), r"depth=0 is out of range"),
        (dict(patch=2), r"has no option 'patch'; did you mean 'patch_size'\?"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(OptionError, match=message) as info:
        difftk.create("denoiser", "dit", **options)
    assert "\n" not in str(info.value) and str(info.value).startswith("denoiser 'dit'")


def test_learned_positions_take_any_width():
    model = unzeroed(tiny(hidden_size=18, num_heads=3, pos_embed="learned"))
    x, t = inputs(model)
    assert model(x, t).shape == x.shape and "pos_param" in model.state_dict()


def test_input_errors_are_one_line():
    model = tiny(num_classes=3)
    x, t = inputs(model)
    for call, message in [
        (lambda: model(x[:, :, :4], t), r"expects x_t of shape \[B, 1, 8, 8\], got \[3, 1, 4, 8\]"),
        (lambda: model(x, t[:2]), r"expects t of shape \[3\]"),
        (lambda: model(x, t, cond=torch.tensor([0, 1, 4])), r"class indices must lie in 0\.\.2 \(3 = the null class\)"),
        (lambda: model(x, t, cond=torch.zeros(3)), r"expects cond as integer class indices"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


#: (objective, schedule, denoiser options): every training objective with the parameterisation it trains
OBJECTIVES = {
    "simple": ("simple", "linear", dict()),
    "simple-x0": ("simple", "cosine", dict(prediction="x0")),
    "simple-v": ("simple", "cosine", dict(prediction="v")),
    "hybrid": ("hybrid", "linear", dict(learned_variance=True)),
    "vlb": ("vlb", "cosine", dict(learned_variance=True)),
    "dsm": ("dsm", "vp", dict()),
    "edm": ("edm", "edm", dict(prediction="edm")),
    "flow-matching": ("flow-matching", "flow", dict(prediction="flow")),
}


def test_every_training_objective_is_covered():
    """Every registered objective is here, but the distillations, which need a trained teacher."""
    teachers = {"consistency-distillation", "reflow"}
    assert set(difftk.available("objective")) - teachers == {o for o, _, _ in OBJECTIVES.values()}


@pytest.mark.parametrize("case", OBJECTIVES.values(), ids=OBJECTIVES.keys())
def test_every_objective_trains(case):
    """Adam steps on a class-conditional dit give finite losses. adaLN-Zero's start: the first step's
    gradient reaches only the zero final layer; once that has moved, the second reaches the
    modulation and, through the residual stream, the patch embedding; once the gates and the
    modulation have moved, the third reaches every parameter."""
    name, schedule, options = case
    objective = difftk.create("objective", name)
    sched = difftk.create("schedule", schedule)
    model = tiny(num_classes=2, **options).train()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    cond = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    reached = []
    for _ in range(3):
        opt.zero_grad()
        loss = objective.loss(model, sched, x0, cond, generator=g).mean()
        assert torch.isfinite(loss)
        loss.backward()
        reached.append({k for k, p in model.named_parameters() if p.grad is not None and p.grad.any()})
        opt.step()
    assert reached[0] == {"final_linear.weight", "final_linear.bias"}
    assert reached[1] == {
        f"{m}.{p}" for m in ("final_linear", "adaLN_modulation", "x_embedder") for p in ("weight", "bias")
    }
    assert reached[2] == {k for k, _ in model.named_parameters()}


def test_learned_variance_with_the_hybrid_objective_learns_the_variance():
    """L_hybrid = L_simple + λ·L_vlb (Nichol & Dhariwal 2021, §3.1): the variance channels get a gradient
    only from L_vlb, and a few steps lower the loss."""
    torch.manual_seed(0)
    model = DiT(**TINY, learned_variance=True).train()
    objective = difftk.create("objective", "hybrid")
    schedule = difftk.create("schedule", "linear", T=100)
    x0 = (torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.7).float() * 2 - 1

    def loss(step: int) -> torch.Tensor:
        return objective.loss(model, schedule, x0, generator=torch.Generator().manual_seed(step)).mean()

    loss(0).backward()
    d, p = model.config.hidden_size, model.config.patch_size
    # the final layer's rows are (row, column, channel) per token: channel 1 of 2 is v
    var_rows = model.final_linear.weight.grad.view(p * p, 2, d)[:, 1]
    assert var_rows.any() or model.final_linear.bias.grad.view(p * p, 2)[:, 1].any()
    with torch.no_grad():
        before = float(sum(loss(100 + i) for i in range(4)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(25):
        opt.zero_grad()
        loss(step).backward()
        opt.step()
    with torch.no_grad():
        after = float(sum(loss(100 + i) for i in range(4)))
    assert after < 0.7 * before, (before, after)


def test_compose_train_and_sample_on_mnist_from_the_cli(tmp_path, monkeypatch):
    """`difftk compose … --denoiser dit`, a few steps on mnist (image_size, in_channels and
    num_classes from the data), then `difftk sample` with cfg."""
    from click.testing import CliRunner
    from difftk.checkpoint.files import read_checkpoint
    from difftk_cli.main import cli

    monkeypatch.chdir(tmp_path)
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], catch_exceptions=False)  # noqa: E731
    sets = ["denoiser.hidden_size=32", "denoiser.depth=1", "denoiser.num_heads=2", "denoiser.patch_size=7"]
    result = run(
        "compose",
        "--schedule",
        "cosine",
        "--sampler",
        "ddim",
        "--guidance",
        "cfg",
        "--denoiser",
        "dit",
        "--objective",
        "simple",
        *[a for s in sets for a in ("--set", s)],
        "-o",
        "p.toml",
    )
    assert result.exit_code == 0, result.output
    result = run(
        "train", "p.toml", "--data", "mnist", "--steps", 3, "--batch-size", 4, "--out", "run", "--sample-every", 0
    )
    assert result.exit_code == 0, result.output
    options = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors").spec["denoiser"].options_dict
    assert (options["image_size"], options["in_channels"], options["num_classes"]) == (28, 1, 10)
    result = run("sample", "run", "-n", 4, "-o", "x.png", "--steps", 3, "--scale", 2.0, "--label", 3)
    assert result.exit_code == 0, result.output
    assert "wrote x.png: 4 samples" in result.stdout


def test_data_a_patch_cannot_tile_is_one_line_from_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from difftk_cli.main import cli

    monkeypatch.chdir(tmp_path)
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], catch_exceptions=False)  # noqa: E731
    assert (
        run(
            "compose",
            "--schedule",
            "linear",
            "--sampler",
            "ddim",
            "--denoiser",
            "dit",
            "--objective",
            "simple",
            "--set",
            "denoiser.image_size=32",
            "--set",
            "denoiser.patch_size=8",
            "-o",
            "p.toml",
        ).exit_code
        == 0
    )
    result = run("train", "p.toml", "--data", "mnist", "--steps", 1, "--out", "run")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "mnist gives in_channels=1, image_size=28" in lines[0], result.stderr
    assert (
        "image_size=28 is not divisible by patch_size=8: use a patch_size that divides it (1, 2, 4, 7, 14, 28)"
        in lines[0]
    )
