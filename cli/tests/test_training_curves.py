"""Training curves: `difftk train --eval-every K --eval-metric NAME` scores metrics on the live EMA
model and appends them to log.jsonl, beside the loss records older readers know."""

import json

import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.training.history import read_run
from difftk_cli.testing import one_line_error, run

#: the keys of a loss record, as log.jsonl has always written them
LOSS_KEYS = {"step", "loss", "lr", "grad_norm", "time"}


def train(out, *extra, steps=6, data="toy-points"):
    return run("train", "p.toml", "--data", data, "--steps", steps, "--out", out, "--sample-steps", 3,
               "--sample-every", 0, "--log-every", 2, *extra)


EVAL = ("--eval-every", 3, "--eval-metric", "sliced-wasserstein", "--eval-n", 40)


def records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_metrics_are_logged_beside_the_loss_and_change_no_weight(toy_pipeline, tmp_path):
    result = train("curves", *EVAL)
    assert result.exit_code == 0, result.output
    assert "measuring sliced-wasserstein every 3 steps, n = 40 (log.jsonl)" in result.stdout
    assert "step 3: sliced-wasserstein = " in result.stdout and "difftk plot curves -o curves.png" in result.stdout
    log = records(tmp_path / "curves")
    losses = [r for r in log if "metric" not in r]
    metrics = [r for r in log if "metric" in r]
    assert [r["step"] for r in losses] == [2, 4, 6] and all(set(r) == LOSS_KEYS for r in losses)
    assert [(r["step"], r["metric"], r["n"]) for r in metrics] == [(3, "sliced-wasserstein", 40), (6, "sliced-wasserstein", 40)]
    assert all("loss" not in r and r["value"] > 0 and r["spread"] >= 0 for r in metrics)
    assert [s for s, _ in read_run("curves").loss] == [2, 4, 6]

    # measuring draws its own noise: the run ends with exactly the weights of a run that does not measure
    assert train("plain").exit_code == 0
    measured, plain = read_checkpoint("curves"), read_checkpoint("plain")
    assert measured.tensors.keys() == plain.tensors.keys()
    assert all(torch.equal(measured.tensors[k], plain.tensors[k]) for k in plain.tensors)

    # the same seed at every step: the value measures the weights, so a second run logs the same values
    assert train("again", *EVAL).exit_code == 0
    assert [r["value"] for r in records(tmp_path / "again") if "metric" in r] == [r["value"] for r in metrics]


def test_resume_continues_the_curves_without_repeating_a_step(toy_pipeline, tmp_path):
    assert train("run", *EVAL, "--checkpoint-every", 3, steps=4).exit_code == 0
    assert [r["step"] for r in records(tmp_path / "run") if "metric" in r] == [3, 4]  # and the last step
    # the checkpoint is at step 4: resuming to 6 measures 6 only
    result = train("run", "--resume", steps=6)
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in records(tmp_path / "run") if "metric" in r] == [3, 4, 6]
    assert read_checkpoint("run").train_config["eval_metrics"] == ["sliced-wasserstein"]


def test_a_metric_that_cannot_measure_the_run_stops_it_with_one_line(toy_pipeline):
    line = one_line_error(train("img", "--eval-every", 2, "--eval-metric", "sliced-wasserstein", data="toy-images"))
    assert "step 2: metric 'sliced-wasserstein' compares point clouds, but toy-images holds images" in line


@pytest.mark.parametrize("args, expect", [
    (["--eval-metric", "sliced-wasserstein"], "--eval-metric sliced-wasserstein is scored every --eval-every K steps"),
    (["--eval-every", "5"], "--eval-every 5 scores eval_metrics, but none is named"),  # TrainConfig's own check
    (["--eval-every", "5", "--eval-metric", "sliced-wasserstien"],
     "unknown metric 'sliced-wasserstien'; did you mean 'sliced-wasserstein'"),
])
def test_eval_options_are_checked_before_anything_is_written(toy_pipeline, tmp_path, args, expect):
    assert expect in one_line_error(train("bad", *args))
    assert not (tmp_path / "bad").exists()


