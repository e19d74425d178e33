"""Pseudo-label selection rules: ST, CBST, DA and DARS, as pure functions over arrays.

Every rule works on each unlabelled pixel's float16 confidence (max softmax probability at label
resolution, from :mod:`pipeline_lib.confidence.maps`) and its predicted class, in two passes:
the confidence stage pools the confidences of all images into a histogram and :func:`compute_thresholds`
turns its counts into per-class thresholds; the labelling pass calls :func:`assign_pseudo_labels` on each
image.

- **ST**: one global threshold, the floor(α·N)-th largest confidence over all N unlabelled pixels.
- **CBST**: per class, the (floor(α·P_j) + 1)-th largest of the P_j confidences predicted as class j
  (the authors' rank: index −k−1 of the ascending sort, k = floor(α·P_j); all P_j when that exceeds P_j).
- **DA**: per class, the n_j-th largest, n_j = floor(α·f_j·N) with f_j class j's share of the
  valid labelled pixels, so the pseudo labels follow the labelled class distribution.

Counts are exact: α is taken as the decimal number it is written as (0.2 is 1/5, not the double nearest
to it) and every floor is taken in rational arithmetic, from the labelled split's integer pixel counts
where they are given (see :func:`target_counts`); no float product decides a count.
- **DARS**: DA's thresholds, then, per image, floor(c·(1−s_j)) of the c kept class-j pixels are
  dropped at random, s_j = min(1, n_j/ñ_j), ñ_j = #{pred = j, conf ≥ t_j}.

Ties: a pixel is kept when its confidence is >= the threshold, so every pixel tied at the threshold
is kept. ST, CBST and DA therefore keep at least their target and at most target + (number of
pixels tied at the threshold) − 1 per class (float16 saturates at 1.0 above ~0.99976, so ties are
common for confident classes). DARS's random dropping removes that overshoot: per class it keeps
between min(n_j, ñ_j) and min(n_j, ñ_j) + (number of images) − 1 pixels, the slack coming from the
per-image flooring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.pseudo_label.ranking import INF_BITS, ConfidenceRanking, smallest_bits_at_or_above
from pipeline_lib.settings import METHODS  # the one list of rule names (params.yaml's pseudo_label.method)


def _exact_ratio(labeling_ratio: float) -> Fraction:
    """α as the decimal it is written as: float products like 0.29 * 100 = 28.999999999999996 would floor
    to one pixel less than the 29 meant, and no tolerance is right at every magnitude of pixel count."""
    return Fraction(repr(float(labeling_ratio)))


def _floor_times(ratio: Fraction, count: int) -> int:
    """floor(ratio · count), exactly."""
    return ratio.numerator * int(count) // ratio.denominator


def validate_labeling_ratio(labeling_ratio: float) -> float:
    """The fraction α of unlabelled pixels to pseudo-label, checked to lie in (0, 1]."""
    try:
        ratio = float(labeling_ratio)
    except (TypeError, ValueError):
        raise UserError(f"labeling_ratio must be a number in (0, 1], got {labeling_ratio!r}") from None
    if isinstance(labeling_ratio, bool) or not (0.0 < ratio <= 1.0):  # also refuses NaN
        raise UserError(f"labeling_ratio must be in (0, 1], got {labeling_ratio!r}")
    return ratio


def validate_method(method: str) -> str:
    if method not in METHODS:
        raise UserError(f"unknown pseudo-label method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def _validate_shares(labeled_shares: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    shares = np.asarray(labeled_shares, np.float64)
    if shares.ndim != 1 or shares.size == 0:
        raise UserError(f"labelled class shares must be a non-empty list, got shape {shares.shape}")
    if num_classes is not None and shares.size != num_classes:
        raise UserError(f"labelled class shares list {shares.size} classes but the predictions have "
                        f"{num_classes}; the class distribution and the model disagree")
    if not np.all(np.isfinite(shares)) or np.any(shares < 0) or shares.sum() <= 0:
        raise UserError(f"labelled class shares must be non-negative with a positive sum, got {shares.tolist()}")
    return shares


def target_counts(labeled_shares: np.ndarray, labeling_ratio: float, total_pixels: int) -> np.ndarray:
    """(C,) int64 n_j = floor(α · f_j · N): DA/DARS's number of pixels to pseudo-label per class.

    ``labeled_shares`` are any non-negative weights of the classes, renormalised here (the paper divides
    its class priors by the valid-pixel ratio), so α is a fraction of *all* N unlabelled pixels. The
    floor is exact in rational arithmetic over the weights' own values: pass the labelled split's integer
    pixel counts (as the pipeline does) for f_j = count_j / valid pixels exactly; float shares are taken
    at their exact binary value.
    """
    ratio = _exact_ratio(validate_labeling_ratio(labeling_ratio))
    weights = [Fraction(float(w)) for w in _validate_shares(labeled_shares)]
    if total_pixels < 0:
        raise ValueError(f"total_pixels must be >= 0, got {total_pixels}")
    total_weight = sum(weights)
    return np.array([(ratio * weight * int(total_pixels)) // total_weight for weight in weights], np.int64)


@dataclass(frozen=True)
class ClassThresholds:
    """The outcome of pass 1: what pass 2 keeps of each class.

    ``target_count`` is n_j for DA/DARS and the rank min(floor(α·P_j) + 1, P_j) for CBST. ST has a single
    global target
    floor(α·N) that is not split by class, so for ST ``target_count`` records the per-class number of
    pixels its threshold keeps (equal to ``above_threshold``).
    """

    method: str
    threshold: np.ndarray  # (C,) float32 t_j, float16-exact; np.inf where a class keeps nothing
    keep_probability: np.ndarray  # (C,) float64 s_j; 1.0 except for DARS
    target_count: np.ndarray  # (C,) int64
    above_threshold: np.ndarray  # (C,) int64 ñ_j = #{pred = j, conf >= t_j}
    # DARS's per-image drop count floor(c·(1−s_j)) is computed from target_count and
    # above_threshold in integers (s_j = n_j/ñ_j exactly); keep_probability is their float report.


# The rules below need only two order statistics, passed in as functions so that the streaming
# histogram and the brute-force sort share one statement of the rules:
#   kth_largest(class_index | None, k) -> float  (1 <= k <= count; None = all classes pooled)
#   count_at_or_above(class_index | None, value) -> int
KthLargest = Callable[[int | None, int], float]
CountAtOrAbove = Callable[[int | None, float], int]


def _thresholds_from_order_statistics(method: str, labeling_ratio: float, labeled_shares: np.ndarray,
                                      predicted_per_class: np.ndarray, kth_largest: KthLargest,
                                      count_at_or_above: CountAtOrAbove) -> ClassThresholds:
    method = validate_method(method)
    ratio = _exact_ratio(validate_labeling_ratio(labeling_ratio))
    predicted = np.asarray(predicted_per_class, np.int64)
    num_classes = predicted.size
    shares = _validate_shares(labeled_shares, num_classes)
    total = int(predicted.sum())
    threshold = np.full(num_classes, np.inf, np.float32)

    if method == "st":
        rank = _floor_times(ratio, total)
        if rank >= 1:
            threshold[:] = kth_largest(None, rank)
    else:
        if method == "cbst":
            # The authors' rank, one past floor(α·P_j); capped at P_j, where their index runs out (α = 1).
            target = np.array([min(_floor_times(ratio, p) + 1, int(p)) for p in predicted], np.int64)
        else:
            target = target_counts(shares, labeling_ratio, total)
        for j in range(num_classes):
            # Fewer predicted than wanted: the threshold is the smallest, i.e. keep them all.
            rank = min(int(target[j]), int(predicted[j]))
            if rank >= 1:
                threshold[j] = kth_largest(j, rank)

    above = np.array([count_at_or_above(j, float(t)) if np.isfinite(t) else 0
                      for j, t in enumerate(threshold)], np.int64)
    if method == "st":
        target = above.copy()
    keep = np.ones(num_classes, np.float64)
    if method == "dars":
        dropping = above > target
        keep[dropping] = target[dropping] / above[dropping]
    return ClassThresholds(method, threshold, keep, target, above)


def compute_thresholds(histogram_counts: np.ndarray, method: str, labeling_ratio: float,
                       labeled_shares: np.ndarray) -> ClassThresholds:
    """Exact thresholds of ``method`` from the pooled confidences of all unlabelled pixels: their histogram's
    (C, 65536) counts (``ConfidenceHistogram.counts``, or a confidence store's)."""
    ranking = ConfidenceRanking(histogram_counts)
    return _thresholds_from_order_statistics(method, labeling_ratio, labeled_shares, ranking.predicted_per_class(),
                                             ranking.kth_largest, ranking.count_at_or_above)


def checked_pair(confidence: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, prediction)`` as arrays, refusing non-float16 confidences or mismatched shapes."""
    confidence = np.asarray(confidence)
    prediction = np.asarray(prediction)
    if confidence.dtype != np.float16:
        raise ValueError(f"confidence must be float16, got {confidence.dtype}")
    if confidence.shape != prediction.shape:
        raise ValueError(f"confidence shape {confidence.shape} differs from prediction shape {prediction.shape}")
    return confidence, prediction


def _drop_count(kept: int, target: int, above: int) -> int:
    """floor(kept · (1 − s)) with s = target/above, in exact integer arithmetic."""
    if above <= target:
        return 0
    return kept * (above - target) // above


def assign_pseudo_labels(confidence: np.ndarray, prediction: np.ndarray, thresholds: ClassThresholds,
                         seed: int, image_index: int) -> np.ndarray:
    """(H, W) uint8 pseudo label of one image: the predicted class where kept, 255 elsewhere.

    For DARS the random dropping draws from a generator seeded by (seed, image_index), so the result
    does not depend on the order in which images are processed or on the number of workers.
    """
    confidence, prediction = checked_pair(confidence, prediction)
    num_classes = thresholds.threshold.size
    if prediction.size and (int(prediction.min()) < 0 or int(prediction.max()) >= num_classes):
        raise ValueError(f"prediction values must be in 0..{num_classes - 1}")
    if seed < 0 or image_index < 0:
        raise ValueError(f"seed and image_index must be >= 0, got {seed}, {image_index}")

    # Non-negative float16 values order like their bit patterns: keep = bits >= the smallest pattern at or above
    # the class threshold, the comparison conf >= t_j in uint16 (half the memory traffic of float32).
    bits = np.ascontiguousarray(confidence).view(np.uint16)
    if bits.size and int(bits.max()) > INF_BITS:
        raise ValueError("confidence must be non-negative and not NaN")
    threshold_bits = np.array([smallest_bits_at_or_above(float(t)) if t > 0 else 0 for t in thresholds.threshold],
                              np.uint16)
    keep = bits >= threshold_bits[prediction]
    # C order so that ``reshape(-1)`` below is a view that writes through.
    pseudo = np.where(keep, prediction, IGNORE_INDEX).astype(np.uint8, order="C")

    if thresholds.method == "dars":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(image_index)])))
        flat = pseudo.reshape(-1)
        dropping = [j for j in range(num_classes)
                    if int(thresholds.above_threshold[j]) > int(thresholds.target_count[j])]
        if dropping:
            # Each class's kept positions in ascending order, for all classes at once: a stable (radix) sort of the
            # kept pixels by class instead of one full-image scan per class.
            kept = np.flatnonzero(flat != IGNORE_INDEX)
            classes = flat[kept]
            by_class = kept[np.argsort(classes, kind="stable")]
            ends = np.cumsum(np.bincount(classes, minlength=num_classes))
        for j in dropping:
            kept_positions = by_class[(ends[j - 1] if j else 0):ends[j]]
            drop = _drop_count(kept_positions.size, int(thresholds.target_count[j]), int(thresholds.above_threshold[j]))
            if drop:
                flat[kept_positions[rng.choice(kept_positions.size, size=drop, replace=False)]] = IGNORE_INDEX
    return pseudo
