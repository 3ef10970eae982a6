"""The package's build configuration names what the source tree holds."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_of_the_source_tree_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = config.get("package-dir", {})
    found = set()
    for init in (REPO / "vastcap_guard").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(REPO).parts))
    for package, directory in mapped.items():
        for init in (REPO / directory).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / directory).parts
            found.add(".".join((package, *rel)))
        found.add(package)
    assert listed == found
