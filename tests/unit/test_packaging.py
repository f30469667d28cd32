"""One import name: everything installs under ``agentgym``, and pyproject's package list is the tree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = ("schemas", "producers", "processors", "trainers", "gateway", "ops")
_OLD_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:" + "|".join(TOP) + r")(?:[\s.]|$)", re.M)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_package_list_is_every_package_on_disk() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    dirs = setuptools["package-dir"]
    on_disk = {"agentgym"}
    for name, folder in dirs.items():
        if name == "agentgym":
            continue
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert set(setuptools["packages"]) == on_disk
    assert {dirs[f"agentgym.{t}"] for t in TOP} == set(TOP)


def test_no_module_imports_a_bare_top_level_name() -> None:
    """`from producers import ...` would load a second copy (or the user's own `producers.py`)."""
    offenders = []
    for folder in (*TOP, "agentgym", "tests", "examples"):
        for file in sorted((ROOT / folder).rglob("*.py")) if (ROOT / folder).exists() else []:
            for m in _OLD_IMPORT.finditer(file.read_text(encoding="utf-8")):
                offenders.append(f"{file.relative_to(ROOT)}: {m.group(0).strip()}")
    assert not offenders, offenders
