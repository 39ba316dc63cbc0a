"""`difftk train --log-to tensorboard,mlflow,wandb` writes what each library reads back with its own
reader: every loss and measurement of log.jsonl at its step, the sample grid, and the configuration."""

import json
from pathlib import Path

import difftk
import numpy as np
import pytest
import wandb_records
from click.testing import CliRunner
from difftk.checkpoint.files import read_checkpoint
from difftk.testing.conformance import check_logger
from difftk_cli.main import cli
from PIL import Image

LR = 3e-3


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 4-step two-moons run logged to the three trackers: loss records at steps 2 and 4, a
    sliced-Wasserstein measurement and a sample grid at step 4."""
    root = tmp_path_factory.mktemp("tracked")
    pipeline = root / "p.toml"
    result = run("compose", "--schedule", "cosine", "--sampler", "ddim", "--denoiser", "mlp", "--objective", "simple",
                 "--set", "denoiser.hidden=16", "--set", "denoiser.depth=1", "-o", pipeline)
    assert result.exit_code == 0, result.output
    result = run("train", pipeline, "--data", "two-moons", "--steps", 4, "--batch-size", 16, "--lr", LR, "--warmup", 0,
                 "--log-every", 2, "--sample-every", 4, "--sample-steps", 4, "--eval-every", 4,
                 "--eval-metric", "sliced-wasserstein", "--eval-n", 64, "--out", root / "run",
                 "--log-to", "tensorboard,mlflow", "--log-to", "wandb")
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output, result.output
    return root / "run"


def log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of log.jsonl: ``loss``, or ``metric/NAME`` for a measurement."""
    if key.startswith("metric/"):
        return [(r["step"], r["value"]) for r in log(run_dir) if r.get("metric") == key.removeprefix("metric/")]
    return [(r["step"], r[key]) for r in log(run_dir) if key in r]


def pixels(source) -> np.ndarray:
    with Image.open(source) as picture:
        return np.asarray(picture.convert("RGB"))


def test_tensorboard_event_files_read_back_with_event_accumulator(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    for key in ("loss", "lr", "grad_norm", "metric/sliced-wasserstein"):
        expected = curve(trained, key)
        assert [e.step for e in events.Scalars(key)] == [s for s, _ in expected] and expected
        assert [e.value for e in events.Scalars(key)] == pytest.approx([v for _, v in expected], rel=1e-6)  # float32
    [grid] = events.Images("samples")
    assert grid.step == 4
    import io
    assert np.array_equal(pixels(io.BytesIO(grid.encoded_image_string)), pixels(trained / "samples/step_000004.png"))
    [text] = events.Tensors("config/text_summary")
    config = json.loads(text.tensor_proto.string_val[0].decode().replace("\n    ", "\n"))
    assert config["training"] == json.loads(json.dumps(read_checkpoint(trained / "checkpoint.safetensors").train_config))


def test_mlflow_file_store_reads_back_with_mlflow_client(trained, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(trained / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("difftk").experiment_id])
    run_id = found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    for key in ("loss", "grad_norm", "metric/sliced-wasserstein", "metric/sliced-wasserstein.spread"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        expected = curve(trained, key) if not key.endswith(".spread") else \
            [(r["step"], r["spread"]) for r in log(trained) if "metric" in r]
        assert history == expected and expected
    assert found.data.params["training.lr"] == str(LR) and found.data.params["data.name"] == "two-moons"
    [artifact] = client.list_artifacts(run_id, "samples")
    assert artifact.path == "samples/step_000004.png"
    copy = client.download_artifacts(run_id, artifact.path, str(tmp_path))
    assert Path(copy).read_bytes() == (trained / "samples/step_000004.png").read_bytes()
    config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(tmp_path))).read_text())
    assert config["pipeline"]["denoiser"]["name"] == "mlp" and config["training"]["lr"] == LR


def test_wandb_offline_run_reads_back_with_wandbs_record_schema(trained):
    [path] = (trained / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records.records(path)
    history: dict[str, list[tuple[int, float]]] = {}
    image = None
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        for item in record.history.item:
            key = ".".join(item.nested_key) or item.key
            if key.startswith("samples."):
                image = json.loads(item.value_json) if key == "samples.path" else image
            elif not key.startswith("_"):
                history.setdefault(key, []).append((record.history.step.num, json.loads(item.value_json)))
    for key in ("loss", "lr", "grad_norm", "metric/sliced-wasserstein"):
        assert history[key] == curve(trained, key), key  # JSON numbers: exact
    assert np.array_equal(pixels(path.parent / "files" / image), pixels(trained / "samples/step_000004.png"))
    [started] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["training"]["lr"] == LR and config["data"]["name"] == "two-moons"


def test_a_missing_library_is_one_line_naming_the_extra_before_anything_is_written(tmp_path, monkeypatch):
    import difftk_trackers.records as records

    found = records.importlib.util.find_spec
    monkeypatch.setattr(records.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else found(name, *a))
    result = run("compose", "--schedule", "cosine", "--sampler", "ddim", "--denoiser", "mlp", "--objective", "simple",
                 "-o", tmp_path / "p.toml")
    assert result.exit_code == 0
    result = run("train", tmp_path / "p.toml", "--data", "two-moons", "--steps", 2, "--out", tmp_path / "run",
                 "--log-to", "tensorboard,wandb")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "the wandb logger needs the wandb package" in lines[0] and "pip install 'difftk[wandb]'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_unknown_logger_is_one_line_with_a_suggestion(tmp_path):
    result = run("compose", "--schedule", "cosine", "--sampler", "ddim", "--denoiser", "mlp", "--objective", "simple",
                 "-o", tmp_path / "p.toml")
    assert result.exit_code == 0
    result = run("train", tmp_path / "p.toml", "--data", "two-moons", "--steps", 2, "--out", tmp_path / "run",
                 "--log-to", "tensorbord")
    assert result.exit_code != 0 and "unknown logger 'tensorbord'" in result.stderr and "tensorboard" in result.stderr


@pytest.mark.parametrize("name", difftk.available("logger"))
def test_every_logger_meets_the_logger_contract(name, tmp_path):
    """The kit's check_logger on every registered logger: a run's whole conversation, and files
    written under the run directory it was given."""
    check_logger(difftk.create("logger", name), tmp_path / "run")
