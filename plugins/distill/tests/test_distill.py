"""Distillation: the objectives' minimisers on exact oracles, and a student trained, resumed and sampled
through the normal trainer."""

import types

import difftk
import difftk.testing.toys
import pytest
import torch
from difftk.data.pipeline_data import load_dataset
from difftk.errors import OptionError
from difftk.maths.diffusion import convert
from difftk.maths.terminal import for_sampling
from difftk.pipeline.compose import create_component
from difftk.testing import GaussianOracle, check_objective
from difftk.testing.ranks import launch_ranks
from difftk.training.config import TrainConfig
from difftk.training.job import resume_state, train
from difftk_distill import consistency, reflow
from difftk_distill.adversarial import BETAS, EPS, Critic, CriticState
from safetensors.torch import load_file
from torch import nn

F64 = torch.float64
MU, STD = 0.5, 0.1


class Endpoint(nn.Module):
    """The exact consistency function of data N(μ, s²) as an x₀-denoiser: the probability-flow ODE keeps
    z = (x_t − √ᾱ·μ)/√(ᾱs² + 1 − ᾱ), so f(x_t, t) = μ + s·z."""

    prediction, num_classes, learned_variance = "x0", 0, False

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, x_t, t, cond=None):
        ab = self.schedule.alpha_bar(t.to(F64))[:, None]
        return MU + STD * (x_t - ab.sqrt() * MU) / (ab * STD**2 + 1 - ab).sqrt()


class Straight(nn.Module):
    """The velocity of the straight coupling x̂₀ = μ + s·z (the Gaussian's ODE from ᾱ(1) = 0) on the flow
    path x_τ = (1−τ)·x̂₀ + τ·z: z = (x_τ − (1−τ)μ)/((1−τ)s + τ), u = z − x̂₀."""

    prediction, num_classes, learned_variance = "flow", 0, False

    def forward(self, x, t, cond=None):
        tau = t.to(F64)[:, None]
        x_tau = x * ((1 - tau) ** 2 + tau**2).sqrt()  # the VP state x_t is x_τ·(α+σ), α+σ = 1/√((1−τ)² + τ²)
        z = (x_tau - (1 - tau) * MU) / ((1 - tau) * STD + tau)
        return z - (MU + STD * z)


def oracle_teacher(monkeypatch, module, schedule):
    teacher = types.SimpleNamespace(denoiser=GaussianOracle(schedule, mean=MU, std=STD), schedule=schedule)
    monkeypatch.setattr(module, "load_teacher", lambda source, device: teacher)
    return teacher


@pytest.mark.parametrize(("name", "options"), [("consistency-distillation", {}),
                                               ("reflow", {"teacher_sampler": "ddim", "teacher_steps": 2})])
def test_the_objectives_pass_the_conformance_kit(monkeypatch, name, options):
    """The kit's objective checks (per-example, finite, reproducible, differentiable), an exact oracle as teacher."""
    s = difftk.create("schedule", "linear")
    teacher = types.SimpleNamespace(denoiser=GaussianOracle(s, mean=MU, std=STD, shape=(1, 4, 4)), schedule=s)
    monkeypatch.setattr(consistency, "load_teacher", lambda source, device: teacher)
    monkeypatch.setattr(reflow, "load_teacher", lambda source, device: teacher)
    check_objective(difftk.create("objective", name, teacher="oracle", **options), s)


# --- the objectives' minimisers --------------------------------------------------------------------


def cd_loss(student, s, boundaries, distance="l2"):
    objective = consistency.ConsistencyDistillation(teacher="oracle", boundaries=boundaries, spacing="logsnr",
                                                    distance=distance)
    x0 = MU + STD * torch.randn(2048, 1, generator=torch.Generator().manual_seed(2), dtype=F64)
    return float(objective.loss(student, s, x0, generator=torch.Generator().manual_seed(3)).mean())


