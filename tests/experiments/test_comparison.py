"""Comparison tables (`dars compare`, the ablation table): cells, gains, missing values, reading runs."""

from __future__ import annotations

import json

import pytest

from hypothesis import given
from hypothesis import strategies as st

from pipeline_lib.errors import UserError
from pipeline_lib.experiments.comparison import (
    RunResults,
    compare_runs,
    experiment_names,
    format_table,
    paired_difference,
    read_runs,
    summary_table,
)


def test_table_reports_mean_std_over_seeds_and_gain_over_the_first_row():
    baseline = [{"miou": 0.20, "tail_miou": 0.05, "iou": {"road": 0.8, "bus": 0.0}},
                {"miou": 0.22, "tail_miou": 0.07, "iou": {"road": 0.8, "bus": 0.02}}]
    dars = [{"miou": 0.25, "tail_miou": 0.10, "iou": {"road": 0.9, "bus": 0.1}},
            {"miou": 0.27, "tail_miou": 0.12, "iou": {"road": 0.9, "bus": None}}]  # seed 1: bus is unscored
    text = format_table("k = 1", [("supervised baseline", baseline), ("DARS", dars)], ["road", "bus"])
    lines = text.splitlines()
    assert lines[0] == "**k = 1**"
    assert lines[2] == "| method | road | bus | tail mIoU | mIoU | gain |"
    assert lines[4] == "| supervised baseline | 80.0±0.0 | 1.0±1.4 | 6.0±1.4 | 21.0±1.4 | – |"
    assert lines[5] == "| DARS | 90.0±0.0 | 10.0 | 11.0±1.4 | 26.0±1.4 | +5.0 |"


def test_table_marks_missing_values():
    text = format_table("k = 1", [("ST", []), ("DA", [None])], ["road"])
    assert text.splitlines()[-2:] == ["| ST | – | – | – | – |", "| DA | – | – | – | – |"]


def _run(name, miou, tail, road, fraction=None, accuracy=None):
    evaluation = {"miou": miou, "tail_miou": tail, "iou": {"road": road, "bus": 0.01}}
    pseudo = None if fraction is None else {"fraction_labeled": fraction, "pseudo_label_accuracy": accuracy}
    return RunResults(name, {"r0": evaluation, "r1": evaluation}, {"r0": None, "r1": pseudo})


def test_summary_has_each_round_and_the_pseudo_label_columns_where_they_exist():
    text = summary_table([_run("workspace", 0.3, 0.1, 0.9, 0.2, 0.95), _run("st", 0.28, 0.05, 0.9)], ["r0", "r1"])
    lines = text.splitlines()
    assert lines[0] == "| run | r0 mIoU | r0 tail | r1 mIoU | r1 tail | r1 labelled % | r1 label acc |"
    assert lines[2] == "| workspace | 30.0 | 10.0 | 30.0 | 10.0 | 20.0 | 95.0 |"
    assert lines[3] == "| st | 28.0 | 5.0 | 28.0 | 5.0 | – | – |"


def test_compare_shows_first_and_last_round_and_names_what_is_missing():
    missing = RunResults("old", {"r0": None, "r2": None}, {})
    runs = [_run("workspace", 0.3, 0.1, 0.9), _run("st", 0.25, 0.05, 0.8), missing]
    for run in runs[:2]:
        run.evaluation["r2"] = run.evaluation["r1"]
    text = compare_runs(runs, ["r0", "r1", "r2"], ["road", "bus"])
    assert "**round r0, val IoU ×100**" in text and "**round r2, val IoU ×100**" in text
    assert "**round r1, val IoU ×100**" not in text
    assert "| st | 80.0 | 1.0 | 5.0 | 25.0 | -5.0 |" in text.splitlines()
    assert text.splitlines()[-1] == "No evaluation.json: old (r0), old (r2)"


def test_read_runs_from_the_workspace(tmp_path):
    (tmp_path / "outputs" / "r1").mkdir(parents=True)
    (tmp_path / "outputs" / "r1" / "evaluation.json").write_text(json.dumps({"miou": 0.5}))
    (tmp_path / "outputs" / "r1" / "pseudo_label_stats.json").write_text(json.dumps({"fraction_labeled": 0.2}))
    [run] = read_runs(["workspace"], ["r0", "r1"], tmp_path)
    assert run.evaluation == {"r0": None, "r1": {"miou": 0.5}}
    assert run.pseudo_labels == {"r0": None, "r1": {"fraction_labeled": 0.2}}
    (tmp_path / "outputs" / "r1" / "evaluation.json").write_text("{not json")
    with pytest.raises(UserError, match=r"outputs/r1/evaluation.json \(the workspace\): not valid JSON"):
        read_runs(["workspace"], ["r1"], tmp_path)


def test_experiment_names_finished_leaves_out_queued_running_and_failed_ones(monkeypatch):
    import dvc.api

    rows = [{"Experiment": None, "rev": "workspace"}, {"Experiment": None, "rev": "main"},
            {"Experiment": "running", "State": "Running"}, {"Experiment": "done", "State": "Success"},
            {"Experiment": "queued", "State": "Queued"}, {"Experiment": "failed", "State": "Failed"},
            {"Experiment": "pulled", "State": None}]  # finished, its task no longer tracked (another clone's)
    monkeypatch.setattr(dvc.api, "exp_show", lambda num: rows)
    assert experiment_names(finished=True) == ["done", "pulled"]
    # what exists, whatever its state: the grid skips queueing those again
    assert experiment_names() == ["running", "done", "queued", "failed", "pulled"]


def test_read_runs_refuses_an_unknown_revision(tmp_path):
    (tmp_path / ".dvc").mkdir()
    with pytest.raises(UserError, match="not a git revision or DVC experiment"):
        read_runs(["no-such-experiment"], ["r1"], tmp_path)


def test_a_difference_is_resolved_only_beyond_the_seeds_spread_with_every_seed_agreeing():
    # DARS 43, 44 vs control 41, 40.6: +2.0 and +3.4, mean +2.7 beyond the spread (0.7, DARS's std): resolved.
    difference = paired_difference([43.0, 44.0], [41.0, 40.6])
    assert difference.per_seed == pytest.approx((2.0, 3.4)) and difference.mean == pytest.approx(2.7)
    assert difference.spread == pytest.approx(0.7071, abs=1e-4) and difference.resolved
    # The same mean within a larger spread (seeds 40 and 46): unresolved.
    assert not paired_difference([40.0, 46.0], [38.0, 42.6]).resolved
    # Seeds that disagree in sign: unresolved whatever the mean.
    assert not paired_difference([45.0, 41.0, 45.0], [41.0, 41.5, 41.0]).resolved
    # One seed has no spread to compare with: never resolved.
    assert not paired_difference([50.0], [40.0]).resolved
    with pytest.raises(ValueError, match="one score of each method per seed"):
        paired_difference([1.0, 2.0], [1.0])


scores = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=5)


@given(st.data())
def test_a_difference_turns_round_with_its_methods_and_ignores_a_shared_offset(data):
    a = data.draw(scores)
    b = data.draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=len(a), max_size=len(a)))
    forward, backward = paired_difference(a, b), paired_difference(b, a)
    assert backward.mean == pytest.approx(-forward.mean, abs=1e-9)
    assert backward.spread == forward.spread and backward.resolved == forward.resolved
    assert forward.resolved <= (len(a) > 1 and abs(forward.mean) > forward.spread)
