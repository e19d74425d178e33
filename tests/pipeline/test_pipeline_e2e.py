"""The real `dvc repro` on a tiny configuration: caching, selective reruns, experiments, determinism."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline_project import dvc, make_project, run, set_param

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
    # Bytecode caches inside a directory dependency are not changes (.dvcignore).
    cache = project / "pipeline_lib" / "models" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "build.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert dry_run_stages(project) == []


def test_evaluation_param_reruns_only_evaluation(project):
    set_param(project, "evaluate.tail_share_threshold", 0.02)
    try:
        assert dry_run_stages(project) == ["check", "evaluate@r1", "evaluate@r2", "evaluate_r0"]
    finally:
        set_param(project, "evaluate.tail_share_threshold", 0.01)


def repro_ran_stages(root) -> list[str]:
    """Run `dvc repro`; the stages it actually executed (not skipped, not restored from the run cache)."""
    out = dvc(root, "repro").stdout
    return sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))


def test_labeling_ratio_reruns_the_labelling_not_the_confidences(project):
    # α reruns the labelling pass only: the teacher's confidences and their histogram stay cached. (train@rK
    # tracks its round's whole entry, whose optional keys need not all be written, so α shows there too: it
    # reruns on the new pseudo labels in any case.)
    set_param(project, "rounds.r1.labeling_ratio", 0.3)
    try:
        assert dry_run_stages(project) == ["check", "pseudo_label@r1", "train@r1"]
        assert "confidence@r1" not in changed_stages(project)
    finally:
        set_param(project, "rounds.r1.labeling_ratio", 0.2)
    set_param(project, "rounds.r2.labeling_ratio", 0.3)
    try:
        # Only the directly affected stages are known before running; the rest follows from their new outputs.
        assert dry_run_stages(project) == ["check", "pseudo_label@r2", "train@r2"]
        assert repro_ran_stages(project) == ["check", "evaluate@r2", "pseudo_label@r2", "train@r2"]
    finally:
        set_param(project, "rounds.r2.labeling_ratio", 0.5)
    # Back to the original α: every stage is restored from DVC's run cache, none reruns (an uncached plain
    # output, such as the per-class JSON files once were, would leave its stage out of the run cache) but the
    # check, whose persistent output keeps it out of the run cache: it takes a second.
    assert repro_ran_stages(project) == ["check"]
    assert dry_run_stages(project) == []


def test_a_rounds_training_setting_reruns_that_training_only(project):
    """An optional round key (here the authors' schedule) is tracked although the default params omit it."""
    original = (project / "params.yaml").read_text()
    set_param(project, "rounds.r2.base_lr", "continue")
    try:
        assert dry_run_stages(project) == ["check", "train@r2"]
    finally:
        (project / "params.yaml").write_text(original)
    assert dry_run_stages(project) == []


def test_seeded_rerun_gives_identical_confidences_and_pseudo_labels(project):
    lock_before = (project / "dvc.lock").read_text()
    dvc(project, "repro", "--force", "--single-item", "confidence@r1")
    dvc(project, "repro", "--force", "--single-item", "pseudo_label@r1")
    assert (project / "dvc.lock").read_text() == lock_before


def test_temperature_scaling_reruns_the_confidences_not_the_inference(project):
    set_param(project, "pseudo_label.temperature_scaling", True)
    try:
        assert dry_run_stages(project) == ["check", "confidence@r1", "confidence@r2"]
    finally:
        set_param(project, "pseudo_label.temperature_scaling", False)


def test_experiment_compare(project):
    run(["git", "add", "-A"], project)  # the baseline's results as a commit, the experiment on top of it
    run(["git", "commit", "-qm", "baseline results"], project)
    dvc(project, "exp", "run", "-S", "pseudo_label.method=st", "-n", "st-run")
    table = json.loads(dvc(project, "exp", "show", "--json").stdout)
    text = json.dumps(table)
    assert "st-run" in text
    assert text.count("tail_miou") >= 2
    # The metrics files hold the summary only; per-class values are in evaluation.json / the stats.
    header = dvc(project, "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    metrics = [column for column in header if ":" in column]  # "file:key"; the rest are params and deps
    assert sorted({column.split(":")[0] for column in metrics}) == [
        "outputs/r0/metrics.json", "outputs/r1/metrics.json", "outputs/r1/pseudo_label_metrics.json",
        "outputs/r2/metrics.json", "outputs/r2/pseudo_label_metrics.json"]
    # (one column per params leaf and per code file a stage depends on: 134 now; the image reader, the params
    # reader and the augmentation grammar, split out of larger modules, added three; the check stage twelve, the
    # model files it names one by one among them, the depthwise convolution the last)
    assert len(metrics) == 3 * 5 + 2 * 3 and len(header) <= 135

    report = run([sys.executable, "-m", "stages.cli", "compare", "HEAD", "st-run"], project).stdout
    lines = report.splitlines()
    for name, stats in (("HEAD", json.loads(run(["git", "show", "HEAD:outputs/r1/pseudo_label_metrics.json"],
                                                 project).stdout)),
                        ("st-run", json.loads((project / "outputs" / "r1" / "pseudo_label_metrics.json")
                                              .read_text()))):  # the workspace holds the experiment's results
        summary = next(line for line in lines if line.startswith(f"| {name} |")).split(" | ")
        assert summary[5] == f"{100 * stats['fraction_labeled']:.1f}"
    assert "**round r2, val IoU ×100**" in report and "**round r0, val IoU ×100**" in report
    road = json.loads((project / "outputs" / "r2" / "evaluation.json").read_text())["iou"]["road"]
    assert any(line.startswith(f"| st-run | {100 * road:.1f} |") for line in lines)

    # The class-share plot: labelled and pseudo-label shares per class, for both revisions.
    plots = json.loads(dvc(project, "plots", "diff", "HEAD", "st-run", "--json", "--targets",
                           "outputs/r1/class_distribution.csv").stdout)
    [spec] = plots["data"]["outputs/r1/class_distribution.csv"]
    rows = spec["content"]["data"]["values"]
    assert {(row["rev"], row["source"]) for row in rows} == {
        (rev, source) for rev in ("HEAD", "st-run") for source in ("labelled", "pseudo labels")}
    assert spec["content"]["encoding"]["yOffset"]["field"] == "series"  # the template of .dvc/plots/


def changed_stages(root) -> set[str]:
    """Stages that `dvc status` reports as changed (their deps, params or outs differ from dvc.lock)."""
    return set(json.loads(dvc(root, "status", "--json").stdout or "{}"))


@pytest.mark.parametrize("module, affected, unaffected", [
    # The training loop is no business of pseudo-labelling or evaluation.
    ("pipeline_lib/train/loop.py", {"train_r0", "train@r1", "train@r2"},
     {"pseudo_label@r1", "pseudo_label@r2", "confidence@r1", "confidence@r2", "evaluate_r0", "evaluate@r1",
      "evaluate@r2", "infer@r1", "infer@r2", "prepare"}),
    # A pseudo-label rule is no business of training, evaluation, inference or the teacher's confidences.
    ("pipeline_lib/pseudo_label/rules.py", {"pseudo_label@r1", "pseudo_label@r2"},
     {"train_r0", "evaluate_r0", "infer@r1", "infer@r2", "confidence@r1", "confidence@r2", "train@r1", "train@r2",
      "evaluate@r1", "evaluate@r2", "prepare"}),
    # Nor is the softmax of the labelling (it reads the confidences).
    ("pipeline_lib/confidence/maps.py", {"confidence@r1", "confidence@r2"},
     {"pseudo_label@r1", "pseudo_label@r2", "infer@r1", "train@r1", "evaluate@r1", "prepare"}),
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


def test_artifacts_travel_through_a_dvc_remote(project, tmp_path):
    """Every artifact is versioned and shareable: push from this clone, pull into a fresh one, rerun nothing."""
    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "storage", str(remote))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results and the remote"], project)
    dvc(project, "push")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "outputs" / "r2" / "model.pt").exists()  # git holds only what DVC does not
    dvc(clone, "pull")
    model = Path("outputs") / "r2" / "model.pt"
    assert (clone / model).read_bytes() == (project / model).read_bytes()
    assert changed_stages(clone) == set()
    assert dry_run_stages(clone) == []


def test_a_bad_value_set_by_an_experiment_stops_at_the_check_and_loses_nothing(project):
    """DVC deletes a stage's outputs before running it: the check stage, upstream of every stage, refuses the
    value before DVC reaches a stage whose outputs it would delete. Last in this module: DVC's restore of the
    workspace after a failed `dvc exp run` can leave git's index believing a same-sized git-tracked output
    unchanged within the same second, and a test after it would commit the stale one."""
    r1 = project / "outputs" / "r1"
    before = {path: path.read_bytes() for path in sorted(r1.rglob("*")) if path.is_file()}
    assert {"pseudo_label_metrics.json", "class_distribution.csv", "metrics.json", "per_class_iou.csv",
            "pseudo_label_stats.json", "model.pt"} <= {path.name for path in before}
    params = (project / "params.yaml").read_text()
    result = dvc(project, "exp", "run", "-S", "rounds.r1.labeling_ratio=abc", check=False)
    try:
        assert result.returncode != 0
        assert "error: params.yaml: 'rounds.r1.labeling_ratio'" in result.stdout + result.stderr
        assert {path: path.read_bytes() for path in sorted(r1.rglob("*")) if path.is_file()} == before
    finally:
        (project / "params.yaml").write_text(params)  # the refused value stays in the workspace's file
    # dvc.lock still holds the values the outputs were made with: back to them, nothing is to run.
    assert dry_run_stages(project) == [] and changed_stages(project) == set()
