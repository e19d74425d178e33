"""dvc.yaml lists, for every stage, exactly the project modules its command imports (directly or not).

A module left out is a caching hole: editing it would not rerun the stage, and `dvc repro` would keep an
artifact that the current code no longer makes. A module listed but not imported is the opposite defect:
editing it reruns a stage that never runs its code.

To keep `dvc exp show` readable (every dependency is a column there), a package whose modules the stage
runs, all of them, is listed as its directory; and a package ``__init__.py`` that holds only a docstring runs
no code, so it is not listed (the test requires it listed as soon as it holds code).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline_project import REPO

PACKAGES = ("stages", "pipeline_lib")


def _module_files(parts: list[str]) -> list[str]:
    """The files executed by importing the dotted module ``parts``: every package ``__init__`` on the way
    and the module itself (a file or a package)."""
    files = [f"{'/'.join(parts[:depth])}/__init__.py" for depth in range(1, len(parts) + 1)]
    files.append("/".join(parts) + ".py")
    return [name for name in files if (REPO / name).is_file()]


def project_imports(path: str) -> set[str]:
    """Repo-relative paths of the project modules that the module at ``path`` imports, at any depth of
    package nesting, relative or absolute, at module level or inside functions."""
    package = Path(path).parent.parts if Path(path).name != "__init__.py" else Path(path).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] in PACKAGES:
                parts = node.module.split(".")
            else:
                continue
            found.update(_module_files(parts))
            for alias in node.names:  # `from package import module`
                found.update(_module_files([*parts, alias.name]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    found.update(_module_files(alias.name.split(".")))
    return found


def import_closure(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start, *_module_files(list(Path(start).with_suffix("").parts))]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(project_imports(name))
    return seen


def stages() -> dict[str, dict]:
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in declared.items()}  # foreach stages: their template


def stage_script(stage: dict) -> str:
    command = stage["cmd"].split()
    assert command[0] == "dars", f"expected a `dars <stage>` command, got {stage['cmd']!r}"
    return f"stages/{command[1].replace('-', '_')}.py"


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.split("/")[0] in PACKAGES}


def runs_code(path: str) -> bool:
    """False for a module whose body is only a docstring (importing it runs nothing)."""
    body = ast.parse((REPO / path).read_text()).body
    return not (len(body) == 0 or (len(body) == 1 and isinstance(body[0], ast.Expr)
                                   and isinstance(body[0].value, ast.Constant)))


def package_modules(directory: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in (REPO / directory).rglob("*.py")}


def expected_code_deps(script: str) -> list[str]:
    """What dvc.yaml lists for a stage run by ``script``: its import closure, less docstring-only modules, with
    every package (below the top-level packages) whose modules are all in it given as its directory."""
    closure = {path for path in import_closure(script) if runs_code(path)}
    everything = import_closure(script)
    packages = sorted({str(Path(path).parent) for path in closure if len(Path(path).parts) > 2}, key=len)
    deps: set[str] = set(closure)
    for package in packages:  # outermost first, so a package inside a listed one is not listed again
        if any(package.startswith(listed + "/") for listed in deps if (REPO / listed).is_dir()):
            continue
        if package_modules(package) <= everything:
            deps = {d for d in deps if not d.startswith(package + "/")} | {package}
    return sorted(deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_lists_exactly_the_modules_its_command_imports(name):
    stage = stages()[name]
    expected = set(expected_code_deps(stage_script(stage)))
    declared = code_deps(stage)
    assert not sorted(expected - declared), f"dvc.yaml stage {name!r} imports but does not list: " \
                                            f"{sorted(expected - declared)}"
    assert not sorted(declared - expected), f"dvc.yaml stage {name!r} lists but does not run (or lists a " \
                                            f"module of a package it lists whole): {sorted(declared - expected)}"


def test_a_package_is_listed_whole_only_when_the_stage_runs_all_of_it():
    deps = expected_code_deps("stages/train.py")
    assert "pipeline_lib/train" in deps and "pipeline_lib/models" in deps
    assert "pipeline_lib/train/loop.py" not in deps
    # train runs the pseudo-label store but not the logits store: the stores are listed one by one.
    assert "pipeline_lib/stores/pseudo_label_store.py" in deps and "pipeline_lib/stores" not in deps
    assert not any(d.startswith("pipeline_lib/stores/logits") for d in deps)
    assert "pipeline_lib/stores/__init__.py" not in deps  # a docstring only
    assert "stages/__init__.py" in deps  # holds code


def test_the_closure_follows_imports_into_nested_packages():
    closure = import_closure("stages/pseudo_label.py")
    assert {"stages/__init__.py", "pipeline_lib/__init__.py", "pipeline_lib/pseudo_label/__init__.py",
            "pipeline_lib/pseudo_label/rules.py", "pipeline_lib/pseudo_label/ranking.py",
            "pipeline_lib/stores/sharded_stack.py"} <= closure
    assert "pipeline_lib/inspection/report.py" not in closure  # inspection code is no stage's business


def test_the_closure_sees_nested_relative_and_lazy_imports(tmp_path, monkeypatch):
    import pipeline_project

    (tmp_path / "pipeline_lib" / "a" / "b").mkdir(parents=True)
    for name in ("pipeline_lib/__init__.py", "pipeline_lib/a/__init__.py", "pipeline_lib/a/b/__init__.py",
                 "pipeline_lib/a/leaf.py", "pipeline_lib/a/b/lazy.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "pipeline_lib" / "a" / "b" / "deep.py").write_text(
        "from ..leaf import x\n\ndef f():\n    from pipeline_lib.a.b import lazy\n")
    monkeypatch.setattr(pipeline_project, "REPO", tmp_path)
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert import_closure("pipeline_lib/a/b/deep.py") == {
        "pipeline_lib/__init__.py", "pipeline_lib/a/__init__.py", "pipeline_lib/a/b/__init__.py",
        "pipeline_lib/a/b/deep.py", "pipeline_lib/a/leaf.py", "pipeline_lib/a/b/lazy.py"}


def test_editing_a_rule_does_not_rerun_the_confidences_nor_editing_the_softmax_the_labelling():
    confidence, labelling = expected_code_deps("stages/confidence.py"), expected_code_deps("stages/pseudo_label.py")
    assert "pipeline_lib/confidence" in confidence and "pipeline_lib/pseudo_label" in labelling
    assert not any(d.startswith("pipeline_lib/pseudo_label") for d in confidence)
    assert not any(d.startswith(("pipeline_lib/confidence", "pipeline_lib/predict")) for d in labelling)
