"""The ablation grid's variants, their DVC overrides and the Table-4-shaped markdown table; the round-0 curve."""

from __future__ import annotations

import csv
import io
import re
import sys

import pytest

import pipeline_lib.ablation as ablation
from pipeline_lib.ablation import (
    CONTROL,
    PAPER_VARIANTS,
    Variant,
    ablation_table,
    curve_csv,
    curve_experiment_name,
    curve_overrides,
    curve_row,
    parse_iterations,
    read_curve,
)
from pipeline_lib.comparison import RunResults
from pipeline_lib.errors import UserError
from pipeline_project import dvc, make_project, run


def test_variants_parse_with_and_without_temperature_scaling():
    assert Variant.parse("dars") == Variant("dars", False)
    assert Variant.parse(" CBST+ts ") == Variant("cbst", True)
    assert [Variant.parse(v).label for v in PAPER_VARIANTS] == ["ST", "ST+TS", "CBST", "CBST+TS", "DA+TS", "DARS"]
    assert Variant.parse("st+ts").experiment_name(3) == "st-ts-s3"


@pytest.mark.parametrize("text", ["fixmatch", "dars+tta", "supervised+ts", ""])
def test_unknown_variants_are_refused_by_name(text):
    with pytest.raises(UserError, match=re.escape(f"unknown variant {text!r}")):
        Variant.parse(text)


def test_a_seed_sets_method_scaling_training_sampling_split_and_for_the_embedded_dataset_its_images():
    assert Variant.parse("da+ts").overrides(2, "synthetic") == [
        "-S", "pseudo_label.method=da", "-S", "pseudo_label.temperature_scaling=true",
        "-S", "seed=2", "-S", "pseudo_label.seed=2", "-S", "data.split_seed=2", "-S", "synthetic.seed=2"]
    # A real dataset's images are what they are: only the split varies with the seed.
    assert Variant.parse("dars").overrides(1, "cityscapes")[-6:] == [
        "-S", "seed=1", "-S", "pseudo_label.seed=1", "-S", "data.split_seed=1"]


def test_control_trains_the_rounds_without_pseudo_labels():
    control = Variant.parse(CONTROL)
    assert control.experiment_name(0) == "supervised-s0"
    assert control.overrides(1, "voc") == ["-S", "self_training.pseudo_fraction=0", "-S", "seed=1",
                                           "-S", "pseudo_label.seed=1", "-S", "data.split_seed=1"]
    assert "labelled only" in control.label


def _evaluation(miou, tail, **iou):
    return {"miou": miou, "tail_miou": tail, "iou": iou}


def test_table_takes_one_baseline_per_seed_and_lists_unfinished(monkeypatch):
    runs = {
        "st-s0": RunResults("st-s0", {"r0": _evaluation(0.20, 0.05, road=0.8), "r1": _evaluation(0.22, 0.06, road=0.8),
                                      "r2": _evaluation(0.23, 0.06, road=0.8)}),
        "dars-s0": RunResults("dars-s0", {"r0": _evaluation(0.20, 0.05, road=0.8),
                                          "r1": _evaluation(0.25, 0.10, road=0.9),
                                          "r2": _evaluation(0.27, 0.12, road=0.9)}),
        "dars-s1": RunResults("dars-s1", {"r0": _evaluation(0.24, 0.07, road=0.8),
                                          "r1": _evaluation(0.27, 0.12, road=0.9),
                                          "r2": _evaluation(0.29, 0.14, road=0.9)}),
    }
    asked = []
    monkeypatch.setattr(ablation, "read_runs", lambda names, rounds, *_: asked.append((names, rounds))
                        or [runs[n] for n in names])
    text = ablation_table(set(runs), [Variant("st", False), Variant("dars", False)], [0, 1], ["r1", "r2"],
                          ["road"])
    assert asked == [(["st-s0", "dars-s0", "dars-s1"], ["r0", "r1", "r2"])]
    lines = text.splitlines()
    assert lines[0] == "**k = 1 (round r1), val mIoU ×100**"
    # r0 once per seed (seed 0 from st-s0, seed 1 from dars-s1), not once per experiment.
    assert lines[4] == "| supervised baseline | 80.0±0.0 | 6.0±1.4 | 22.0±2.8 | – |"
    assert lines[5] == "| ST | 80.0 | 6.0 | 22.0 | +0.0 |"
    assert lines[6] == "| DARS | 90.0±0.0 | 11.0±1.4 | 26.0±1.4 | +4.0 |"
    assert "**iterative training (round r2), val mIoU ×100**" in lines
    assert lines[-1] == "Not finished: st-s1"


