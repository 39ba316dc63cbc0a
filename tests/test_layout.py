"""The layout shows the architecture: the core's floors import only downward, every subpackage says
what it holds, modules stay small, the CLI's commands do not import each other, plugins depend
on the core only, and the test tree mirrors the source."""

import ast
import re
import warnings
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


def import_graph() -> dict[str, set[str]]:
    """Core module → the core modules it imports, lazy (function-level) imports included; ``from
    difftk.maths import terminal`` counts as an import of difftk.maths.terminal."""
    modules = {module_name(path): path for path in CORE_MODULES}
    graph: dict[str, set[str]] = {}
    for me, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    edges.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[me] = {name for name in edges if name in modules and name != me}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, …, a], or None (depth-first search, colouring the nodes)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_find_cycle_finds_one_through_a_lazy_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x2"}, "x2": {"x2"}}) == ["x2", "x2"]


def test_the_core_has_no_import_cycle():
    """No core module reaches itself through the modules it imports, counting imports made inside
    functions: a lazy import is how a circle hides, not how it is removed."""
    graph = import_graph()
    assert "difftk.maths.schedules" in graph["difftk.maths.terminal"]  # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in the core: " + " → ".join(cycle)


def test_every_core_module_is_on_a_floor():
    """Each module is named in FLOORS itself or through its subpackage: the package's own floor
    (10, the public surface) is no fallback for a module nobody placed."""
    for path in CORE_MODULES:
        name = module_name(path)
        placed = name in FLOORS or any(name.startswith(f + ".") for f in FLOORS if f != "difftk")
        assert placed, f"{name} is on no floor of docs/architecture.md: add it (or its subpackage) to FLOORS"


#: lines above which a module is worth a second look: a signal that warns, never a cap that shapes
#: the code (modules are judged by cohesion, one job each: docs/architecture.md)
SIZE_SIGNAL = 400


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: module_name(p))
def test_modules_say_what_they_hold(path):
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{module_name(path)} has no docstring"
    lines = len(text.splitlines())
    if lines > SIZE_SIGNAL:
        warnings.warn(f"{module_name(path)} has {lines} lines: does it still do one job?", stacklevel=1)


def test_no_section_header_is_left_empty():
    """A banner comment ("# -- samples ---") is followed by code before the next banner."""
    banner = re.compile(r"^\s*# -{2,} .* -{3,}\s*$")
    for path in CORE_MODULES:
        lines = path.read_text(encoding="utf-8").splitlines()
        marks = [i for i, line in enumerate(lines) if banner.match(line)]
        for here, nxt in zip(marks, [*marks[1:], len(lines)], strict=False):
            body = [line for line in lines[here + 1:nxt] if line.strip()]
            assert body, f"{module_name(path)} line {here + 1}: an empty section header {lines[here].strip()!r}"


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
    templates = REPO / "cli" / "src" / "difftk_cli" / "scaffold" / "templates"  # a new plugin's files, not the CLI's
    for path in sorted((REPO / "cli" / "src" / "difftk_cli").rglob("*.py")):
        if path.is_relative_to(templates):
            continue
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


def _imported(path: Path) -> set[str]:
    """The top-level package of every import in ``path``, those inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return names


def all_test_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("test_*.py")
                  if not {".venv", "templates", "example-plugin", "build"} & set(p.relative_to(REPO).parts))


def test_the_tests_mirror_the_source():
    """docs/architecture.md, "Where a new test goes": core tests use neither the CLI nor a plugin's own
    modules (the installed components by name, as any caller may), CLI tests no plugin's modules;
    test file names are unique across the tree and test directories are not packages."""
    files = all_test_files()
    where = {"core": [p for p in files if p.is_relative_to(REPO / "core" / "tests")],
             "cli": [p for p in files if p.is_relative_to(REPO / "cli" / "tests")]}
    assert len(where["core"]) > 20 and len(where["cli"]) > 10 and len(files) > 100  # the walk sees the tree
    for path in where["core"] + where["cli"]:
        plugin_modules = {n for n in _imported(path) if n.startswith("difftk_") and n != "difftk_cli"}
        assert not plugin_modules, f"{path.relative_to(REPO)} imports {sorted(plugin_modules)}: its place is tests/ or the plugin's"
    for path in where["core"]:
        assert "difftk_cli" not in _imported(path), f"{path.relative_to(REPO)} runs the CLI: its place is cli/tests/ or tests/"
    names: dict[str, Path] = {}
    for path in files:
        assert path.name not in names, f"two test files named {path.name}: {names[path.name]} and {path}"
        names[path.name] = path
        assert not (path.parent / "__init__.py").exists(), f"{path.parent} is a package: test directories are not"
