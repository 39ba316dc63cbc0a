"""Every path that draws samples goes through `Model.sample`: `difftk sample`, the trainer's sample grids, `difftk
evaluate` and `compare`; the sampler's name reaches its loop through few files; library errors are said as flags; a
model loads and samples without its pipeline's sampler plugin (the object itself: core/tests/test_model.py)."""

import sys
from pathlib import Path

import difftk
import difftk.model
import difftk.testing.toys as toys
import pytest
import torch
from difftk.errors import OptionError
from difftk.evaluation.compare import compare, context_for, held_out_data
from difftk.model import Model
from difftk.testing import plugin_host
from difftk_cli.testing import one_line_error, run

REPO = Path(__file__).resolve().parents[2]


def train(data: str, steps: int = 3, *extra) -> None:
    result = run("train", "p.toml", "--data", data, "--steps", steps, "--out", "run", "--sample-steps", 4, *extra)
    assert result.exit_code == 0, result.output


@pytest.fixture
def model():
    return difftk.load("mnist-cfg")


# --- every path that draws samples goes through Model.sample -------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Counts Model.sample calls, and fails any sampler loop or batch loop that runs outside one."""
    calls, depth = [], [0]
    original = Model.sample

    def sample(self, *args, **kwargs):
        calls.append(kwargs.get("sampler"))
        depth[0] += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    def guarded(function):
        def inner(*args, **kwargs):
            assert depth[0] == 1, f"{function.__qualname__} ran outside Model.sample"
            return function(*args, **kwargs)
        return inner

    monkeypatch.setattr(Model, "sample", sample)
    monkeypatch.setattr(difftk.model, "generate", guarded(difftk.model.generate))
    for info in difftk.registry():
        if info.kind == "sampler":
            monkeypatch.setattr(info.cls, "sample", guarded(info.cls.sample))
    return calls


def test_difftk_sample_draws_through_the_model(toy_pipeline, spy):
    train("toy-images", 2, "--sample-every", 0)
    spy.clear()
    assert run("sample", "run", "-n", 4, "-o", "g.png", "--sampler", "ancestral", "--steps", 3).exit_code == 0
    assert len(spy) == 1


def test_the_trainers_sample_grids_draw_through_the_model(toy_pipeline, spy):
    train("toy-images", 2, "--sample-every", 1)
    assert len(spy) == 2  # one grid per step


def test_evaluate_and_compare_draw_through_the_model(toy_pipeline, spy):
    train("toy-points", 2, "--sample-every", 0)
    spy.clear()
    result = run("evaluate", "run", "--metric", "sliced-wasserstein", "-n", 50, "--steps", 3)
    assert result.exit_code == 0, result.output
    assert len(spy) == 1
    spy.clear()
    rows = compare(["run"], ["sliced-wasserstein"], samplers=["ddim", "ancestral"], steps=[3],
                   metric_options={"sliced-wasserstein": {"n": "40"}})
    assert len(rows) == 2 and len(spy) == 2
    spy.clear()
    loaded = difftk.load("run")
    context = context_for(loaded, held_out_data(loaded.data)[0], sampler="ddim", steps=3)
    assert context.samples(8).shape == (8, 2) and len(spy) == 1


def test_the_sampler_name_passes_through_at_most_five_files_to_the_sampler_loop(toy_pipeline, monkeypatch):
    """`difftk sample --sampler NAME`: the name travels down the call stack that builds the sampler,
    and the sampler down the stack that reaches its loop. The repository files on those two stacks
    whose frames hold the name or the sampler number at most five (the loop's own file aside)."""
    train("toy-images", 1, "--sample-every", 0)
    name = "ancestral"
    cls = difftk.registry().get("sampler", name).cls
    stacks = []

    def holds_it(value) -> bool:
        if isinstance(value, str):
            return value == name
        if isinstance(value, cls):
            return True
        return isinstance(value, dict) and any(v == name or isinstance(v, cls) for v in value.values())

    def record():
        frame, files = sys._getframe(2), set()
        while frame is not None:
            path = Path(frame.f_code.co_filename).resolve()
            if REPO in path.parents and ".venv" not in path.parts and any(holds_it(v) for v in frame.f_locals.values()):
                files.add(path.relative_to(REPO))
            frame = frame.f_back
        stacks.append(files)

    init, sample = cls.__init__, cls.sample

    def spy_init(self, *args, **kwargs):
        record()
        init(self, *args, **kwargs)

    def spy_sample(self, *args, **kwargs):
        record()
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", spy_init)
    monkeypatch.setattr(cls, "sample", spy_sample)
    result = run("sample", "run", "-n", 2, "-o", "g.png", "--sampler", name, "--steps", 2)
    assert result.exit_code == 0, result.output
    loop = Path(sys.modules[sample.__module__].__file__).resolve().relative_to(REPO)
    on_the_way = sorted(str(f) for f in set().union(*stacks) - {loop, Path("cli/tests/test_draw_paths.py")})
    assert len(stacks) == 2 and "cli/src/difftk_cli/commands/sample.py" in on_the_way, stacks
    assert len(on_the_way) <= 5, on_the_way


