"""`difftk new-plugin`: the files of a working plugin package, one template set per component kind.

Each kind's skeleton is a small, correct component (not a stub) that passes the conformance kit,
so a new plugin starts green and is changed one property at a time.
"""

from __future__ import annotations

import keyword
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from difftk.errors import OptionError, OutputError

KINDS = ("sampler", "schedule", "objective", "denoiser", "guidance", "metric", "dataset")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "difftk-{name}"
version = "0.1.0"
description = "{summary}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["difftk-core>=0.1,<0.2", "numpy>=1.24", "torch>=2.2"]

[project.optional-dependencies]
test = ["pytest>=8", "hypothesis>=6.90"]

[project.entry-points.difftk]
{module} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
'''

PLUGIN = '''"""Entry point of {dist}: difftk finds this module through the `difftk` entry-point group."""

import difftk

from {package}.component import {cls}


@difftk.hookimpl
def difftk_register_components(register):
    register.add_{kind}("{name}", {cls})
'''

README = '''# {dist}

A difftk plugin that registers the {kind} `{name}`: {summary}.

```bash
pip install -e .                 # then:
difftk plugins                   # lists {module}: {kind} {name}
python -m pytest tests           # the conformance kit and this plugin's own properties
```
Change `src/{package}/component.py`; keep the tests green. The plugin-author guide of difftk
(`docs/plugin-authors.md`) explains the protocol, the options and the conformance kit.
'''

COMPONENTS = {
    "sampler": ("a deterministic DDIM-style sampler (Song et al. 2020, η = 0)", "Sampler", '''"""A deterministic first-order sampler: x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂ (DDIM with η = 0, Song et al. 2020, eq. 12)."""

import math
from typing import ClassVar

import attrs
import numpy as np
from difftk.maths.schedules import alpha_bar_table
from difftk.sampling.steps import GridSampler, StepInfo, batch_time, predict


@attrs.frozen
class {cls}(GridSampler):
    """DDIM with η = 0 on the core's time grid (the options ``spacing`` and ``times`` come from GridSampler).

    K steps visit the K grid times t_K > … > t_1; each goes to the next time of the grid, and the
    last returns x̂₀ at t_1 (ᾱ = 1 at t = 0 makes the update exactly x̂₀). One denoiser call per step,
    so GridSampler's nfe (one per grid time) is this sampler's.
    """

    #: steps when the caller gives none
    default_steps: ClassVar[int] = 50
    #: the global error falls as 1/K (the kit checks it against an exact oracle)
    convergence_order: ClassVar[int] = 1

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times = np.append(self.time_grid(schedule, steps), 0.0)
        alpha_bar = alpha_bar_table(schedule, times)  # float64, ᾱ(0) = 1
        K = len(times) - 1
        x = x_T
        for k in range(K):
            pred = predict(denoiser, x, batch_time(times[k], x), float(alpha_bar[k]), cond)
            ab_next = float(alpha_bar[k + 1])
            x = math.sqrt(ab_next) * pred.x0 + math.sqrt(1.0 - ab_next) * pred.eps  # eq. 12, σ = 0
            if callback is not None:
                callback(StepInfo(index=k, total=K, t=float(times[k]), t_next=float(times[k + 1]), x=x, x0=pred.x0))
        return x
'''),
    "schedule": ("a schedule linear in log-SNR (Kingma et al. 2021)", "Schedule", '''"""A noise schedule whose log-SNR λ(t) = log(ᾱ/(1−ᾱ)) falls linearly in t (Kingma et al. 2021, §3)."""

import attrs
import torch
from difftk.options import option
from difftk.maths.schedules import ContinuousSchedule


@attrs.frozen
class {cls}(ContinuousSchedule):
    """λ(t) = λ_max + (λ_min − λ_max)·t, ᾱ(t) = sigmoid(λ(t)): continuous, closed form."""

    logsnr_max: float = option(10.0, help="λ at t = 0 (signal-to-noise of the data end)", gt=-30.0, lt=30.0)
    logsnr_min: float = option(-10.0, help="λ at t = 1 (signal-to-noise of the noise end)", gt=-30.0, lt=30.0)

    def __attrs_post_init__(self):
        if self.logsnr_min >= self.logsnr_max:
            from difftk.options import option_error

            raise option_error(self, f"logsnr_min={{self.logsnr_min}} must be below logsnr_max={{self.logsnr_max}}")

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        lam = self.logsnr_max + (self.logsnr_min - self.logsnr_max) * t.to(torch.float64)
        return torch.sigmoid(lam).to(t.dtype)
