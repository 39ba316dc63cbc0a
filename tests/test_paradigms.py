"""The training paradigms as interchangeable parts: flow matching, EDM, v with zero terminal SNR
and min-SNR weighting, held to exact oracles through every sampler, to their objectives'
minimisers, and end to end through compose, train and sample with cfg."""

import difftk
import pytest
import torch
from difftk.sampling.draw import generate
from difftk.testing.oracles import GaussianOracle
from difftk_cli.testing import run
from hypothesis import given, settings
from hypothesis import strategies as st

SAMPLERS = difftk.available("sampler")

#: (schedule, its options, the oracle's prediction): each paradigm as the model it trains
PARADIGMS = {
    "flow-matching": ("flow", {}, "flow"),
    "edm": ("edm", {}, "edm"),
    "v + zero terminal SNR": ("linear", {"zero_terminal_snr": True}, "v"),
    "cosine + zero terminal SNR": ("cosine", {"zero_terminal_snr": True}, "v"),
    "ε + zero terminal SNR (continuous)": ("vp", {"zero_terminal_snr": True}, "eps"),
}


def oracle_of(paradigm, mean=0.5, std=0.3, shape=(2,)):
    name, options, prediction = PARADIGMS[paradigm]
    schedule = difftk.create("schedule", name, **options)
    oracle = GaussianOracle(schedule, mean=mean, std=std, shape=shape, prediction=prediction)
    oracle.num_classes = 0
    return schedule, oracle


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_every_sampler_reproduces_the_data_moments_from_every_paradigms_exact_model(paradigm, sampler):
    """Data N(0.5, 0.3²): 2,000 values drawn with 100 steps (250 for the first-order ancestral
    samplers) have mean 0.5 ± 0.025 and standard deviation 0.3 ± 0.03 (a few standard errors plus
    the samplers' discretisation error: ancestral sampling from zero terminal SNR gives 0.267 at
    100 steps, 0.295 at 300)."""
    schedule, oracle = oracle_of(paradigm)
    steps = 250 if sampler in ("ancestral", "respaced") else 100
    x = generate(oracle, schedule, difftk.create("sampler", sampler), (2,), 1000, steps=steps, seed=0)
    assert torch.isfinite(x).all()
    assert abs(float(x.mean()) - 0.5) < 0.025, float(x.mean())
    assert abs(float(x.std()) - 0.3) < 0.03, float(x.std())


@pytest.mark.parametrize("schedule", ["linear", "cosine", "flow", "edm"])
def test_flow_euler_is_ddim_on_the_same_grid(schedule):
    """Euler on the straight path through x̂₀ and ε̂ lands where DDIM (η = 0) does, to 1e-12, on any schedule."""
    sch = difftk.create("schedule", schedule)
    oracle = GaussianOracle(sch, mean=0.2, std=0.7, shape=(3,), prediction="v")
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flow = difftk.create("sampler", "flow-euler", spacing="linspace")
    times = tuple(float(t) for t in flow.time_grid(difftk.maths.terminal.for_sampling(sch), 12))
    floor = difftk.maths.terminal.for_sampling(sch)
    a = flow.sample(oracle, floor, x_T, steps=12)
    b = difftk.create("sampler", "ddim", times=times).sample(oracle, floor, x_T)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_flow_euler_on_the_flow_schedule_walks_evenly_in_tau():
    sch = difftk.create("schedule", "flow")
    grid = difftk.create("sampler", "flow-euler").time_grid(sch, 4)
    torch.testing.assert_close(torch.from_numpy(grid), torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64))
    shifted = difftk.create("sampler", "flow-euler", shift=3.0).time_grid(sch, 4)
    assert shifted[0] == 1.0 and all(shifted[1:] > grid[1:])  # moved towards noise


OBJECTIVES = [
    ("simple", {}), ("simple", {"weighting": "min-snr"}), ("simple", {"weighting": "min-snr", "target": "eps"}),
    ("flow-matching", {}), ("flow-matching", {"time_sampling": "uniform", "weighting": "min-snr"}), ("edm", {}),
]


