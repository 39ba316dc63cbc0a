"""The output guard: what difftk wrote is recognised by its purpose, and only that may be replaced."""

import json

import pytest
import torch
from difftk.data.images import picture, save_png
from difftk.errors import OutputError
from difftk.evaluation.sample_files import write_npz, write_png_folder
from difftk.runtime.files import EXPORT_MARK, PURPOSES, atomic_write_text, guard_output, written_for

IMAGES = torch.zeros(2, 1, 4, 4)


@pytest.fixture
def made(tmp_path):
    """One file of each purpose, as difftk's own writers make them, and one of the user's."""
    files = {
        "picture": save_png(picture(IMAGES, "image", None), tmp_path / "grid.png"),
        "samples": write_npz(IMAGES, tmp_path / "s.npz"),
        "pipeline": atomic_write_text(tmp_path / "p.toml", "# difftk pipeline: `difftk compose` wrote it\n"),
        "results": atomic_write_text(tmp_path / "r.json", json.dumps({"seed": 0, "results": []})),
        "table": atomic_write_text(tmp_path / "c.csv", "checkpoint,metric\n"),
    }
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n not difftk's")
    return files


def test_what_difftk_wrote_is_recognised_by_its_purpose(made, tmp_path):
    assert {purpose: written_for(path) for purpose, path in made.items()} == {p: p for p in made}
    assert written_for(tmp_path / "photo.png") is None


def test_a_file_may_be_replaced_only_by_an_output_of_its_own_purpose(made, tmp_path):
    files = [p for p in PURPOSES if p not in ("compare", "report", "foreign-model", "new-folder", "run", "sample-folder")]
    for purpose, path in made.items():
        for other in files:
            if other == purpose:
                assert guard_output(path, other) == path
            else:
                with pytest.raises(OutputError, match="there would replace it: choose another path"):
                    guard_output(path, other)
    with pytest.raises(OutputError, match="photo.png exists and was not written by difftk"):
        guard_output(tmp_path / "photo.png", "picture")


def test_an_input_is_never_an_output(made):
    with pytest.raises(OutputError, match="is the CHECKPOINT this command reads"):
        guard_output(made["picture"], "picture", inputs={"CHECKPOINT": made["picture"]})


def test_folders_hold_only_what_difftk_wrote_there(tmp_path):
    folder = tmp_path / "samples"
    write_png_folder(IMAGES, folder)
    assert guard_output(folder, "sample-folder") == folder
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="it holds notes.txt, which difftk did not write as a sample"):
        guard_output(folder, "sample-folder")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model_index.json").write_text("{}")
    with pytest.raises(OutputError, match="it holds model_index.json and is not a model difftk exported: choose another path"):
        guard_output(hf, "foreign-model")
    (hf / EXPORT_MARK).write_text("{}")
    assert guard_output(hf, "foreign-model") == hf
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("my diary\n")
    with pytest.raises(OutputError, match="its log.jsonl is not a difftk training log"):
        guard_output(run, "run")
    (run / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (run / ".lock").mkdir()
    with pytest.raises(OutputError, match=r"its \.lock is a directory, where the run writes a file"):
        guard_output(run, "run")


def test_the_guard_never_leaves_its_probe_behind(tmp_path):
    guard_output(tmp_path / "new" / "deeper" / "x.png", "picture")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