def test_the_consistency_function_minimises_consistency_distillation(monkeypatch):
    """With the exact teacher, the exact consistency function's loss is only the DDIM step's error, which
    vanishes as the grid refines; the denoiser (E[x₀ | x_t], the teacher itself) stays far from it."""
    s = difftk.create("schedule", "linear")
    teacher = oracle_teacher(monkeypatch, consistency, s)
    f = Endpoint(s)
    coarse, fine = cd_loss(f, s, 8), cd_loss(f, s, 64)
    assert fine < coarse / 20, (coarse, fine)
    assert cd_loss(teacher.denoiser, s, 64) > 100 * fine
    assert cd_loss(f, s, 64, "pseudo-huber") < cd_loss(teacher.denoiser, s, 64, "pseudo-huber") / 10


def test_the_straight_coupling_minimises_reflow(monkeypatch):
    """Reflow on the exact teacher's own pairs: the straight velocity of its coupling has (almost) zero
    loss; the teacher's curved flow does not."""
    s = difftk.create("schedule", "flow")
    teacher = oracle_teacher(monkeypatch, reflow, s)
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=200)
    x0 = torch.zeros(2048, 1, dtype=F64)

    def loss(student):
        return float(objective.loss(student, s, x0, generator=torch.Generator().manual_seed(4)).mean())

    straight, bent = loss(Straight()), loss(teacher.denoiser)
    assert straight < bent / 50, (straight, bent)


class Reparameterised(nn.Module):
    """``inner``'s prediction written in parameterisation ``prediction`` (the core's conversion at x_t)."""

    num_classes, learned_variance = 0, False

    def __init__(self, inner, prediction, schedule):
        super().__init__()
        self.inner, self.prediction, self.schedule = inner, prediction, schedule

    def forward(self, x, t, cond=None):
        ab = self.schedule.alpha_bar(t.to(F64))
        return convert(self.inner.prediction, self.inner(x, t), self.prediction, x, ab)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "edm"])
def test_reflow_is_the_same_loss_whatever_the_student_predicts(monkeypatch, prediction):
    """A student's parameterisation changes what its network outputs, not what reflow asks of it: the
    straight coupling written as an ε-, x₀-, v- or edm-network has the velocity network's loss (to
    round-off), and so does the teacher's curved flow."""
    s = difftk.create("schedule", "flow")
    teacher = oracle_teacher(monkeypatch, reflow, s)
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=20)
    x0 = torch.zeros(512, 1, dtype=F64)

    def loss(student):
        return objective.loss(student, s, x0, generator=torch.Generator().manual_seed(5))

    for student in (Straight(), teacher.denoiser):
        torch.testing.assert_close(loss(Reparameterised(student, prediction, s)), loss(student), rtol=1e-9, atol=1e-12)


class Recorder(nn.Module):
    """``inner``, keeping every time it is asked at."""

    num_classes, learned_variance = 0, False

    def __init__(self, inner):
        super().__init__()
        self.inner, self.prediction, self.asked = inner, inner.prediction, []

    def forward(self, x, t, cond=None):
        self.asked.append(t.clone())
        return self.inner(x, t)


def test_reflow_at_t_1_is_the_one_step_samples_error(monkeypatch):
    """``times=1`` asks every example at pure noise, where the flow student's loss is the squared error of
    its one-step Euler sample z − û(z, 1) to the teacher's sample from the same z: the option trains the
    one-step sampler directly."""
    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=20, times=(1.0,), times_share=1.0)
    x0 = torch.zeros(256, 1, dtype=F64)
    student = Recorder(Straight())
    got = objective.loss(student, s, x0, generator=torch.Generator().manual_seed(6))
    x_hat, z = objective.coupling(x0, None, torch.Generator().manual_seed(6))
    one_step = z - student.inner(z, torch.ones(256, dtype=F64))
    torch.testing.assert_close(got, ((one_step - x_hat) ** 2).mean(dim=1), rtol=1e-12, atol=1e-15)
    assert bool((student.asked[0] == 1.0).all())