'''),
    "objective": ("ε-prediction loss with min-SNR-γ weighting (Hang et al. 2023)", "Loss", '''"""L = min(SNR(t), γ)/SNR(t)·‖ε − ε̂‖²: L_simple with the min-SNR-γ weighting (Hang et al. 2023, eq. 9)."""

import attrs
import torch
from difftk.maths.diffusion import q_sample
from difftk.maths.objectives import mean_flat, sample_times
from difftk.options import option
from difftk.sampling.steps import predict


@attrs.frozen
class {cls}:
    """Min-SNR-γ weighted ε-MSE; γ = ∞ is L_simple (Ho et al. 2020)."""

    gamma: float = option(5.0, help="clip of the signal-to-noise ratio in the weight", gt=0.0)

    def loss(self, denoiser, schedule, x0, cond=None, generator=None):
        t = sample_times(schedule, x0.shape[0], generator, x0.device)
        alpha_bar = schedule.alpha_bar(t.to(torch.float64))
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = q_sample(x0, alpha_bar.to(x0.dtype), eps)
        eps_hat = predict(denoiser, x_t, t.to(x0.dtype), alpha_bar.to(x0.dtype), cond).eps
        snr = alpha_bar / (1 - alpha_bar)
        weight = (snr.clamp(max=self.gamma) / snr).to(x0.dtype)
        return weight * mean_flat((eps - eps_hat) ** 2)
'''),
    "denoiser": ("a small convolutional ε-network with time and class embeddings", "Net", '''"""A small convolutional denoiser: two 3×3 convolutions with the time (and class) embedding added
between them, predicting ε (Ho et al. 2020) or what ``prediction`` says."""

import math

import attrs
import torch
from difftk.maths.diffusion import PREDICTIONS
from difftk.options import option
from torch import nn


@attrs.frozen
class {cls}Config:
    """The network's options. ``difftk train`` fills in_channels, image_size and num_classes from
    the data when the pipeline does not set them."""

    in_channels: int = option(1, help="channels of the images (filled from the data by difftk train)", ge=1)
    image_size: int = option(28, help="side of the square images (filled from the data by difftk train)", ge=1)
    num_classes: int = option(0, help="classes to condition on, 0 = unconditional (filled from the data)", ge=0)
    width: int = option(32, help="channels of the hidden layers", ge=1, le=4096)
    prediction: str = option("eps", help="what the network predicts", choices=PREDICTIONS)


