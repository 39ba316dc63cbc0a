"""A full disk during training: the run stops in one line and keeps (or writes) its last checkpoint."""

import errno

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.data.pipeline_data import load_dataset
from difftk.errors import OutputError
from difftk.training import rundir
from difftk.training.config import TrainConfig, TrainingError
from difftk.training.job import train


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def spec():
    return difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler="ddim",
                          denoiser={"name": "faulty", "options": {}}, objective="simple").spec


def points():
    return load_dataset("toy-points")[0].subset(torch.arange(16))


def config(**overrides):
    return TrainConfig(**{**dict(steps=8, batch_size=8, warmup=1, checkpoint_every=3, sample_every=0, log_every=2,
                                 seed=0), **overrides})


class FullAfter:
    """A file whose writes fail with ENOSPC once ``records`` writes went through, as on a disk that fills."""

    def __init__(self, fh, records: int, on_full=lambda: None) -> None:
        self.fh, self.left, self.on_full = fh, records, on_full

    def write(self, text):
        if self.left <= 0:
            self.on_full()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= 1
        return self.fh.write(text)

    def flush(self):
        return self.fh.flush()

    def close(self):
        return self.fh.close()


def disk_full_after(monkeypatch, records: int, on_full=lambda: None) -> None:
    """log.jsonl's writes fail with ENOSPC after ``records`` records."""
    init = rundir.RunLog.__init__

    def patched(self, path):
        init(self, path)
        self._fh = FullAfter(self._fh, records, on_full)

    monkeypatch.setattr(rundir.RunLog, "__init__", patched)


@pytest.mark.parametrize("records, kept", [(2, 6), (0, 2)])
def test_a_full_disk_while_logging_saves_the_step_and_stops_in_one_line(toy, tmp_path, monkeypatch, records, kept):
    """The log's write at step 2·(records+1) fails: that step is saved (the checkpoint is a separate
    file, which here still fits), and the line says where and what to do."""
    disk_full_after(monkeypatch, records)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(spec(), points(), config(), out=out)
    message = str(err.value)
    assert "\n" not in message
    assert f"cannot write {out / 'log.jsonl'}: No space left on device" in message
    assert f"training stopped at step {kept}" in message and f"holds step {kept}" in message and "resume" in message
    assert read_checkpoint(out / "checkpoint.safetensors").step == kept


def test_a_full_disk_for_the_checkpoint_too_keeps_the_last_one(toy, tmp_path, monkeypatch):
    """When the checkpoint cannot be written either, the last one on disk is kept, whole, and named."""
    from difftk.checkpoint import files

    real, state = files.atomic_write_bytes, {"full": False}

    def write(path, data, **kw):
        if state["full"]:
            raise OutputError(f"cannot write {path}: No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr(files, "atomic_write_bytes", write)
    disk_full_after(monkeypatch, 2, on_full=lambda: state.update(full=True))  # step 6's record; step 3 is on disk
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"training stopped at step 6, and .* holds step 3: free some space"):
        train(spec(), points(), config(), out=out)
    assert read_checkpoint(out / "checkpoint.safetensors").step == 3


def test_a_full_disk_at_start_is_one_line_before_any_step(toy, tmp_path, monkeypatch):
    """The lock's pid cannot be written: nothing was trained, and the line says so."""
    real_write = rundir.os.write

    def write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "write", write)
    with pytest.raises(TrainingError, match="No space left on device .nothing was trained.: free some space"):
        train(spec(), points(), config(), out=tmp_path / "run")
    monkeypatch.setattr(rundir.os, "write", real_write)
    assert not (tmp_path / "run").exists()  # the folder it created is gone again


def test_a_lock_that_is_a_folder_is_named(toy, tmp_path):
    (tmp_path / "run" / ".lock").mkdir(parents=True)
    with pytest.raises(TrainingError, match=r"\.lock is a folder, where difftk train keeps the run's lock file"):
        train(spec(), points(), config(), out=tmp_path / "run")


def test_a_full_disk_at_a_checkpoint_keeps_the_one_before(toy, tmp_path, monkeypatch):
    """The periodic checkpoint of step 6 does not fit (as on a real tmpfs that fills): step 3's is named."""
    from difftk.checkpoint import files

    real, written = files.atomic_write_bytes, []

    def write(path, data, **kw):
        if written:
            raise OutputError(f"cannot write {path}: No space left on device")
        written.append(path)
        return real(path, data, **kw)

    monkeypatch.setattr(files, "atomic_write_bytes", write)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(spec(), points(), config(), out=out)
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message
    assert f"training stopped at step 6, and {out / 'checkpoint.safetensors'} holds step 3: free some space" in message
    assert read_checkpoint(out / "checkpoint.safetensors").step == 3