class Bent(nn.Module):
    """The straight velocity, wrong by 0.2·x: a student whose own steps leave the pair's path."""

    prediction, num_classes, learned_variance = "flow", 0, False

    def forward(self, x, t, cond=None):
        return Straight()(x, t) + 0.2 * x


def exact_pairs(self, x0, cond, generator):
    """The Gaussian's ODE coupling itself, x̂₀ = μ + s·z: the pairs of an exact teacher at any step count."""
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return MU + STD * z, z


def test_rollout_on_the_straight_coupling_is_the_plain_loss(monkeypatch):
    """A student that is its coupling's straight velocity reaches the pair's own path point by its Euler steps,
    so ``rollout`` asks it where the plain loss does, and both losses vanish (up to the floor of ᾱ(1) every
    sampler converts with); for a student that leaves the path the two differ."""
    s = difftk.create("schedule", "flow")
    monkeypatch.setattr(reflow.Reflow, "coupling", exact_pairs)
    x0 = torch.zeros(512, 1, dtype=F64)
    options = {"teacher": "oracle", "teacher_sampler": "ddim", "teacher_steps": 20, "times": (1.0, 0.6, 0.2),
               "times_share": 0.8}

    def loss(student, rollout):
        return reflow.Reflow(**options, rollout=rollout).loss(student, s, x0, generator=torch.Generator().manual_seed(9))

    assert float(loss(Straight(), False).max()) < 1e-24
    assert float(loss(Straight(), True).max()) < 1e-7  # a sampler's x̂₀ at t = 1 is converted with ᾱ(1) = 2⁻²⁴
    assert float((loss(Bent(), True) - loss(Bent(), False)).abs().max()) > 1e-3


def test_rollout_loss_is_the_few_step_samples_error(monkeypatch):
    """With ``rollout`` at times 0.6 and 0.25, an example asked at 0.25 has loss ‖x_K − x̂₀‖²/0.25², x_K the sample
    ``flow-euler`` draws from its z through t = 1, 0.6, 0.25 with the same student: the option trains the last
    step of the student's own sampler to land on the teacher's sample."""
    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=20, times=(0.6, 0.25),
                              times_share=1.0, rollout=True)
    x0 = torch.zeros(256, 1, dtype=F64)
    student = Recorder(Bent())
    got = objective.loss(student, s, x0, generator=torch.Generator().manual_seed(10))
    g = torch.Generator().manual_seed(10)
    x_hat, z = objective.coupling(x0, None, g)
    t = objective.draw_times(len(x0), g, x0.device)
    late = t == 0.25
    assert 0.3 < float(late.double().mean()) < 0.7
    sample = difftk.create("sampler", "flow-euler", times=(1.0, 0.6, 0.25)).sample(Bent(), for_sampling(s), z)
    torch.testing.assert_close(got[late], ((sample - x_hat) ** 2).mean(dim=1)[late] / 0.25**2, rtol=1e-9, atol=1e-12)


class Tilted(nn.Module):
    """The straight velocity plus a·x with a learnable a: a student whose first step moves with its weight."""

    prediction, num_classes, learned_variance = "flow", 0, False

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, x, t, cond=None):
        return Straight()(x, t) + self.a * x