class {cls}(nn.Module):
    """conv3×3 → + embed(t, y) → SiLU → conv3×3 → SiLU → conv3×3; t enters as sinusoidal features."""

    Config = {cls}Config

    def __init__(self, config: {cls}Config | None = None, **options) -> None:
        super().__init__()
        config = config if config is not None else {cls}Config(**options)
        self.config = config
        self.prediction = config.prediction
        self.num_classes = config.num_classes
        self.learned_variance = False
        w = config.width
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.label = nn.Embedding(config.num_classes + 1, w) if config.num_classes else None  # + 1: cfg's null class
        self.conv_in = nn.Conv2d(config.in_channels, w, 3, padding=1)
        self.conv_mid = nn.Conv2d(w, w, 3, padding=1)
        self.conv_out = nn.Conv2d(w, config.in_channels, 3, padding=1)

    def features(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of t ∈ [0, 1] (Vaswani et al. 2017), t scaled by 1000 as DDPM's step index."""
        half = self.config.width // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half, 1))
        angles = 1000 * t.float()[:, None] * freqs[None]
        out = torch.cat([angles.sin(), angles.cos()], dim=1)
        return nn.functional.pad(out, (0, self.config.width - out.shape[1]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(self.features(t))
        if self.label is not None and cond is not None:
            emb = emb + self.label(cond)
        h = nn.functional.silu(self.conv_in(x) + emb[:, :, None, None].to(x.dtype))
        h = nn.functional.silu(self.conv_mid(h))
        return self.conv_out(h)
'''),
    "guidance": ("classifier-free guidance applied in an interval of times (Kynkäänniemi et al. 2024)", "Guidance", '''"""Classifier-free guidance limited to an interval of times (Kynkäänniemi et al. 2024, eq. 3):
(1+w)·out(x_t, c) − w·out(x_t, ∅) for t in [t_low, t_high], the conditional output elsewhere."""

import attrs
import torch
from difftk.components.protocols import num_classes_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.errors import IncompatibleError, OptionError
from difftk.options import option


@attrs.frozen
class {cls}:
    """Guidance of weight w only where it helps: not at the start (it collapses diversity) nor at the
    end (it does nothing there). The model must know the null class ∅ = num_classes (cfg's label
    dropout in training: compose with --guidance cfg)."""

    scale: float = option(2.0, help="guidance weight w ≥ 0 inside the interval", ge=0.0, le=1000.0)
    t_low: float = option(0.2, help="guidance starts below this time ...", ge=0.0, le=1.0)
    t_high: float = option(0.8, help="... and stops above this one", ge=0.0, le=1.0)

    def __attrs_post_init__(self):
        if self.t_low > self.t_high:
            raise OptionError(f"t_low={{self.t_low}} must not exceed t_high={{self.t_high}}")

    def wrap(self, denoiser, schedule):
        if num_classes_of(denoiser) <= 0:
            raise IncompatibleError("this guidance needs a class-conditional denoiser trained with label dropout")
        return {cls}Denoiser(denoiser, self)


class {cls}Denoiser(DenoiserWrapper):
    """The wrapped denoiser, guided inside [t_low, t_high]; DenoiserWrapper carries its attributes
    and keeps a learned variance's channels."""

    def __init__(self, inner, options: {cls}) -> None:
        super().__init__(inner)
        self.options = options

    def transform(self, x_t, t, cond=None):
        pred_c, var_c = self.inner_output(x_t, t, cond)
        if cond is None or self.options.scale == 0.0:
            return pred_c, var_c
        pred_u, _ = self.inner_output(x_t, t, torch.full_like(cond, self.num_classes))
        inside = ((t >= self.options.t_low) & (t <= self.options.t_high)).to(pred_c.dtype)
        w = self.options.scale * inside.view(-1, *([1] * (pred_c.ndim - 1)))
        return pred_c + w * (pred_c - pred_u), var_c
'''),
    "dataset": ("a 2-D checkerboard of points (Grathwohl et al. 2019)", "Data", '''"""Points spread uniformly over the dark squares of a 4×4 checkerboard on [−2, 2]² (Grathwohl et al.
2019, FFJORD), a density with sharp edges that toy models find hard."""

import attrs
import torch
from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError
from difftk.options import option


@attrs.frozen
class {cls}:
    """n points per split, seeded: the train and test splits are independent draws."""

    n: int = option(4000, help="points per split", ge=1, le=10_000_000)
    seed: int = option(0, help="seed of the draw (the test split uses seed + 1)", ge=0)

    def load(self, split: str = "train") -> ArrayDataset:
        if split not in ("train", "test"):
            raise DifftkError(f"checkerboard: unknown split {{split!r}} (splits: train, test)")
        g = torch.Generator().manual_seed(self.seed + (split == "test"))
        cell = torch.randint(0, 8, (self.n,), generator=g)  # one of the 8 dark squares
        row = cell // 2
        col = 2 * (cell % 2) + row % 2  # dark where row + col is even
        xy = torch.stack([col, row], dim=1).float() + torch.rand(self.n, 2, generator=g)
        return ArrayDataset(data=xy - 2.0, name="checkerboard")
'''),
    "metric": ("the error of the samples' mean and standard deviation against held-out data", "Metric", '''"""How far the samples' per-dimension mean and standard deviation are from the held-out data's."""

import attrs
import torch
from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.options import option


@attrs.frozen
class {cls}:
    """‖mean(samples) − mean(data)‖ + ‖std(samples) − std(data)‖ over dimensions (RMS), in data units."""

    n: int = option(500, help="samples generated", ge=2)

    def evaluate(self, context: EvalContext) -> MetricResult:
        if context.data is None:
            raise DifftkError("metric needs the held-out data, but the checkpoint's dataset cannot be loaded")
        real = context.data.batch(torch.arange(len(context.data)))[0].flatten(1).double()
        fake = context.samples(self.n, context.balanced_labels(self.n)).flatten(1).double()
        rms = lambda v: float(v.square().mean().sqrt())  # noqa: E731
        value = rms(fake.mean(0) - real.mean(0)) + rms(fake.std(0) - real.std(0))
        return MetricResult(name="moment-error", value=value, spread=float("nan"), n=self.n, spread_kind="none")
'''),
}

TESTS = {
    "sampler": '''def test_conforms():
    check_sampler(difftk.create("sampler", "{name}"))


def test_gaussian_data_comes_out_right():
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=1.0, std=0.5, shape=(2,))
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = difftk.create("sampler", "{name}").sample(oracle, schedule, x_T, steps=100)
    assert torch.allclose(x.mean(0), torch.full((2,), 1.0, dtype=torch.float64), atol=0.03)
    assert torch.allclose(x.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.03)
''',
    "schedule": '''def test_conforms():
    check_schedule(difftk.create("schedule", "{name}"))


def test_log_snr_is_linear_in_t():
    s = difftk.create("schedule", "{name}")
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    ab = s.alpha_bar(t)
    lam = torch.log(ab) - torch.log1p(-ab)
    assert torch.allclose(lam, 10.0 - 20.0 * t, atol=1e-9)
''',
    "objective": '''def test_conforms():
    check_objective(difftk.create("objective", "{name}"))


def test_a_huge_gamma_is_l_simple():
    schedule = difftk.create("schedule", "linear")
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    oracle = GaussianOracle(schedule, mean=0.0, std=1.0, shape=(2,))
    mine = difftk.create("objective", "{name}", gamma=1e12).loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    simple = difftk.create("objective", "simple").loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(mine, simple, rtol=1e-5)
''',
    "denoiser": '''def test_conforms_unconditional_and_conditional():
    check_denoiser(difftk.create("denoiser", "{name}", in_channels=1, image_size=8), (2, 1, 8, 8))
    check_denoiser(difftk.create("denoiser", "{name}", in_channels=3, image_size=16, num_classes=10), (2, 3, 16, 16))


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    net = difftk.create("denoiser", "{name}", in_channels=3, image_size=8, width=16)
    schedule, objective = difftk.create("schedule", "linear"), difftk.create("objective", "simple")
    x0 = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss():
        return objective.loss(net, schedule, x0, generator=torch.Generator().manual_seed(2)).mean()

    first = float(loss())
    for _ in range(40):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss()) < 0.8 * first
''',
    "guidance": '''def oracle():
    schedule = difftk.create("schedule", "linear")
    return schedule, GaussianMixtureOracle(schedule, torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), stds=0.3)


