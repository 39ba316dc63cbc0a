"""memorization: nearest training images against brute force, a copier flagged, real digits and the shipped
model not, the pairs picture, and `difftk evaluate --set metric.pairs=…`."""

import numpy as np
import pytest
import torch
from difftk.errors import OutputError
from difftk_metrics.memorization import copy_ratios, nearest_two
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(2, 40))
def test_nearest_two_agree_with_brute_force(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    samples, train = torch.randn(n, 1, 3, 3, generator=g), torch.randn(m, 1, 3, 3, generator=g)
    d1, d2, nearest = nearest_two(samples, train)
    brute = torch.cdist(samples.reshape(n, -1).double(), train.reshape(m, -1).double(),
                        compute_mode="donot_use_mm_for_euclid_dist")
    two = brute.sort(dim=1).values[:, :2]
    assert torch.allclose(d1, two[:, 0], atol=1e-9) and torch.allclose(d2, two[:, 1], atol=1e-9)
    assert torch.equal(brute[torch.arange(n), nearest], brute.min(dim=1).values)


def test_the_two_nearest_are_found_across_chunks(monkeypatch):
    import difftk_metrics.memorization as memorization

    g = torch.Generator().manual_seed(0)
    samples, train = torch.randn(6, 5, generator=g), torch.randn(50, 5, generator=g)
    whole = nearest_two(samples, train)
    monkeypatch.setattr(memorization, "CHUNK", 7)  # 50 = 7 chunks of 7 and one of 1
    for a, b in zip(whole, nearest_two(samples, train), strict=True):
        assert torch.allclose(a.double(), b.double(), atol=1e-9)


def test_a_copy_has_ratio_near_zero_and_a_midpoint_ratio_one():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    ratio, nearest = copy_ratios(torch.tensor([[0.1, 0.0], [5.0, 0.0]]), train)
    assert ratio[0] == pytest.approx(0.1 / 9.9) and nearest[0] == 0
    assert ratio[1] == pytest.approx(1.0)


# --- on digits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def copier(digits):
    """A "model" that copies 50 training digits, each with N(0, 0.01²) pixel noise."""
    train_x, *_ = digits
    chosen = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:50]
    return train_x[chosen] + 0.01 * torch.randn(50, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_a_model_that_copies_training_digits_is_flagged(copier, measure_images, tmp_path):
    result = measure_images("memorization", copier, pairs=str(tmp_path / "pairs.png"), shown=8)
    assert result.value == 1.0 and result.details["flagged"] == "50 of 50" and result.spread == 0
    assert result.details["median ratio"] < 0.1 and result.details["training examples"] == "4,500 distinct"
    picture = torch.from_numpy(np.array(Image.open(tmp_path / "pairs.png").convert("L"))).double()
    assert picture.shape == (14 + 2 + 2 * 30, 2 + 8 * 30)  # a caption band, 8 samples above their 8 nearest digits
    top, bottom = picture[16:44, 2:2 + 8 * 30], picture[46:74, 2:2 + 8 * 30]
    assert (top - bottom).abs().max() <= 8 and top.std() > 50  # each copy above its original (±0.01 noise), not a blank


def test_real_digits_the_model_never_saw_are_not_copies(digits, measure_images):
    *_, test_x, _ = digits
    result = measure_images("memorization", test_x)
    assert result.value == 0 and result.details["flagged"] == "0 of 500"
    assert 0.85 < result.details["median ratio"] < 1 and result.details["95% upper bound"] == pytest.approx(0.006, abs=1e-3)


def test_the_shipped_model_copies_no_training_digit(measure_images, shipped_samples):
    result = measure_images("memorization", shipped_samples)
    assert result.value == 0, result.details
    assert result.details["median ratio"] > 0.85


def test_a_threshold_near_one_flags_almost_everything(digits, measure_images):
    *_, test_x, _ = digits
    assert measure_images("memorization", test_x[:100], threshold=0.999).value > 0.9


def test_a_bad_pairs_path_is_refused_before_sampling(copier, measure_images, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        measure_images("memorization", copier, pairs=str(tmp_path / "file" / "pairs.png"))


def test_evaluate_writes_the_pairs_picture(tmp_path):
    """`difftk evaluate mnist-cfg --metric memorization --set metric.pairs=FILE.png` (4 one-step samples)."""
    from click.testing import CliRunner

    cli = pytest.importorskip("difftk_cli.main").cli
    path = tmp_path / "pairs.png"
    result = CliRunner().invoke(cli, ["evaluate", "mnist-cfg", "--metric", "memorization", "-n", "4", "--steps", "1",
                                      "--set", f"metric.pairs={path}", "--set", "metric.shown=4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "memorization = 0.0000 ± 0.0000 (binomial standard error, n = 4)" in result.stdout
    assert "flagged: 0 of 4" in result.stdout and f"wrote {path}" in result.stdout.replace("\n", "")
    assert Image.open(path).size == (2 + 4 * 30, 14 + 2 + 2 * 30)