def test_rollout_grad_is_the_gradient_of_the_few_step_samples_error(monkeypatch):
    """With ``rollout_grad`` the loss is the same number, and its gradient is that of the 2-step sample's error
    ‖x_K − x̂₀‖²/t² through both of the student's steps (autograd through ``flow-euler`` itself); without it the
    first step is a constant and the gradient differs."""
    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    options = {"teacher": "oracle", "teacher_sampler": "ddim", "teacher_steps": 20, "times": (1.0, 0.25),
               "times_share": 1.0, "rollout": True}
    x0 = torch.zeros(256, 1, dtype=F64)
    g = torch.Generator().manual_seed(12)
    x_hat, z = reflow.Reflow(**options).coupling(x0, None, g)
    late = reflow.Reflow(**options).draw_times(len(x0), g, x0.device) == 0.25
    assert 0.3 < float(late.double().mean()) < 0.7

    def gradient(loss_of):
        student = Tilted()
        loss = loss_of(student)
        (grad,) = torch.autograd.grad(loss, student.a)
        return float(loss.detach()), float(grad)

    def objective(grad_through):
        objective = reflow.Reflow(**options, rollout_grad=grad_through)
        return lambda student: objective.loss(student, s, x0, generator=torch.Generator().manual_seed(12))[late].sum()

    def sample_error(student):
        sample = difftk.create("sampler", "flow-euler", times=(1.0, 0.25)).sample(student, for_sampling(s), z)
        return (((sample - x_hat) ** 2).mean(dim=1) / 0.25**2)[late].sum()

    through, detached, direct = gradient(objective(True)), gradient(objective(False)), gradient(sample_error)
    assert through[0] == pytest.approx(detached[0], rel=1e-12)
    assert through[0] == pytest.approx(direct[0], rel=1e-9)
    assert through[1] == pytest.approx(direct[1], rel=1e-9)
    assert abs(detached[1] - direct[1]) > 0.05 * abs(direct[1])


def test_rollout_grad_without_rollout_is_one_line():
    with pytest.raises(OptionError, match="rollout_grad=true needs rollout=true"):
        create_component("objective", "reflow", {"teacher": "mnist-flow", "rollout_grad": "true"}, from_strings=True)


@pytest.mark.parametrize("rollout", [False, True])
def test_pseudo_huber_reflow_is_the_squared_error_under_the_root(monkeypatch, rollout):
    """``distance=pseudo-huber`` is √(d·e + c²) − c of the l2 loss e (the mean squared velocity error over d
    dimensions), c = 0.00054·√d, example by example, with or without ``rollout``; the straight coupling's
    velocity still has (almost) zero loss and a student off it does not."""
    s = difftk.create("schedule", "flow")
    monkeypatch.setattr(reflow.Reflow, "coupling", exact_pairs)
    x0 = torch.zeros(512, 8, dtype=F64)
    options = {"teacher": "oracle", "times": (1.0, 0.3), "times_share": 0.7, "rollout": rollout}

    def loss(student, distance):
        objective = reflow.Reflow(**options, distance=distance)
        return objective.loss(student, s, x0, generator=torch.Generator().manual_seed(11))

    c = 0.00054 * 8**0.5
    l2, huber = loss(Bent(), "l2"), loss(Bent(), "pseudo-huber")
    torch.testing.assert_close(huber, (8 * l2 + c * c).sqrt() - c, rtol=1e-12, atol=1e-15)
    assert float(huber.min()) > 1e-3
    assert float(loss(Straight(), "pseudo-huber").max()) < 1e-4 * float(huber.mean())


@pytest.mark.parametrize("times", [None, "1"])
def test_rollout_without_a_time_below_1_is_one_line(times):
    """``rollout`` with nothing to roll out to would train as if it were off: it is refused, as the command line
    gives it."""
    options = {"teacher": "mnist-flow", "rollout": "true"} | ({"times": times} if times else {})
    with pytest.raises(OptionError, match="rollout=true needs times") as error:
        create_component("objective", "reflow", options, from_strings=True)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("prediction", ["eps", "x0", "edm"])
def test_any_student_can_be_asked_at_pure_noise(monkeypatch, prediction):
    """At t = 1 of a schedule that reaches pure noise (ᾱ(1) = 0) the output is converted as a sampler converts
    it, with ᾱ floored, so an ε-, x₀- or edm-student's loss there is finite."""

    class Net(nn.Module):
        num_classes, learned_variance = 0, False

        def __init__(self):
            super().__init__()
            self.prediction = prediction

        def forward(self, x, t, cond=None):
            return 0.3 * x + 0.1

    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    objective = reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=4, times=(1.0,), times_share=1.0)
    loss = objective.loss(Net(), s, torch.zeros(64, 1, dtype=F64), generator=torch.Generator().manual_seed(7))
    assert torch.isfinite(loss).all()


