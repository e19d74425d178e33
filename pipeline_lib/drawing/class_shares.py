"""Class distributions of the labelled set and of pseudo labels, as in the DARS paper's Figure 1.

Bars per class, classes ordered by their labelled frequency (most frequent first), a log-scale y axis
so the tail classes are readable, one bar series for the labelled set and one per pseudo-label
method/round. A well-aligned method's bars follow the labelled ones; a confidence-thresholded one
(ST, CBST) starves the tail classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import class_shares

LABELED_SERIES = "labelled set"


def to_shares(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts or shares → shares summing to 1 (all zeros stay zeros), refusing what is no distribution."""
    array = np.asarray(values, np.float64)
    if array.ndim != 1 or not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"a class distribution must be a 1-d list of non-negative numbers, got {array!r}")
    return class_shares(array)


def order_by_labeled_share(labeled_shares: Sequence[float] | np.ndarray) -> list[int]:
    """Class indices, most frequent labelled class first; ties keep class order."""
    shares = np.asarray(labeled_shares, np.float64)
    return sorted(range(len(shares)), key=lambda j: (-shares[j], j))


def plot_class_distributions(path: str | os.PathLike, class_names: Sequence[str],
                             labeled_shares: Sequence[float] | np.ndarray,
                             pseudo_shares: Mapping[str, Sequence[float] | np.ndarray],
                             title: str | None = None) -> None:
    """Write the bar chart as a PNG at ``path``, atomically.

    ``pseudo_shares`` maps a series name (e.g. ``"r1 (dars, α=0.2)"``) to per-class counts or shares;
    every distribution is normalised to shares. Classes with a zero share draw no bar (log scale).
    """
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    series = {LABELED_SERIES: to_shares(labeled_shares)}
    for name, values in pseudo_shares.items():
        series[str(name)] = to_shares(values)
    for name, shares in series.items():
        if shares.shape != (num_classes,):
            raise ValueError(f"series {name!r} has {shares.size} classes, expected {num_classes}")
    order = order_by_labeled_share(series[LABELED_SERIES])
    positive = np.concatenate([s[s > 0] for s in series.values()])
    floor = float(positive.min()) / 2 if positive.size else 1e-6

    width = 0.8 / len(series)
    figure = Figure(figsize=(max(6.0, 0.45 * num_classes * max(1.0, len(series) / 2)), 4.2), dpi=110,
                    layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(num_classes)
    for k, (name, shares) in enumerate(series.items()):
        heights = shares[order]
        # Bars start at the floor: a log axis has no zero, and zero-share classes simply show no bar.
        axes.bar(x + (k - (len(series) - 1) / 2) * width, np.where(heights > 0, heights - floor, 0), width,
                 bottom=floor, label=name, color="0.35" if name == LABELED_SERIES else None)
    axes.set_yscale("log")
    axes.set_ylim(bottom=floor, top=1.0)
    axes.set_xticks(x, [class_names[j] for j in order], rotation=60, ha="right", fontsize=8)
    axes.set_xlim(-0.6, num_classes - 0.4)
    axes.set_ylabel("class share of the labelled pixels (log scale)")
    axes.grid(axis="y", which="major", alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title, fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
