"""The ablation grid's variants, their DVC overrides and the Table-4-shaped markdown table."""

from __future__ import annotations

import re

import pytest

import pipeline_lib.ablation as ablation
from pipeline_lib.ablation import CONTROL, PAPER_VARIANTS, Variant, ablation_table
from pipeline_lib.comparison import RunResults
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
