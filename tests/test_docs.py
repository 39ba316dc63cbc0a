"""Docs that cannot drift: every hook, every Registrar method and every CLI command and option is
documented, with the signature the code has (as datasette's tests/test_docs.py does for its hooks)."""

import inspect
import re
from pathlib import Path

import pytest
from difftk.components import hookspecs
from difftk.components.registry import Registrar
from difftk_cli.main import cli

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOOKS = [getattr(hookspecs, name) for name in dir(hookspecs) if name.startswith("difftk_")]
REGISTRAR = [name for name, _ in inspect.getmembers(Registrar, inspect.isfunction) if not name.startswith("_")]


def cli_sections() -> dict[str, str]:
    """docs/cli.md split at its `## \\`difftk NAME …\\`` headings."""
    text = (DOCS / "cli.md").read_text()
    parts = re.split(r"^(## `difftk ([a-z-]+)[^`]*`)\s*$", text, flags=re.M)
    return {name: heading + body for heading, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)}


def test_there_are_hooks_to_document():
    assert {h.__name__ for h in HOOKS} == {"difftk_register_components", "difftk_check_pipeline", "difftk_load_model",
                                           "difftk_export"}


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.__name__)
def test_every_hook_has_a_heading_with_its_exact_signature(hook):
    heading = f"### `{hook.__name__}{inspect.signature(hook)}`"
    assert heading in (DOCS / "hooks.md").read_text().splitlines(), f"docs/hooks.md lacks the heading {heading}"


@pytest.mark.parametrize("name", REGISTRAR)
def test_every_registrar_method_is_documented_with_its_signature(name):
    sig = inspect.signature(getattr(Registrar, name))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    shown = f"`register.{name}({', '.join(str(p).split(':')[0].strip() + (' = ' + repr(p.default) if p.default is not p.empty else '') for p in params)})`"
    shown = shown.replace(" = ", "=")
    assert shown in (DOCS / "hooks.md").read_text(), f"docs/hooks.md lacks {shown}"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_a_section_naming_every_option(name):
    sections = cli_sections()
    assert name in sections, f"docs/cli.md has no section '## `difftk {name} …`'"
    text = sections[name]
    command = cli.commands[name]
    for param in command.params:
        if param.param_type_name == "option":
            spellings = [o for o in param.opts + param.secondary_opts if o != "--help"]
            assert any(re.search(re.escape(o) + r"(?![\w-])", text) for o in spellings), \
                f"docs/cli.md, difftk {name}: option {'/'.join(spellings)} is not documented"
        else:
            names = {param.human_readable_name.upper(), param.human_readable_name.upper().removesuffix("S")}
            assert any(n in text for n in names), f"docs/cli.md, difftk {name}: argument {param.name} missing"


def test_no_section_documents_a_command_that_does_not_exist():
    assert set(cli_sections()) <= set(cli.commands), set(cli_sections()) - set(cli.commands)


def test_the_group_options_are_documented():
    text = (DOCS / "cli.md").read_text()
    for param in cli.params:
        for opt in param.opts:
            assert opt in text, f"docs/cli.md does not mention the group option {opt}"
