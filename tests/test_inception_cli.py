"""`difftk evaluate` with fid and kid in Inception-v3 features (a random-weights file written here), on a
3×32×32 model and on a 1×28×28 one, and the one-line error when the weights file is missing."""

import re

import difftk.testing.toys as toys
import pytest
from difftk_cli.testing import one_line_error, run
from difftk_metrics.testing import write_random_inception_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


@pytest.fixture
def toy(register_plugin, tmp_path, monkeypatch):
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFTK_CACHE_DIR", str(tmp_path / "cache"))


def train_toy(channels: int, size: int) -> str:
    """A tiny denoiser trained 1 step on 10 toy images of channels×size×size (10 held out)."""
    assert run("compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "tiny", "--objective", "simple",
               "--set", "schedule.T=50", "-o", "p.toml").exit_code == 0
    result = run("train", "p.toml", "--data", "toy-images", "--data-option", f"size={size}", "--data-option",
                 f"channels={channels}", "--data-option", "n=10", "--steps", 1, "--batch-size", 4, "--out", "run",
                 "--sample-every", 0)
    assert result.exit_code == 0, result.output
    return "run"


@pytest.mark.slow  # 20 Inception-v3 passes per model: 6–45 s each on 2 shared CPU cores, by their load
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])
def test_evaluate_fid_and_kid_in_inception_features(toy, weights, channels, size):
    run_dir = train_toy(channels, size)
    result = run("evaluate", run_dir, "--metric", "fid", "--metric", "kid", "-n", 10, "--steps", 2,
                 "--set", f"metric.features=inception:{weights}", "--set", "metric.bootstrap=2",
                 "--set", "metric.subsets=4")
    assert result.exit_code == 0, result.output
    fid = re.search(r"fid = ([\d.]+) ± ([\d.]+) \(bootstrap standard error, n = 10\)", result.stdout)
    kid = re.search(r"kid = (-?[\d.]+) ± ([\d.]+) \(standard error", result.stdout)
    assert fid and kid, result.stdout
    assert float(fid.group(1)) > 0 and float(kid.group(2)) > 0
    assert result.stdout.count("Inception-v3 pool3, 2048 units") == 2 and "toy-images held-out split, 10 images" in result.stdout
    assert "features cached in" in result.stdout  # the held-out features: computed by fid, read back by kid


def test_evaluate_without_inception_weights_says_which_file_in_one_line(toy, tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFTK_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    run_dir = train_toy(3, 8)
    line = one_line_error(run("evaluate", run_dir, "--metric", "fid", "-n", 10, "--steps", 1))
    assert "pt_inception-2015-12-05-6726825d.pth" in line and "DIFFTK_INCEPTION_WEIGHTS" in line
