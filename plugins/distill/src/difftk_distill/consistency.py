"""Consistency distillation (Song et al. 2023, Algorithm 2).

The consistency function f(x_t, t) maps every point of a probability-flow trajectory to its end
x₀. In difftk's VP frame it is the student's own x̂₀: for an ε-, v- or flow-network x̂₀ → x_t as
t → 0, the boundary condition f(x, 0) = x that Song et al. build in with c_skip and c_out (their
eq. 3). The student is therefore a normal difftk model (same network, same prediction type),
and every sampler samples it. DDIM's one step, x̂₀(x_T), is their one-step sampler exactly; with
more steps DDIM re-noises with the student's own ε̂ where their multistep sampler (Algorithm 1)
draws fresh noise, which only a consistency function tolerates (on a denoiser, whose x̂₀ is
E[x₀ | x_t], fresh noise shrinks the spread at every step), so difftk does not ship it as a sampler.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from difftk.maths.diffusion import q_sample
from difftk.maths.grids import SPACINGS, time_grid
from difftk.maths.schedules import alpha_bar_table
from difftk.options import option
from difftk.sampling.steps import predict

from difftk_distill.distances import DISTANCES, per_example
from difftk_distill.teacher import load_teacher, teacher_predict


@attrs.frozen
class ConsistencyDistillation:
    """L = d(f_θ(x_{t_{n+1}}, t_{n+1}), f_θ⁻(x̂_{t_n}, t_n)) (Song et al. 2023, Algorithm 2, eq. 7).

    x_{t_{n+1}} = √ᾱ·x₀ + √(1−ᾱ)·ε from the data; x̂_{t_n} is one DDIM step of the teacher from it
    (the exponential-integrator Euler step Φ of DPM-Solver, exact for the ODE's linear part):
    x̂_{t_n} = √ᾱ_{t_n}·x̂₀ + √(1−ᾱ_{t_n})·ε̂ with the teacher's x̂₀ and ε̂ at x_{t_{n+1}}. The boundaries
    t_N = 1 > … > t_1 are the core grid of ``boundaries`` points (``spacing``), with t_0 = 0, where
    f_θ⁻(x, 0) = x, so the last interval learns the teacher's x̂₀. n is drawn uniformly per example.
    f_θ⁻ is f_θ without gradient (θ⁻ = stopgrad θ, Song & Dhariwal 2023, §3.2). ``distance``: l2 is
    their ‖·‖²; pseudo-huber is √(‖x − y‖² + c²) − c, c = 0.00054·√d (Song & Dhariwal 2023, §3.3).
    Train the student from the teacher's weights (``difftk train … --init TEACHER``), as they do.
    """

    teacher: str = option(help="the teacher: a checkpoint, run directory or shipped model name (difftk.load)")
    boundaries: int = option(18, help="N, the points t_N = 1 > … > t_1 of the teacher's grid (CIFAR-10: 18)",
                             ge=2, le=1000)
    spacing: str = option("karras", help=f"the grid of the boundaries: {', '.join(SPACINGS)}", choices=SPACINGS)
    distance: str = option("pseudo-huber", help="d: l2 or pseudo-huber", choices=DISTANCES)

    def intervals(self, schedule: Any) -> np.ndarray:
        """t_N > … > t_1 > t_0 = 0, float64: the N intervals (t_{n+1}, t_n) drawn from."""
        return np.append(time_grid(schedule, self.boundaries, self.spacing), 0.0)

    def distance_of(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """d(a, b) per example, [B]."""
        return per_example(a, b, self.distance)

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        teacher = load_teacher(self.teacher, str(x0.device))
        times = self.intervals(schedule)
        ab_all = torch.from_numpy(alpha_bar_table(schedule, times)).to(x0.device)
        n = torch.randint(0, len(times) - 1, (x0.shape[0],), generator=generator, device=x0.device)
        t_next, t_n = torch.from_numpy(times).to(x0.device)[n], torch.from_numpy(times).to(x0.device)[n + 1]
        ab_next, ab_n = ab_all[n], ab_all[n + 1]
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_next = q_sample(x0, ab_next, eps)
        guess = teacher_predict(teacher, x_next, ab_next, cond)
        x_n = q_sample(guess.x0, ab_n, guess.eps)  # Φ: one DDIM step t_{n+1} → t_n; at t_n = 0 it is x̂₀
        with torch.no_grad():
            target = predict(denoiser, x_n, t_n.to(x0.dtype), ab_n.to(x0.dtype), cond).x0
            target = torch.where((t_n > 0).view(-1, *[1] * (x0.ndim - 1)), target, x_n)  # f(x, 0) = x
        online = predict(denoiser, x_next, t_next.to(x0.dtype), ab_next.to(x0.dtype), cond).x0
        return self.distance_of(online, target)
