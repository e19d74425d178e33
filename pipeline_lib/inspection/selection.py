"""Which images a report shows, and how well each one's pseudo label agrees with its ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError


def label_agreement(pseudo: np.ndarray, truth: np.ndarray | None,
                    ignore_index: int = IGNORE_INDEX) -> dict[str, float | None]:
    """One image's kept share (labelled pixels / all pixels) and accuracy against ``truth``.

    Accuracy counts pixels that are labelled in both; it is None without ground truth or overlap.
    """
    pseudo = np.asarray(pseudo)
    kept = pseudo != ignore_index
    result: dict[str, float | None] = {"kept_share": float(kept.mean()) if pseudo.size else 0.0,
                                       "accuracy": None}
    if truth is not None:
        truth = np.asarray(truth)
        if truth.shape != pseudo.shape:
            raise ValueError(f"ground truth {truth.shape} and pseudo label {pseudo.shape} differ in size")
        judged = kept & (truth != ignore_index)
        if judged.any():
            result["accuracy"] = float((pseudo[judged] == truth[judged]).mean())
    return result


def select_image_ids(available: Sequence[str], requested: Sequence[str] | None = None,
                     random_count: int | None = None, seed: int = 0) -> list[str]:
    """The image ids to inspect: ``requested`` (checked, in the given order) or ``random_count`` drawn.

    A random draw is seeded by ``seed`` and returned in ``available`` order, so the same arguments give
    the same images. Unknown ids raise UserError naming a few that exist and how many there are.
    """
    if requested is not None:
        known = set(available)
        unknown = [i for i in requested if i not in known]
        if unknown:
            raise UserError(f"no pseudo label for image id(s) {', '.join(map(repr, unknown[:5]))}; "
                            f"the round has {len(available)} images, e.g. {', '.join(available[:5])}")
        return list(dict.fromkeys(requested))  # drop repeats, keep order
    if random_count is None or random_count < 1:
        raise UserError(f"the number of random images must be >= 1, got {random_count}")
    count = min(random_count, len(available))
    chosen = np.random.default_rng(seed).choice(len(available), size=count, replace=False)
    return [available[i] for i in sorted(chosen.tolist())]