def test_table_refuses_a_grid_with_nothing_finished():
    with pytest.raises(UserError, match="no finished experiment of this grid; missing st-s0"):
        ablation_table(set(), [Variant("st", False)], [0], ["r1"], ["road"])


def test_curve_budgets_and_files_are_checked_and_rows_kept_in_order(tmp_path):
    assert parse_iterations("4000, 1000,2000,1000") == [1000, 2000, 4000]
    for bad in ("", "1000,x", "0,1000"):
        with pytest.raises(UserError, match="--iterations must be comma-separated positive integers"):
            parse_iterations(bad)
    assert read_curve(tmp_path / "none.csv") == []
    (tmp_path / "other.csv").write_text("class,iou\nroad,0.9\n")
    with pytest.raises(UserError, match=r"other\.csv: not a round-0 curve"):
        read_curve(tmp_path / "other.csv")
    with pytest.raises(UserError, match="'r0-it8-s0' has no outputs/r0/evaluation.json"):
        curve_row(8, 0, "r0-it8-s0", None)
    rows = [curve_row(4000, 1, "r0-it4000-s1", {"miou": 0.4, "tail_miou": 0.1, "head_miou": 0.6}),
            curve_row(2000, 0, "r0-it2000-s0", {"miou": 0.3, "tail_miou": None, "head_miou": 0.5}),
            curve_row(1000, 1, "r0-it1000-s1", {"miou": 0.2, "tail_miou": 0.05, "head_miou": 0.4})]
    (tmp_path / "curve.csv").write_text(curve_csv(rows))
    assert (tmp_path / "curve.csv").read_text().splitlines() == [
        "iterations,seed,miou,tail_miou,head_miou,experiment",
        "2000,0,0.300000,,0.500000,r0-it2000-s0",
        "1000,1,0.200000,0.050000,0.400000,r0-it1000-s1",
        "4000,1,0.400000,0.100000,0.600000,r0-it4000-s1"]
    assert [(r["iterations"], r["seed"]) for r in read_curve(tmp_path / "curve.csv")] == [(2000, 0), (1000, 1),
                                                                                          (4000, 1)]
    assert curve_overrides(500, 2, "synthetic")[:2] == ["-S", "train.iterations=500"]
    assert curve_experiment_name(500, 2) == "r0-it500-s2"


@pytest.mark.slow
def test_round0_curve_runs_one_experiment_per_budget_and_resumes_from_its_csv(tmp_path):
    project = make_project(tmp_path / "curve")
    params_before = (project / "params.yaml").read_text()
    command = [sys.executable, "-m", "stages.cli", "ablation", "curve", "--iterations", "3,2"]
    first = run(command, project).stdout
    assert first.count("$ dvc exp run --queue") == 2
    rows = read_curve(project / "outputs" / "round0_curve.csv")
    assert [(r["iterations"], r["seed"], r["experiment"]) for r in rows] == [(2, 0, "r0-it2-s0"), (3, 0, "r0-it3-s0")]
    # Each row holds its experiment's round-0 scores, as `dvc exp show` has them.
    shown = list(csv.DictReader(io.StringIO(dvc(project, "exp", "show", "--csv").stdout)))
    for row in rows:
        [experiment] = [e for e in shown if e["Experiment"] == row["experiment"]]
        assert experiment["train.iterations"] == str(row["iterations"])
        # (only round 0's metrics file exists in these experiments, so DVC names its columns without the path)
        assert abs(float(experiment["miou"]) - float(row["miou"])) < 1e-6
    assert (project / "params.yaml").read_text() == params_before  # the workspace is left as it was
    # Run again with one more budget: the finished ones are kept, only the new one runs.
    again = run([*command[:-1], "4,3,2"], project).stdout
    assert again.count("kept") == 2 and again.count("$ dvc exp run --queue") == 1
    assert [r["iterations"] for r in read_curve(project / "outputs" / "round0_curve.csv")] == [2, 3, 4]