def test_reflow_spends_its_share_at_the_samplers_times(monkeypatch):
    """With ``times=1,0.5`` and ``times_share=0.6``, 30 % of the examples are asked at t = 1, 30 % at t = ½,
    the rest uniformly on (0, 1]; without ``times`` every t is uniform and the draws are the former ones."""
    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    x0 = torch.zeros(20_000, 1, dtype=F64)
    focused = Recorder(Straight())
    reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=1, times=(1.0, 0.5), times_share=0.6).loss(
        focused, s, x0, generator=torch.Generator().manual_seed(8))
    t = focused.asked[0]
    for at in (1.0, 0.5):
        assert abs(float((t == at).double().mean()) - 0.3) < 0.015
    rest = t[(t != 1.0) & (t != 0.5)]
    assert abs(len(rest) / len(t) - 0.4) < 0.015
    assert abs(float(rest.mean()) - 0.5) < 0.01 and abs(float(rest.var()) - 1 / 12) < 0.005  # uniform on (0, 1]
    plain = Recorder(Straight())
    reflow.Reflow(teacher="oracle", teacher_sampler="ddim", teacher_steps=1).loss(
        plain, s, x0, generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)
    torch.randn(x0.shape, generator=g, dtype=F64)  # the coupling's noise comes first
    torch.testing.assert_close(plain.asked[0], 1.0 - torch.rand(len(x0), generator=g, dtype=F64), rtol=0, atol=0)


@pytest.mark.parametrize(("times", "why"), [("0", "out of range"), ("1.5", "out of range"), ("1,-1", "out of range"), ("a", "not a valid float")])
def test_times_outside_the_unit_interval_are_one_line(times, why):
    """As the command line and a pipeline file give it: a string, parsed, each time bounded."""
    with pytest.raises(OptionError, match="times") as error:
        create_component("objective", "reflow", {"teacher": "mnist-flow", "times": times}, from_strings=True)
    assert why in str(error.value) and "\n" not in str(error.value)
    ok = create_component("objective", "reflow", {"teacher": "mnist-flow", "times": "1,0.5"}, from_strings=True)
    assert ok.times == (1.0, 0.5)


# --- a student through the normal trainer -----------------------------------------------------------


@pytest.fixture
def teacher_run(register_plugin, tmp_path):
    """A tiny teacher: the toy denoiser on toy points, 3 steps."""
    assert register_plugin(difftk.testing.toys, "toys")
    data, data_spec = load_dataset("toy-points", options={"n": 64})
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser="tiny", objective="simple").spec
    config = TrainConfig(steps=3, batch_size=16, sample_every=0, checkpoint_every=3, seed=0)
    train(spec, data, config, out=tmp_path / "teacher", dataset_spec=data_spec)
    return tmp_path, data, data_spec


@pytest.mark.parametrize("objective", [
    {"name": "consistency-distillation", "options": {"boundaries": 6}},
    {"name": "reflow", "options": {"teacher_sampler": "dpm-solver-2m", "teacher_steps": 3}}])
def test_a_student_trains_resumes_and_samples_as_a_normal_model(teacher_run, objective):
    tmp_path, data, data_spec = teacher_run
    teacher = str(tmp_path / "teacher")
    objective = {"name": objective["name"], "options": {**objective["options"], "teacher": teacher}}
    spec = difftk.compose(schedule="linear", sampler="ddim", denoiser="tiny", objective=objective).spec
    config = TrainConfig(steps=2, batch_size=16, sample_every=0, checkpoint_every=2, seed=0, init=teacher)
    train(spec, data, config, out=tmp_path / "student", dataset_spec=data_spec)
    ckpt, resumed = resume_state(tmp_path / "student", steps=4)
    train(spec, data, resumed, out=tmp_path / "student", resume=True, checkpoint=ckpt, dataset_spec=data_spec)
    student = difftk.load(str(tmp_path / "student"))
    assert student.step == 4
    assert student.pipeline.objective.teacher == teacher
    for sampler, steps in (("ddim", 1), ("ddim", 2), ("dpm-solver-2m", 4)):
        x = student.sample(8, sampler=sampler, steps=steps, seed=0)
        assert x.shape == (8, 2) and torch.isfinite(x).all()


