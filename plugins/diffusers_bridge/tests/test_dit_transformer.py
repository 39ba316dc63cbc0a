"""A diffusers DiTTransformer2DModel folder read as difftk's ``dit``: the same forward, the conventions, the refusals."""

from __future__ import annotations

import json

import pytest
import torch
from difftk.errors import CheckpointError
from difftk_diffusers.transformer import load_dit
from diffusers import DiTTransformer2DModel

EMBEDDING = "norm1.emb."


def tiny_dit(learned_sigma: bool = True, classes: int = 5, seed: int = 0, **config) -> DiTTransformer2DModel:
    """A random 8×8×4 DiT (2×2 patches, width 16, 2 blocks) with every parameter drawn at a scale that
    carries signal, and one time-and-class embedding copied into every block, as converted DiT checkpoints hold."""
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8 if learned_sigma else None,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=classes,
        **config,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
        first = model.transformer_blocks[0].norm1.emb.state_dict()
        for block in model.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first)
    return model.eval()


def steps_and_times(ks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps k and difftk's times t = (k + 1)/1000 at which 1000·t − 1 is k again in float32."""
    t = (torch.tensor(ks, dtype=torch.float64) + 1).div(1000).to(torch.float32)
    assert torch.equal(t * 1000 - 1, torch.tensor(ks, dtype=torch.float32))
    return torch.tensor(ks), t


@pytest.mark.parametrize(
    ("learned_sigma", "norm_eps"), [(True, 1e-5), (False, 0.5)], ids=["learned-sigma", "fixed-sigma-large-eps"]
)
def test_forward_matches_diffusers(tmp_path, learned_sigma, norm_eps):
    """diffusers(x, k, y) = dit(x, (k + 1)/1000, y) to 1e-5 of the output's scale, float32; the null class
    index num_classes is cond=None; learned σ is the last C channels in both. (A large norm_eps makes
    the MLP LayerNorm's ε, which diffusers sets apart from the attention's, visible in the output.)"""
    reference = tiny_dit(learned_sigma, norm_eps=norm_eps)
    reference.save_pretrained(tmp_path / "dit")
    dit = load_dit(tmp_path / "dit")
    assert dit.learned_variance == learned_sigma and dit.num_classes == 5 and dit.prediction == "eps"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, 8, 8, generator=g)
    k, t = steps_and_times([0, 249, 499, 750, 999])
    labels = torch.tensor([0, 4, 2, 5, 1])  # 5 = the null class
    with torch.no_grad():
        ref = reference(x, timestep=k, class_labels=labels).sample
        out = dit(x, t, labels)
        assert out.shape == ref.shape == (5, 8 if learned_sigma else 4, 8, 8)
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
        null = reference(x, timestep=k, class_labels=torch.full((5,), 5)).sample
        assert (dit(x, t) - null).abs().max() <= 1e-5 * null.abs().max()
        assert not torch.allclose(null, ref)  # the labels matter, so the test above compares something


def test_positions_are_diffusers_sincos(tmp_path):
    reference = tiny_dit()
    reference.save_pretrained(tmp_path / "dit")
    assert torch.allclose(load_dit(tmp_path / "dit").pos_embed, reference.pos_embed.pos_embed, rtol=0, atol=1e-7)


def test_blocks_with_their_own_embeddings_are_refused(tmp_path):
    reference = tiny_dit()
    with torch.no_grad():
        reference.transformer_blocks[1].norm1.emb.timestep_embedder.linear_1.weight.add_(1.0)
    reference.save_pretrained(tmp_path / "dit")
    with pytest.raises(
        CheckpointError,
        match=r"block 1's norm1\.emb\.timestep_embedder\.linear_1\.weight differs from "
        r"block 0's: difftk's dit has one time and class embedding",
    ) as info:
        load_dit(tmp_path / "dit")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(patch_size=3), r"sample_size 8 is not divisible by patch_size 3"),
        (dict(norm_elementwise_affine=True), r"norm_elementwise_affine true is not supported"),
        (dict(activation_fn="geglu"), r"activation_fn"),
        (dict(out_channels=5), r"out_channels 5 must be in_channels \(4\) or twice it"),
        (
            dict(num_layers=3),
            r"weight 'transformer_blocks\.2\.norm1\.emb\.timestep_embedder\.linear_1\.weight' is missing",
        ),
        (dict(attention_head_dim=16), r"the weights do not fit the DiT its config.json describes"),
        (
            dict(num_embeds_ada_norm=7),
            r"y_embedder.weight has shape \[6, 16\], but the DiT its config.json describes needs "
            r"\[8, 16\]: the config and the weights are not the same model",
        ),
        (dict(_class_name="UNet2DModel"), r"_class_name"),
    ],
)
def test_configs_dit_cannot_take_are_one_line_errors(tmp_path, change, message):
    tiny_dit().save_pretrained(tmp_path / "dit")
    config_file = tmp_path / "dit" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **change}))
    with pytest.raises(CheckpointError, match=message) as info:
        load_dit(tmp_path / "dit")
    assert "\n" not in str(info.value)


def test_missing_or_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_dit(tmp_path)
    tiny_dit().save_pretrained(tmp_path / "dit")
    weights = tmp_path / "dit" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_dit(tmp_path / "dit")
    weights.unlink()
    with pytest.raises(CheckpointError, match="difftk reads no pickled weights"):
        load_dit(tmp_path / "dit")


def test_loaded_dit_samples_in_a_difftk_pipeline(tmp_path):
    """The loaded network is a plain ``dit``: cfg wraps it and a sampler runs it."""
    import difftk

    tiny_dit(classes=3).save_pretrained(tmp_path / "dit")
    dit = load_dit(tmp_path / "dit")
    pipe = difftk.compose(schedule="linear", sampler="ddim", guidance="cfg", denoiser=dit)
    x_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x0 = pipe.sampler.sample(
            pipe.guidance.wrap(dit, pipe.schedule), pipe.schedule, x_T, steps=3, cond=torch.tensor([0, 2])
        )
    assert x0.shape == x_T.shape and torch.isfinite(x0).all()


@pytest.mark.filterwarnings("ignore:`Transformer2DModelOutput` is deprecated:FutureWarning")  # diffusers' own import
def test_the_older_transformer2dmodel_class_of_dit_checkpoints_reads_alike(tmp_path):
    """DiT checkpoints on the Hub name their transformer Transformer2DModel (patched, ada_norm_zero)."""
    from diffusers import Transformer2DModel

    torch.manual_seed(0)
    reference = Transformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        norm_type="ada_norm_zero",
        num_embeds_ada_norm=5,
        activation_fn="gelu-approximate",  # as the DiT checkpoints set these three (the class defaults differ)
        attention_bias=True,
        norm_elementwise_affine=False,
    ).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
        first = reference.transformer_blocks[0].norm1.emb.state_dict()
        reference.transformer_blocks[1].norm1.emb.load_state_dict(first)
    reference.save_pretrained(tmp_path / "dit")
    assert json.loads((tmp_path / "dit" / "config.json").read_text())["_class_name"] == "Transformer2DModel"
    dit = load_dit(tmp_path / "dit")
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    k, t = steps_and_times([0, 499, 999])
    labels = torch.tensor([1, 5, 3])
    with torch.no_grad():
        ref = reference(x, timestep=k, class_labels=labels).sample
        assert (dit(x, t, labels) - ref).abs().max() <= 1e-5 * ref.abs().max()
