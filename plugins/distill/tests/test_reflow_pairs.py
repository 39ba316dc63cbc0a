"""Reflow pairs drawn once: reproducible per example, extendable in chunks, reused by the trainer with
exact resume, and their errors one line each."""

import types

import difftk
import difftk.testing.toys
import pytest
import torch
from difftk.data.pipeline_data import load_dataset
from difftk.errors import CheckpointError, OptionError
from difftk.testing import GaussianOracle
from difftk.training.config import TrainConfig
from difftk.training.job import resume_state, train
from difftk_distill import pairs, reflow
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

F64 = torch.float64


@pytest.fixture
def teacher(register_plugin, tmp_path):
    """A tiny class-conditional teacher with label dropout (cfg): toy points of 4 classes, 3 steps."""
    assert register_plugin(difftk.testing.toys, "toys")
    data, data_spec = load_dataset("toy-points", options={"n": 64})
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser="tiny", objective="simple", guidance="cfg").spec
    train(
        spec,
        data,
        TrainConfig(steps=3, batch_size=16, sample_every=0, checkpoint_every=3, seed=0),
        out=tmp_path / "teacher",
        dataset_spec=data_spec,
    )
    pairs.load_teacher.cache_clear()
    pairs.load_pairs.cache_clear()
    return str(tmp_path / "teacher"), data, data_spec


def chunks(directory):
    return [load_file(str(p)) for p in sorted(directory.glob("pairs-*.safetensors"))]


def test_a_pair_is_the_sample_the_teacher_draws_for_that_example(teacher, tmp_path):
    """Pair i is sample i of ``Model.sample`` at the same seed, sampler, steps and label: z its x_T, x̂₀ the sample."""
    source, _, _ = teacher
    pairs.draw(source, tmp_path / "p", 10, teacher_sampler="ddim", teacher_steps=3, seed=7, chunk=4)
    stored = pairs.load_pairs(str(tmp_path / "p"))
    assert len(stored) == 12  # three chunks of 4
    assert stored.label.tolist() == [i % 5 for i in range(12)]  # 4 classes and the null class 4
    assert stored.starts.tolist() == [0, 3, 6, 8, 10, 12]  # labels 0..4, grouped
    model = difftk.load(source)
    conditional = [i for i in range(12) if stored.label[i] < 4]
    x = model.sample(12, sampler="ddim", steps=3, seed=7, guidance=False, labels=stored.label.clamp_max(3))
    torch.testing.assert_close(stored.x0[conditional], x[conditional], rtol=0, atol=1e-6)
    noise = difftk.sampling.noise.ExampleNoise(7, range(12))
    torch.testing.assert_close(stored.z, noise.randn((12, 2)), rtol=0, atol=0)


def test_a_draw_stopped_and_extended_equals_one_draw(teacher, tmp_path):
    source, _, _ = teacher
    pairs.draw(source, tmp_path / "once", 12, teacher_sampler="ddim", teacher_steps=2, chunk=4)
    assert pairs.draw(source, tmp_path / "parts", 4, teacher_sampler="ddim", teacher_steps=2, chunk=4) == 1
    assert pairs.draw(source, tmp_path / "parts", 12, teacher_sampler="ddim", teacher_steps=2, chunk=4) == 2
    assert pairs.draw(source, tmp_path / "parts", 12, teacher_sampler="ddim", teacher_steps=2, chunk=4) == 0
    for a, b in zip(chunks(tmp_path / "once"), chunks(tmp_path / "parts"), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(OptionError, match="drawn with teacher_steps='2', not '3'"):
        pairs.draw(source, tmp_path / "parts", 16, teacher_sampler="ddim", teacher_steps=3, chunk=4)


@settings(deadline=None, max_examples=30)
@given(
    labels=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    asked=st.lists(st.integers(0, 3), min_size=1, max_size=16),
    seed=st.integers(0, 99),
)
def test_each_example_takes_a_pair_of_its_own_label(labels, asked, seed):
    """``take`` returns, for every example, a pair whose label is the example's, uniformly among them; a label
    with no pair is one line."""
    n = len(labels)
    label = torch.tensor(labels)
    x0 = torch.arange(n, dtype=torch.float32)[:, None]  # x̂₀ names its pair
    members = torch.argsort(label, stable=True)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(label, minlength=4).cumsum(0)])
    stored = pairs.Pairs(x0=x0, z=-x0, label=label, meta={}, members=members, starts=starts)
    cond = torch.tensor(asked)
    if not set(asked) <= set(labels):
        with pytest.raises(OptionError, match="hold no pair of label"):
            stored.take(cond, len(cond), torch.Generator().manual_seed(seed), "cpu")
        return
    x_hat, z = stored.take(cond, len(cond), torch.Generator().manual_seed(seed), "cpu")
    k = x_hat[:, 0].long()
    assert torch.equal(label[k], cond)
    assert torch.equal(z, -x_hat)
    again, _ = stored.take(cond, len(cond), torch.Generator().manual_seed(seed), "cpu")
    assert torch.equal(again, x_hat)


