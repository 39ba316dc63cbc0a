"""Sampling helpers and pictures: grids, labels, sampler defaults, trajectories."""

import io
import math

import attrs
import difftk
import numpy as np
import pytest
import torch
from difftk.data.arrays import to_uint8_images
from difftk.data.images import PAD, grid_shape, image_grid, save_png, scatter_plot, trajectory_strip
from difftk.errors import OptionError
from difftk.maths.grids import step_count
from difftk.pipeline.compose import create_component
from difftk.sampling.draw import class_labels, generate
from difftk.sampling.trajectory import TrajectoryRecorder, trajectory_indices
from difftk.testing import GaussianOracle, ReferenceLinearSchedule
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image


@given(st.integers(1, 5000))
def test_grid_is_near_square_and_holds_every_tile(n):
    rows, cols = grid_shape(n)
    assert cols == math.ceil(math.sqrt(n)) and rows * cols >= n > (rows - 1) * cols
    assert cols - 1 <= rows <= cols


def test_image_grid_places_each_image_exactly():
    x = torch.rand((5, 3, 4, 6)) * 2 - 1
    img = image_grid(x)
    assert img.size == (PAD + 3 * (6 + PAD), PAD + 2 * (4 + PAD))  # 5 tiles: 2 rows of 3
    pixels = torch.tensor(np.array(img)).permute(2, 0, 1)
    u8 = to_uint8_images(x)
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = PAD + r * (4 + PAD), PAD + c * (6 + PAD)
        assert torch.equal(pixels[:, top:top + 4, left:left + 6], u8[i])


def test_scatter_plot_marks_points_inside_and_pins_the_rest():
    img = scatter_plot(torch.tensor([[0.0, 0.0], [50.0, 0.0]]), bounds=(-1, 1, -1, 1), size=101)
    assert img.getpixel((50, 50)) == (31, 119, 180)  # the origin, in blue
    assert img.getpixel((99, 50)) == (214, 39, 40)  # x = 50 is off the plot: red, on its right edge


def test_trajectory_strip_has_one_captioned_column_per_time():
    frames = [torch.zeros((4, 1, 8, 8)) for _ in range(3)]
    strip = trajectory_strip(frames, [0.9, 0.5, 0.1], "image")
    column = image_grid(frames[0], cols=1).width
    scale = math.ceil(48 / column)
    assert strip.width == 3 * column * scale
    with pytest.raises(ValueError):
        trajectory_strip(frames, [0.9], "image")


def test_save_png_round_trips(tmp_path):
    x = torch.linspace(-1, 1, 2 * 3 * 5 * 5).view(2, 3, 5, 5)
    path = save_png(image_grid(x), tmp_path / "sub" / "g.png")
    assert Image.open(io.BytesIO(path.read_bytes())).tobytes() == image_grid(x).tobytes()


def test_class_labels_cycle_or_repeat_and_are_checked():
    assert class_labels(5, 0) is None
    assert class_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert class_labels(3, 10, label="4").tolist() == [4, 4, 4]
    assert class_labels(2, 2, label="vertical", class_names=("horizontal", "vertical")).tolist() == [1, 1]
    with pytest.raises(OptionError, match="the model is unconditional"):
        class_labels(2, 0, label=1)
    with pytest.raises(OptionError, match="label=10 is out of range: the model has classes 0..9"):
        class_labels(2, 10, label=10)
    with pytest.raises(OptionError, match="did you mean 'vertical'"):
        class_labels(2, 2, label="vertcal", class_names=("horizontal", "vertical"))


def test_clipping_is_off_unless_the_user_sets_it():
    """What `difftk compose` prints is what runs: no hidden x̂₀ clamp for image data."""
    assert create_component("sampler", "ddim").clip_x0 is None
    assert create_component("sampler", "ddim", {"clip_x0": "1"}).clip_x0 == 1.0
    assert create_component("sampler", "ddim", {"clip_x0": "none"}).clip_x0 is None


def test_sampler_options_override_the_pipelines_own():
    base = difftk.compose(schedule="linear", sampler={"name": "ddim", "options": {"eta": 0.5}}).spec["sampler"]
    assert create_component("sampler", None, {}, base=base).eta == 0.5
    assert create_component("sampler", None, {"eta": "0.25"}, base=base).eta == 0.25
    assert attrs.asdict(create_component("sampler", "ancestral", base=base)) == attrs.asdict(
        difftk.create("sampler", "ancestral"))  # another sampler starts from its own defaults
    with pytest.raises(OptionError, match="has no option 'etta'; did you mean 'eta'"):
        create_component("sampler", None, {"etta": "1"}, base=base)
    with pytest.raises(OptionError, match="the model's pipeline has none: give guidance=NAME"):
        create_component("guidance", None, {"scale": "2"})


def test_steps_beyond_the_schedule_are_one_line():
    schedule = ReferenceLinearSchedule(T=50)
    assert step_count(schedule, 50) == 50 and step_count(schedule, None, default=100) == 50
    with pytest.raises(OptionError, match=r"steps=51 is more than the model's schedule has \(T=50\): use steps=1..50"):
        step_count(schedule, 51)


@given(st.integers(1, 300), st.integers(1, 12))
def test_trajectory_indices_span_the_run(total, frames):
    idx = trajectory_indices(total, frames)
    assert idx[0] == 0 and len(idx) == min(frames, total)
    assert idx[-1] == total - 1 or len(idx) == 1
    assert idx == sorted(set(idx))


def test_generate_is_seeded_batched_and_reports_every_step():
    schedule = ReferenceLinearSchedule(T=50)
    oracle = GaussianOracle(schedule, mean=0.5, std=0.2, shape=(2,))
    sampler = difftk.create("sampler", "ddim")
    seen = []
    a = generate(oracle, schedule, sampler, (2,), 10, steps=5, seed=7, batch_size=4, callback=lambda b, i: seen.append((b, i.index)))
    assert a.shape == (10, 2) and a.dtype == torch.float32
    assert seen == [(b, k) for b in range(3) for k in range(5)]
    assert torch.equal(a, generate(oracle, schedule, sampler, (2,), 10, steps=5, seed=7, batch_size=4))
    assert not torch.equal(a, generate(oracle, schedule, sampler, (2,), 10, steps=5, seed=8, batch_size=4))


def test_trajectory_recorder_keeps_x0_of_the_first_batch():
    schedule = ReferenceLinearSchedule(T=50)
    oracle = GaussianOracle(schedule, mean=0.5, std=0.2, shape=(1, 2, 2))
    recorder = TrajectoryRecorder(frames=4, keep=3)
    x = generate(oracle, schedule, difftk.create("sampler", "ddim"), (1, 2, 2), 8, steps=10, batch_size=5, callback=recorder)
    assert len(recorder.frames) == 4 and all(f.shape == (3, 1, 2, 2) for f in recorder.frames)
    assert recorder.times == sorted(recorder.times, reverse=True) and recorder.times[0] == 1.0
    # x̂₀ at the last step is (nearly) the sample, since DDIM's last step returns x̂₀
    torch.testing.assert_close(recorder.frames[-1], x[:3], atol=1e-4, rtol=0)
