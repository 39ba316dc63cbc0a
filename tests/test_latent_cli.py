"""Latent diffusion on the command line, at tiny size: compose with --autoencoder, train a few steps on
MNIST, sample decoded digits, and edit them (the issue's "must show", with unet-attn)."""

import difftk
import pytest
import torch
from difftk_cli.testing import one_line_error, run

AUTOENCODER = ["autoencoder.channels=8", "autoencoder.groups=4", "autoencoder.pad=2"]  # 28 → 32 → 8×8×3 latents
UNET = ["denoiser.base_channels=8", "denoiser.norm_groups=4", "denoiser.channel_mult=1,2"]  # attention: derived at 8×8


def sets(*pairs):
    return [a for s in pairs for a in ("--set", s)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latent")
    result = run(
        "compose",
        "--schedule",
        "cosine",
        "--sampler",
        "ddim",
        "--denoiser",
        "unet-attn",
        "--autoencoder",
        "kl",
        "--objective",
        "simple",
        *sets(*AUTOENCODER, *UNET),
        "-o",
        folder / "p.toml",
    )
    assert result.exit_code == 0, result.output
    assert "autoencoder: kl" in result.stdout
    result = run(
        "train",
        folder / "p.toml",
        "--data",
        "mnist",
        "--steps",
        2,
        "--batch-size",
        4,
        "--out",
        folder / "run",
        "--sample-every",
        0,
    )
    assert result.exit_code == 0, result.output
    return folder


def test_compose_train_and_sample_a_latent_pipeline(run_dir):
    model = difftk.load(run_dir / "run")
    assert model.pipeline.spec["autoencoder"].name == "kl"
    assert model.pipeline.spec["denoiser"].options_dict["image_size"] == 8  # fitted to the latents, not the pixels
    result = run("sample", run_dir / "run", "-n", 4, "-o", run_dir / "x.png", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert model.sample(2, steps=2).shape == (2, 1, 28, 28)


def test_edit_a_digit_through_the_autoencoder(run_dir):
    model = difftk.load(run_dir / "run")
    init, _ = model.examples("test", [0])
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:] = 1
    x = model.sample(1, steps=3, init=init, strength=0.6, mask=mask)
    assert x.shape == (1, 1, 28, 28) and torch.isfinite(x).all()


def test_a_wrong_autoencoder_is_one_line(tmp_path):
    line = one_line_error(run("compose", "--schedule", "cosine", "--sampler", "ddim", "--autoencoder", "kll"))
    assert "unknown autoencoder 'kll'" in line and "did you mean 'kl'" in line
    line = one_line_error(
        run(
            "compose",
            "--schedule",
            "cosine",
            "--sampler",
            "ddim",
            "--autoencoder",
            "kl",
            "--set",
            "autoencoder.weights=" + str(tmp_path / "none.safetensors"),
        )
    )
    assert "no such autoencoder weights file" in line