def test_stored_pairs_are_spread_evenly_over_their_label():
    label = torch.tensor([0, 1, 0, 1, 0, 2])
    stored = pairs.Pairs(
        x0=torch.arange(6.0)[:, None],
        z=torch.zeros(6, 1),
        label=label,
        meta={},
        members=torch.argsort(label, stable=True),
        starts=torch.tensor([0, 3, 5, 6]),
    )
    x_hat, _ = stored.take(torch.zeros(30_000, dtype=torch.long), 30_000, torch.Generator().manual_seed(0), "cpu")
    counts = torch.bincount(x_hat[:, 0].long(), minlength=6)[[0, 2, 4]].double() / 30_000
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=F64), atol=0.015), counts


def test_the_straight_coupling_minimises_reflow_on_stored_pairs(monkeypatch, tmp_path):
    """The exact teacher's pairs, drawn once: the straight velocity of its coupling has (almost) no loss, the
    teacher's own curved flow does (as with pairs drawn online, test_distill.py)."""
    from test_distill import MU, STD, Straight

    s = difftk.create("schedule", "flow")
    oracle = types.SimpleNamespace(
        denoiser=GaussianOracle(s, mean=MU, std=STD), schedule=s, data_shape=(1,), pipeline=None
    )
    monkeypatch.setattr(pairs, "load_teacher", lambda source, device: oracle)
    pairs.load_pairs.cache_clear()
    pairs.draw("oracle", tmp_path / "p", 1024, teacher_sampler="ddim", teacher_steps=200, chunk=512)
    stored = pairs.load_pairs(str(tmp_path / "p"))
    gap = (stored.x0.double() - (MU + STD * stored.z.double())).abs()
    assert float(gap.max()) < 1e-2, float(gap.max())  # the exact coupling, but for the terminal floor of ᾱ(1) = 0
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=200, pairs=str(tmp_path / "p"))
    x0 = torch.zeros(2048, 1, dtype=F64)

    def loss(student):
        return float(objective.loss(student, s, x0, generator=torch.Generator().manual_seed(4)).mean())

    straight, bent = loss(Straight()), loss(oracle.denoiser)
    assert straight < bent / 50, (straight, bent)


ADVERSARIAL = {"times": (1.0, 0.5), "times_share": 1.0, "rollout": True, "adversarial": 0.5}


