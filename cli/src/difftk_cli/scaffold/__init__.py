"""`difftk new-plugin`: the files of a working plugin package, one template set per component kind.

Each kind's skeleton is a small, correct component (not a stub) that passes the conformance kit,
so a new plugin starts green and is changed one property at a time.
"""

from __future__ import annotations

import keyword
import re
import shutil
import tempfile
from importlib import metadata, resources
from pathlib import Path

from difftk.errors import OptionError, OutputError

KINDS = ("sampler", "schedule", "objective", "denoiser", "guidance", "metric", "dataset")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

#: the files of a plugin package: real files under templates/, written for a plugin called ``my-plugin``
#: (so linters and readers see them as they are) and renamed for the plugin being made
TEMPLATES = resources.files("difftk_cli.scaffold") / "templates"

#: what each kind's skeleton is, and the suffix of its class name
COMPONENTS = {
    "sampler": ('a deterministic DDIM-style sampler (Song et al. 2020, η = 0)', "Sampler"),
    "schedule": ('a schedule linear in log-SNR (Kingma et al. 2021)', "Schedule"),
    "objective": ('ε-prediction loss with min-SNR-γ weighting (Hang et al. 2023)', "Loss"),
    "denoiser": ('a small convolutional ε-network with time and class embeddings', "Net"),
    "guidance": ('classifier-free guidance applied in an interval of times (Kynkäänniemi et al. 2024)', "Guidance"),
    "dataset": ('a 2-D checkerboard of points (Grathwohl et al. 2019)', "Data"),
    "metric": ("the error of the samples' mean and standard deviation against held-out data", "Metric"),
}

#: the names in the templates, and which of the new plugin's names replaces each
PLACEHOLDERS = {
    "difftk-my-plugin": "dist", "difftk_my_plugin": "package", "MyPluginComponent": "cls", "MyPlugin": "cls_base",
    "my_plugin": "module", "my-plugin": "name", "add_component": "add", "COMPONENT_KIND": "kind",
    "PLUGIN_SUMMARY": "summary",
}
_PLACEHOLDER = re.compile("|".join(re.escape(token) for token in sorted(PLACEHOLDERS, key=len, reverse=True)))


def render(template: str, fields: dict[str, str]) -> str:
    """The template file ``template`` (a path under templates/) with every placeholder replaced, in one pass."""
    text = TEMPLATES.joinpath(*template.split("/")).read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: fields[PLACEHOLDERS[m.group(0)]], text)


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
    summary, suffix = COMPONENTS[kind]
    fields = {**names, "kind": kind, "summary": summary, "cls_base": names["cls"], "cls": names["cls"] + suffix,
              "add": f"add_{kind}"}
    relative = {
        Path("pyproject.toml"): render("pyproject.toml", fields),
        Path("README.md"): render("README.md", fields),
        Path("src", names["package"], "__init__.py"): f'"""{names["dist"]}: {summary}."""\n',
        Path("src", names["package"], "plugin.py"): render("plugin.py", fields),
        Path("src", names["package"], "component.py"): render(f"{kind}/component.py", fields),
        Path("tests", f"test_{names['module']}.py"): render("test_header.py", fields) + render(f"{kind}/test.py", fields),
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