class Perturbed(torch.nn.Module):
    """The oracle's output plus δ·sin(x + 3t): a smooth function of (x_t, t), not of the noise drawn."""

    def __init__(self, oracle, delta):
        super().__init__()
        self.oracle, self.delta, self.prediction, self.learned_variance = oracle, delta, oracle.prediction, False

    def forward(self, x, t, cond=None):
        return self.oracle(x, t) + self.delta * torch.sin(x + 3 * t[:, None])


@settings(max_examples=24, deadline=None)
@given(st.sampled_from(OBJECTIVES), st.sampled_from(["linear", "cosine", "flow", "edm"]),
       st.sampled_from(difftk.maths.diffusion.PREDICTIONS), st.floats(0.3, 1.0), st.sampled_from([-1.0, 1.0]))
def test_the_exact_model_minimises_every_objective_and_weighting(objective, schedule, prediction, size, sign):
    """E[loss] at the exact denoiser is below E[loss] at the same denoiser moved by ±δ·sin(x + 3t),
    with the same data, times and noise (common random numbers, 8,192 examples) — the objective's
    minimiser is the exact model, whatever the prediction type and the weighting."""
    if prediction == "eps" and schedule == "flow":
        prediction = "v"  # an ε-model cannot say x₀ at the flow path's pure noise
    name, options = objective
    loss = difftk.create("objective", name, **options)
    sch = difftk.create("schedule", schedule)
    oracle = GaussianOracle(sch, mean=0.3, std=0.5, shape=(2,), prediction=prediction)
    data = oracle.sample(8192, generator=torch.Generator().manual_seed(1))

    def expected(net):
        return float(loss.loss(net, sch, data, generator=torch.Generator().manual_seed(2)).mean())

    assert expected(oracle) < expected(Perturbed(oracle, sign * size))


@pytest.mark.parametrize("paradigm", [
    ("flow", "flow-matching", "flow", "flow-euler"),
    ("edm", "edm", "edm", "heun"),
    ("linear", "simple", "v", "ddim"),
])
def test_each_paradigm_trains_and_samples_end_to_end_with_cfg(paradigm, tmp_path, monkeypatch):
    schedule, objective, prediction, sampler = paradigm
    monkeypatch.chdir(tmp_path)
    sets = ["denoiser.base_channels=8", "denoiser.norm_groups=4", "denoiser.channel_mult=1,2",
            "denoiser.attention_resolutions=14", f"denoiser.prediction={prediction}"]
    if schedule == "linear":
        sets += ["schedule.zero_terminal_snr=true", "objective.weighting=min-snr"]
    args = ["compose", "--schedule", schedule, "--sampler", sampler, "--guidance", "cfg", "--denoiser", "unet-attn",
            "--objective", objective, *[a for s in sets for a in ("--set", s)], "-o", "p.toml"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    result = run("train", "p.toml", "--data", "mnist", "--steps", 3, "--batch-size", 4, "--out", "run",
                 "--sample-every", 0)
    assert result.exit_code == 0, result.output
    result = run("sample", "run", "-n", 4, "-o", "x.png", "--steps", 3, "--scale", 2.0, "--label", 3)
    assert result.exit_code == 0, result.output
    assert "wrote x.png: 4 samples" in result.stdout


@pytest.mark.parametrize("name", difftk.available("schedule"))
def test_every_schedule_takes_zero_terminal_snr(name):
    """Lin et al. 2024 on any registered schedule: ᾱ(1) = 0, ᾱ near t = 0 kept, and the result is a
    valid schedule (the conformance kit), which every sampler then samples through its floor."""
    from difftk.testing.conformance import check_schedule

    schedule = difftk.create("schedule", name, zero_terminal_snr=True)
    check_schedule(schedule)
    ends = schedule.alpha_bar(torch.tensor([0.0, 1.0], dtype=torch.float64))
    plain = difftk.create("schedule", name).alpha_bar(torch.tensor([0.0], dtype=torch.float64))
    assert float(ends[1]) == 0.0 and float(ends[0]) == pytest.approx(float(plain[0]), rel=1e-12)
