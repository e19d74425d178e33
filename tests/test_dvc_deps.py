"""dvc.yaml lists, for every stage, each project module its command imports (directly or not).

A module left out is a caching hole: editing it would not rerun the stage, and `dvc repro` would keep an
artifact that the current code no longer makes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline_project import REPO

PACKAGES = ("stages", "pipeline_lib")


def project_imports(path: Path) -> set[str]:
    """Repo-relative paths of the project modules that ``path`` imports."""
    package = path.parent.name
    found = {f"{package}/__init__.py"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                parts = [package, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] in PACKAGES:
                parts = node.module.split(".")
            else:
                continue
            candidates = [parts] if len(parts) > 1 else [[*parts, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name.split(".") for alias in node.names if alias.name.split(".")[0] in PACKAGES]
        else:
            continue
        for parts in candidates:
            for name in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
                if (REPO / name).is_file():
                    found.add(name)
    return found


def import_closure(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(project_imports(REPO / name))
    return seen


def stages() -> dict[str, dict]:
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in declared.items()}  # foreach stages: their template


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_lists_every_module_its_command_imports(name):
    stage = stages()[name]
    command = stage["cmd"].split()
    assert command[0] == "dars", f"{name}: expected a `dars <stage>` command, got {stage['cmd']!r}"
    script = f"stages/{command[1].replace('-', '_')}.py"
    missing = sorted(import_closure(script) - set(stage["deps"]))
    assert not missing, f"dvc.yaml stage {name!r} imports but does not list: {missing}"


def test_the_closure_follows_imports():
    closure = import_closure("stages/pseudo_label.py")
    assert {"stages/__init__.py", "pipeline_lib/__init__.py", "pipeline_lib/pseudo_label.py",
            "pipeline_lib/confidence_histogram.py", "pipeline_lib/sharded_stack.py"} <= closure
    assert "pipeline_lib/report.py" not in closure  # inspection code is no stage's business
