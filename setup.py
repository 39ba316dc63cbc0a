"""The requirements of the `difftk` meta-distribution, from [tool.difftk.meta] in pyproject.toml.

No index holds difftk's distributions, so each is named by the file URL of its folder in this
checkout: `pip install .` builds and installs every one from here. With DIFFTK_META_PINS=1 they
are named ``name==version`` instead, for a folder of wheels (``pip install --find-links DIR
'difftk[metrics]'``), as CI's smoke test installs them.
"""

import os
import tomllib
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
PROJECT = tomllib.loads((HERE / "pyproject.toml").read_text(encoding="utf-8"))
META = PROJECT["tool"]["difftk"]["meta"]


def requirement(entry: str) -> str:
    """A folder of this repository as a requirement of its distribution; anything else as it is."""
    folder = HERE / entry
    if not (folder / "pyproject.toml").is_file():
        return entry
    name = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    if os.environ.get("DIFFTK_META_PINS") == "1":
        return f"{name}=={PROJECT['project']['version']}"
    return f"{name} @ {folder.as_uri()}"


extras = {extra: [requirement(e) for e in entries] for extra, entries in META["extras"].items()}
extras["all"] = sorted({r for reqs in extras.values() for r in reqs})
setup(install_requires=[requirement(e) for e in META["requires"]], extras_require=extras)
