"""The ablation grid's variants, their DVC overrides and grid key, its record, Table-4-shaped table and figures;
the round-0 curve."""

from __future__ import annotations

import csv
import io
import json
import re
import sys

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline_lib.experiments.comparison import RunResults
from pipeline_lib.experiments.curve import (
    curve_csv,
    curve_experiment_name,
    curve_overrides,
    curve_recipes_json,
    curve_recipes_path,
    curve_row,
    doubling_gains,
    parse_iterations,
    plateau_verdict,
    read_curve,
    read_curve_recipes,
    recipe_key,
    recipe_labels,
    recipe_settings,
)
from pipeline_lib.experiments.figures import (
    plot_class_shares,
    plot_round0_curve,
    plot_scores,
    score_series,
    spread_apart,
)
from pipeline_lib.experiments.grid import (
    CONTROL,
    PAPER_VARIANTS,
    Variant,
    batches_sharing_round0,
    grid_key,
    parse_experiment_name,
    seed_overrides,
    seed_values,
    settings_overrides,
    with_values,
)
from pipeline_lib.experiments.record import ablation_table, merge_rows, read_record, record_json, record_row
from pipeline_lib.experiments.round0 import round0_code
from pipeline_lib.device import pick_device, resolve_precision
from pipeline_lib.errors import UserError
from pipeline_lib.params import Params
from pipeline_project import REPO, dvc, make_project, run


def test_variants_parse_with_and_without_temperature_scaling():
    assert Variant.parse("dars") == Variant("dars", False)
    assert Variant.parse(" CBST+ts ") == Variant("cbst", True)
    assert [Variant.parse(v).label for v in PAPER_VARIANTS] == ["ST", "ST+TS", "CBST", "CBST+TS", "DA+TS", "DARS"]
    assert Variant.parse("st+ts").experiment_name(3, "0a1b2c3d") == "st-ts-s3-0a1b2c3d"
    assert Variant.parse("st+ts").name == "st+ts"


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
    assert control.experiment_name(0, "0a1b2c3d") == "supervised-s0-0a1b2c3d"
    assert control.overrides(1, "voc") == ["-S", "self_training.pseudo_fraction=0", "-S", "seed=1",
                                           "-S", "pseudo_label.seed=1", "-S", "data.split_seed=1"]
    assert "labelled only" in control.label


def test_the_grid_key_ignores_what_a_variant_or_seed_sets_and_nothing_else():
    text = (REPO / "params.yaml").read_text()
    key = grid_key(Params.parse(text, "params.yaml"))
    assert len(key) == 8 and int(key, 16) >= 0
    # What a variant or a seed sets, comments and key order leave the key as it is ...
    same = Params.parse(text, "params.yaml")
    same.data["pseudo_label"]["method"] = "st"
    same.data["pseudo_label"]["temperature_scaling"] = True
    same.data["seed"], same.data["data"]["split_seed"], same.data["synthetic"]["seed"] = 3, 3, 3
    same.data = dict(reversed(list(same.data.items())))
    assert grid_key(same) == key
    assert grid_key(Params.parse("# a comment\n" + text, "params.yaml")) == key
    # ... any other parameter makes another grid: a longer round 0, the share of pseudo-labelled images.
    for dotted, value in (("train.iterations", 4000), ("self_training.pseudo_fraction", 0.3)):
        other = Params.parse(text, "params.yaml")
        section, name = dotted.split(".")
        other.data[section][name] = value
        assert grid_key(other) != key, dotted


def test_experiment_names_parse_back_and_others_are_not_grid_experiments():
    for variant in [*map(Variant.parse, PAPER_VARIANTS), Variant.parse(CONTROL)]:
        assert parse_experiment_name(variant.experiment_name(12, "0a1b2c3d")) == (variant, 12, "0a1b2c3d")
    for other in ("r0-it1000-s0", "dars-s0", "fixmatch-s0-0a1b2c3d", "supervised-ts-s0-0a1b2c3d", "dars-s0-XYZ"):
        assert parse_experiment_name(other) is None, other


def _evaluation(miou, tail, **iou):
    return {"miou": miou, "tail_miou": tail, "head_miou": miou + 0.2, "iou": iou, "pixel_accuracy": 0.9}


def _stats(labeled, pseudo):
    return {"fraction_labeled": 0.2, "kl_divergence": 0.01, "pseudo_label_accuracy": 0.95, "images": 280,
            "per_class": {"road": {"labeled_share": labeled, "pseudo_share": pseudo, "threshold": 0.9},
                          "bus": {"labeled_share": 1 - labeled, "pseudo_share": 1 - pseudo, "threshold": 0.5}}}


def _row(variant, seed, r0, r1, r2, grid="g1", pseudo=0.7):
    """A recorded row; r0, r1, r2: (mIoU, tail mIoU, IoU of road) of each round."""
    run = RunResults(Variant.parse(variant).experiment_name(seed, grid),
                     {name: _evaluation(miou, tail, road=road) for name, (miou, tail, road) in
                      (("r0", r0), ("r1", r1), ("r2", r2))},
                     {"r0": None, "r1": _stats(0.8, pseudo), "r2": _stats(0.8, pseudo)})
    return record_row(Variant.parse(variant), seed, grid, run)


