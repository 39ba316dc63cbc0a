"""Set the one version of every distribution in this repository.

The root pyproject.toml holds it (the `difftk` meta-distribution's version); this writes it into
core/, cli/ and every plugins/*/pyproject.toml, with the range of difftk-core each requires
(>=X.Y,<X.Y+1 while the major version is 0). tests/test_packaging.py fails when they differ.

Usage: python scripts/set_version.py 0.2.0      (then add its section to CHANGELOG.md)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = re.compile(r'^version = "[^"]*"$', re.M)
CORE_RANGE = re.compile(r'"difftk-core[<>=!~][^"]*"')  # a requirement, never the name = "difftk-core" line


def core_range(version: str) -> str:
    """The difftk-core requirement of a plugin at ``version``: the same minor series (0.x) or major."""
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f'"difftk-core>={major}.{minor},<{upper}"'


def distributions() -> list[Path]:
    return [REPO / "pyproject.toml", REPO / "core" / "pyproject.toml", REPO / "cli" / "pyproject.toml",
            *sorted(REPO.glob("plugins/*/pyproject.toml"))]


def main(version: str) -> None:
    if not re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+|\.dev\d+|\.post\d+)?", version):
        sys.exit(f"error: {version!r} is not a version such as 0.2.0 or 0.2.0rc1")
    for path in distributions():
        text = path.read_text(encoding="utf-8")
        if not VERSION.search(text):
            sys.exit(f"error: {path.relative_to(REPO)} has no line version = \"…\"")
        text = VERSION.sub(f'version = "{version}"', text, count=1)
        text = CORE_RANGE.sub(core_range(version), text)
        path.write_text(text, encoding="utf-8")
        print(f"{path.relative_to(REPO)}: {version}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
