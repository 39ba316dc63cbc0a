"""`difftk evaluate` and `difftk train --metric` refuse bits/dim (bpd-vlb, bpd-ode) of a latent model in one
line before any work; a pixel-space model is still measured."""

import pytest
from difftk_cli.testing import one_line_error, run


def compose(autoencoder: bool):
    first = ("--autoencoder", "blocks", "--set", "autoencoder.factor=2") if autoencoder else ()
    result = run("compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "tiny", "--objective", "simple",
                 "--set", "schedule.T=50", *first, "-o", "p.toml")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("metric", ["bpd-vlb", "bpd-ode"])
def test_bits_per_dim_of_a_latent_model_is_refused_before_any_work(toy_pipeline, metric):
    compose(autoencoder=True)
    result = run("train", "p.toml", "--data", "toy-images", "--steps", 2, "--out", "run", "--sample-every", 0,
                 "--eval-every", 1, "--eval-metric", metric)
    line = one_line_error(result)
    assert f"metric '{metric}' is a likelihood of the images" in line and "latents of an autoencoder" in line
    assert not (toy_pipeline / "run" / "checkpoint.safetensors").exists()
    assert run("train", "p.toml", "--data", "toy-images", "--steps", 2, "--out", "run", "--sample-every", 0).exit_code == 0
    result = run("evaluate", "run", "--metric", "sliced-wasserstein", "--metric", metric, "-n", 16)
    assert f"metric '{metric}' is a likelihood" in one_line_error(result)
    assert "sliced" not in result.stdout  # refused before the first metric ran


def test_bits_per_dim_of_a_pixel_model_is_measured(toy_pipeline):
    assert run("train", "p.toml", "--data", "toy-images", "--steps", 2, "--out", "run", "--sample-every", 0).exit_code == 0
    result = run("evaluate", "run", "--metric", "bpd-vlb", "-n", 2, "--set", "metric.steps=2")
    assert result.exit_code == 0, result.output
    assert "bpd-vlb" in result.stdout