def test_a_teacher_that_cannot_be_read_is_one_line(tmp_path):
    objective = consistency.ConsistencyDistillation(teacher=str(tmp_path / "missing.safetensors"))
    with pytest.raises(OptionError, match="teacher=.*cannot be read"):
        objective.loss(Endpoint(difftk.create("schedule", "linear")), difftk.create("schedule", "linear"),
                       torch.zeros(2, 1))


def test_the_critics_step_is_adams_step_on_the_hinge_loss():
    """The critic's own Adam (its moments kept as plain tensors for the checkpoint) is torch's Adam at β = (0,
    0.99) on the hinge loss mean(relu(1 − D(real))) + mean(relu(1 + D(fake))), step for step."""
    state = CriticState(lr=1e-3, seed=3)
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 2, 8, 8, generator=gen, dtype=F64) + 0.5, torch.randn(5, 2, 8, 8, generator=gen, dtype=F64)
    twin = Critic((2, 8, 8)).to(F64)
    twin.load_state_dict(state.ensure(real).state_dict())
    adam = torch.optim.Adam(twin.parameters(), lr=1e-3, betas=BETAS, eps=EPS)
    for _ in range(4):
        got = state.step(real, fake)
        adam.zero_grad()
        loss = torch.relu(1 - twin(real)).mean() + torch.relu(1 + twin(fake)).mean()
        loss.backward()
        adam.step()
        assert got == pytest.approx(loss.detach().item(), rel=1e-12)
    for (name, a), b in zip(state.critic.state_dict().items(), twin.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"{name}: {m}")
    assert int(state.state_dict()["adam_step"]) == 4


def test_the_critic_learns_to_tell_two_distributions_apart():
    state = CriticState(lr=2e-3)
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(64, 1, 12, 12, generator=gen) * 0.2 + 0.5
    fake = torch.randn(64, 1, 12, 12, generator=gen) * 0.6
    first = state.step(real, fake)
    for _ in range(150):
        last = state.step(real, fake)
    assert first > 1.5 and last < 0.2, (first, last)
    assert float(state.score(real).min()) > float(state.score(fake).max())


