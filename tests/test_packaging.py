"""Every distribution of the repository is packaged alike: one version, the MIT licence file, a
`py.typed` marker, setuptools >= 77, a readme, classifiers for the Python versions it claims;
and the `difftk` meta-distribution at the root names every plugin once."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ROOT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = ROOT["project"]["version"]
FOLDERS = [REPO / "core", REPO / "cli", *sorted(p.parent for p in REPO.glob("plugins/*/pyproject.toml"))]


def project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_distribution_has_the_one_version_and_requires_a_core_of_it(folder):
    meta = project(folder)["project"]
    assert re.fullmatch(r"difftk-[a-z]+(-[a-z]+)*", meta["name"]), meta["name"]
    assert meta["version"] == VERSION, f"{folder.name}: run python scripts/set_version.py {VERSION}"
    for text in meta.get("dependencies", []):
        requirement = Requirement(text)
        if requirement.name.startswith("difftk"):
            assert requirement.specifier.contains(Version(VERSION)), (folder.name, text)


@pytest.mark.parametrize("folder", [REPO, *FOLDERS], ids=lambda p: str(p.relative_to(REPO)) or "difftk")
def test_every_distribution_carries_the_licence_readme_and_classifiers(folder):
    data = project(folder)
    meta = data["project"]
    assert any(Requirement(r).name == "setuptools" and Requirement(r).specifier == SpecifierSet(">=77")
               for r in data["build-system"]["requires"])
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (folder / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    assert "Copyright (c) 2026 difftk authors" in (REPO / "LICENSE").read_text()
    assert (folder / meta["readme"]).is_file()
    claimed = {c.rsplit(" :: ", 1)[1] for c in meta["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    lowest = min(claimed, key=Version)
    assert meta["requires-python"] == f">={lowest}", (claimed, meta["requires-python"])


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_package_is_marked_typed_and_ships_the_marker(folder):
    data = project(folder)
    packages = [p for p in (folder / "src").iterdir() if (p / "__init__.py").is_file()]
    assert len(packages) == 1, packages
    package = packages[0]
    assert (package / "py.typed").is_file()
    assert "py.typed" in data["tool"]["setuptools"]["package-data"][package.name]
    assert "Typing :: Typed" in data["project"]["classifiers"]


def test_the_meta_distribution_names_every_plugin_once():
    meta = ROOT["tool"]["difftk"]["meta"]
    named = [e for e in [*meta["requires"], *(e for extra in meta["extras"].values() for e in extra)]
             if (REPO / e / "pyproject.toml").is_file()]
    folders = [str(p.relative_to(REPO)) for p in FOLDERS]
    assert sorted(named) == sorted(folders), set(folders) ^ set(named)
    assert ROOT["project"]["name"] == "difftk" and "all" not in meta["extras"]  # setup.py makes `all`


def test_the_changelog_has_a_section_for_what_is_not_released_or_the_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[(Unreleased|{re.escape(VERSION)})\]", text, re.M)
