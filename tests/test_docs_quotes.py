"""What the docs quote is held to the code: module paths import, option defaults written in the
component tables equal the code's, and the lists of samplers, spacings, metrics and hooks are
complete."""

import importlib
import re
from pathlib import Path

import attrs
import difftk
import pytest
from difftk.components import hookspecs, plugins
from difftk.maths.grids import SPACINGS

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "docs" / "example-plugin" / "README.md"]
DOTTED = re.compile(r"`(difftk(?:_[a-z_]+)?(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def resolves(path: str) -> bool:
    """Whether ``a.b.c`` is a module, or an attribute chain from the longest importable module prefix."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def quoted_paths():
    for page in PAGES:
        for match in DOTTED.finditer(page.read_text()):
            path = match.group(1).rstrip(".")
            if not path.endswith((".py", ".md", ".toml", ".json", ".safetensors", ".npz", ".png")):
                yield page.relative_to(ROOT).as_posix(), path


@pytest.mark.parametrize(("page", "path"), sorted(set(quoted_paths())))
def test_every_quoted_module_path_resolves(page, path):
    assert resolves(path), f"{page} quotes `{path}`, which does not import"


# --- option defaults in the component tables ----------------------------------------------------

ROW = re.compile(r"^\| (schedule|sampler|objective|guidance|metric|dataset) \| `([a-z0-9-]+)` \|(.*)\|\s*$", re.M)
OPTION = re.compile(r"`([a-z_A-Z][a-zA-Z0-9_]*)` \(([^)]*)\)")


def _value(text: str):
    """The first value of a parenthesis as written in the docs: ``(`karras`)``, ``(1e-3)``, ``(true: …)``."""
    first = re.split(r"[:;,]| or | —", text)[0].strip().strip("`").replace("−", "-").replace(" ", "")
    if first in ("none", "true", "false"):
        return {"none": None, "true": True, "false": False}[first]
    try:
        return float(first)
    except ValueError:
        return first


def quoted_defaults():
    for page in PAGES:
        for kind, name, rest in ROW.findall(page.read_text()):
            for option, text in OPTION.findall(rest):
                yield page.relative_to(ROOT).as_posix(), kind, name, option, _value(text)


@pytest.mark.parametrize(("page", "kind", "name", "option", "value"), sorted(set(quoted_defaults()), key=str))
def test_every_default_a_table_quotes_is_the_codes(page, kind, name, option, value):
    if name not in difftk.available(kind):  # the example plugin: installed and tested by tests/test_third_party.py
        assert page == "docs/example-plugin/README.md", f"{page} documents {kind} '{name}', which nothing registers"
        return
    fields = plugins.registry().get(kind, name).option_fields()
    assert option in fields, f"{page}: {kind} '{name}' has no option {option}"
    default = fields[option].default
    default = None if default is attrs.NOTHING else default
    if isinstance(default, tuple):
        return
    if isinstance(value, float) and not isinstance(default, bool) and default is not None:
        assert float(default) == pytest.approx(value, rel=1e-9), f"{page}: {kind} '{name}' {option} is {default}, not {value}"
    else:
        assert default == value, f"{page}: {kind} '{name}' {option} is {default!r}, not {value!r}"


def test_the_tables_quote_defaults_at_all():
    assert len(set(quoted_defaults())) >= 30


# --- lists that must be complete ----------------------------------------------------------------

def test_every_sampler_is_named_where_the_docs_list_them():
    for page in ("docs/guidance.md", "README.md"):
        text = (ROOT / page).read_text()
        missing = [s for s in difftk.available("sampler") if f"`{s}`" not in text and s not in text]
        assert not missing, f"{page} does not name the samplers {missing}"


def test_every_spacing_is_named_where_the_docs_list_them():
    for page in ("docs/cli.md", "docs/architecture.md", "docs/plugin-authors.md"):
        text = (ROOT / page).read_text()
        assert all(s in text for s in SPACINGS), (page, [s for s in SPACINGS if s not in text])


def test_every_metric_is_named_in_the_readme_and_the_metrics_page():
    for page in ("README.md", "docs/metrics.md"):
        text = (ROOT / page).read_text()
        missing = [m for m in difftk.available("metric") if f"`{m}`" not in text]
        assert not missing, f"{page} does not name the metrics {missing}"


def test_every_hook_is_named_in_the_guide_and_its_count_is_right():
    hooks = [n for n in dir(hookspecs) if n.startswith("difftk_")]
    text = (ROOT / "docs" / "plugin-authors.md").read_text()
    assert all(h in text for h in hooks)
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    assert f"The {words[len(hooks)]} hooks" in text


def test_the_default_steps_cli_md_quotes_are_the_samplers():
    text = (ROOT / "docs" / "cli.md").read_text()
    sentence = re.search(r"`difftk plugins` shows it: ([^)]*)\)", text).group(1)
    for names, steps in re.findall(r"([a-z0-9-]+(?: and [a-z0-9-]+)?) (\d+)", sentence):
        for name in names.split(" and "):
            assert plugins.registry().get("sampler", name).cls.default_steps == int(steps), (name, steps)