def test_a_recorded_row_keeps_the_scores_and_class_shares_and_an_unfinished_run_none():
    row = _row("dars", 0, (0.2, 0.05, 0.8), (0.25, 0.1, 0.9), (0.27, 0.12, 0.9))
    assert row["grid"] == "g1" and row["variant"] == "dars" and row["seed"] == 0
    assert row["experiment"] == "dars-s0-g1"
    assert row["rounds"]["r0"] == {"miou": 0.2, "tail_miou": 0.05, "head_miou": 0.4, "iou": {"road": 0.8}}
    assert row["rounds"]["r1"]["pseudo_labels"] == {
        "fraction_labeled": 0.2, "pseudo_label_accuracy": 0.95, "kl_divergence": 0.01,
        "class_shares": {"road": {"labeled": 0.8, "pseudo": 0.7}, "bus": {"labeled": 1 - 0.8, "pseudo": 1 - 0.7}}}
    # The control's rounds make pseudo labels it does not train on: none are recorded for it.
    control = _row(CONTROL, 0, (0.2, 0.05, 0.8), (0.22, 0.06, 0.8), (0.23, 0.06, 0.8))
    assert "pseudo_labels" not in control["rounds"]["r1"]
    unfinished = RunResults("dars-s1-g1", {"r0": _evaluation(0.2, 0.05, road=0.8), "r1": None, "r2": None})
    assert record_row(Variant.parse("dars"), 1, "g1", unfinished) is None


def test_the_record_keeps_its_rows_and_refuses_a_file_that_is_not_one(tmp_path):
    path = tmp_path / "ablation_runs.json"
    assert read_record(path) == []
    first = _row("dars", 1, (0.2, 0.05, 0.8), (0.25, 0.1, 0.9), (0.27, 0.12, 0.9))
    rows, added = merge_rows([], [first, _row("st", 0, (0.2, 0.05, 0.8), (0.22, 0.06, 0.8), (0.23, 0.06, 0.8))])
    assert len(added) == 2
    path.write_text(record_json(rows))
    assert [(r["seed"], r["variant"]) for r in read_record(path)] == [(0, "st"), (1, "dars")]  # ordered
    # A rerun of the same grid, variant and seed does not replace the committed row; another grid's is added.
    rerun = _row("dars", 1, (0.3, 0.1, 0.8), (0.3, 0.1, 0.9), (0.3, 0.1, 0.9))
    other_grid = _row("dars", 1, (0.3, 0.1, 0.8), (0.3, 0.1, 0.9), (0.3, 0.1, 0.9), grid="g2")
    rows, added = merge_rows(read_record(path), [rerun, other_grid])
    assert added == [other_grid] and [r["rounds"]["r1"]["miou"] for r in rows if r["grid"] == "g1"] == [0.22, 0.25]
    for text, message in (("{not json", "not valid JSON"), ('{"runs": []}', "not an ablation record"),
                          ('{"version": 1, "runs": [{"grid": "g1"}]}', r"runs\[0\] is not a recorded run")):
        path.write_text(text)
        with pytest.raises(UserError, match=re.escape(str(path)) + ": " + message):
            read_record(path)
    path.write_text(record_json([{**first, "variant": "fixmatch"}]))
    with pytest.raises(UserError, match="unknown variant 'fixmatch'"):
        read_record(path)


def _grid_rows():
    return [_row("st", 0, (0.20, 0.05, 0.8), (0.22, 0.06, 0.8), (0.23, 0.06, 0.8), pseudo=0.95),
            _row("dars", 0, (0.20, 0.05, 0.8), (0.25, 0.10, 0.9), (0.27, 0.12, 0.9)),
            _row("dars", 1, (0.24, 0.07, 0.8), (0.27, 0.12, 0.9), (0.29, 0.14, 0.9))]


def test_table_takes_one_baseline_per_seed_and_lists_what_is_not_recorded():
    text = ablation_table(_grid_rows(), [Variant("st", False), Variant("dars", False)], [0, 1], ["r1", "r2"])
    lines = text.splitlines()
    assert lines[0] == ("Seeds 0, 1; a cell is the mean ± sample std over the recorded seeds. Training precision "
                        "not recorded (models saved before checkpoints recorded it).")
    one_seed = ablation_table(_grid_rows(), [Variant("st", False), Variant("dars", False)], [0], ["r1", "r2"])
    assert one_seed.splitlines()[0].startswith("Seed 0 only: a cell is its score, with no spread to judge it by. ")
    start = lines.index("**k = 1 (round r1), val mIoU ×100**")
    # r0 once per seed (seed 0 from st, seed 1 from dars), not once per experiment.
    assert lines[start + 4] == "| supervised baseline | 80.0±0.0 | 6.0±1.4 | 22.0±2.8 | – |"
    assert lines[start + 5] == "| ST | 80.0 | 6.0 | 22.0 | +0.0 |"
    assert lines[start + 6] == "| DARS | 90.0±0.0 | 11.0±1.4 | 26.0±1.4 | +4.0 |"
    assert "**iterative training (round r2), val mIoU ×100**" in lines
    assert lines[-1] == "Not recorded: st seed 1"
    with pytest.raises(UserError, match="no finished experiment of this grid is recorded"):
        ablation_table([], [Variant("st", False)], [0], ["r1"])


def test_table_refuses_a_seed_whose_rows_start_from_different_round_0_models():
    rows = [*_grid_rows(), _row(CONTROL, 1, (0.24, 0.07, 0.81), (0.25, 0.07, 0.8), (0.25, 0.07, 0.8))]
    with pytest.raises(UserError, match=re.escape("seed 1 of grid g1: its rows start from different round-0 models "
                                                  "(dars: r0 mIoU 24.00; supervised: r0 mIoU 24.00)")):
        ablation_table(rows, [Variant("dars", False), Variant(CONTROL, False)], [0, 1], ["r1", "r2"])
    rows[-1] = _row(CONTROL, 1, (0.24, 0.07, 0.8), (0.25, 0.07, 0.8), (0.25, 0.07, 0.8))
    ablation_table(rows, [Variant("dars", False), Variant(CONTROL, False)], [0, 1], ["r1", "r2"])


