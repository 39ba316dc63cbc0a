"""`difftk evaluate` with the bpd-ode metric, NFE in `difftk sample`, and their one-line errors."""

import math
from types import SimpleNamespace

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.components.protocols import Metric
from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.model import Model
from difftk.testing import GaussianOracle
from difftk_cli.testing import one_line_error, run
from difftk_vp_sde.likelihood import bits_per_dim, dequantize


@pytest.fixture
def toy(register_plugin, tmp_path, monkeypatch):
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained(data="toy-images"):
    assert run("compose", "--schedule", "vp", "--sampler", "ode", "--denoiser", "tiny", "--objective", "dsm",
               "-o", "p.toml").exit_code == 0
    result = run("train", "p.toml", "--data", data, "--steps", 3, "--out", "run", "--sample-every", 0)
    assert result.exit_code == 0, result.output
    return "run/checkpoint.safetensors"


def test_evaluate_bpd_ode_on_a_checkpoint(toy):
    ckpt = trained()
    result = run("evaluate", ckpt, "--metric", "bpd-ode", "-n", 4, "--seed", 1)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("bpd-ode = ") and first.endswith("bits/dim (standard error, n = 4)")
    assert "nfe: " in result.stdout and "dequantization: x = (u + U)/128 − 1" in result.stdout
    value = float(first.split()[2])
    again = run("evaluate", ckpt, "--metric", "bpd-ode", "-n", 4, "--seed", 1)
    assert float(again.stdout.split()[2]) == value  # reproducible under --seed
    assert 0 < value < 100


def test_sample_with_the_ode_prints_its_nfe(toy):
    ckpt = trained()
    result = run("sample", ckpt, "-n", 4, "-o", "s.png", "--sampler", "ode", "--set", "sampler.method=heun", "--steps", 5)
    assert result.exit_code == 0, result.output
    assert "NFE 9 denoiser evaluations in 5 steps per batch of samples (1 batch)" in result.stdout  # 4 Heun steps, then x̂₀


def test_evaluate_errors_are_one_line(toy):
    ckpt = trained(data="toy-points")
    assert "unknown metric 'bpd-od'" in one_line_error(run("evaluate", ckpt, "--metric", "bpd-od"))
    assert "measures 8-bit images" in one_line_error(run("evaluate", ckpt, "--metric", "bpd-ode", "-n", 2))
    assert "only metric, sampler, guidance options" in one_line_error(
        run("evaluate", ckpt, "--metric", "bpd-ode", "--set", "denoiser.dropout=0"))
    assert "sampler 'ode' has no option 'eta'" in one_line_error(
        run("evaluate", ckpt, "--metric", "bpd-ode", "--set", "sampler.eta=1"))
    assert "no metric among bpd-ode has option q" in one_line_error(
        run("evaluate", ckpt, "--metric", "bpd-ode", "--set", "metric.q=1"))
    assert "choose from exact, rademacher, gaussian" in one_line_error(
        run("evaluate", ckpt, "--metric", "bpd-ode", "--set", "metric.divergence=hutch"))
    assert "no such checkpoint" in one_line_error(run("evaluate", "missing.safetensors", "--metric", "bpd-ode"))


def test_bpd_ode_is_a_metric_and_matches_the_analytic_density():
    """On 2×2 images and the exact denoiser of N(0, s²I), bpd-ode equals −log N(x; 0, s²)/(D ln 2) + 7
    at the dequantized points, to 1%."""
    schedule = difftk.create("schedule", "vp")
    s = 0.5
    g = torch.Generator().manual_seed(0)
    u = ((torch.randn(64, 1, 2, 2, generator=g) * s + 1) * 128).floor().clamp(0, 255).to(torch.uint8)
    data = ArrayDataset(u, name="gauss-images")
    metric = difftk.create("metric", "bpd-ode", n=16, divergence="exact")
    assert isinstance(metric, Metric)
    model = Model(SimpleNamespace(schedule=schedule), GaussianOracle(schedule, 0.0, s, (1, 2, 2)), data)
    context = EvalContext(model=model, data=data, seed=3)
    result = metric.evaluate(context)
    assert isinstance(result, MetricResult) and result.n == 16 and result.unit == "bits/dim" and result.spread > 0
    g = torch.Generator().manual_seed(context.seed)
    x = dequantize(u[torch.randperm(64, generator=g)[:16]], g)
    log_p = (-0.5 * (x / s) ** 2 - 0.5 * math.log(2 * math.pi * s**2)).flatten(1).sum(1)
    assert result.value == pytest.approx(float(bits_per_dim(log_p, 4).mean()), rel=0.01)
    with pytest.raises(DifftkError, match="needs the held-out data"):
        metric.evaluate(EvalContext(model=model, data=None))