def test_the_adversarial_term_is_minus_the_critics_score_of_the_few_step_sample(monkeypatch):
    """With ``adversarial`` λ, an example asked at the last of ``times`` adds −λ·D(x_K) to its loss, x_K the
    sample ``flow-euler`` draws from its z through the student's own steps; the others add nothing. Training
    steps the critic once per batch (real: the teacher's samples; fake: these); under no_grad it does not."""
    s = difftk.create("schedule", "flow")
    oracle_teacher(monkeypatch, reflow, s)
    options = {"teacher": "oracle", "teacher_sampler": "ddim", "teacher_steps": 20, "times": (1.0, 0.25),
               "times_share": 1.0, "rollout": True}
    x0 = torch.zeros(256, 1, dtype=F64)
    plain = reflow.Reflow(**options).loss(Bent(), s, x0, generator=torch.Generator().manual_seed(10))
    judged = reflow.Reflow(**options, adversarial=0.3)
    got = judged.loss(Bent(), s, x0, generator=torch.Generator().manual_seed(10))
    assert int(judged.state_dict()["adam_step"]) == 1
    g = torch.Generator().manual_seed(10)
    _, z = judged.coupling(x0, None, g)
    late = judged.draw_times(len(x0), g, x0.device) == 0.25
    assert 0.3 < float(late.double().mean()) < 0.7
    sample = difftk.create("sampler", "flow-euler", times=(1.0, 0.25)).sample(Bent(), for_sampling(s), z)
    expected = torch.where(late, -0.3 * judged._critic.score(sample), torch.zeros_like(plain))
    torch.testing.assert_close(got - plain, expected, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        judged.loss(Bent(), s, x0, generator=torch.Generator().manual_seed(11))
    assert int(judged.state_dict()["adam_step"]) == 1


def test_the_critics_state_round_trips_and_a_damaged_one_is_one_line():
    state = CriticState(lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    state.step(torch.randn(4, 3, 16, 16, generator=gen), torch.randn(4, 3, 16, 16, generator=gen))
    saved = state.state_dict()
    again = CriticState(lr=1e-3)
    again.load_state_dict(saved)
    assert again.state_dict().keys() == saved.keys()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in saved.items())
    for damage in ("adam_m.out.bias", "shape"):
        with pytest.raises(ValueError, match="the checkpoint's critic state is incomplete"):
            CriticState(lr=1e-3).load_state_dict({k: v for k, v in saved.items() if k != damage})
    with pytest.raises(ValueError, match="do not fit its shape"):
        CriticState(lr=1e-3).load_state_dict(saved | {"shape": torch.tensor([1, 16, 16])})
    with pytest.raises(ValueError, match="do not fit its shape: adam_v.out.bias is"):
        CriticState(lr=1e-3).load_state_dict(saved | {"adam_v.out.bias": torch.zeros(2)})
    for hostile in ([10**12], [0, 16, 16], [1, 2, 3, 4]):  # refused before a weight is allocated
        with pytest.raises(ValueError, match="critic"):
            CriticState(lr=1e-3).load_state_dict(saved | {"shape": torch.tensor(hostile)})


def test_adversarial_without_rollout_is_one_line():
    with pytest.raises(OptionError, match="adversarial needs rollout=true"):
        create_component("objective", "reflow", {"teacher": "mnist-flow", "adversarial": "0.1"}, from_strings=True)


CRITIC_RANK = '''
import sys
import torch
from difftk_distill.adversarial import CriticState
from safetensors.torch import save_file

torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
state = CriticState(lr=1e-3, seed=5)
gen = torch.Generator().manual_seed(rank)
for _ in range(3):  # rank 1 has no fakes in its second batch
    fake = torch.randn(0 if rank == 1 and _ == 1 else 4, 1, 8, 8, generator=gen, dtype=torch.float64)
    state.step(torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64) + 1, fake)
save_file(state.state_dict(), f"{sys.argv[1]}/rank{rank}.safetensors")
torch.distributed.destroy_process_group()
'''


def test_under_ddp_the_critic_steps_on_the_gradient_averaged_over_the_ranks(tmp_path):
    """Two real processes step their critics on batches of their own (one with no fakes in one batch): both end
    with the same weights and moments, those of one process stepping on the average of the two ranks' losses."""
    script = tmp_path / "rank.py"
    script.write_text(CRITIC_RANK)
    for code, stderr in launch_ranks([script, tmp_path], 2):
        assert code == 0, stderr[-2000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and all(torch.equal(v, ranks[1][k]) for k, v in ranks[0].items())
    one = CriticState(lr=1e-3, seed=5)
    gens = [torch.Generator().manual_seed(r) for r in (0, 1)]
    for step in range(3):
        grads = []
        for r, gen in enumerate(gens):
            fake = torch.randn(0 if r == 1 and step == 1 else 4, 1, 8, 8, generator=gen, dtype=F64)
            grads.append(one.gradient(torch.randn(4, 1, 8, 8, generator=gen, dtype=F64) + 1, fake)[1])
        one.apply([(a + b) / 2 for a, b in zip(*grads, strict=True)])
    assert int(one.state_dict()["adam_step"]) == 3
    for k, v in one.state_dict().items():
        torch.testing.assert_close(ranks[0][k], v, rtol=1e-12, atol=1e-14, msg=lambda m, k=k: f"{k}: {m}")
