"""Data read as it is needed: indexed image files, loader workers, seeded flips, and the trainer's
exact resume with any number of workers (difftk.data.indexed, .loader, .examples; the trainer)."""

import json
from pathlib import Path

import attrs
import difftk
import difftk.testing.toys as toys
import numpy as np
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.data.examples import Examples, flip_images, flip_mask
from difftk.data.indexed import IndexedImages, file_table
from difftk.data.loader import BatchReader
from difftk.errors import DifftkError
from difftk.training.config import TrainConfig, TrainingError, changed_settings
from difftk.training.job import resume_state, train
from difftk.training.order import BatchOrder
from difftk.training.rundir import RunPaths
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def read_npy(path: Path) -> np.ndarray:
    """The decoder of the test folders: one uint8 [C, H, W] array per .npy file (picklable, for
    workers); a file with a ``.broken`` marker beside it fails as an unreadable file would."""
    if path.with_suffix(".broken").exists():
        raise ValueError(f"{path.name} is damaged")
    return np.load(path)


def folder(root: Path, n: int = 20, shape=(3, 6, 6), flip=False) -> IndexedImages:
    """``n`` random images in two classes, as .npy files indexed by IndexedImages."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        name = f"{'ab'[i % 2]}/{i:02d}.npy"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / name, rng.integers(0, 256, shape, dtype=np.uint8))
        names.append(name)
    return IndexedImages(root=root, files=file_table(names), decode=read_npy, shape=shape,
                         labels=torch.arange(n) % 2, num_classes=2, name="npy-folder", class_names=("a", "b"), flip=flip)


def pipeline():
    return difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler="ddim",
                          denoiser="faulty", objective="simple").spec


def config(**overrides):
    base = dict(steps=9, batch_size=6, warmup=2, checkpoint_every=100, sample_every=0, log_every=3, seed=5)
    return TrainConfig(**{**base, **overrides})


def tensors(path):
    return read_checkpoint(path / "checkpoint.safetensors").tensors


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_indexed_images_read_what_the_files_hold(tmp_path):
    ds = folder(tmp_path)
    assert isinstance(ds, Examples) and len(ds) == 20 and ds.kind == "image" and ds.shape == (3, 6, 6)
    x, y = ds.read(torch.tensor([3, 0]))
    assert torch.equal(x[0], torch.from_numpy(np.load(tmp_path / "b/03.npy"))) and y.tolist() == [1, 0]
    xb, _ = ds.batch(torch.tensor([3, 0]))
    assert torch.equal(xb, x.float() / 127.5 - 1)
    sub = ds.subset(torch.tensor([5, 6]))
    assert len(sub) == 2 and torch.equal(sub.read(torch.arange(2))[0], ds.read(torch.tensor([5, 6]))[0])


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 30), batch=st.integers(1, 12), ahead=st.integers(0, 9))
def test_a_copy_of_the_order_draws_the_same_batches_and_leaves_it_alone(size, batch, ahead):
    order = BatchOrder(size, batch, seed=7)
    for _ in range(ahead):
        order.next()
    before = order.state()
    twin = order.copy()
    drawn = [twin.next() for _ in range(4)]
    assert order.state()[1] == before[1] and torch.equal(order.state()[0], before[0])
    assert all(torch.equal(a, order.next()) for a in drawn)


def test_flips_are_a_fair_coin_keyed_by_seed_and_step():
    a = flip_mask(3, 10, 4000)
    assert torch.equal(a, flip_mask(3, 10, 4000)) and 0.45 < a.float().mean() < 0.55
    assert not torch.equal(a, flip_mask(3, 11, 4000)) and not torch.equal(a, flip_mask(4, 10, 4000))
    x = torch.arange(2 * 1 * 2 * 3).view(2, 1, 2, 3)
    out = flip_images(x, torch.tensor([True, False]))
    assert out[0].tolist() == [[[2, 1, 0], [5, 4, 3]]] and torch.equal(out[1], x[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_the_reader_delivers_the_batches_of_the_order(tmp_path, workers):
    ds = folder(tmp_path)
    order = BatchOrder(len(ds), 7, seed=1)
    expect = order.copy()

    def upcoming():
        while True:
            yield order.next()

    reader = BatchReader(ds, upcoming(), workers)
    try:
        for _ in range(5):  # across an epoch's end
            index = expect.next()
            x, y = reader.read(index)
            assert torch.equal(x, ds.read(index)[0]) and torch.equal(y, ds.labels[index])
    finally:
        reader.close()


@pytest.mark.parametrize("flip", [False, True])
def test_workers_and_resume_train_bit_for_bit_like_one_process(toy, tmp_path, flip):
    """0 workers straight through == 2 workers straight through == 5 steps with 1 worker, then resumed with 2."""
    ds = folder(tmp_path / "data", flip=flip)
    train(pipeline(), ds, config(), out=tmp_path / "w0")
    train(pipeline(), ds, config(workers=2), out=tmp_path / "w2")
    train(pipeline(), ds, config(steps=5, workers=1), out=tmp_path / "part")
    ckpt, cfg = resume_state(tmp_path / "part", steps=9, workers=2)
    train(pipeline(), ds, cfg, out=tmp_path / "part", resume=True, checkpoint=ckpt)
    whole = tensors(tmp_path / "w0")
    assert same(whole, tensors(tmp_path / "w2")) and same(whole, tensors(tmp_path / "part"))


def test_flips_change_the_run(toy, tmp_path):
    """The test above can fail: mirrored batches train other weights."""
    train(pipeline(), folder(tmp_path / "a"), config(steps=3), out=tmp_path / "plain")
    train(pipeline(), folder(tmp_path / "b", flip=True), config(steps=3), out=tmp_path / "flipped")
    a, b = tensors(tmp_path / "plain"), tensors(tmp_path / "flipped")
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("model/"))


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_file_stops_with_one_line_and_keeps_every_step(toy, tmp_path, workers):
    """A file that breaks mid-run: one line naming it, the checkpoint holds the last step trained,
    and once the file is back the resumed run ends exactly as an unbroken one."""
    ds = folder(tmp_path / "data")
    train(pipeline(), ds, config(), out=tmp_path / "whole")
    train(pipeline(), ds, config(steps=5, workers=workers), out=tmp_path / "part")
    marker = tmp_path / "data" / "b" / "19.broken"  # not among the two examples fitting probes
    marker.touch()  # the file's bytes are unchanged (so is the fingerprint); reading it fails
    ckpt, cfg = resume_state(tmp_path / "part", steps=9)
    with pytest.raises(DifftkError) as info:
        train(pipeline(), ds, cfg, out=tmp_path / "part", resume=True, checkpoint=ckpt)
    line, step = str(info.value), read_checkpoint(tmp_path / "part" / "checkpoint.safetensors").step
    assert "\n" not in line and "19.npy" in line and f"checkpoint.safetensors holds step {step}: fix the data" in line
    assert 5 <= step < 9
    marker.unlink()
    ckpt, cfg = resume_state(tmp_path / "part", steps=9)
    train(pipeline(), ds, cfg, out=tmp_path / "part", resume=True, checkpoint=ckpt)
    assert same(tensors(tmp_path / "whole"), tensors(tmp_path / "part"))


def test_a_live_run_is_refused_before_anything_else(tmp_path):
    paths = RunPaths(tmp_path / "run")
    paths.check_unlocked()  # nothing there: no refusal
    with paths.lock():
        with pytest.raises(TrainingError, match=r"being written by another difftk train \(pid \d+\)"):
            paths.check_unlocked()
    paths.check_unlocked()


def test_an_unchanged_resume_has_no_change_lines():
    """A checkpoint's config comes back from JSON (lists for tuples): that is no change."""
    cfg = config(eval_every=5, eval_metrics=("sliced-wasserstein",))
    saved = json.loads(cfg.to_json())
    assert changed_settings(saved, cfg) == []
    assert changed_settings(saved, attrs.evolve(cfg, eval_metrics=("fid",))) == ["eval_metrics ('sliced-wasserstein',) → ('fid',)"]