def _trained_with(row, precision, rounds=("r0", "r1", "r2")):
    for name in rounds:
        row["rounds"][name]["trained_with"] = {"device": "cpu", "precision": precision}
    return row


def test_table_says_where_the_models_were_trained_and_which_seeds_mix_machines():
    variants = [Variant("st", False), Variant("dars", False)]
    # evaluation.json's trained_with (from the checkpoint) is kept in the row.
    run = RunResults("dars-s0-g1", {name: {**_evaluation(0.2, 0.05, road=0.8), "trained_with": {
        "device": "cuda", "precision": "bf16"}} for name in ("r0", "r1", "r2")}, {})
    assert record_row(Variant.parse("dars"), 0, "g1", run)["rounds"]["r1"]["trained_with"] == {
        "device": "cuda", "precision": "bf16"}
    same = [_trained_with(row, "bf16") for row in _grid_rows()]
    assert ablation_table(same, variants, [0, 1], ["r1", "r2"]).splitlines()[0].endswith(
        "over the recorded seeds. Trained in bf16 on cpu.")
    # Seed 1 trained on a machine without native bf16: the table says its means mix the two.
    mixed = [*same[:2], _trained_with(_grid_rows()[2], "fp32")]
    assert ablation_table(mixed, variants, [0, 1], ["r1", "r2"]).splitlines()[0].endswith(
        "**Trained at different precisions**: bf16 on cpu (seed 0), fp32 on cpu (seed 1); a mean over them mixes "
        "machines, and a difference between methods is only fair within one.")
    # Rows recorded before checkpoints held it are counted, not guessed.
    partial = [*same[:2], _trained_with(_grid_rows()[2], "bf16", rounds=("r1", "r2"))]
    assert ablation_table(partial, variants, [0, 1], ["r1", "r2"]).splitlines()[0].endswith(
        "Trained in bf16 on cpu; 1 model does not say (saved before checkpoints recorded it).")


def test_table_summarises_scores_and_pseudo_labels_per_method():
    text = ablation_table(_grid_rows(), [Variant("st", False), Variant("dars", False)], [0, 1], ["r1", "r2"])
    lines = text.splitlines()
    start = lines.index("**scores and pseudo labels, val ×100**")
    assert lines[start + 2].startswith("| method | k = 1 mIoU | k = 1 tail | k = 1 head | iterative mIoU |")
    assert lines[start + 4] == "| supervised baseline (r0) | 22.0±2.8 | 6.0±1.4 | 42.0±2.8 | 22.0±2.8 | 6.0±1.4 " \
                               "| 42.0±2.8 | – | – | – | – | – | – |"
    # DARS, two seeds: r1 26.0±1.4 / 11.0±1.4 / 46.0±1.4; 20 % labelled at 95 % accuracy, KL 0.010, both rounds.
    assert lines[start + 6] == "| DARS | 26.0±1.4 | 11.0±1.4 | 46.0±1.4 | 28.0±1.4 | 13.0±1.4 | 48.0±1.4 " \
                               "| 20.0±0.0 | 95.0±0.0 | 0.010±0.000 | 20.0±0.0 | 95.0±0.0 | 0.010±0.000 |"


def test_differences_pair_each_rule_with_the_control_and_dars_with_each_rule_on_shared_seeds():
    rows = [*_grid_rows(),
            _row(CONTROL, 0, (0.20, 0.05, 0.8), (0.21, 0.05, 0.8), (0.21, 0.05, 0.8)),
            _row(CONTROL, 1, (0.24, 0.07, 0.8), (0.24, 0.07, 0.8), (0.27, 0.07, 0.8))]
    variants = [Variant("st", False), Variant("dars", False), Variant(CONTROL, False)]
    lines = ablation_table(rows, variants, [0, 1], ["r1", "r2"]).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("**differences"))
    assert lines[start + 2] == "| A − B | k = 1 mIoU | k = 1 tail | iterative mIoU | iterative tail |"
    # ST has seed 0 only: one paired seed, never resolved.
    assert lines[start + 4] == "| ST − labelled only, same iterations | +1.0 (+1.0; spread –) unresolved " \
                               "| +1.0 (+1.0; spread –) unresolved | +2.0 (+2.0; spread –) unresolved " \
                               "| +1.0 (+1.0; spread –) unresolved |"
    # DARS − control on seeds 0 and 1: r1 mIoU +4.0, +3.0, mean +3.5 beyond the spread (2.1, the control's std
    # of 21 and 24): resolved; r2 mIoU +6.0, +2.0, mean +4.0 within the control's std of 21 and 27: unresolved.
    assert lines[start + 5] == "| DARS − labelled only, same iterations " \
                               "| +3.5 (+4.0, +3.0; spread 2.1) **resolved** " \
                               "| +5.0 (+5.0, +5.0; spread 1.4) **resolved** | +4.0 (+6.0, +2.0; spread 4.2) " \
                               "unresolved | +7.0 (+7.0, +7.0; spread 1.4) **resolved** |"
    assert lines[start + 6].startswith("| DARS − ST | +3.0 (+3.0; spread –) unresolved |")
    assert len([line for line in lines[start + 4:] if line.startswith("| ")]) == 3
    # A score a row lacks (the control's seed-1 tail after r2) leaves that seed out of that cell only.
    del rows[-1]["rounds"]["r2"]["tail_miou"]
    lines = ablation_table(rows, variants, [0, 1], ["r1", "r2"]).splitlines()
    assert lines[start + 5].endswith("| +7.0 (+7.0; spread –) unresolved |")
    assert "+3.5 (+4.0, +3.0; spread 2.1) **resolved**" in lines[start + 5]


