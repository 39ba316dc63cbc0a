"""Agreement with diffusers' guiders (``diffusers.guiders``, 0.42): on identical conditional and
unconditional predictions, the combined prediction of cfg (with rescale and interval), APG and
CFG-Zero* equals the guider's to 1e-6 in float64.

The predictions come from a table denoiser (row i of the batch: C[i] with its label, U[i] with the
null class), so both sides combine the very same tensors. Conventions that differ, and how each
test maps them (docs/guidance.md lists them):
- scale: difftk's w is diffusers' guidance_scale − 1 in diffusers' own formulation
  (pred_u + γ·(pred_c − pred_u)), and guidance_scale itself with ``use_original_formulation``.
- interval: diffusers' start/stop are fractions of the step count; difftk's interval is in σ, as
  the paper's, so the test picks the σ range that holds the same steps of a grid.
- APG acts on x̂₀ here (the paper) and on whatever the model outputs in diffusers, so the table
  predicts x₀; difftk's D_c + w·update is diffusers' ``use_original_formulation`` (its default
  adds γ·update to pred_u, which differs from the paper unless η = 1).
- CFG-Zero*: diffusers computes s* in float32 with ε = 1e-8 added to ‖v_u‖², difftk in the
  tensors' dtype (s* = 0 where v_u = 0); on unit-sized predictions the two differ by ~1e-8.
"""

import math

import difftk
import numpy as np
import pytest
import torch
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
from difftk.maths.guidance import sigma_of
from difftk.testing import ReferenceVPSchedule

SCHEDULE = ReferenceVPSchedule()
K = 10
B, SHAPE = 3, (2, 4, 4)
TOL = dict(rtol=1e-6, atol=1e-6)


class Table(torch.nn.Module):
    """Row i: C[i] given its label, U[i] given the null class K, whatever x and t."""

    num_classes, learned_variance = K, False

    def __init__(self, C, U, prediction):
        super().__init__()
        self.C, self.U, self.prediction = C, U, prediction

    def forward(self, x_t, t, cond=None):
        rows = torch.arange(len(x_t)) % len(self.C)
        return torch.where((cond == K).view(-1, 1, 1, 1), self.U[rows], self.C[rows])


def predictions(seed):
    g = torch.Generator().manual_seed(seed)
    C = torch.randn((B, *SHAPE), generator=g, dtype=torch.float64)
    return C, 0.7 * C + 0.5 * torch.randn((B, *SHAPE), generator=g, dtype=torch.float64)


def guided(name, C, U, prediction, t, **options):
    x = torch.zeros((B, *SHAPE), dtype=torch.float64)
    wrapped = difftk.create("guidance", name, **options).wrap(Table(C, U, prediction), SCHEDULE)
    with torch.no_grad():
        return wrapped(x, torch.full((B,), t, dtype=torch.float64), cond=torch.arange(B))


@pytest.mark.parametrize("w,phi", [(0.5, 0.0), (4.0, 0.0), (4.0, 0.7), (7.0, 1.0)])
def test_cfg_and_rescale_agree_with_diffusers_classifier_free_guidance(w, phi):
    C, U = predictions(0)
    ours = guided("cfg", C, U, "eps", 0.5, scale=w, rescale=phi)
    for theirs in (ClassifierFreeGuidance(guidance_scale=w + 1, guidance_rescale=phi),
                   ClassifierFreeGuidance(guidance_scale=w, guidance_rescale=phi, use_original_formulation=True)):
        torch.testing.assert_close(ours, theirs.forward(C, U).pred, **TOL)


