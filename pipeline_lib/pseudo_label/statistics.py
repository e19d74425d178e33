"""Statistics of a pseudo-labelling run: per-class integer tallies, KL(labelled ‖ pseudo), the stats
document (per class too), its summary (the DVC metrics file) and the labelled-vs-pseudo class shares in long
format (a DVC plot).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_lib.data.classes import class_shares
from pipeline_lib.pseudo_label.rules import ClassThresholds

# KL(labelled || pseudo) adds this to both distributions so that a class with no pseudo label gives a large
# but finite divergence (log(share / 1e-6) ~ 14 per unit share) instead of infinity.
KL_EPSILON = 1e-6


@dataclass
class PixelTally:
    """Integer per-class counts accumulated in pass 2."""

    final_counts: np.ndarray  # pseudo-labelled pixels per class
    correct: np.ndarray  # ... whose ground truth agrees
    judged: np.ndarray  # ... that have a valid ground-truth pixel
    images_with_truth: int = 0

    @classmethod
    def empty(cls, num_classes: int) -> "PixelTally":
        zeros = lambda: np.zeros(num_classes, np.int64)  # noqa: E731
        return cls(zeros(), zeros(), zeros())

    def as_array(self) -> np.ndarray:
        """(3 * C + 1,) int64: the counts in one array, to be summed over processes."""
        return np.concatenate([self.final_counts, self.correct, self.judged, [self.images_with_truth]]).astype(np.int64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> "PixelTally":
        final, correct, judged = np.split(np.asarray(values[:-1], np.int64), 3)
        return cls(final, correct, judged, int(values[-1]))


def kl_divergence(labeled_shares: np.ndarray, pseudo_counts: np.ndarray, epsilon: float = KL_EPSILON) -> float:
    """KL(labelled || pseudo) in nats between the class distributions, ``epsilon`` added to both shares."""
    p, q = class_shares(labeled_shares), class_shares(pseudo_counts)
    present = p > 0
    return float(np.sum(p[present] * np.log((p[present] + epsilon) / (q[present] + epsilon))))


def threshold_or_none(value: float) -> float | None:
    """A threshold for JSON: None where the class keeps nothing (threshold +inf)."""
    return float(value) if np.isfinite(value) else None


def _number(value: Any) -> int | float:
    value = np.asarray(value).item()
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def summarize(class_names: Sequence[str], labeled_shares: np.ndarray, thresholds: ClassThresholds, tally: PixelTally,
              method: str, labeling_ratio: float, temperature: float, seed: int,
              images: int, total_pixels: int) -> dict[str, Any]:
    """The stats document: flat scalars on top, one entry per class below."""
    final = tally.final_counts
    kept = int(final.sum())
    labeled, pseudo = class_shares(labeled_shares), class_shares(final)
    has_truth = tally.images_with_truth > 0
    stats: dict[str, Any] = {
        "method": method,
        "labeling_ratio": float(labeling_ratio),
        "temperature": float(temperature),
        "seed": int(seed),
        "images": int(images),
        "pixels": int(total_pixels),
        "pseudo_labeled_pixels": kept,
        "fraction_labeled": kept / total_pixels if total_pixels else 0.0,
        "kl_divergence": kl_divergence(labeled, final),
    }
    if has_truth:
        judged = int(tally.judged.sum())
        stats["pseudo_label_accuracy"] = int(tally.correct.sum()) / judged if judged else None
        stats["ground_truth_images"] = tally.images_with_truth
    per_class = {}
    for j, name in enumerate(class_names):
        entry = {
            "target_count": _number(thresholds.target_count[j]),
            "threshold": threshold_or_none(thresholds.threshold[j]),
            "above_threshold": _number(thresholds.above_threshold[j]),
            "keep_probability": float(thresholds.keep_probability[j]),
            "final_count": int(final[j]),
            "labeled_share": float(labeled[j]),
            "pseudo_share": float(pseudo[j]),
        }
        if has_truth:
            entry["accuracy"] = int(tally.correct[j]) / int(tally.judged[j]) if tally.judged[j] else None
        per_class[name] = entry
    stats["per_class"] = per_class
    return stats


# The scalars of the stats document that people compare across experiments (see :func:`summary_metrics`);
# the temperature is a setting's outcome, not a result: it stays in the stats document.
SUMMARY_METRICS = ("fraction_labeled", "kl_divergence", "pseudo_label_accuracy")


def summary_metrics(stats: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics file of a run: :data:`SUMMARY_METRICS` of its stats document (accuracy only with
    ground truth). The per-class entries stay in the stats document, out of `dvc exp show`'s columns."""
    return {key: stats[key] for key in SUMMARY_METRICS if key in stats}


# Names of the two sources in the class-share plot (the ``source`` column; the plot template colours by it).
LABELED_SOURCE, PSEUDO_SOURCE = "labelled", "pseudo labels"


def class_share_csv(class_names: Sequence[str], labeled_shares: np.ndarray, pseudo_counts: np.ndarray) -> str:
    """DVC plots CSV in long format, ``class,source,share``: per class its labelled share, then its
    pseudo-label share, most frequent labelled class first.

    One ``share`` column, so DVC's per-output plot (one ``y`` field) holds both sources, and ``dvc plots diff``
    of two experiments shows each one's pseudo-label shares beside the labelled ones.
    """
    labeled, pseudo = class_shares(labeled_shares), class_shares(pseudo_counts)
    order = sorted(range(len(class_names)), key=lambda j: (-labeled[j], j))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class", "source", "share"])
    for j in order:
        writer.writerow([class_names[j], LABELED_SOURCE, f"{labeled[j]:.6g}"])
        writer.writerow([class_names[j], PSEUDO_SOURCE, f"{pseudo[j]:.6g}"])
    return out.getvalue()
