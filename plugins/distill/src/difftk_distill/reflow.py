"""Rectified-flow reflow (Liu et al. 2023, §2.3 and Algorithm 1): flow matching on the teacher's own pairs."""

from __future__ import annotations

from itertools import pairwise

import attrs
import difftk
import torch
from difftk.errors import OptionError
from difftk.maths.diffusion import convert, expand, flow_from_x0_eps, q_sample
from difftk.maths.objectives import mean_flat
from difftk.maths.terminal import for_sampling
from difftk.options import option
from difftk.sampling.steps import denoiser_output

from difftk_distill.adversarial import CriticState
from difftk_distill.distances import DISTANCES, per_example
from difftk_distill.pairs import load_pairs
from difftk_distill.teacher import load_teacher, teacher_cond


@attrs.frozen
class Reflow:
    """E‖û(x_t, t) − (z − x̂₀)‖² with (x̂₀, z) the teacher's coupling: x̂₀ is what the teacher's
    ``teacher_sampler`` at ``teacher_steps`` makes from the noise z (Liu et al. 2023, eq. 1 on the
    pairs of their Algorithm 1, "Reflow").

    Without ``pairs``, each pair is drawn afresh, so the data set only sets the shape and the labels (a
    conditional teacher draws from the label it is given). With ``pairs``, a directory drawn once by
    :mod:`difftk_distill.pairs` from the same teacher, sampler and steps, each example takes a pair of
    its label (the null class after label dropout: a pair drawn unconditionally) uniformly from the
    file, by the trainer's checkpointed generator, so a resumed run draws the same pairs. The student is asked at t uniform on (0, 1] of its
    own schedule, at the VP state x_t = √ᾱ·x̂₀ + √(1−ᾱ)·z, and its output, whatever its
    parameterisation, is converted to the velocity u = ε − x₀ by the core; on the ``flow``
    schedule, t is Liu et al.'s uniform τ and x_t the straight path's point scaled to the VP frame.
    The straighter the coupling's paths, the fewer Euler steps (``flow-euler``) sample it.
    Train the student from the teacher's weights (``difftk train … --init TEACHER``), as they do.

    ``times`` spends part of the training where a few-step sampler asks: a share ``times_share`` of
    the examples is asked at one of these times (each equally often), the rest at uniform t. At
    t = 1 the loss is ‖x̂₀ − (z − û(z, 1))‖², the one-step Euler sample's squared error to the
    teacher's; ``flow-euler`` at K steps on the ``flow`` schedule asks at t = 1, (K−1)/K, …, 1/K.
    At t = 1 the student is asked as a sampler asks it: at x_1 = z, its output converted with ᾱ(1)
    floored at 2⁻²⁴ where the schedule reaches pure noise, so any parameterisation can be asked there.

    ``rollout`` asks the student at those times below 1 where its own few-step sampler arrives instead of on the
    pair's straight path: from z at t = 1, first-order (DDIM; on ``flow``, Euler) steps through the larger ``times``
    with its current weights, without gradient. There the target is the velocity whose one step lands on
    the teacher's x̂₀, u* = ε* − x̂₀ with ε* = (x_t − √ᾱ·x̂₀)/√(1−ᾱ): on the straight path that is z − x̂₀,
    the plain loss; off it, the step that corrects the student's own earlier error. With ``rollout_grad`` the
    earlier steps keep their gradient: the loss, still the last step's landing error ‖x̂ − x̂₀‖²/t² on
    ``flow``, then trains every step of the student's sampler together (backpropagation through the sampler), so
    its first step is asked for what the second can finish, not only for reflow's one-step sample.

    ``distance``: ``l2`` is the squared error above, averaged over the dimensions; ``pseudo-huber`` is
    √(‖u* − û‖² + c²) − c, c = 0.00054·√d, on the same velocities, which Lee et al. (2024, "Improving the training
    of rectified flows") propose for reflow: quadratic near the target, linear far from it.

    ``adversarial`` λ adds a critic's verdict to the regression (with ``rollout``): the examples asked at the
    smallest of ``times`` are where the student's own steps arrive, and their x₀ prediction there is the student's
    few-step sample; each adds −λ·D(sample), D a small convolutional critic (:mod:`difftk_distill.adversarial`)
    trained at every step, before the student, on the hinge loss with the batch's teacher samples as real and
    these as fake. Regression asks each sample for the teacher's sample from the same noise, and where the
    student cannot reach it, their average (a blur); the critic asks that the samples look like the teacher's
    as a whole (the idea of adversarial distillation: Sauer et al. 2023; Kim et al. 2024). The critic is
    unconditional; its weights and Adam moments are the objective's state, saved in every checkpoint, so a
    resumed run is exact, and averaged over the ranks under DDP. A stage started with ``--init`` starts a new
    critic.
    """

    teacher: str = option(help="the teacher: a checkpoint, run directory or shipped model name (difftk.load)")
    teacher_sampler: str = option(
        "unipc", help="the sampler that makes the pairs (any difftk sampler; deterministic for a coupling)"
    )
    teacher_steps: int = option(10, help="its steps", ge=1, le=1000)
    pairs: str = option(
        "",
        help="a directory of pairs drawn once (python -m difftk_distill.pairs); empty: drawn "
        "online, teacher_steps evaluations per example",
    )

    times: tuple[float, ...] | None = option(
        None,
        help="times in (0, 1] to train at more often, e.g. 1,0.5 for flow-euler at 1 and 2 steps; "
        "unset: uniform t",
        gt=0.0,
        le=1.0,
        optional=True,
    )
    times_share: float = option(0.5, help="with times: the share of examples asked at one of them", ge=0.0, le=1.0)
    rollout: bool = option(
        False,
        help="with times: ask the student where its own first-order steps through the larger times arrive, "
        "and train the step from there to land on the teacher's sample",
    )
    rollout_grad: bool = option(
        False,
        help="with rollout: keep the gradient through the student's own earlier steps, so the few-step sample's "
        "error trains every step of it",
    )
    distance: str = option("l2", help="l2 (the squared velocity error) or pseudo-huber", choices=DISTANCES)
    adversarial: float = option(
        0.0,
        help="with rollout: the weight of a critic's verdict on the student's few-step samples (hinge loss), "
        "added to the regression; 0: none",
        ge=0.0,
        le=100.0,
    )
    critic_lr: float = option(2e-4, help="with adversarial: the critic's Adam learning rate", gt=0.0, le=1.0)
    _critic: CriticState = attrs.field(
        default=attrs.Factory(lambda self: CriticState(self.critic_lr), takes_self=True),
        init=False, eq=False, repr=False,
    )

    def __attrs_post_init__(self) -> None:
        if self.rollout and not any(v < 1.0 for v in self.times or ()):
            raise OptionError(
                f"objective 'reflow': rollout=true needs times with one below 1 (e.g. times=1,0.2), got "
                f"times={self.times}: the student rolls out from t = 1 to them"
            )
        if self.adversarial > 0 and not self.rollout:
            raise OptionError(
                "objective 'reflow': adversarial needs rollout=true: the critic judges the samples the student's "
                "own steps make"
            )
        if self.rollout_grad and not self.rollout:
            raise OptionError(
                "objective 'reflow': rollout_grad=true needs rollout=true: it is the gradient through the "
                "student's own steps that rollout takes"
            )

    def coupling(
        self, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂₀, z): noise z of x0's shape and the teacher's sample from it, or a pair of the ``pairs`` directory."""
        if self.pairs:
            return self.stored_pairs(x0, cond, generator)
        teacher = load_teacher(self.teacher, str(x0.device))
        sampler = difftk.create("sampler", self.teacher_sampler)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        with torch.no_grad():
            x_hat = sampler.sample(
                teacher.denoiser,
                for_sampling(teacher.schedule),
                z,
                steps=self.teacher_steps,
                cond=teacher_cond(teacher, cond),
                generator=generator,
            )
        return x_hat, z

    def stored_pairs(
        self, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stored = load_pairs(self.pairs)
        drawn = {key: stored.meta.get(key) for key in ("teacher", "teacher_sampler", "teacher_steps")}
        asked = {
            "teacher": self.teacher,
            "teacher_sampler": self.teacher_sampler,
            "teacher_steps": str(self.teacher_steps),
        }
        for key, value in asked.items():
            if drawn[key] != value:
                raise OptionError(
                    f"pairs={self.pairs!r} were drawn with {key}={drawn[key]!r}, but the objective has "
                    f"{key}={value!r}: set the same, or draw the pairs again"
                )
        if tuple(stored.x0.shape[1:]) != tuple(x0.shape[1:]):
            raise OptionError(
                f"pairs={self.pairs!r} hold examples of shape {list(stored.x0.shape[1:])}, the data "
                f"{list(x0.shape[1:])}: draw them from a teacher of this data"
            )
        x_hat, z = stored.take(cond, x0.shape[0], generator, x0.device)
        return x_hat.to(x0.dtype), z.to(x0.dtype)

    def loss(
        self,
        denoiser,
        schedule,
        x0: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        x_hat, z = self.coupling(x0, cond, generator)
        t = self.draw_times(x0.shape[0], generator, x0.device)
        x_t = q_sample(x_hat, schedule.alpha_bar(t).to(x0.dtype), z)
        alpha_bar = for_sampling(schedule).alpha_bar(t).to(x0.dtype)  # as a sampler converts: ᾱ(1) floored
        eps = z
        if self.rollout and self.times:
            below = sorted(v for v in set(self.times) if v < 1.0)  # the times a sampler reaches by its own steps
            rolled = torch.isin(t, torch.tensor(below, dtype=t.dtype, device=t.device))
            x_t = self.rolled_out(denoiser, schedule, x_t, t, rolled, z, cond)
            landing = (x_t - expand(alpha_bar.sqrt(), x_t) * x_hat) / expand((1 - alpha_bar).sqrt(), x_t)
            eps = torch.where(rolled.view(-1, *([1] * (x_t.dim() - 1))), landing, z)
        out, _ = denoiser_output(denoiser, x_t, t.to(x0.dtype), cond)
        u_hat = convert(denoiser.prediction, out, "flow", x_t, alpha_bar)
        target = flow_from_x0_eps(x_hat, eps)
        # l2 averages over the dimensions, as the plain flow-matching loss does; pseudo-huber needs the whole norm
        l2 = self.distance == "l2"
        loss = mean_flat((target - u_hat) ** 2) if l2 else per_example(u_hat, target, self.distance)
        if self.adversarial > 0:
            loss = loss + self.adversarial * self.verdict(out, x_t, t, alpha_bar, x_hat, denoiser.prediction)
        return loss

    def verdict(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor,
                x_hat: torch.Tensor, prediction: str) -> torch.Tensor:
        """The critic's term of each example [B]: −D(x̂) for the examples asked at the smallest of ``times``,
        where x̂ is the student's few-step sample (its last step, to t = 0, lands on its x₀ prediction), and 0 for
        the rest. Before, when training, one step of the critic on the teacher's samples of the batch (real)
        against these (fake)."""
        rows = torch.nonzero(t == min(self.times)).flatten()  # exactly a time of ``times``: rolled out
        sample = convert(prediction, out[rows], "x0", x_t[rows], alpha_bar[rows])
        if torch.is_grad_enabled():  # every batch, even without a sample: under DDP each rank takes part
            self._critic.step(x_hat, sample)
        term = torch.zeros(t.shape, dtype=out.dtype, device=out.device)
        if not len(rows):
            return term
        return term.index_put((rows,), -self._critic.score(sample))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The critic's weights and Adam moments (empty without ``adversarial``), saved in every checkpoint."""
        return self._critic.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._critic.load_state_dict(state)

    def rolled_out(self, denoiser, schedule, x_t: torch.Tensor, t: torch.Tensor, rolled: torch.Tensor,
                   z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x_t, with each ``rolled`` example (asked at one of the ``times`` below 1) replaced by the state the
        student's own first-order steps reach at its time from z at t = 1 through the larger ``times`` (with
        ``rollout_grad``, through which the gradient flows; otherwise none)."""
        sampling = for_sampling(schedule)
        grid = sorted(set(self.times) | {1.0}, reverse=True)  # a sampler starts from z at t = 1
        x_t = x_t.clone()
        with torch.set_grad_enabled(self.rollout_grad and torch.is_grad_enabled()):
            rows = torch.nonzero(rolled).flatten()
            state, sub_t = z[rows], t[rows]
            sub_cond = cond[rows] if cond is not None else None
            for here, there in pairwise(grid):
                moving = sub_t <= there  # examples whose time lies at or below this step's end
                if not bool(moving.any()):
                    break
                idx = torch.nonzero(moving).flatten()
                at = torch.full((idx.numel(),), here, dtype=torch.float64, device=z.device)
                out, _ = denoiser_output(denoiser, state[idx], at.to(z.dtype), sub_cond[idx] if sub_cond is not None else None)
                ab = sampling.alpha_bar(at).to(z.dtype)
                x0_hat = convert(denoiser.prediction, out, "x0", state[idx], ab)
                eps_hat = convert(denoiser.prediction, out, "eps", state[idx], ab)
                state[idx] = q_sample(x0_hat, sampling.alpha_bar(torch.full_like(at, there)).to(z.dtype), eps_hat)
            x_t[rows] = state
        return x_t

    def draw_times(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """t on (0, 1], uniform, or with ``times`` one of them for a share ``times_share`` of the examples."""
        t = 1.0 - torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        if not self.times:
            return t
        at = torch.tensor(self.times, dtype=torch.float64, device=device)
        pick = torch.randint(len(self.times), (n,), generator=generator, device=device)
        chosen = torch.rand(n, generator=generator, device=device, dtype=torch.float64) < self.times_share
        return torch.where(chosen, at[pick], t)
