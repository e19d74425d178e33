"""Exact per-class order statistics of float16 confidences, read from their histogram's counts.

The counts are ``confidence.histogram.ConfidenceHistogram``'s: ``counts[j, b]`` pixels predicted as class ``j``
with confidence bit pattern ``b``. Non-negative float16 values sort like their bit patterns, so the k-th largest
confidence and the number of confidences at or above a value come out exactly by cumulative sums, whatever
the number of pixels counted.
"""

from __future__ import annotations

import numpy as np

FLOAT16_PATTERNS = 1 << 16
INF_BITS = 0x7C00  # float16 +inf: the largest non-negative, non-NaN pattern


def float16_value(bits: int) -> float:
    return float(np.array(bits, np.uint16).view(np.float16))


def smallest_bits_at_or_above(value: float) -> int:
    """The smallest non-negative float16 bit pattern whose value is >= ``value`` (``value`` > 0)."""
    with np.errstate(over="ignore"):  # values above 65504 become +inf, which is what we want
        rounded = np.float16(value)  # round-to-nearest may land below ``value``
    bits = int(np.array(rounded).view(np.uint16))
    if float(rounded) < value:
        bits += 1
    return bits


class ConfidenceRanking:
    """Order statistics over the histogram ``counts`` ((C, 65536) non-negative integers)."""

    def __init__(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != FLOAT16_PATTERNS or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"counts must be integers of shape (C, {FLOAT16_PATTERNS}), got {counts.dtype} "
                             f"{counts.shape}")
        if (counts < 0).any():
            raise ValueError("counts must be non-negative")
        self.counts = counts.astype(np.int64, copy=False)
        self.num_classes = counts.shape[0]

    def total(self) -> int:
        """Number of pixels counted."""
        return int(self.counts.sum())

    def predicted_per_class(self) -> np.ndarray:
        """(C,) int64: number of pixels predicted as each class."""
        return self.counts.sum(axis=1)

    def _row(self, class_index: int | None) -> np.ndarray:
        if class_index is None:
            return self.counts.sum(axis=0)
        if not 0 <= class_index < self.num_classes:
            raise ValueError(f"class_index must be in 0..{self.num_classes - 1}, got {class_index}")
        return self.counts[class_index]

    def kth_largest(self, class_index: int | None, k: int) -> float:
        """The exact k-th largest confidence (k >= 1) of one class, or of all classes if None.

        Raises ValueError when fewer than k confidences were counted.
        """
        row = self._row(class_index)
        from_top = np.cumsum(row[::-1])
        if k < 1 or k > from_top[-1]:
            raise ValueError(f"k must be in 1..{int(from_top[-1])} for class {class_index}, got {k}")
        position = int(np.searchsorted(from_top, k, side="left"))  # first pattern where the running count reaches k
        return float16_value(FLOAT16_PATTERNS - 1 - position)

    def count_at_or_above(self, class_index: int | None, value: float) -> int:
        """Number of confidences >= ``value`` for one class, or for all classes if None."""
        if np.isnan(value):
            raise ValueError("value must not be NaN")
        row = self._row(class_index)
        if value <= 0:
            return int(row.sum())
        return int(row[smallest_bits_at_or_above(value):].sum())