@pytest.mark.parametrize("start,stop", [(0.0, 0.4), (0.3, 0.7), (0.5, 1.0)])
def test_interval_agrees_with_diffusers_start_and_stop_on_the_same_steps(start, stop):
    """diffusers guides steps k with ⌊start·N⌋ ≤ k < ⌊stop·N⌋; σ falls along the grid, so those are the
    steps whose σ_k lies between the σ of the step before the first of them and that of the first past them."""
    N, w = 10, 3.0
    times = np.linspace(1.0, 0.0, N, endpoint=False)  # DDIM's linspace grid t_k, k = 0..N−1
    sigma = [float(sigma_of(SCHEDULE.alpha_bar(torch.tensor(t, dtype=torch.float64)))) for t in times] + [0.0]
    first, past = int(start * N), int(stop * N)
    between = [2 * sigma[0]] + [math.sqrt(a * b) for a, b in zip(sigma[:-1], sigma[1:])]  # between[k]: above σ_k, below σ_{k−1}
    interval = (between[past], between[first])  # no σ_k on a boundary
    C, U = predictions(1)
    theirs = ClassifierFreeGuidance(guidance_scale=w + 1, start=start, stop=stop)
    guided_steps = []
    for k, t in enumerate(times):
        theirs.set_state(k, N, None)
        ours = guided("cfg", C, U, "eps", float(t), scale=w, interval=interval)
        torch.testing.assert_close(ours, theirs.forward(C, U).pred, **TOL)
        guided_steps.append(not torch.equal(ours, C))
    assert guided_steps == [first <= k < past for k in range(N)]  # the test can fail: both guide exactly these


@pytest.mark.parametrize("eta,r,beta", [(0.0, 0.0, 0.0), (0.3, 0.0, 0.0), (0.0, 2.0, 0.0), (0.5, 1.5, -0.5), (1.0, 0.0, 0.3)])
def test_apg_agrees_with_diffusers_adaptive_projected_guidance_over_steps(eta, r, beta):
    """Four steps of one draw, the momentum carried by both; x₀-predictions, so both act on x̂₀."""
    w, N = 5.0, 4
    ours_guidance = difftk.create("guidance", "apg", scale=w, eta=eta, norm_threshold=r, momentum=beta)
    theirs = AdaptiveProjectedGuidance(guidance_scale=w, eta=eta, adaptive_projected_guidance_rescale=r,
                                       adaptive_projected_guidance_momentum=beta or None, use_original_formulation=True)
    theirs.momentum_buffer = MomentumBuffer(beta) if beta else None  # what its prepare_inputs does at step 0
    x = torch.zeros((B, *SHAPE), dtype=torch.float64)
    for k in range(N):
        C, U = predictions(10 + k)
        wrapped = ours_guidance.wrap(Table(C, U, "x0"), SCHEDULE) if k == 0 else wrapped
        wrapped.inner = Table(C, U, "x0")  # the next step's predictions, through the same wrapper (its momentum)
        with torch.no_grad():
            ours = wrapped(x, torch.full((B,), 0.9 - 0.2 * k, dtype=torch.float64), cond=torch.arange(B))
        theirs.set_state(k, N, None)
        torch.testing.assert_close(ours, theirs.forward(C, U).pred, **TOL)


@pytest.mark.parametrize("w,zero_init", [(2.0, 0), (4.0, 1), (6.0, 2)])
def test_cfg_zero_star_agrees_with_diffusers_classifier_free_zero_star_guidance(w, zero_init):
    """Flow predictions (the velocity both act on), steps 0..3: zeroed while k < zero_init_steps."""
    N = 4
    ours_guidance = difftk.create("guidance", "cfg-zero-star", scale=w, zero_init_steps=zero_init)
    theirs = ClassifierFreeZeroStarGuidance(guidance_scale=w + 1, zero_init_steps=zero_init)
    x = torch.randn((B, *SHAPE), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for k in range(N):
        C, U = predictions(20 + k)
        wrapped = ours_guidance.wrap(Table(C, U, "flow"), SCHEDULE) if k == 0 else wrapped
        wrapped.inner = Table(C, U, "flow")
        with torch.no_grad():
            ours = wrapped(x, torch.full((B,), 0.9 - 0.2 * k, dtype=torch.float64), cond=torch.arange(B))
        theirs.set_state(k, N, None)
        torch.testing.assert_close(ours, theirs.forward(C, U).pred, **TOL)
        assert torch.equal(ours, torch.zeros_like(ours)) == (k < zero_init)


def test_the_agreement_can_fail():
    """A convention left unmapped shows: diffusers' APG default adds γ·update to pred_u, not the paper's form."""
    C, U = predictions(3)
    ours = guided("apg", C, U, "x0", 0.5, scale=4.0, eta=0.0)
    theirs = AdaptiveProjectedGuidance(guidance_scale=5.0, eta=0.0, adaptive_projected_guidance_rescale=0.0).forward(C, U).pred
    assert not torch.allclose(ours, theirs, atol=1e-3)
