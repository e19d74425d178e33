"""The ablation grid's figures, from its record: scores per method with their spread over seeds, and the
labelled vs pseudo-label class shares per method (the paper's Figure 1, drawn by
:func:`pipeline_lib.drawing.class_shares.plot_class_distributions`); and the round-0 curve, from its CSV.

The score panel shows each seed as a dot beside the bar of their mean, with the sample standard deviation as
the error bar: with three seeds a bar alone would hide how few measurements it stands on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.experiments.comparison import first_and_last
from pipeline_lib.experiments.curve import PLATEAU_GAIN, doubling_gains
from pipeline_lib.experiments.grid import Variant
from pipeline_lib.drawing.class_shares import plot_class_distributions
from pipeline_lib.settings import BASELINE_ROUND

BASELINE_LABEL = "supervised baseline"
SCORES = (("miou", "mIoU"), ("tail_miou", "tail mIoU"))


def score_series(rows: Sequence[dict], variants: Sequence[Variant], round_name: str,
                 score: str) -> list[tuple[str, list[float]]]:
    """(label, one value ×100 per recorded seed) of the baseline (round r0, one per seed) and each variant at
    ``round_name``; a variant with no row is left out."""
    baseline = {row["seed"]: row["rounds"][BASELINE_ROUND].get(score) for row in rows}
    series = [(BASELINE_LABEL, [100 * v for _, v in sorted(baseline.items()) if v is not None])]
    for variant in variants:
        values = [100 * row["rounds"][round_name][score] for row in sorted(rows, key=lambda r: r["seed"])
                  if row["variant"] == variant.name and row["rounds"].get(round_name, {}).get(score) is not None]
        if values:
            series.append((variant.label, values))
    return series


def plot_scores(path: str | os.PathLike, rows: Sequence[dict], variants: Sequence[Variant],
                rounds: Sequence[str]) -> None:
    """One panel per shown round (k = 1 and the last): mIoU and tail mIoU bars (mean over seeds) with the
    seeds as dots and ± one sample std; a PNG at ``path``, written atomically."""
    from matplotlib.figure import Figure

    if not rows:
        raise UserError("no finished experiment of this grid is recorded: nothing to plot")
    shown = first_and_last(rounds)
    figure = Figure(figsize=(6.5 * len(shown), 4.6), dpi=110, layout="constrained")
    panels = figure.subplots(1, len(shown), squeeze=False, sharey=True)[0]
    seeds = sorted({row["seed"] for row in rows})
    for axes, round_name in zip(panels, shown):
        kind = "k = 1" if round_name == rounds[0] else "iterative training"
        labels = [label for label, _ in score_series(rows, variants, round_name, "miou")]
        x = np.arange(len(labels))
        width = 0.38
        for offset, (score, score_label) in zip((-width / 2, width / 2), SCORES):
            series = dict(score_series(rows, variants, round_name, score))
            means = [np.mean(series[label]) if series.get(label) else np.nan for label in labels]
            stds = [np.std(series[label], ddof=1) if len(series.get(label, [])) > 1 else 0.0 for label in labels]
            axes.bar(x + offset, means, width, yerr=stds, capsize=3, label=score_label, alpha=0.75)
            for position, label in zip(x + offset, labels):
                values = series.get(label, [])
                axes.scatter([position] * len(values), values, s=10, color="black", zorder=3)
        axes.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        seed_list = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        axes.set_title(f"{kind} (round {round_name}), val, {seed_list}", fontsize=10)
        axes.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("IoU ×100 (bar: mean, dots: seeds, line: ± 1 std)")
    panels[0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def plot_class_shares(path: str | os.PathLike, rows: Sequence[dict], variants: Sequence[Variant],
                      round_name: str) -> None:
    """The labelled set's class shares and each variant's pseudo-label shares at ``round_name``, each the
    mean over the recorded seeds (the labelled set's over every seed's split), as the paper's Figure 1."""
    with_labels = [row for row in rows if (row["rounds"].get(round_name) or {}).get("pseudo_labels")]
    if not with_labels:
        raise UserError(f"no recorded run has pseudo labels in round {round_name}: no class shares to plot")
    class_names = list(with_labels[0]["rounds"][round_name]["pseudo_labels"]["class_shares"])

    def mean_shares(chosen: Sequence[dict], which: str) -> np.ndarray:
        return np.mean([[row["rounds"][round_name]["pseudo_labels"]["class_shares"][name][which]
                         for name in class_names] for row in chosen], axis=0)

    by_seed = {row["seed"]: row for row in with_labels}  # one labelled set per seed (its split)
    pseudo = {}
    for variant in variants:
        chosen = [row for row in with_labels if row["variant"] == variant.name]
        if chosen:
            seeds = f"{len(chosen)} seed{'s' if len(chosen) > 1 else ''}"
            pseudo[f"{variant.label} ({seeds})"] = mean_shares(chosen, "pseudo")
    plot_class_distributions(path, class_names, mean_shares(list(by_seed.values()), "labeled"), pseudo,
                             title=f"class shares: labelled set vs pseudo labels of round {round_name}, "
                                   "mean over seeds")


