"""Third-party plugins as real packages: built and installed from temporary directories, found through
their entry points, used by `difftk compose`, and — when broken — named and skipped."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIFFTK = str(Path(sys.executable).with_name("difftk"))
BROKEN = {
    # plugin module: what is wrong with it
    "broken_import": "import numpy_that_does_not_exist  # noqa: F401\n",
    "broken_hook": textwrap.dedent('''
        import difftk

        @difftk.hookimpl
        def difftk_register_components(register):
            raise RuntimeError("the plugin's own bug")
    '''),
    "broken_registration": textwrap.dedent('''
        import difftk

        class NotAttrs:
            pass

        @difftk.hookimpl
        def difftk_register_components(register):
            register.add_sampler("not-attrs", NotAttrs)
    '''),
}


def _package(root: Path, name: str, module_text: str) -> Path:
    pkg = root / name
    (pkg / "src" / name).mkdir(parents=True)
    (pkg / "src" / name / "__init__.py").write_text(module_text)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name.replace('_', '-')}"
        version = "0.0.1"
        [project.entry-points.difftk]
        {name} = "{name}"
        [tool.setuptools.packages.find]
        where = ["src"]
    '''))
    return pkg


#: one scaffolded plugin of every kind `difftk new-plugin` writes
SCAFFOLDS = {"snr-linear": "schedule", "my-sampler": "sampler", "my-loss": "objective", "my-net": "denoiser",
             "my-guidance": "guidance", "my-metric": "metric", "my-data": "dataset"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A directory with the example plugin, a scaffolded plugin of every kind and three broken ones installed
    into it by pip (one build each, from copies in a temporary directory)."""
    tmp = tmp_path_factory.mktemp("third_party")
    example = shutil.copytree(ROOT / "docs" / "example-plugin", tmp / "example-plugin")
    made = []
    for name, kind in SCAFFOLDS.items():
        out = tmp / f"difftk-{name}"
        result = subprocess.run([DIFFTK, "new-plugin", name, "--kind", kind, "-o", str(out)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        made.append(out)
    broken = [_package(tmp, name, text) for name, text in BROKEN.items()]
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(example), *map(str, made), *map(str, broken)],
                   check=True, capture_output=True)
    return {"target": target, "example": example, "made": made}


def difftk(site, *args, **env):
    environ = {**os.environ, "PYTHONPATH": str(site["target"]), **env}
    environ.pop("DIFFTK_STRICT_PLUGINS", None)
    return subprocess.run([DIFFTK, *args], capture_output=True, text=True, env=environ)


def test_installed_plugins_appear_and_broken_ones_are_named_with_the_reason(site):
    result = difftk(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["laplace_schedule"]["status"] == "loaded"
    assert rows["laplace_schedule"]["components"] == {"schedule": ["laplace"]}
    assert rows["laplace_schedule"]["distribution"] == "difftk-laplace-schedule"
    assert rows["laplace_schedule"]["version"] == "0.1.0"
    assert all(not row["conflicts"] for row in rows.values())  # no component name is claimed twice
    for name, kind in SCAFFOLDS.items():
        assert rows[name.replace("-", "_")]["components"] == {kind: [name]}
        assert rows[name.replace("-", "_")]["status"] == "loaded"
    assert rows["broken_import"]["status"] == "skipped" and "import failed: ModuleNotFoundError" in rows["broken_import"]["error"]
    assert rows["broken_hook"]["status"] == "skipped" and "the plugin's own bug" in rows["broken_hook"]["error"]
    assert rows["broken_registration"]["status"] == "skipped" and "NotAttrs" in rows["broken_registration"]["error"]
    assert all(rows[name]["status"] == "loaded" for name in ("ddpm", "ddim", "iddpm", "unet_attn", "cfg"))
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 3 and all(line.startswith("warning: plugin \"broken_") for line in warnings), result.stderr


def test_installed_components_work_in_compose_and_sample_shipped_models(site, tmp_path):
    result = difftk(site, "compose", "--schedule", "laplace", "--set", "schedule.b=1", "--sampler", "my-sampler",
                    "-o", str(tmp_path / "p.toml"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "p.toml").read_text()
    assert 'plugin = "laplace_schedule"' in text and 'plugin = "my_sampler"' in text and "b = 1.0" in text
    sample = difftk(site, "sample", "mnist-cfg", "--sampler", "my-sampler", "--steps", "3", "-n", "4", "-o", str(tmp_path / "d.png"))
    assert sample.returncode == 0, sample.stderr
    assert "sampler my-sampler" in sample.stdout


def test_strict_mode_fails_in_one_line_and_blocking_the_broken_plugins_makes_it_pass(site):
    strict = difftk(site, "--strict-plugins", "plugins")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    lines = [line for line in strict.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: plugin "broken_') and "strict mode" in lines[0]
    blocked = difftk(site, "--strict-plugins", "plugins", "--json", DIFFTK_BLOCK_PLUGINS=",".join(BROKEN))
    assert blocked.returncode == 0, blocked.stderr
    rows = {row["name"]: row["status"] for row in json.loads(blocked.stdout)}
    assert all(rows[name] == "blocked" for name in BROKEN) and rows["laplace_schedule"] == "loaded"


def test_load_plugins_switch_loads_only_the_named_ones(site):
    result = difftk(site, "plugins", "--json", DIFFTK_LOAD_PLUGINS="ddpm,laplace_schedule")
    rows = {row["name"]: row["status"] for row in json.loads(result.stdout)}
    assert {n for n, s in rows.items() if s == "loaded"} == {"ddpm", "laplace_schedule"}
    assert rows["broken_hook"] == "blocked" and result.stderr.strip() == ""


def test_the_example_plugin_and_the_scaffolds_pass_their_own_tests(site):
    environ = {**os.environ, "PYTHONPATH": str(site["target"]), "DIFFTK_BLOCK_PLUGINS": ",".join(BROKEN)}
    paths = [str(site["example"] / "tests"), *(str(m / "tests") for m in site["made"])]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
                            capture_output=True, text=True, env=environ, cwd=site["target"].parent)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]


def test_new_plugin_refuses_bad_names_and_existing_directories(tmp_path):
    bad = subprocess.run([DIFFTK, "new-plugin", "My_Sampler", "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "lower-case words joined by '-'" in bad.stderr and bad.stderr.count("\n") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    busy = subprocess.run([DIFFTK, "new-plugin", "ok-name", "-o", str(tmp_path / "full")], capture_output=True, text=True)
    assert busy.returncode == 2 and "exists and is not empty" in busy.stderr
