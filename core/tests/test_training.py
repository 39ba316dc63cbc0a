"""The training loop: exact resume, Ctrl-C, non-finite losses, data options, configuration."""

import math

import attrs
import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.data.pipeline_data import load_dataset, size_to_data
from difftk.errors import DifftkError, IncompatibleError, OptionError
from difftk.training.config import TrainConfig, TrainingError, changed_settings
from difftk.training.job import resume_state, train
from difftk.training.order import BatchOrder
from difftk.training.rundir import RunPaths
from difftk.training.trainer import Trainer
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


@attrs.frozen
class CarelessSampler:
    """Draws its noise from torch's global RNG, ignoring the generator it is given."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        return x_T + torch.randn_like(x_T) + denoiser(x_T, torch.full((len(x_T),), 0.5), cond=cond)


class CarelessPlugin:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_sampler("careless", CarelessSampler)


def spec(denoiser="faulty", sampler="ddim", **options):
    """A linear-schedule pipeline with a toy denoiser (T=50 keeps sampling cheap)."""
    return difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler=sampler,
                          denoiser={"name": denoiser, "options": options}, objective="simple").spec


def config(**overrides):
    base = dict(steps=12, batch_size=8, warmup=3, checkpoint_every=100, sample_every=0, log_every=4, seed=3)
    return TrainConfig(**{**base, **overrides})


def points():
    # 20 points with batches of 8: epochs end inside batches (after steps 2.5, 5, 7.5, ...)
    return load_dataset("toy-points")[0].subset(torch.arange(20))


def state_of(path):
    """Every tensor that must match after an exact resume: weights, EMA, optimizer, RNGs."""
    ckpt = read_checkpoint(path)
    return ckpt.step, ckpt.tensors, ckpt.json("data_order")


def assert_same_state(a, b):
    (step_a, ta, order_a), (step_b, tb, order_b) = state_of(a), state_of(b)
    assert step_a == step_b and order_a == order_b
    assert ta.keys() == tb.keys()
    for prefix in ("model/", "ema/", "optim/", "rng/"):
        assert any(k.startswith(prefix) for k in ta), prefix
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def uninterrupted(tmp_path, steps=12, **options):
    out = tmp_path / "whole"
    train(spec(**options), points(), config(steps=steps), out=out)
    return out / "checkpoint.safetensors"


@pytest.mark.parametrize("k", [1, 5, 11])
def test_resume_ends_bit_identical_to_an_uninterrupted_run(toy, register_plugin, tmp_path, k):
    assert register_plugin(CarelessPlugin(), "careless")
    whole = tmp_path / "whole"
    train(spec(sampler="careless"), points(), config(), out=whole)
    part = tmp_path / "part"
    # sample grids in between (with a sampler that uses the global RNG) must not change the run
    first = train(spec(sampler="careless"), points(), config(steps=k, sample_every=2), out=part)
    assert first.step == k and read_checkpoint(first.checkpoint).step == k
    ckpt, cfg = resume_state(part, steps=12)
    assert cfg == config(steps=12, sample_every=2)
    result = train(spec(sampler="careless"), points(), cfg, out=part, resume=True, checkpoint=ckpt)
    assert result.step == 12
    assert_same_state(whole / "checkpoint.safetensors", part / "checkpoint.safetensors")


def test_resume_differs_without_the_rng_state(toy, tmp_path):
    """The exact-resume test can fail: continuing with fresh RNGs gives other weights."""
    whole = uninterrupted(tmp_path)
    part = tmp_path / "part"
    train(spec(), points(), config(steps=5), out=part)
    ckpt, cfg = resume_state(part, steps=12)
    for name in [n for n in ckpt.tensors if n.startswith("rng/")]:
        ckpt.tensors[name] = torch.Generator().manual_seed(99).get_state()
    train(spec(), points(), cfg, out=part, resume=True, checkpoint=ckpt)
    a, b = read_checkpoint(whole).tensors, read_checkpoint(part / "checkpoint.safetensors").tensors
    assert not all(torch.equal(a[n], b[n]) for n in a if n.startswith("model/"))


@pytest.mark.parametrize("fault, saved", [("sigint", 7), ("interrupt", 6)])
def test_ctrl_c_saves_the_last_completed_step_and_resumes_exactly(toy, tmp_path, fault, saved):
    """SIGINT at the 7th step lets it finish; a KeyboardInterrupt inside it falls back to step 6."""
    whole = uninterrupted(tmp_path, fault=fault, fault_at=99)
    part = tmp_path / "part"
    result = train(spec(fault=fault, fault_at=7), points(), config(), out=part)
    assert result.interrupted and result.step == saved
    assert read_checkpoint(part / "checkpoint.safetensors").step == saved
    ckpt, cfg = resume_state(part, steps=12)
    train(spec(fault=fault, fault_at=7), points(), cfg, out=part, resume=True, checkpoint=ckpt)  # 6 calls < 7
    assert_same_state(whole, part / "checkpoint.safetensors")


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(toy, tmp_path, fault):
    good = uninterrupted(tmp_path, steps=6, fault=fault, fault_at=99)
    out = tmp_path / "bad"
    with pytest.raises(TrainingError) as err:
        train(spec(fault=fault, fault_at=7), points(), config(checkpoint_every=3), out=out)
    message = str(err.value)
    assert "\n" not in message
    assert "loss is nan at step 7" in message or "loss is inf at step 7" in message
    assert "(step 6) is kept" in message
    assert_same_state(good, out / "checkpoint.safetensors")


def test_non_finite_loss_before_any_checkpoint_says_so(toy, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint was written yet"):
        train(spec(fault="nan", fault_at=2), points(), config(checkpoint_every=5), out=tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_run_directory_is_never_overwritten(toy, tmp_path):
    out = tmp_path / "run"
    train(spec(), points(), config(steps=2), out=out)
    before = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="already holds a training run .* continue it with resume=True"):
        train(spec(), points(), config(steps=4), out=out)
    assert (out / "checkpoint.safetensors").read_bytes() == before
    with pytest.raises(TrainingError, match="no checkpoint.safetensors to resume from"):
        RunPaths(tmp_path / "empty").prepare(resume=True)


def test_resume_refuses_another_model_or_dataset(toy, tmp_path):
    out = tmp_path / "run"
    train(spec(), points(), config(steps=2), out=out)
    ckpt, cfg = resume_state(out, steps=4)
    with pytest.raises(TrainingError, match=r"denoiser.hidden=16; the pipeline now sets 32"):
        train(spec(hidden=32), points(), cfg, out=out, resume=True, checkpoint=ckpt)
    with pytest.raises(TrainingError, match="size=20; this data has size=21"):
        train(spec(), load_dataset("toy-points")[0].subset(torch.arange(21)), cfg, out=out, resume=True, checkpoint=ckpt)


def test_class_labels_reach_a_conditional_denoiser(toy, tmp_path):
    seen = []
    pipeline, filled = size_to_data(spec("tiny"), points())
    assert filled == {"in_channels": 2, "num_classes": 4}
    pipeline.denoiser.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("cond")), with_kwargs=True)
    trainer = Trainer(pipeline, points(), config(steps=1))
    trainer.fit()
    assert seen[-1] is not None and seen[-1].dtype == torch.long and seen[-1].shape == (8,)


def test_data_options_are_filled_and_checked(toy):
    images = load_dataset("toy-images")[0]
    pipeline, filled = size_to_data(spec("sized"), images)
    assert filled == {"in_channels": 1, "image_size": 8, "num_classes": 2}
    assert pipeline.spec["denoiser"].options_dict["image_size"] == 8
    ten = toys.ToyImages(size=10, channels=3).load()
    with pytest.raises(OptionError, match=r"toy-images gives in_channels=3, image_size=10, num_classes=2, which denoiser "
                                          r"'sized' cannot take: .*multiple of 4"):
        size_to_data(spec("sized"), ten)
    with pytest.raises(IncompatibleError, match="takes images .* holds 2-D points"):
        size_to_data(spec("sized"), points())
    wide = difftk.data.arrays.ArrayDataset(torch.zeros((2, 1, 4, 8), dtype=torch.uint8))
    with pytest.raises(IncompatibleError, match="takes square images"):
        size_to_data(spec("sized"), wide)


def test_a_denoiser_that_cannot_take_the_data_is_one_line(toy, register_plugin):
    class Flat(torch.nn.Module):
        """Only takes 4 numbers per example."""

        @attrs.frozen
        class Config:
            width: int = difftk.options.option(4, help="input width", ge=1)

        def __init__(self, config):
            super().__init__()
            self.config, self.prediction = config, "eps"
            self.net = torch.nn.Linear(config.width, config.width)

        def forward(self, x, t, cond=None):
            return self.net(x.flatten(1)).view_as(x)

    class Plugin:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_denoiser("flat", Flat)

    assert register_plugin(Plugin(), "flat")
    with pytest.raises(IncompatibleError) as err:
        size_to_data(difftk.compose(schedule="linear", sampler="ddim", denoiser="flat", objective="simple"), points())
    assert "denoiser 'flat' cannot take toy-points examples of shape (2,): RuntimeError" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pipeline_without_denoiser_cannot_train(toy):
    with pytest.raises(OptionError, match="has no denoiser"):
        size_to_data(difftk.compose(schedule="linear", sampler="ddim"), points())


@pytest.mark.parametrize("field, value, expect", [
    ("steps", 0, "training: option steps=0 is out of range: expected 1 ≤ steps"),
    ("ema_decay", 1.0, "expected 0 ≤ ema_decay < 1"),
    ("lr", -1e-4, "expected 0 < lr ≤ 1"),
    ("batch_size", 2.5, "has the wrong type"),
])
def test_config_errors_are_one_line(field, value, expect):
    with pytest.raises(OptionError) as err:
        TrainConfig(**{"steps": 10, field: value})
    assert expect in str(err.value) and "\n" not in str(err.value)


@given(st.integers(1, 500), st.integers(1, 2000), st.floats(0.0, 0.99999))
def test_learning_rate_warms_up_linearly_and_ema_decay_is_capped(warmup, step, decay):
    cfg = TrainConfig(steps=10, warmup=warmup, ema_decay=decay)
    assert math.isclose(cfg.lr_at(step), cfg.lr * min(1.0, step / warmup))
    assert cfg.lr_at(step) <= cfg.lr_at(step + 1) <= cfg.lr
    assert cfg.ema_decay_at(step) <= decay and cfg.ema_decay_at(step) <= (1 + step) / (10 + step)


@given(st.sampled_from(["cosine", "linear"]), st.integers(0, 300), st.integers(1, 3000), st.floats(0.0, 1.0),
       st.booleans())
def test_learning_rate_decays_from_lr_to_lr_final_after_warm_up(schedule, warmup, length, final_fraction, explicit):
    end = warmup + length
    lr, final = 2e-3, 2e-3 * final_fraction
    cfg = TrainConfig(steps=end if not explicit else 10 * end, warmup=warmup, lr=lr, lr_schedule=schedule,
                      lr_final=final, decay_steps=end if explicit else None)
    rates = [cfg.lr_at(s) for s in range(1, end + 50)]
    assert math.isclose(cfg.lr_at(warmup), lr)  # warm-up ends at lr, where the decay begins
    after = rates[max(warmup, 1) - 1:]
    assert all(a >= b - 1e-15 for a, b in zip(after, after[1:], strict=False))  # never rises after warm-up
    assert all(math.isclose(r, final, abs_tol=1e-15) for r in rates[end - 1:])  # at the end, and after it
    middle = warmup + length / 2
    if length % 2 == 0:  # both shapes pass through the mean of lr and lr_final half-way
        assert math.isclose(cfg.lr_at(int(middle)), (lr + final) / 2, rel_tol=1e-9)
    if schedule == "linear" and length > 1:
        assert math.isclose(cfg.lr_at(warmup + 1) - cfg.lr_at(warmup + 2), (lr - final) / length, abs_tol=1e-15)


@pytest.mark.parametrize("options, expect", [
    ({"lr_schedule": "cosine", "lr": 1e-4, "lr_final": 1e-3}, "lr_final=0.001 is above lr=0.0001"),
    ({"lr_schedule": "linear", "warmup": 100, "decay_steps": 50}, "decay_steps=50 ends the decay before warm-up"),
    ({"lr_schedule": "step"}, "lr_schedule"),
])
def test_learning_rate_schedule_errors_are_one_line(options, expect):
    with pytest.raises(OptionError) as err:
        TrainConfig(steps=1000, **options)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_a_resumed_run_says_when_the_end_of_its_decay_moves():
    saved = attrs.asdict(TrainConfig(steps=1000, lr_schedule="cosine"))
    assert any("now ends at step 2,000 instead of 1,000" in c
               for c in changed_settings(saved, TrainConfig(steps=2000, lr_schedule="cosine")))
    fixed = attrs.asdict(TrainConfig(steps=1000, lr_schedule="cosine", decay_steps=1000))
    assert changed_settings(fixed, TrainConfig(steps=2000, lr_schedule="cosine", decay_steps=1000)) == []


@given(st.integers(1, 40), st.integers(1, 50), st.integers(0, 30), st.integers(0, 2**31))
def test_batch_order_covers_each_epoch_once_and_restores(size, batch, k, seed):
    order = BatchOrder(size, batch, seed)
    stream = torch.cat([order.next() for _ in range(k)] + [torch.empty(0, dtype=torch.long)])
    full = stream[: (len(stream) // size) * size].view(-1, size)
    for epoch in full:
        assert torch.equal(epoch.sort().values, torch.arange(size))
    start, where = order.state()
    again = BatchOrder(size, batch, seed + 1)
    again.restore(start.clone(), dict(where))
    for _ in range(3):
        assert torch.equal(order.next(), again.next())


def test_dataset_errors(toy):
    with pytest.raises(DifftkError, match="unknown dataset 'toy-pts'; did you mean 'toy-points'"):
        load_dataset("toy-pts")
    with pytest.raises(OptionError, match="does not read from a path: use data=toy-points"):
        load_dataset("toy-points", "/somewhere")
    with pytest.raises(DifftkError, match="/missing.safetensors does not exist"):
        load_dataset("array-file", "/missing.safetensors")


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_the_run_state_is_declared_and_the_front_end_gets_a_view(toy, precision):
    """The checkpointed state is a RunState the trainer holds (every attribute a declared field), and
    Reporter.start is given a RunStart view whose precision is the trainer's own resolution of it."""
    from difftk.runtime.fastpath import resolve_precision
    from difftk.training.reporter import RunStart
    from difftk.training.state import RunState

    pipeline, filled = size_to_data(spec(), points())
    trainer = Trainer(pipeline, points(), config(precision=precision), filled=filled)
    assert {"model", "ema", "optimizer", "order", "noise", "step", "last_checkpoint"} <= set(attrs.fields_dict(RunState))
    assert trainer.run.model is trainer.model and trainer.run.optimizer is trainer.optimizer
    trainer.fit()
    assert trainer.run.step == trainer.step == 12
    view = trainer.describe()
    assert isinstance(view, RunStart) and view.step == 12 and view.denoiser == "faulty"
    assert view.precision == resolve_precision(precision, trainer.device) == ("bf16" if precision == "bf16" else "fp32")
    assert view.parameters == sum(p.numel() for p in trainer.model.parameters())