def test_figures_show_each_seed_and_the_first_rounds_class_shares(tmp_path):
    rows = _grid_rows()
    variants = [Variant("st", False), Variant("dars", False), Variant(CONTROL, False)]
    assert score_series(rows, variants, "r1", "miou") == [("supervised baseline", [20.0, 24.0]), ("ST", [22.0]),
                                                           ("DARS", [25.0, 27.0])]
    plot_scores(tmp_path / "scores.png", rows, variants, ["r1", "r2"])
    plot_class_shares(tmp_path / "shares.png", rows, variants, "r1")
    for name in ("scores.png", "shares.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Drawn again from the same record, the same bytes: a committed figure changes only with its numbers.
    first = (tmp_path / "scores.png").read_bytes()
    plot_scores(tmp_path / "scores.png", rows, variants, ["r1", "r2"])
    assert (tmp_path / "scores.png").read_bytes() == first
    with pytest.raises(UserError, match="nothing to plot"):
        plot_scores(tmp_path / "none.png", [], variants, ["r1"])
    with pytest.raises(UserError, match="no recorded run has pseudo labels in round r1"):
        plot_class_shares(tmp_path / "none.png", [r for r in rows if r["variant"] == CONTROL], variants, "r1")
    assert not (tmp_path / "none.png").exists()


def test_every_gain_label_of_the_curve_lies_inside_its_axes(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: (drawn.append(figure),
                                                                           save(figure, *args, **kwargs)))
    # The highest point ends a doubling that gains little: its label sat on the axes' top edge before.
    rows = [{"recipe": "a", "iterations": budget, "seed": 0, "miou": miou, "tail_miou": "0.1", "head_miou": "0.5",
             "experiment": f"r0-it{budget}-s0-a"} for budget, miou in ((1000, "0.30"), (2000, "0.44"), (4000, "0.441"))]
    plot_round0_curve(tmp_path / "curve.png", rows)
    [figure] = drawn
    figure.draw_without_rendering()
    [axes] = figure.axes
    top = axes.get_window_extent().y1
    assert len(axes.texts) == 2
    for label in axes.texts:  # the label as drawn: its text on a white box
        assert label.get_bbox_patch().get_window_extent().y1 <= top, label.get_text()


def test_gain_labels_that_would_overlap_are_spread_apart_downwards():
    assert spread_apart([42.0, 41.0, 30.0], 2.0) == [42.0, 40.0, 30.0]  # the two close ones, the highest kept
    assert spread_apart([1.0, 1.0], 0.5) == [1.0, 0.5]  # a tie keeps the given order
    assert spread_apart([], 1.0) == []


@given(st.lists(st.floats(-100, 100), max_size=8), st.floats(0.1, 10))
def test_spread_apart_keeps_order_and_gap_and_moves_only_down(heights, gap):
    placed = spread_apart(heights, gap)
    assert all(new <= old for new, old in zip(placed, heights))
    if heights:
        assert max(placed) == max(heights)
    ordered = sorted(placed, reverse=True)
    assert all(upper - lower >= gap * (1 - 1e-9) for upper, lower in zip(ordered, ordered[1:]))
    if all(abs(a - b) >= gap * (1 + 1e-9) for i, a in enumerate(heights) for b in heights[i + 1:]):
        assert placed == heights  # labels far enough apart stay where they are


def test_curve_budgets_and_files_are_checked_and_rows_kept_in_order(tmp_path):
    assert parse_iterations("4000, 1000,2000,1000") == [1000, 2000, 4000]
    for bad in ("", "1000,x", "0,1000"):
        with pytest.raises(UserError, match="--iterations must be comma-separated positive integers"):
            parse_iterations(bad)
    assert read_curve(tmp_path / "none.csv") == []
    (tmp_path / "other.csv").write_text("class,iou\nroad,0.9\n")
    with pytest.raises(UserError, match=r"other\.csv: not a round-0 curve"):
        read_curve(tmp_path / "other.csv")
    with pytest.raises(UserError, match="'r0-it8-s0-k' has no outputs/r0/evaluation.json"):
        curve_row("k", 8, 0, "r0-it8-s0-k", None)
    rows = [curve_row("b", 4000, 1, "r0-it4000-s1-b", {"miou": 0.4, "tail_miou": 0.1, "head_miou": 0.6}),
            curve_row("b", 2000, 0, "r0-it2000-s0-b", {"miou": 0.3, "tail_miou": None, "head_miou": 0.5}),
            curve_row("a", 8000, 0, "r0-it8000-s0-a", {"miou": 0.5, "tail_miou": 0.2, "head_miou": 0.7}),
            curve_row("b", 1000, 1, "r0-it1000-s1-b", {"miou": 0.2, "tail_miou": 0.05, "head_miou": 0.4})]
    (tmp_path / "curve.csv").write_text(curve_csv(rows))
    assert (tmp_path / "curve.csv").read_text().splitlines() == [
        "recipe,iterations,seed,miou,tail_miou,head_miou,experiment",
        "a,8000,0,0.500000,0.200000,0.700000,r0-it8000-s0-a",
        "b,2000,0,0.300000,,0.500000,r0-it2000-s0-b",
        "b,1000,1,0.200000,0.050000,0.400000,r0-it1000-s1-b",
        "b,4000,1,0.400000,0.100000,0.600000,r0-it4000-s1-b"]
    assert [(r["recipe"], r["iterations"], r["seed"]) for r in read_curve(tmp_path / "curve.csv")] == [
        ("a", 8000, 0), ("b", 2000, 0), ("b", 1000, 1), ("b", 4000, 1)]
    assert curve_overrides(500, 2, "synthetic")[:2] == ["-S", "train.iterations=500"]
    assert curve_experiment_name(500, 2, "0a1b2c3d") == "r0-it500-s2-0a1b2c3d"


def test_the_plateau_is_judged_on_the_last_measured_doubling_of_one_recipe_and_seed(tmp_path):
    def row(recipe, iterations, seed, miou, tail="0.100000"):
        return {"recipe": recipe, "iterations": iterations, "seed": seed, "miou": miou, "tail_miou": tail,
                "head_miou": "0.5", "experiment": f"r0-it{iterations}-s{seed}-{recipe}"}

    rows = [row("a", 1000, 0, "0.300000"), row("a", 2000, 0, "0.340000"), row("a", 3000, 0, "0.350000"),
            row("a", 4000, 0, "0.360000"), row("a", 8000, 0, "0.364000", tail=""),
            row("a", 16000, 1, "0.500000"),  # another seed: not part of seed 0's curve
            row("b", 16000, 0, "0.900000")]  # another recipe: never mixed in
    gains = doubling_gains(rows, "a", 0)
    # 3000 has no double measured; each gain is between a budget and exactly twice it.
    assert [(budget, doubled) for budget, doubled, _ in gains] == [(1000, 2000), (2000, 4000), (4000, 8000)]
    assert [round(gain, 6) for _, _, gain in gains] == [0.04, 0.02, 0.004]
    assert plateau_verdict(rows, "a", 0) == ("recipe a, seed 0: 4000 → 8000 iterations gains +0.40 mIoU: on its "
                                             "plateau (a doubling gaining < 0.5)")
    rows.append(row("a", 16000, 0, "0.370000"))  # the next doubling gains 0.6: the verdict follows the last one
    assert "8000 → 16000 iterations gains +0.60 mIoU: not on its plateau" in plateau_verdict(rows, "a", 0)
    assert plateau_verdict(rows, "a", 1) == ("recipe a, seed 1: no budget and its double measured yet: "
                                             "plateau unknown")
    plot_round0_curve(tmp_path / "curve.png", rows)  # a point without tail mIoU is drawn without its tail point
    first = (tmp_path / "curve.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    plot_round0_curve(tmp_path / "curve.png", rows)
    assert (tmp_path / "curve.png").read_bytes() == first
    # Named recipes are drawn under their names (here a longer legend: another picture).
    plot_round0_curve(tmp_path / "named.png", rows, {"a": "train.base_lr=0.1 (a)", "b": "train.base_lr=0.2 (b)"})
    assert (tmp_path / "named.png").read_bytes() != first
    with pytest.raises(UserError, match="the round-0 curve has no rows"):
        plot_round0_curve(tmp_path / "none.png", [])
    assert not (tmp_path / "none.png").exists()


def test_a_curve_recipe_is_named_by_the_keys_that_set_it_apart(tmp_path):
    text = (REPO / "params.yaml").read_text()
    base = Params.parse(text, "params.yaml")
    settings = recipe_settings(base)
    # Dotted keys of what round 0 reads, without its budget, seeds or the rounds after it.
    assert settings["train.base_lr"] == base.data["train"]["base_lr"]
    assert settings["model.arch"] == base.data["model"]["arch"]
    assert settings["synthetic.image_size"] == base.data["synthetic"]["image_size"]
    assert not any(key.startswith(("rounds", "pseudo_label", "self_training")) for key in settings)
    assert "train.iterations" not in settings and "seed" not in settings and "synthetic.seed" not in settings
    faster, weaker = Params.parse(text, "params.yaml"), Params.parse(text, "params.yaml")
    faster.data["train"]["base_lr"] = 0.2
    weaker.data["train"]["augmentation"] = "beta 0.5"
    del weaker.data["inference"]["flip"]
    recipes = {recipe_key(p): recipe_settings(p) for p in (base, faster, weaker)}
    lr, augmentation = base.data["train"]["base_lr"], base.data["train"]["augmentation"]
    assert recipe_labels(recipes) == {
        recipe_key(base): f"inference.flip=False, train.augmentation={augmentation}, train.base_lr={lr} "
                          f"({recipe_key(base)})",
        recipe_key(faster): f"inference.flip=False, train.augmentation={augmentation}, train.base_lr=0.2 "
                            f"({recipe_key(faster)})",
        recipe_key(weaker): f"inference.flip=(unset), train.augmentation=beta 0.5, train.base_lr={lr} "
                            f"({recipe_key(weaker)})"}
    # Alone, a recipe has nothing to tell it apart: its hash.
    assert recipe_labels({recipe_key(base): settings}) == {recipe_key(base): recipe_key(base)}
    # The recipes file lies beside the CSV and reads back; anything else is refused by name.
    path = curve_recipes_path(tmp_path / "round0_curve.csv")
    assert path == tmp_path / "round0_curve.recipes.json"
    assert read_curve_recipes(path) == {}
    path.write_text(curve_recipes_json(recipes))
    assert read_curve_recipes(path) == recipes
    for bad in ("{not json", "[1, 2]", '{"a": 3}'):
        path.write_text(bad)
        with pytest.raises(UserError, match=r"round0_curve\.recipes\.json: "):
            read_curve_recipes(path)


def test_a_curve_recipe_is_what_round_0_reads_but_its_budget_and_seeds():
    text = (REPO / "params.yaml").read_text()
    recipe = recipe_key(Params.parse(text, "params.yaml"))
    same = Params.parse(text, "params.yaml")
    same.data["train"]["iterations"], same.data["seed"], same.data["synthetic"]["seed"] = 64000, 2, 2
    same.data["rounds"]["r1"]["iterations"] = 5000
    same.data["pseudo_label"]["method"], same.data["self_training"]["pseudo_fraction"] = "st", 0.3
    assert recipe_key(same) == recipe
    for section, name, value in (("train", "base_lr", 0.2), ("train", "crop_size", 96), ("model", "arch", "x"),
                                 ("synthetic", "num_train_images", 640), ("inference", "flip", True)):
        other = Params.parse(text, "params.yaml")
        other.data[section][name] = value
        assert recipe_key(other) != recipe, name


def _applied_by_dvc(tmp_path, overrides: list[str]) -> dict:
    """params.yaml after DVC's own `-S` handling (what `dvc exp run -S` writes into an experiment)."""
    import shutil

    import yaml
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    assert overrides[::2] == ["-S"] * (len(overrides) // 2)
    apply_overrides(path, overrides[1::2])
    return yaml.safe_load(path.read_text())


def test_a_settings_file_becomes_the_overrides_that_dvc_turns_params_yaml_into_it(tmp_path):
    workspace = Params.load(REPO / "params.yaml")
    settings = json.loads(json.dumps(workspace.data))
    settings["train"]["iterations"] = 16000
    settings["rounds"]["r1"]["base_lr"] = 0.01                      # a key params.yaml lacks
    settings["rounds"]["r2"]["augmentation"] = "beta 1.5"           # a value for a section
    settings["rounds"]["r3"] = {"teacher": "r2", "init": "teacher", "labeling_ratio": 0.5,
                                "augmentation": {"pseudo": "scale 0.25-1.0, rotate 10 p0.5"}}  # a new section
    settings["data"]["root"] = "it's: /data"                        # quotes, a colon
    settings["train"]["loss"] = "123"                               # a number as text
    settings["evaluate"]["tail_classes"] = ["wall", "train"]        # a list for a null
    settings["synthetic"]["image_size"] = [64, 128]
    del settings["distributed"]["sync_batchnorm"]                   # removed
    settings["seed"] = 7                                            # skipped: the experiment sets it itself
    overrides = settings_overrides(workspace, Params(settings, "bench.yaml"), skip=("seed",))
    assert not any("seed" in arg for arg in overrides)
    assert _applied_by_dvc(tmp_path, overrides) == {**settings, "seed": workspace.data["seed"]}
    assert settings_overrides(workspace, workspace) == []


def test_a_settings_file_without_a_key_params_yaml_sets_to_null_is_refused_by_name():
    workspace = Params.load(REPO / "params.yaml")
    settings = json.loads(json.dumps(workspace.data))
    del settings["evaluate"]["tail_classes"]
    with pytest.raises(UserError, match=r"bench.yaml: lacks 'evaluate.tail_classes', which \S*params.yaml sets to "
                                        r"null"):
        settings_overrides(workspace, Params(settings, "bench.yaml"))


def test_the_benchmark_is_params_yaml_with_a_longer_round0_and_cool_rounds_only(tmp_path):
    workspace = Params.load(REPO / "params.yaml")
    benchmark = Params.load(REPO / "configs" / "benchmark_synthetic.yaml")
    overrides = settings_overrides(workspace, benchmark)
    # Beside those, the benchmark keeps what its recorded grid ran with (its grid key hashes them): bf16, which
    # `auto` no longer picks on those CPUs, and one loading process (a speed knob: batches are the same for any).
    assert overrides == ["-S", "train.iterations=16000", "-S", "train.num_workers=1", "-S", "train.precision='bf16'",
                         "-S", "+rounds.r1.base_lr=0.01", "-S", "+rounds.r2.base_lr=0.01"]
    assert _applied_by_dvc(tmp_path, overrides) == benchmark.data


def test_with_several_jobs_each_seed_runs_one_experiment_before_the_others_that_share_its_round_0():
    assert batches_sharing_round0({0: ["st-s0", "dars-s0", "supervised-s0"], 1: ["st-s1"], 2: ["dars-s2", "st-s2"]}) == [
        ["st-s0", "st-s1", "dars-s2"], ["dars-s0", "supervised-s0", "st-s2"]]
    assert batches_sharing_round0({0: ["dars-s0"], 1: ["dars-s1"]}) == [["dars-s0", "dars-s1"]]
    assert batches_sharing_round0({}) == []


@pytest.mark.slow
def test_round0_curve_runs_one_experiment_per_budget_and_resumes_from_its_csv(tmp_path):
    project = make_project(tmp_path / "curve")
    params_before = (project / "params.yaml").read_text()
    command = [sys.executable, "-m", "stages.cli", "ablation", "curve", "--jobs", "2", "--iterations", "3,2"]
    first = run(command, project).stdout
    assert first.count("$ dvc exp run --queue") == 2 and first.count("$ dvc exp run --run-all -j 2") == 1
    rows = read_curve(project / "outputs" / "round0_curve.csv")
    recipe = recipe_key(Params.load(project / "params.yaml"))
    assert [(r["recipe"], r["iterations"], r["seed"], r["experiment"]) for r in rows] == [
        (recipe, 2, 0, f"r0-it2-s0-{recipe}"), (recipe, 3, 0, f"r0-it3-s0-{recipe}")]
    # Each row holds its experiment's round-0 scores, as `dvc exp show` has them.
    shown = list(csv.DictReader(io.StringIO(dvc(project, "exp", "show", "--csv").stdout)))
    for row in rows:
        [experiment] = [e for e in shown if e["Experiment"] == row["experiment"]]
        assert experiment["train.iterations"] == str(row["iterations"])
        # (only round 0's metrics file exists in these experiments, so DVC names its columns without the path)
        assert abs(float(experiment["miou"]) - float(row["miou"])) < 1e-6
    assert (project / "params.yaml").read_text() == params_before  # the workspace is left as it was
    assert (project / "outputs" / "round0_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert first.splitlines()[-1] == (f"recipe {recipe}, seed 0: no budget and its double measured yet: "
                                      "plateau unknown")
    # Run again with one more budget: the finished ones are kept, only the new one runs.
    again = run([*command[:-1], "4,3,2"], project).stdout
    assert again.count("kept") == 2 and again.count("$ dvc exp run --queue") == 1
    assert f"recipe {recipe}, seed 0: 2 → 4 iterations gains" in again.splitlines()[-1]
    assert [r["iterations"] for r in read_curve(project / "outputs" / "round0_curve.csv")] == [2, 3, 4]
    # Another round-0 recipe (here the learning rate, in a settings file) is measured beside the first, not taken
    # for it, with that file's values; params.yaml stays as it is.
    settings = yaml.safe_load(params_before)
    settings["train"]["base_lr"] = 0.2
    (project / "other.yaml").write_text(yaml.safe_dump(settings))
    other = run([*command[:-1], "2", "--params", "other.yaml"], project).stdout
    assert "kept" not in other and other.count("$ dvc exp run --queue") == 1
    rows = read_curve(project / "outputs" / "round0_curve.csv")
    [new] = [r for r in rows if r["recipe"] != recipe]
    assert (new["iterations"], len(rows)) == (2, 4) and new["recipe"] == recipe_key(Params.load(project / "other.yaml"))
    shown = list(csv.DictReader(io.StringIO(dvc(project, "exp", "show", "--csv").stdout)))
    [experiment] = [e for e in shown if e["Experiment"] == new["experiment"]]
    assert float(experiment["train.base_lr"]) == 0.2
    assert (project / "params.yaml").read_text() == params_before
    # Both recipes are kept beside the CSV, so that the figure can name them by their learning rates.
    recipes = read_curve_recipes(project / "outputs" / "round0_curve.recipes.json")
    assert recipes == {recipe: recipe_settings(Params.load(project / "params.yaml")),
                       new["recipe"]: recipe_settings(Params.load(project / "other.yaml"))}
    assert recipe_labels(recipes)[new["recipe"]] == f"train.base_lr=0.2 ({new['recipe']})"


def test_a_replicate_sets_its_seeds_and_a_round_0_ahead_checks_the_code_its_stages_read():
    assert seed_values(2, "synthetic") == {"seed": 2, "pseudo_label.seed": 2, "data.split_seed": 2, "synthetic.seed": 2}
    assert seed_overrides(2, "cityscapes") == ["-S", "seed=2", "-S", "pseudo_label.seed=2", "-S", "data.split_seed=2"]
    params = Params({"seed": 0, "train": {"iterations": 4, "base_lr": 0.1}}, "p.yaml")
    assert with_values(params, {"seed": 3, "train.iterations": 8}) == {"seed": 3, "train": {"iterations": 8,
                                                                                          "base_lr": 0.1}}
    assert params.data["seed"] == 0  # a copy
    with pytest.raises(UserError, match="p.yaml: missing key 'train.crop'"):
        with_values(params, {"train.crop": 3})
    code = round0_code(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    assert {"stages/prepare.py", "stages/train.py", "stages/evaluate.py", "pipeline_lib/train", "pipeline_lib/data",
            "pipeline_lib/evaluation"} <= set(code)
    # Another stage's outputs (restored with it) and the templated data root (checked apart) are not code.
    assert not [path for path in code if path.startswith(("data/", "outputs/")) or "${" in path]
    assert "stages/pseudo_label.py" not in code


@pytest.mark.slow
def test_a_round_0_trained_ahead_in_a_clone_is_restored_here_from_the_run_cache(tmp_path):
    project = make_project(tmp_path / "main")
    settings = yaml.safe_load((project / "params.yaml").read_text())
    settings["train"]["base_lr"] = 0.2
    (project / "other.yaml").write_text(yaml.safe_dump(settings))
    # A package marker that says where the library was imported from (a docstring-only file round 0 does not
    # depend on), committed, so that the clone has it.
    with open(project / "pipeline_lib" / "__init__.py", "a") as handle:
        handle.write("print('pipeline_lib from', __file__)\n")
    run(["git", "commit", "-qam", "marker"], project)
    clone = tmp_path / "ahead"
    command = [sys.executable, "-m", "stages.cli", "ablation", "round0", "--params", "other.yaml", "--seed", "1",
               "--iterations", "3", "--clone", str(clone)]
    out = run(command, project).stdout
    assert "round 0 of seed 1: mIoU" in out and "`dars ablation curve --iterations 3 --params other.yaml " \
        "--seeds 1` restores it" in out
    # The clone's stages ran the clone's code, not that of the repository `dars` was installed from.
    assert f"pipeline_lib from {clone / 'pipeline_lib' / '__init__.py'}" in out
    trained = yaml.safe_load((clone / "params.yaml").read_text())
    assert (trained["seed"], trained["data"]["split_seed"], trained["synthetic"]["seed"]) == (1, 1, 1)
    assert (trained["train"]["iterations"], trained["train"]["base_lr"]) == (3, 0.2)
    # Here the curve point is restored from the run cache: no stage of round 0 ran.
    curve = run([sys.executable, "-m", "stages.cli", "ablation", "curve", "--iterations", "3", "--seeds", "1",
                 "--params", "other.yaml"], project).stdout
    assert "Stage 'train_r0' is cached - skipping run" in curve and "Running stage 'train_r0'" not in curve
    assert "Running stage 'evaluate_r0'" not in curve
    # A point not trained ahead is trained in DVC's temporary workspace, with that workspace's code.
    curve = run([sys.executable, "-m", "stages.cli", "ablation", "curve", "--iterations", "2", "--seeds", "1",
                 "--params", "other.yaml"], project).stdout
    assert "Running stage 'train_r0'" in curve
    assert re.search(r"pipeline_lib from \S*/\.dvc/tmp/exps/\S+/pipeline_lib/__init__\.py", curve)
    # The same command again resumes there (here: finds it done), and refuses a clone of other settings or code.
    assert "round 0 of seed 1" in run(command, project).stdout
    another_seed = [*command[:command.index("--seed") + 1], "2", *command[command.index("--seed") + 2:]]
    refused = run(another_seed, project, check=False)
    assert refused.returncode != 0 and "trains another round 0" in refused.stderr.splitlines()[-1]
    (clone / "pipeline_lib" / "train" / "loop.py").write_text("# edited\n")
    refused = run(command, project, check=False)
    assert "other code than here (pipeline_lib/train)" in refused.stderr.splitlines()[-1]
    # Uncommitted changes to what round 0 runs are refused before anything is cloned.
    with open(project / "pipeline_lib" / "train" / "loop.py", "a") as handle:
        handle.write("# edited\n")
    refused = run([*command[:-1], str(tmp_path / "never")], project, check=False)
    assert "uncommitted changes to what round 0 runs (pipeline_lib/train/loop.py)" in refused.stderr
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_the_grid_runs_into_its_record_which_outlives_the_experiments(tmp_path):
    project = make_project(tmp_path / "grid")
    ablation_command = [sys.executable, "-m", "stages.cli", "ablation"]
    out = run([*ablation_command, "run", "--variants", "dars"], project).stdout
    grid = grid_key(Params.load(project / "params.yaml"))
    record = project / "outputs" / "ablation_runs.json"
    rows = read_record(record)
    assert [(r["variant"], r["seed"], r["experiment"]) for r in rows] == [("dars", 0, f"dars-s0-{grid}")]
    # The recorded scores are the experiments' own, as `dvc exp show` has them.
    shown = {e["Experiment"]: e for e in csv.DictReader(io.StringIO(dvc(project, "exp", "show", "--csv").stdout))}
    for row in rows:
        assert abs(float(shown[row["experiment"]]["outputs/r2/metrics.json:miou"]) - row["rounds"]["r2"]["miou"]) < 1e-6
    assert f"recorded dars-s0-{grid} in outputs/ablation_runs.json" in out and "| DARS |" in out
    # Each round's device and precision went from its checkpoint, through evaluation.json, into the record.
    device = pick_device()
    project_params = Params.load(project / "params.yaml")
    precision = resolve_precision(device, project_params.raw("train.precision"), project_params.raw("model.arch"))
    assert [entry["trained_with"] for entry in rows[0]["rounds"].values()] == [
        {"device": device.type, "precision": precision}] * 3
    assert f"Trained in {precision} on {device.type}." in out
    for figure in ("ablation_scores.png", "ablation_class_shares.png"):
        assert (project / "outputs" / figure).read_bytes()[:4] == b"\x89PNG"
    # A fresh clone has no experiments: the table comes from the record alone, unchanged.
    table_before = (project / "reports" / "ablation.md").read_text()
    dvc(project, "exp", "remove", "--all-commits")
    again = run([*ablation_command, "table", "--variants", "dars"], project)
    assert not again.stdout.startswith("recorded")
    assert (project / "reports" / "ablation.md").read_text() == table_before
    # Another setting is another grid: none of these rows is shown as its.
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("iterations: 4",
                                                                                       "iterations: 5", 1))
    other = run([*ablation_command, "table"], project, check=False)
    assert other.returncode != 0
    assert other.stderr.strip().splitlines()[-1].startswith("error: no finished experiment of this grid")


def test_running_the_queue_waits_until_the_experiments_have_run(monkeypatch):
    """`dvc exp run --run-all` returns at once when an earlier call's worker takes the tasks: the wait does not."""
    from pipeline_lib.experiments import dvc_git

    commands = []
    monkeypatch.setattr(dvc_git, "run_dvc", lambda *args, **kwargs: commands.append(args))
    states = iter([{"a": "Running", "b": "Queued", "c": "Running"}, {"a": "Success", "b": "Running"},
                   {"a": "Success", "b": "Failed"}])
    polled, waited = [], []
    dvc_git.run_queued(["a", "b"], 2, lambda: polled.append(1) or next(states), report=waited.append,
                       poll_seconds=0)
    # Nothing left queued or running: the workers are told to stop (one whose own stop died would idle for ever).
    assert commands == [("exp", "run", "--run-all", "-j", "2"), ("queue", "stop")]
    assert len(polled) == 3 and waited == ["waiting for a, b (a DVC queue worker runs them)",
                                           "waiting for b (a DVC queue worker runs them)"]


def test_the_queue_workers_are_left_running_while_another_experiment_is_queued(monkeypatch):
    from pipeline_lib.experiments import dvc_git

    commands = []
    monkeypatch.setattr(dvc_git, "run_dvc", lambda *args, **kwargs: commands.append(args))
    dvc_git.run_queued(["a"], 1, lambda: {"a": "Success", "other": "Queued"}, report=lambda line: None,
                       poll_seconds=0)
    assert commands == [("exp", "run", "--run-all", "-j", "1")]
