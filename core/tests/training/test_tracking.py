"""Loggers hear every record log.jsonl gets, the sample grids and the configuration; one that fails
is dropped and the run goes on. The logger of docs/hooks.md is run as written."""

import json
import re
import types
from pathlib import Path

import difftk
import difftk.testing.toys as toys
import pytest
from difftk.training.reporter import Reporter
from difftk.training.tracking import Tracking, create_loggers

DOCS = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


class Heard:
    """A logger that keeps what it is told."""

    def __init__(self, fail_in=None):
        self.calls, self.fail_in = [], fail_in

    def start(self, run):
        self.calls.append(("start", run))

    def log(self, record):
        if self.fail_in == "log":
            raise OSError("disk full")
        self.calls.append(("log", dict(record)))

    def image(self, path, step):
        self.calls.append(("image", (path, step)))

    def finish(self):
        self.calls.append(("finish", None))


class Notes(Reporter):
    def __init__(self):
        self.notes = []

    def note(self, text):
        self.notes.append(text)


def run_toy(tmp_path, reporter, **options):
    return toys.train_toy(tmp_path / "run", "toy-points", reporter=reporter, steps=4, batch_size=8, warmup=0, log_every=2,
                          sample_every=4, sample_steps=2, num_samples=4, checkpoint_every=100, seed=1, **options)[3]


def test_a_logger_hears_every_log_record_the_grid_and_the_configuration(toy, tmp_path):
    heard = Heard()
    result = run_toy(tmp_path, Tracking({"heard": heard}), eval_every=4, eval_metrics=("sliced-wasserstein",), eval_n=16)
    kinds = [kind for kind, _ in heard.calls]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("image") == 1
    start = heard.calls[0][1]
    assert (start.directory, start.step, start.steps) == (tmp_path / "run", 0, 4)
    assert start.config["training"]["batch_size"] == 8 and start.config["pipeline"]["denoiser"]["name"] == "tiny"
    assert start.config["data"]["name"] == "toy-points"
    written = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r for kind, r in heard.calls if kind == "log"] == written
    assert {"loss", "metric"} <= {key for r in written for key in r}
    assert ("image", (result.samples[0], 4)) in heard.calls


def test_a_failing_logger_is_dropped_with_one_note_and_the_run_goes_on(toy, tmp_path):
    broken, fine, notes = Heard(fail_in="log"), Heard(), Notes()
    result = run_toy(tmp_path, Tracking({"broken": broken, "fine": fine}, notes))
    assert result.step == 4 and not result.interrupted
    assert [n for n in notes.notes if "logger 'broken' failed in log() (OSError: disk full)" in n]
    assert [kind for kind, _ in broken.calls] == ["start"]  # never called again, not even finish
    assert [kind for kind, _ in fine.calls].count("log") == 2


def test_the_logger_of_the_hook_reference_runs_as_written(toy, register_plugin, tmp_path, capsys):
    [code] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    plugin = types.ModuleType("print_logger")
    exec(compile(code, str(DOCS), "exec"), plugin.__dict__)
    assert register_plugin(plugin, "print-logger")
    assert "print" in difftk.available("logger")
    loggers = create_loggers(["print"])
    run_toy(tmp_path, Tracking(loggers))
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "training from step 0 to 4" and said[-1] == "done"
    assert [line.split()[0] for line in said if re.fullmatch(r"\d+ [-\d.e]+", line)] == ["2", "4"]
    assert f"step 4: {tmp_path / 'run' / 'samples' / 'step_000004.png'}" in said


def test_an_unknown_logger_is_refused_in_one_line(toy):
    with pytest.raises(difftk.DifftkError, match=r"^unknown logger 'no-such-logger' \("):
        create_loggers(["no-such-logger"])
