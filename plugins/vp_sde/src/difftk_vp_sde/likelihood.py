"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, App. D.2).

Along the ODE dx/dt = f(x, t) = −½β(t)(x + ∇log p_t(x)) the density obeys the instantaneous
change of variables (Chen et al. 2018, Thm. 1): d log p_t(x(t))/dt = −∇·f(x(t), t), so

    log p_ε(x) = log p_1(x(1)) + ∫_ε^1 ∇·f(x(t), t) dt,      p_1 ≈ N(0, I).

∇·f is computed exactly (one backward pass per dimension — for small dimensions) or by the
Skilling–Hutchinson estimator ∇·f ≈ E_v[vᵀ(∂f/∂x)v] with Rademacher or Gaussian probes v,
held fixed along the path (Grathwohl et al. 2019, eq. 7).
"""

from __future__ import annotations

import math

import attrs
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.errors import DifftkError
from difftk.maths.ode import dopri5, fixed_steps

from difftk_vp_sde.samplers import flow_drift
from difftk_vp_sde.sde import ScoreFunction, uniform_times

DIVERGENCES: tuple[str, ...] = ("exact", "rademacher", "gaussian")


@attrs.frozen
class ODELikelihood:
    """log p_ε(x) per example [B] (nats), split as ``prior`` log p_1(x(1)) + ``delta`` ∫∇·f dt."""

    log_p: torch.Tensor
    prior: torch.Tensor
    delta: torch.Tensor
    nfe: int


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example: −½‖z‖² − (D/2)·log 2π."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * flat.pow(2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def _model_dtype(denoiser: Denoiser) -> torch.dtype:
    param = next(iter(denoiser.parameters()), None) if hasattr(denoiser, "parameters") else None
    return param.dtype if param is not None else torch.float64


def probes(kind: str, n: int, shape: tuple[int, ...], generator: torch.Generator | None,
           device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """``n`` probe vectors per example [n, *shape] for the Hutchinson estimator: Rademacher
    (±1 with equal probability) or standard Gaussian; both have E[vvᵀ] = I. Drawn on the CPU
    from ``generator`` (a CPU generator), then moved to ``device``."""
    if kind == "gaussian":
        v = torch.randn((n, *shape), generator=generator, dtype=torch.float64)
    elif kind == "rademacher":
        v = 2.0 * torch.randint(0, 2, (n, *shape), generator=generator).to(torch.float64) - 1.0
    else:
        raise ValueError(f"unknown probe kind {kind!r}; expected rademacher or gaussian")
    return v.to(device=device, dtype=dtype)


def ode_log_likelihood(denoiser: Denoiser, schedule: NoiseSchedule, x: torch.Tensor, *, cond: torch.Tensor | None = None,
                       divergence: str = "exact", n_probes: int = 1, eps: float = 1e-5, method: str = "rk45",
                       rtol: float = 1e-5, atol: float = 1e-5, steps: int = 100,
                       generator: torch.Generator | None = None) -> ODELikelihood:
    """log p_ε(x) for a batch x [B, ...] by integrating [x, ∫∇·f] from t = ε to 1 (Song et al. 2021, App. D.2).

    :param divergence: ``exact`` (D backward passes per evaluation), or the Hutchinson
        estimator with ``rademacher`` or ``gaussian`` probes (``n_probes`` of them, averaged).
    :param method: ``rk45`` (``rtol``/``atol``), ``heun`` or ``euler`` (``steps`` uniform steps).
    The integration runs in float64; the denoiser is called in its own dtype.
    """
    if divergence not in DIVERGENCES:
        raise DifftkError(f"divergence {divergence!r} is not one of {', '.join(DIVERGENCES)}")
    B, shape = x.shape[0], tuple(x.shape)
    D = math.prod(shape[1:])
    dtype = _model_dtype(denoiser)
    score_fn = ScoreFunction(denoiser, schedule, cond)
    v = None
    if divergence != "exact":
        v = probes(divergence, n_probes, shape, generator, x.device, dtype)

    def f(t: float, y: torch.Tensor) -> tuple[torch.Tensor, None]:
        with torch.enable_grad():
            x_t = y[:, :D].reshape(shape).to(dtype).detach().requires_grad_(True)
            drift, _ = flow_drift(score_fn, x_t, t)
            flat = drift.reshape(B, D)
            if v is None:  # exact: Σ_i ∂f_i/∂x_i, one backward pass per dimension
                div = torch.zeros(B, dtype=torch.float64, device=y.device)
                for i in range(D):
                    (g,) = torch.autograd.grad(flat[:, i].sum(), x_t, retain_graph=i < D - 1)
                    div += g.reshape(B, D)[:, i].to(torch.float64)
            else:  # Hutchinson: vᵀ(∂f/∂x)v, averaged over the probes
                div = torch.zeros(B, dtype=torch.float64, device=y.device)
                for j in range(v.shape[0]):
                    (g,) = torch.autograd.grad((drift * v[j]).sum(), x_t, retain_graph=j < v.shape[0] - 1)
                    div += (g * v[j]).reshape(B, D).sum(1).to(torch.float64) / v.shape[0]
        return torch.cat([flat.detach().to(torch.float64), div[:, None]], dim=1), None

    y0 = torch.cat([x.reshape(B, D).to(torch.float64), torch.zeros(B, 1, dtype=torch.float64, device=x.device)], 1)
    if method == "rk45":
        y1, _ = dopri5(f, y0, eps, 1.0, rtol=rtol, atol=atol)
    else:
        y1, _ = fixed_steps(f, y0, uniform_times(steps, eps)[::-1].copy(), method=method)
    prior = standard_normal_log_prob(y1[:, :D])
    delta = y1[:, D]
    return ODELikelihood(log_p=prior + delta, prior=prior, delta=delta, nfe=score_fn.nfe)


#: uint8 value u ∈ {0..255} occupies the bin [u/128 − 1, (u+1)/128 − 1) of [−1, 1): width 2/256
BIN_WIDTH = 2.0 / 256


def dequantize(u: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization of 8-bit data: x = (u + U)/128 − 1, U ~ U[0, 1) (Theis et al. 2016, §3.1),
    so x ∈ [−1, 1) and each of the 256 values owns a bin of width 2/256. U is drawn on the CPU
    from ``generator`` (a CPU generator) and x returned on u's device."""
    noise = torch.rand(u.shape, generator=generator, dtype=torch.float64).to(u.device)
    return (u.to(torch.float64) + noise) / 128.0 - 1.0


def bits_per_dim(log_p: torch.Tensor, dims: int) -> torch.Tensor:
    """−log₂ P(u)/D ≤ −(log p(x) + D·log(2/256))/(D ln 2) = −log p(x)/(D ln 2) + 7 per example."""
    return -log_p / (dims * math.log(2.0)) - math.log2(BIN_WIDTH)
