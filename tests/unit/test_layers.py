"""The layers contract (``[tool.importlinter]`` in pyproject.toml), run with import-linter.

grimp, under import-linter, walks one directory per package; ours are mapped from the
repository's top-level folders, so the contract runs over a tree of links laid out as
the installed ``agentgym/`` package (grimp follows links).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("schemas", "producers", "processors", "trainers", "gateway", "ops")

# agentgym.* imports allowed inside a function, each with its reason: a module-level import
# would drag a heavy optional dependency into a light path
LAZY = {
    ("agentgym/__init__.py", "agentgym"): "the SDK on first use: `import agentgym.processors` does not pay for the producer",
    ("trainers/training/launcher.py", "agentgym.trainers.training.progress"): "imports ray.train",
    ("trainers/training/train_func.py", "agentgym.trainers.training.callbacks"): "imports torch, ray, transformers",
    ("producers/settings.py", "agentgym.schemas"): "the SDK's settings (its author's choice; light either way)",
}


def _tree(root: Path) -> Path:
    """``root/agentgym/{__init__.py, schemas, producers, ...}`` as links to the repository."""
    pkg = root / "agentgym"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").symlink_to(REPO / "agentgym" / "__init__.py")
    for name in PACKAGES:
        (pkg / name).symlink_to(REPO / name, target_is_directory=True)
    return pkg


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # found before the editable install's finder
    return subprocess.run([str(LINT), "--no-cache", str(REPO / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_layers_contract_is_kept(tmp_path: Path) -> None:
    _tree(tmp_path)
    done = _lint(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout
    files = int(done.stdout.split("Analyzed ", 1)[1].split(" files", 1)[0])
    assert files >= sum(len(list((REPO / name).rglob("*.py"))) for name in PACKAGES), done.stdout  # it saw every module


def test_an_import_against_the_layers_breaks_the_contract(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    # schemas as a folder of links, plus one module that reaches up to ops inside a function
    (pkg / "schemas").unlink()
    (pkg / "schemas").mkdir()
    for entry in (REPO / "schemas").iterdir():
        (pkg / "schemas" / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (pkg / "schemas" / "upward.py").write_text("def f():\n    from agentgym.ops import cli\n    return cli\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "0 kept, 1 broken" in done.stdout
    assert "agentgym.schemas.upward -> agentgym.ops.cli" in done.stdout, done.stdout


def _imports_in_functions() -> set[tuple[str, str]]:
    found = set()
    for folder in ("agentgym", *PACKAGES):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "agentgym":
                        found.add((str(path.relative_to(REPO)), node.module or ""))
                    elif isinstance(node, ast.Import):
                        found |= {(str(path.relative_to(REPO)), a.name) for a in node.names if a.name.split(".")[0] == "agentgym"}
    return found


def test_project_imports_sit_at_module_level() -> None:
    # an import inside a function hides a dependency from readers; only heavy optional ones may hide
    found = _imports_in_functions()
    hidden = found - set(LAZY)
    assert not hidden, f"move these agentgym imports to module level (or add them to LAZY with the reason): {sorted(hidden)}"
    assert set(LAZY) <= found, f"no longer inside a function, remove from LAZY: {sorted(set(LAZY) - found)}"
