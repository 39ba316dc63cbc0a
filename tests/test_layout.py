"""The layout shows the architecture: the core's floors import only downward, every subpackage says
what it holds, modules stay small, the CLI's commands do not import each other, and plugins depend
on the core only."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core" / "src" / "difftk"

#: the floors of docs/architecture.md, bottom up; a module may import its own floor and those below
FLOORS: dict[str, int] = {
    "difftk.errors": 0, "difftk.options": 0, "difftk.version": 0,
    "difftk.maths": 1,
    "difftk.runtime": 2,
    "difftk.components": 3,
    "difftk.pipeline": 4,
    "difftk.data": 5,
    "difftk.checkpoint": 6,
    "difftk.sampling": 7,
    "difftk.model": 8,
    "difftk.training": 9, "difftk.evaluation": 9,
    "difftk": 10,  # the package itself: the public surface
    "difftk.testing": 11,  # the kit for plugin authors, on top of the public surface
}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    best = max((name for name in FLOORS if module == name or module.startswith(name + ".")), key=len)
    return FLOORS[best]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a difftk module in ``path``, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "difftk" else [f"difftk.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n == "difftk" or n.startswith("difftk.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name == "difftk" or a.name.startswith("difftk.")]
    return found


CORE_MODULES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: module_name(p))
def test_core_modules_import_only_their_floor_and_below(path):
    me = module_name(path)
    mine = floor_of(me)
    upward = [f"line {line}: {name} (floor {floor_of(name)})" for line, name in imports(path)
              if name in FLOORS or any(name.startswith(f + ".") for f in FLOORS)
              if floor_of(name) > mine and not name.startswith("difftk.testing")]
    assert not upward, f"{me} (floor {mine}) imports from above: {upward}"


def test_every_core_module_is_on_a_floor():
    """Each module is named in FLOORS itself or through its subpackage: the package's own floor
    (10, the public surface) is no fallback for a module nobody placed."""
    for path in CORE_MODULES:
        name = module_name(path)
        placed = name in FLOORS or any(name.startswith(f + ".") for f in FLOORS if f != "difftk")
        assert placed, f"{name} is on no floor of docs/architecture.md: add it (or its subpackage) to FLOORS"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: module_name(p))
def test_modules_are_small_and_say_what_they_hold(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 320, f"{module_name(path)} has {len(text.splitlines())} lines"
    assert ast.get_docstring(ast.parse(text)), f"{module_name(path)} has no docstring"


def test_commands_do_not_import_each_other():
    commands = REPO / "cli" / "src" / "difftk_cli" / "commands"
    for path in commands.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("difftk_cli.commands"), f"{path.name} imports {node.module}"


def test_the_cli_holds_no_algorithm():
    """No CLI module imports a plugin or torch.nn, or defines a network: it parses, calls the core
    (whose maths it may call, as `difftk schedules` calls log_snr), and prints."""
    for path in sorted((REPO / "cli" / "src" / "difftk_cli").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not (name.startswith("difftk_") and not name.startswith("difftk_cli")), f"{path.name} imports {name}"
                assert not name.startswith("torch.nn"), f"{path.name} imports {name}"
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not any("Module" in b for b in bases), f"{path.name} defines a network: {node.name}"


def test_plugins_depend_on_the_core_only():
    for plugin in sorted((REPO / "plugins").iterdir()):
        src = plugin / "src"
        if not src.is_dir():
            continue
        (own,) = [p.name for p in src.iterdir() if p.is_dir() and not p.name.endswith(".egg-info")]
        for path in src.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                for name in names:
                    top = name.split(".")[0]
                    assert not (top.startswith("difftk_") and top != own), f"{path} imports plugin {name}"
                    assert not name.startswith("difftk.testing"), f"{path} imports the test kit at run time: {name}"
                    assert top != "difftk_cli", f"{path} imports the CLI"