def test_conforms():
    schedule, model = oracle()
    check_guidance(difftk.create("guidance", "{name}"), schedule, denoiser=model)


def test_guides_inside_the_interval_only():
    schedule, model = oracle()
    guided = difftk.create("guidance", "{name}", scale=2.0, t_low=0.3, t_high=0.6).wrap(model, schedule)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    null = torch.full_like(y, 2)
    for t_value, inside in ((0.1, False), (0.45, True), (0.9, False)):
        t = torch.full((4,), t_value, dtype=torch.float64)
        c, u = model(x, t, cond=y), model(x, t, cond=null)
        expected = c + 2.0 * (c - u) if inside else c
        torch.testing.assert_close(guided(x, t, cond=y), expected)
''',
    "dataset": '''def test_points_lie_on_the_dark_squares_and_the_splits_differ():
    data = difftk.create("dataset", "{name}", n=2000).load("train")
    assert data.kind == "points" and data.shape == (2,) and len(data) == 2000
    x = data.batch(torch.arange(len(data)))[0]
    assert x.min() >= -2 and x.max() <= 2
    cells = torch.floor(x + 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    test = difftk.create("dataset", "{name}", n=2000).load("test").batch(torch.arange(2000))[0]
    assert not torch.equal(x, test)
''',
    "metric": '''def test_is_small_for_the_exact_model_and_grows_with_a_shift():
    from difftk.data.arrays import ArrayDataset
    from difftk.evaluation.context import EvalContext
    from difftk.model import Model

    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=1.0, std=0.5, shape=(2,))
    oracle.num_classes = 0
    pipeline = difftk.compose(schedule=schedule, sampler="ddim")

    def value(shift):
        data = ArrayDataset((oracle.sample(2000, generator=torch.Generator().manual_seed(3)) + shift).float())
        context = EvalContext(model=Model(pipeline, oracle, data), data=data, steps=50)
        return difftk.create("metric", "{name}", n=1000).evaluate(context).value

    assert value(0.0) < 0.1 < value(1.0)