# --- library errors in library terms; the CLI says them as flags ----------------------------------------------------


def test_library_errors_name_parameters_and_the_cli_names_flags(model, tmp_path):
    with pytest.raises(OptionError, match=r"steps=5000 is more than the model's schedule has \(T=1000\): use steps=1\.\.1000"):
        model.sample(1, sampler="ddim", steps=5000)
    line = one_line_error(run("sample", "mnist-cfg", "-n", 1, "--steps", 5000, "-o", tmp_path / "x.png"))
    assert "--steps 5000 is more than the model's schedule has (T=1000): use --steps 1..1000" in line
    with pytest.raises(OptionError, match="label=12 is out of range"):
        model.sample(1, labels=12)
    assert "--label 12 is out of range" in one_line_error(run("sample", "mnist-cfg", "--label", 12, "-o", tmp_path / "x.png"))


@pytest.mark.parametrize(("library", "cli"), [
    ("steps=60 is more than it has: use steps=1..50", "--steps 60 is more than it has: use --steps 1..50"),
    ("continue it with resume=True, or choose another out=DIR", "continue it with --resume, or choose another --out DIR"),
    ("set it with sampler.eta=VALUE", "set it with --set sampler.eta=VALUE"),
    ("batch_size=9 is more than the 4 examples", "--batch-size 9 is more than the 4 examples"),
    ("sample_steps=60 is more than T=50; eta=0.5 stays", "sample_steps=60 is more than T=50; eta=0.5 stays"),
])
def test_in_cli_terms_translates_only_the_flags(library, cli):
    from difftk_cli.console import in_cli_terms

    assert in_cli_terms(library) == cli


# --- loading needs only what sampling uses ------------------------------------------------------------------------


class OwnSamplerPlugin:
    """A third-party plugin with one sampler: deterministic DDIM written as an affine plan."""

    @staticmethod
    @difftk.hookimpl
    def difftk_register_components(register):
        import attrs
        import numpy as np
        from difftk.sampling.steps import AffinePlan, AffineSampler

        @attrs.frozen
        class OwnDDIM(AffineSampler):
            def plan(self, schedule, steps):
                times, ab = self.grid(schedule, steps)
                return AffinePlan(times=times, alpha_bars=ab, c_x0=np.sqrt(ab[1:]), c_xt=0.0,
                                   c_eps=np.sqrt(1 - ab[1:]), sigma=0.0)

        register.add_sampler("own-ddim", OwnDDIM)


def test_a_model_loads_and_samples_without_its_pipelines_sampler_plugin(toy_pipeline, register_plugin):
    assert register_plugin(OwnSamplerPlugin, "own_sampler")
    assert run("compose", "--schedule", "linear", "--sampler", "own-ddim", "--denoiser", "tiny", "--objective", "simple",
               "--set", "schedule.T=50", "-o", "own.toml").exit_code == 0
    assert run("train", "own.toml", "--data", "toy-images", "--steps", 2, "--out", "run", "--sample-every", 0).exit_code == 0
    with_own = difftk.load("run").sample(2, steps=4)
    with plugin_host() as host:  # the sampler's plugin is gone; the denoiser's (toys) is there
        host.register(toys, name="toys")
        model = difftk.load("run")
        x = model.sample(2, sampler="ddim", steps=4)  # any installed sampler samples it
        assert x.shape == with_own.shape and torch.isfinite(x).all()
        torch.testing.assert_close(x, with_own, rtol=0, atol=1e-6)  # the same update as own-ddim
        with pytest.raises(difftk.errors.UnknownComponentError,
                           match=r"needs sampler 'own-ddim' from plugin 'own_sampler'.*, which is not installed: install "
                                 r"it, or choose another sampler"):
            model.sample(2, steps=4)
        cli = run("sample", "run", "-n", 2, "-o", "x.png", "--sampler", "ddim", "--steps", 4)
        assert cli.exit_code == 0, cli.output
