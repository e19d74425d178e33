"""The real `dvc repro` on a tiny configuration: caching, selective reruns, experiments, determinism."""

from __future__ import annotations

import json

import pytest

from pipeline_project import dvc, make_project, set_param

pytestmark = pytest.mark.slow


def dry_run_stages(root) -> list[str]:
    """Stages `dvc repro` would run now (from `dvc repro --dry`)."""
    out = dvc(root, "repro", "--dry").stdout
    return sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("pipeline"))
    dvc(root, "repro")
    return root


def test_full_pipeline_writes_every_round(project):
    for round_name in ("r0", "r1", "r2"):
        metrics = json.loads((project / "outputs" / round_name / "metrics.json").read_text())
        assert 0.0 <= metrics["miou"] <= 1.0
        assert "tail_miou" in metrics and "head_miou" in metrics
    for round_name in ("r1", "r2"):
        stats = json.loads((project / "outputs" / round_name / "pseudo_label_stats.json").read_text())
        assert stats["method"] == "dars"
        assert (project / "outputs" / round_name / "pseudo_labels.zarr").is_dir()
    assert (project / "outputs" / "r0" / "train_log").is_dir()
    assert not (project / ".dars_resume" / "r0").exists()


def test_rerun_is_cached(project):
    assert dry_run_stages(project) == []


def test_evaluation_param_reruns_only_evaluation(project):
    set_param(project, "evaluate.tail_share_threshold", 0.02)
    try:
        assert dry_run_stages(project) == ["evaluate@r1", "evaluate@r2", "evaluate_r0"]
    finally:
        set_param(project, "evaluate.tail_share_threshold", 0.01)


def repro_ran_stages(root) -> list[str]:
    """Run `dvc repro`; the stages it actually executed (not skipped, not restored from the run cache)."""
    out = dvc(root, "repro").stdout
    return sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))


def test_round2_labeling_ratio_reruns_only_round2(project):
    set_param(project, "rounds.r2.labeling_ratio", 0.3)
    try:
        # Only the directly affected stage is known before running; the rest follows from its new output.
        assert dry_run_stages(project) == ["pseudo_label@r2"]
        assert repro_ran_stages(project) == ["evaluate@r2", "pseudo_label@r2", "train@r2"]
    finally:
        set_param(project, "rounds.r2.labeling_ratio", 0.5)
    dvc(project, "repro")  # back to the original outputs (restored from the run cache)
    assert dry_run_stages(project) == []


def test_seeded_rerun_gives_identical_pseudo_labels(project):
    lock_before = (project / "dvc.lock").read_text()
    dvc(project, "repro", "--force", "--single-item", "pseudo_label@r1")
    assert (project / "dvc.lock").read_text() == lock_before


def test_experiment_compare(project):
    dvc(project, "exp", "run", "-S", "pseudo_label.method=st", "-n", "st-run")
    table = json.loads(dvc(project, "exp", "show", "--json").stdout)
    text = json.dumps(table)
    assert "st-run" in text
    assert text.count("tail_miou") >= 2


def changed_stages(root) -> set[str]:
    """Stages that `dvc status` reports as changed (their deps, params or outs differ from dvc.lock)."""
    return set(json.loads(dvc(root, "status", "--json").stdout or "{}"))


@pytest.mark.parametrize("module, affected, unaffected", [
    # The training loop is no business of pseudo-labelling or evaluation.
    ("pipeline_lib/train/loop.py", {"train_r0", "train@r1", "train@r2"},
     {"pseudo_label@r1", "pseudo_label@r2", "evaluate_r0", "evaluate@r1", "evaluate@r2", "infer@r1", "infer@r2",
      "prepare"}),
    # A pseudo-label rule is no business of training, evaluation or inference.
    ("pipeline_lib/pseudo_label/rules.py", {"pseudo_label@r1", "pseudo_label@r2"},
     {"train_r0", "evaluate_r0", "infer@r1", "infer@r2", "train@r1", "train@r2", "evaluate@r1", "evaluate@r2",
      "prepare"}),
])
def test_editing_a_module_affects_only_the_stages_that_run_it(project, module, affected, unaffected):
    path = project / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        changed = changed_stages(project)
    finally:
        path.write_text(original)
    assert affected <= changed, f"editing {module} should affect {sorted(affected - changed)}"
    assert not changed & unaffected, f"editing {module} affects {sorted(changed & unaffected)}"
    assert changed_stages(project) == set()