''',
}

TEST_HEADER = '''"""Tests of the {kind} `{name}`: the conformance kit, then its own properties."""

import difftk
import torch
from difftk.testing import (  # noqa: F401
    GaussianMixtureOracle,
    GaussianOracle,
    check_denoiser,
    check_guidance,
    check_objective,
    check_sampler,
    check_schedule,
)


'''


#: the longest plugin name: its package and distribution folders must fit a file name (255 bytes)
NAME_MAX = 64


def _names(name: str) -> dict[str, str]:
    if len(name) > NAME_MAX:
        raise OptionError(f"plugin name {name[:20]!r}… is {len(name)} characters: give at most {NAME_MAX}")
    if not NAME.match(name):
        raise OptionError(f"plugin name {name!r} must be lower-case words joined by '-', e.g. my-sampler")
    module = name.replace("-", "_")
    if keyword.iskeyword(module):
        raise OptionError(f"plugin name {name!r} is a Python keyword: choose another")
    return {"name": name, "module": module, "package": f"difftk_{module}", "dist": f"difftk-{name}",
            "cls": "".join(part.capitalize() for part in name.split("-"))}


def check_name_free(name: str, kind: str) -> None:
    """Refuse a plugin name whose distribution is installed or whose component name is taken:
    installing the scaffold would replace that plugin, or the two would withdraw each other's name."""
    names = _names(name)
    try:
        metadata.distribution(names["dist"])
    except metadata.PackageNotFoundError:
        pass
    else:
        raise OptionError(f"{name!r}: the distribution {names['dist']} is already installed; installing a new plugin of "
                          "that name would replace it: choose another NAME")
    from difftk.components import plugins

    if name in plugins.registry().names(kind):
        raise OptionError(f"{name!r}: a {kind} of that name is already registered (`difftk plugins`); two plugins "
                          "claiming one name both lose it: choose another NAME")


def scaffold(name: str, kind: str, out: Path) -> list[Path]:
    """Write the package of plugin ``name`` registering one ``kind`` component into ``out``; return the files.

    The files are written into a temporary directory beside ``out`` and moved into place at the
    end, so a full or read-only disk leaves no half-written package.
    """
    if kind not in KINDS:
        raise OptionError(f"--kind {kind!r}: new-plugin writes one of {', '.join(KINDS)}")
    names = _names(name)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out} is a file: give -o a directory to write the package into")
    if out.exists() and any(out.iterdir()):
        raise OptionError(f"{out} exists and is not empty: choose another -o DIR or remove it")
    check_name_free(name, kind)
    summary, suffix, component = COMPONENTS[kind]
    fields = {**names, "kind": kind, "summary": summary, "cls": names["cls"] + suffix}
    relative = {
        Path("pyproject.toml"): PYPROJECT.format(**fields),
        Path("README.md"): README.format(**fields),
        Path("src", names["package"], "__init__.py"): f'"""{names["dist"]}: {summary}."""\n',
        Path("src", names["package"], "plugin.py"): PLUGIN.format(**fields),
        Path("src", names["package"], "component.py"): component.format(**fields),
        Path("tests", f"test_{names['module']}.py"): TEST_HEADER.format(**fields) + TESTS[kind].format(**fields),
    }
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        for path, text in relative.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except OSError as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write the package to {out}: {err.strerror or err} (nothing was left behind)") from None
    return [out / path for path in relative]