@pytest.mark.parametrize("extra", [{}, ADVERSARIAL], ids=["plain", "adversarial"])
def test_a_student_trained_on_stored_pairs_resumes_exactly(teacher, tmp_path, extra):
    """Through the normal trainer with cfg's label dropout: 2 steps, resumed to 4, equal bit for bit to 4 steps
    in one go (the pairs are chosen by the checkpointed generator; with ``adversarial``, the critic's weights
    and Adam moments are the checkpoint's too)."""
    source, data, data_spec = teacher
    pairs.draw(source, tmp_path / "p", 40, teacher_sampler="ddim", teacher_steps=2, chunk=20)
    objective = {
        "name": "reflow",
        "options": {"teacher": source, "teacher_sampler": "ddim", "teacher_steps": 2, "pairs": str(tmp_path / "p"),
                    **extra},
    }
    spec = difftk.compose(
        schedule="flow", sampler="flow-euler", denoiser="tiny", objective=objective, guidance="cfg"
    ).spec

    def config(steps):
        return TrainConfig(steps=steps, batch_size=16, sample_every=0, checkpoint_every=2, seed=0, init=source)

    train(spec, data, config(4), out=tmp_path / "once", dataset_spec=data_spec)
    train(spec, data, config(2), out=tmp_path / "split", dataset_spec=data_spec)
    ckpt, resumed = resume_state(tmp_path / "split", steps=4)
    train(spec, data, resumed, out=tmp_path / "split", resume=True, checkpoint=ckpt, dataset_spec=data_spec)
    once, split = difftk.load(str(tmp_path / "once")), difftk.load(str(tmp_path / "split"))
    assert split.step == 4
    for (name, a), b in zip(once.denoiser.state_dict().items(), split.denoiser.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    critic = {k: v for k, v in load_file(str(tmp_path / "once" / "checkpoint.safetensors")).items()
              if k.startswith("objective/")}
    resumed_critic = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert bool(critic) == bool(extra)
    assert all(torch.equal(v, resumed_critic[k]) for k, v in critic.items())
    if extra:
        assert int(critic["objective/adam_step"]) == 4
    assert not torch.equal(
        once.denoiser.state_dict()["net.0.weight"], difftk.load(source).denoiser.state_dict()["net.0.weight"]
    )
    x = once.sample(8, sampler="flow-euler", steps=2, seed=0)
    assert x.shape == (8, 2) and torch.isfinite(x).all()


def test_a_checkpoint_whose_critic_lost_its_moments_is_one_line_on_resume(teacher, tmp_path):
    source, data, data_spec = teacher
    pairs.draw(source, tmp_path / "p", 20, teacher_sampler="ddim", teacher_steps=2, chunk=20)
    options = {"teacher": source, "teacher_sampler": "ddim", "teacher_steps": 2, "pairs": str(tmp_path / "p")}
    spec = difftk.compose(schedule="flow", sampler="flow-euler", denoiser="tiny", guidance="cfg",
                          objective={"name": "reflow", "options": options | ADVERSARIAL}).spec
    config = TrainConfig(steps=2, batch_size=8, sample_every=0, checkpoint_every=2, seed=0, init=source)
    train(spec, data, config, out=tmp_path / "run", dataset_spec=data_spec)
    path = tmp_path / "run" / "checkpoint.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    del tensors["objective/adam_v.out.bias"]
    save_file(tensors, str(path), metadata=metadata)
    ckpt, resumed = resume_state(tmp_path / "run", steps=4)
    with pytest.raises(CheckpointError, match="the objective's state does not fit this objective: the "
                       "checkpoint's critic state is incomplete") as err:
        train(spec, data, resumed, out=tmp_path / "run", resume=True, checkpoint=ckpt, dataset_spec=data_spec)
    assert "\n" not in str(err.value)


def test_pairs_of_another_draw_are_one_line(teacher, tmp_path):
    source, _, _ = teacher
    pairs.draw(source, tmp_path / "p", 8, teacher_sampler="ddim", teacher_steps=2, chunk=4)
    wrong = reflow.Reflow(teacher=source, teacher_sampler="unipc", teacher_steps=2, pairs=str(tmp_path / "p"))
    with pytest.raises(OptionError, match="drawn with teacher_sampler='ddim', but the objective has"):
        wrong.stored_pairs(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), None)
    wide = reflow.Reflow(teacher=source, teacher_sampler="ddim", teacher_steps=2, pairs=str(tmp_path / "p"))
    with pytest.raises(OptionError, match=r"shape \[2\], the data \[3\]"):
        wide.stored_pairs(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), None)


@pytest.mark.parametrize("damage", ["missing", "empty", "gap", "corrupt", "foreign"])
def test_a_bad_pair_directory_is_one_line(teacher, tmp_path, damage):
    source, _, _ = teacher
    directory = tmp_path / "p"
    pairs.draw(source, directory, 12, teacher_sampler="ddim", teacher_steps=2, chunk=4)
    if damage == "missing":
        directory = tmp_path / "nowhere"
    elif damage == "empty":
        for p in directory.iterdir():
            p.unlink()
    elif damage == "gap":
        pairs.chunk_path(directory, 1).unlink()
    elif damage == "corrupt":
        path = pairs.chunk_path(directory, 2)
        path.write_bytes(path.read_bytes()[:100])
    else:
        save_file({"x0": torch.zeros(4, 2)}, str(pairs.chunk_path(directory, 0)))
    pairs.load_pairs.cache_clear()
    expected = {
        "missing": "is not a directory of reflow pairs",
        "empty": "holds no pairs-",
        "gap": "chunk 1 is missing",
        "corrupt": "corrupt or truncated|not a chunk",
        "foreign": "not a chunk of reflow pairs",
    }[damage]
    with pytest.raises(OptionError, match=expected) as err:
        pairs.load_pairs(str(directory))
    assert "\n" not in str(err.value)


def test_the_command_line_draws_and_reports_errors_in_one_line(teacher, tmp_path, capsys):
    source, _, _ = teacher
    assert (
        pairs.main([source, str(tmp_path / "p"), "-n", "4", "--sampler", "ddim", "--steps", "2", "--chunk", "4"]) == 0
    )
    assert "chunk 0: pairs 0..3" in capsys.readouterr().out
    assert pairs.main([str(tmp_path / "missing"), str(tmp_path / "q"), "-n", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: teacher=") and "cannot be read" in err and "\n" not in err
