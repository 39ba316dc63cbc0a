"""SDEdit and inpainting of real digits with the shipped model (pretrained, datasets and the CLI together)."""

import difftk
import pytest
import torch
from difftk.errors import OptionError
from difftk_cli.testing import one_line_error, run


@pytest.fixture(scope="module")
def model():
    return difftk.load("mnist-cfg")


@pytest.fixture(scope="module")
def nine(model):
    x, y = model.examples("test", range(40))
    return x[(y == 9).nonzero()[0]]


def test_sdedit_of_a_real_nine_stays_a_nine_at_low_strength_and_forgets_it_at_high(model, nine):
    low = model.sample(4, sampler="ddim", steps=10, init=nine, strength=0.1, labels=9, guidance=False, seed=1)
    high = model.sample(4, sampler="ddim", steps=20, init=nine, strength=1.0, labels=9, guidance=False, seed=1)
    near, far = float((low - nine).abs().mean()), float((high - nine).abs().mean())
    assert near < 0.1 and far > 2 * near, (near, far)  # from t = 1 it is another nine, not this one
    assert float(low.abs().max()) < 1.1  # in range: no crutch


def test_inpainting_keeps_the_known_half_of_a_real_digit(model, nine):
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:] = 1
    x = model.sample(4, sampler="ddim", steps=20, init=nine, mask=mask, labels=9, guidance=False, seed=2)
    assert float((x[..., :14] - nine[..., :14]).abs().max()) < 1e-4
    assert float((x[..., 14:] - nine[..., 14:]).abs().mean()) > 0.01  # the right half is drawn, not copied
    assert float(x[..., 14:].abs().max()) < 1.1


def test_edit_errors_are_one_line(model, nine, tmp_path):
    with pytest.raises(OptionError, match="init of shape \\[1, 1, 14, 14\\] does not fit"):
        model.sample(2, init=torch.zeros(1, 1, 14, 14))
    with pytest.raises(OptionError, match="steps=30 is more than the 20 steps of the schedule below strength=0.02"):
        model.sample(2, sampler="ddim", steps=30, init=nine, strength=0.02)
    with pytest.raises(OptionError, match="mask needs the image to edit: give init"):
        model.sample(2, mask=torch.zeros(1, 1, 28, 28))
    out = tmp_path / "e.png"
    assert "--strength edits an image: give it with --init" in one_line_error(run("sample", "mnist-cfg", "-o", out, "--strength", 0.5))
    assert "example 9999 is out of range" in one_line_error(run("sample", "mnist-cfg", "-o", out, "--init", "test:9999"))
    assert "no such image file" in one_line_error(run("sample", "mnist-cfg", "-o", out, "--init", tmp_path / "none.png"))


def test_difftk_sample_edits_a_training_digit(tmp_path):
    result = run("sample", "mnist-cfg", "-n", 2, "-o", tmp_path / "e.png", "--init", "train:4", "--strength", 0.4,
                 "--steps", 10, "--sampler", "dpm-solver-2m" if "dpm-solver-2m" in difftk.available("sampler") else "ddim")
    assert result.exit_code == 0, result.output
    assert "SDEdit of train example 4 (class 4) from t = 0.4" in result.stdout
    result = run("sample", "mnist-cfg", "-n", 2, "-o", tmp_path / "f.png", "--init", "test:0", "--mask", "right", "--steps", 10)
    assert result.exit_code == 0 and "inpainting right of test example 0 (class 0) from t = 1" in result.stdout