def plot_grid(folder: Path, rows: Sequence[dict], variants: Sequence[Variant], rounds: Sequence[str]) -> list[Path]:
    """The grid's two figures in ``folder``: scores per method (:func:`plot_scores`) and the first round's class
    shares (:func:`plot_class_shares`); returns their paths."""
    scores, shares = folder / "ablation_scores.png", folder / "ablation_class_shares.png"
    plot_scores(scores, rows, variants, rounds)
    plot_class_shares(shares, rows, variants, rounds[0])
    return [scores, shares]


def plot_round0_curve(path: str | os.PathLike, rows: Sequence[dict], labels: dict[str, str] | None = None) -> None:
    """Val mIoU (solid) and tail mIoU (dashed) of round 0 against its budget, one colour per recipe and seed,
    on a log2 axis (each step a doubling), each doubling's mIoU gain written beside it (bold once it is below
    the plateau's threshold); a recipe is named by ``labels`` (:func:`pipeline_lib.experiments.grid.recipe_labels`),
    else by its hash, in a legend under the axes, where it hides no point. A PNG at ``path``, written
    atomically."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not rows:
        raise UserError("the round-0 curve has no rows: nothing to plot")
    labels = labels or {}
    curves = sorted({(row["recipe"], row["seed"]) for row in rows})
    # The legend goes under the axes, one entry a line (recipe names are long): the figure grows with them.
    figure = Figure(figsize=(8, 4.4 + 0.18 * (len(curves) + 2)), dpi=110, layout="constrained")
    axes = figure.subplots()
    handles = []
    gain_labels = []  # (doubling, mIoU at its middle, text, colour, bold), placed once the axes are laid out
    for index, (recipe, seed) in enumerate(curves):
        colour = f"C{index % 10}"
        points = sorted((row for row in rows if (row["recipe"], row["seed"]) == (recipe, seed)),
                        key=lambda row: row["iterations"])
        budgets = [row["iterations"] for row in points]
        miou = [100 * float(row["miou"]) for row in points]
        [line] = axes.plot(budgets, miou, "o-", color=colour, label=f"{labels.get(recipe, recipe)}, seed {seed}")
        handles.append(line)
        tail = [(row["iterations"], 100 * float(row["tail_miou"])) for row in points if row["tail_miou"] != ""]
        if tail:
            axes.plot(*zip(*tail), "s--", color=colour, alpha=0.7)
        by_budget = dict(zip(budgets, miou))
        for budget, doubled, gain in doubling_gains(rows, recipe, seed):
            gain_labels.append(((budget, doubled), (by_budget[budget] + by_budget[doubled]) / 2,
                                f"{100 * gain:+.1f}", colour, gain < PLATEAU_GAIN))
    # The two scores by line style, once, instead of twice per curve.
    handles += [Line2D([], [], color="grey", marker="o", label="mIoU (solid)"),
                Line2D([], [], color="grey", marker="s", linestyle="--", alpha=0.7, label="tail mIoU (dashed)")]
    axes.set_xscale("log", base=2)
    ticks = sorted({row["iterations"] for row in rows})
    axes.set_xticks(ticks, [f"{budget:,}" for budget in ticks], fontsize=8)
    axes.minorticks_off()
    axes.set_xlabel("round-0 iterations (each point its own poly schedule)")
    axes.set_ylabel("val IoU ×100")
    axes.set_title(f"round 0 against its budget: numbers are each doubling's mIoU gain (plateau: < "
                   f"{100 * PLATEAU_GAIN:.1f})", fontsize=10)
    axes.grid(alpha=0.3)
    figure.legend(handles=handles, loc="outside lower center", fontsize=8)
    # Each gain sits just above the middle of its doubling; where curves run close, the labels of one doubling
    # would print over each other (+2.7 over +2.5 at 4,000-8,000 before), so they are spread apart, in points
    # of the laid-out axes.
    figure.draw_without_rendering()
    low, high = axes.get_ylim()
    axes_points = axes.get_window_extent().height * 72 / figure.dpi
    per_point = (high - low) / axes_points
    placed = []
    for doubling in sorted({label[0] for label in gain_labels}):
        chosen = [label for label in gain_labels if label[0] == doubling]
        heights = spread_apart([middle + 4 * per_point for _, middle, *_ in chosen], 10 * per_point)
        placed += [(doubling, height, *label[2:]) for label, height in zip(chosen, heights)]
    # The label of a doubling that ends at the highest point and gains little (the plateau's) rose through the
    # axes' top edge; the axes grow to hold every label's box (9 points high at this size; 12 leaves a margin), the
    # scale change included: the upper limit U solves top label + 12 points × (U − low) / axes_points = U.
    label_points = 12
    if placed:
        needed = (max(height for _, height, *_ in placed) - label_points * low / axes_points) / \
            (1 - label_points / axes_points)
        axes.set_ylim(low, max(high, needed))
    for doubling, height, text, colour, bold in placed:
        axes.annotate(text, ((doubling[0] * doubling[1]) ** 0.5, height), ha="center", va="bottom",
                      fontsize=8, color=colour, fontweight="bold" if bold else "normal",
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def spread_apart(heights: Sequence[float], gap: float) -> list[float]:
    """``heights`` moved down as little as needed for every two to be at least ``gap`` apart, in their order
    (the highest stays where it is): where labels at these heights would overlap."""
    placed: dict[int, float] = {}
    floor = float("inf")
    for index in sorted(range(len(heights)), key=lambda i: -heights[i]):
        floor = min(heights[index], floor - gap)
        placed[index] = floor
    return [placed[index] for index in range(len(heights))]
