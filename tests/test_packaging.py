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


def test_the_version_lives_in_one_place() -> None:
    import importlib.metadata

    import vastcap_guard

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vastcap_guard.__version__"}
    # the installed metadata (the editable install or the wheel) says what __init__.py says
    assert importlib.metadata.version("vastcap-guard") == vastcap_guard.__version__


def test_license_metadata_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "vastcap-guard developers" in text


def test_the_changelog_describes_the_current_version() -> None:
    import vastcap_guard

    assert f"## {vastcap_guard.__version__} " in (REPO / "CHANGELOG.md").read_text()
