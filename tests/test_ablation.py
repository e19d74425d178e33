"""The ablation grid's variants, their DVC overrides and the Table-4-shaped markdown table."""

from __future__ import annotations

import re

import pytest

from pipeline_lib.ablation import CONTROL, PAPER_VARIANTS, Variant, format_table, metric_columns
from pipeline_lib.errors import UserError


def test_variants_parse_with_and_without_temperature_scaling():
    assert Variant.parse("dars") == Variant("dars", False)
    assert Variant.parse(" CBST+ts ") == Variant("cbst", True)
    assert [Variant.parse(v).label for v in PAPER_VARIANTS] == ["ST", "ST+TS", "CBST", "CBST+TS", "DA+TS", "DARS"]
    assert Variant.parse("st+ts").experiment_name(3) == "st-ts-s3"


@pytest.mark.parametrize("text", ["fixmatch", "dars+tta", "supervised+ts", ""])
def test_unknown_variants_are_refused_by_name(text):
    with pytest.raises(UserError, match=re.escape(f"unknown variant {text!r}")):
        Variant.parse(text)


def test_overrides_set_method_scaling_and_both_seeds():
    assert Variant.parse("da+ts").overrides(2) == [
        "-S", "pseudo_label.method=da", "-S", "pseudo_label.temperature_scaling=true",
        "-S", "seed=2", "-S", "pseudo_label.seed=2"]


def test_control_trains_the_rounds_without_pseudo_labels():
    control = Variant.parse(CONTROL)
    assert control.experiment_name(0) == "supervised-s0"
    assert control.overrides(1) == ["-S", "self_training.pseudo_fraction=0", "-S", "seed=1",
                                    "-S", "pseudo_label.seed=1"]
    assert "labelled only" in control.label


def test_metric_columns_take_one_file():
    record = {"Experiment": "st-s0", "outputs/r1/metrics.json:miou": 0.3,
              "outputs/r1/metrics.json:iou.road": 0.9, "outputs/r0/metrics.json:miou": 0.2}
    assert metric_columns(record, "outputs/r1/metrics.json") == {"miou": 0.3, "iou.road": 0.9}


def test_table_reports_mean_std_over_seeds_and_gain_over_the_baseline():
    baseline = [{"miou": 0.20, "tail_miou": 0.05, "iou.road": 0.8, "iou.bus": 0.0},
                {"miou": 0.22, "tail_miou": 0.07, "iou.road": 0.8, "iou.bus": 0.02}]
    dars = [{"miou": 0.25, "tail_miou": 0.10, "iou.road": 0.9, "iou.bus": 0.1},
            {"miou": 0.27, "tail_miou": 0.12, "iou.road": 0.9}]  # seed 1 misses bus: the cell uses seed 0
    text = format_table("k = 1", [("DARS", dars)], ["road", "bus"], baseline)
    lines = text.splitlines()
    assert lines[0] == "**k = 1**"
    assert lines[2] == "| method | road | bus | tail mIoU | mIoU | gain |"
    assert lines[4] == "| supervised baseline | 80.0±0.0 | 1.0±1.4 | 6.0±1.4 | 21.0±1.4 | – |"
    assert lines[5] == "| DARS | 90.0±0.0 | 10.0 | 11.0±1.4 | 26.0±1.4 | +5.0 |"


def test_table_marks_missing_values():
    text = format_table("k = 1", [("ST", [])], ["road"], [])
    assert text.splitlines()[-1] == "| ST | – | – | – | – |"
