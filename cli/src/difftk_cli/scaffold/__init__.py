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

KINDS = ("sampler", "schedule", "objective", "metric")
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

import attrs
import numpy as np
from difftk.options import option
from difftk.maths.grids import SPACINGS
from difftk.sampling.steps import AffineSteps, run_affine
from difftk.maths.schedules import alpha_bar_table
from difftk.maths.grids import time_grid


@attrs.frozen
class {cls}:
    """DDIM with η = 0, written as the affine plan x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂ (float64, before the loop)."""

    spacing: str = option("linspace", help="which grid times the steps visit", choices=SPACINGS)

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times = np.append(time_grid(schedule, steps, self.spacing), 0.0)
        ab = alpha_bar_table(schedule, times)
        ab_s = ab[1:]
        plan = AffineSteps(times=times, alpha_bars=ab, c_x0=np.sqrt(ab_s), c_xt=0.0, c_eps=np.sqrt(1 - ab_s), sigma=0.0)
        return run_affine(denoiser, x_T, plan, cond=cond, generator=generator, callback=callback)
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
from difftk.testing import GaussianOracle, check_objective, check_sampler, check_schedule  # noqa: F401


'''


def _names(name: str) -> dict[str, str]:
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
