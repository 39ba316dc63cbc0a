"""docs/plugin-authors.md runs: its files are written into a package, the plugin is registered
through the module its pyproject names, and the guide's own tests are run against it."""

import importlib
import re
import sys
import tomllib
from pathlib import Path

import difftk
import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugin-authors.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def files():
    """{path: text} of every code block that starts with a ``# path`` comment."""
    out = {}
    for language, text in BLOCK.findall(GUIDE.read_text()):
        first = text.splitlines()[0]
        if language in ("python", "toml") and first.startswith("# ") and first[2:].strip().endswith((".py", ".toml")):
            out[first[2:].strip()] = text
    return out


def test_every_code_block_of_the_guide_is_a_file_of_the_package():
    blocks = [b for b in BLOCK.findall(GUIDE.read_text()) if b[0] in ("python", "toml")]
    assert len(blocks) == len(files()) == 4


@pytest.fixture
def guide_plugin(tmp_path, register_plugin, monkeypatch):
    written = files()
    package = tmp_path / "src"
    for path, text in written.items():
        target = (tmp_path / path) if path.startswith(("tests/", "pyproject")) else package / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    entry = tomllib.loads(written["pyproject.toml"])["project"]["entry-points"]["difftk"]
    (name, module), = entry.items()
    monkeypatch.syspath_prepend(str(package))
    for loaded in [m for m in sys.modules if m.startswith(module.split(".")[0])]:
        del sys.modules[loaded]
    assert register_plugin(importlib.import_module(module), name)
    return tmp_path


def test_the_guides_plugin_registers_samples_and_passes_its_own_tests(guide_plugin):
    assert "x-zero" in difftk.available("sampler")
    model = difftk.load("mnist-cfg")
    x = model.sample(4, sampler="x-zero", steps=5, eta=0.5)
    assert x.shape == (4, 1, 28, 28) and x.isfinite().all()
    namespace: dict = {}
    exec(compile((guide_plugin / "tests" / "test_x_zero.py").read_text(), "test_x_zero.py", "exec"), namespace)
    tests = [f for n, f in namespace.items() if n.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()
