"""Exact per-class order statistics of float16 confidences in memory independent of the image count.

Non-negative float16 values sort exactly like their uint16 bit patterns, so a histogram with one
bin per bit pattern (65,536 bins per class) is a lossless summary for ranking: the k-th largest
confidence and the number of confidences at or above a value come out exactly, with no sorting of
the pooled values (the authors' code sorts ~5.4 G float16 values in memory for Cityscapes 1/8).
A histogram is ``num_classes x 65536`` int64 (10 MB for 19 classes) and histograms add, so workers
can fill their own and merge them.
"""

from __future__ import annotations

import numpy as np

FLOAT16_PATTERNS = 1 << 16
ONE_BITS = 0x3C00  # float16 1.0: softmax confidences never exceed it
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


class ConfidenceHistogram:
    """Counts of (predicted class, float16 confidence bit pattern) pairs.

    ``counts[j, b]`` is the number of pixels predicted as class ``j`` whose confidence has bit
    pattern ``b``. Confidences must be non-negative and not NaN (softmax maxima are in [1/C, 1]).
    """

    def __init__(self, num_classes: int) -> None:
        if not 1 <= num_classes <= 255:
            raise ValueError(f"num_classes must be in 1..255 (uint8 predictions, 255 = ignore), got {num_classes}")
        self.num_classes = int(num_classes)
        self.counts = np.zeros((self.num_classes, FLOAT16_PATTERNS), np.int64)

    def add(self, confidence: np.ndarray, prediction: np.ndarray) -> None:
        """Count one image (or any batch of pixels): float16 confidences, integer predictions."""
        confidence, prediction = checked_pair(confidence, prediction)
        if not np.issubdtype(prediction.dtype, np.integer):
            raise ValueError(f"prediction must be an integer array, got {prediction.dtype}")
        if confidence.size == 0:
            return
        bits = np.ascontiguousarray(confidence).view(np.uint16)
        highest_bits = int(bits.max())
        if highest_bits > INF_BITS:  # sign bit set (negative, even -0.0) or NaN: ordering by bits breaks
            raise ValueError("confidence must be non-negative and not NaN")
        if int(prediction.min()) < 0 or int(prediction.max()) >= self.num_classes:
            raise ValueError(f"prediction values must be in 0..{self.num_classes - 1}, "
                             f"got {int(prediction.min())}..{int(prediction.max())}")
        # Softmax confidences are <= 1.0, so only the first 0x3C01 patterns can occur; a narrower
        # key range makes bincount's output (and the add into ``counts``) ~4x smaller.
        width = ONE_BITS + 1 if highest_bits <= ONE_BITS else INF_BITS + 1
        keys = prediction.astype(np.intp).ravel() * width
        keys += bits.ravel()
        binned = np.bincount(keys, minlength=self.num_classes * width)
        self.counts[:, :width] += binned.reshape(self.num_classes, width)

    def merge(self, other: ConfidenceHistogram) -> None:
        """Add ``other``'s counts into this histogram (e.g. one filled by another worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class histogram into a "
                             f"{self.num_classes}-class one")
        self.counts += other.counts

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


def checked_pair(confidence: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, prediction)`` as arrays, refusing non-float16 confidences or mismatched shapes."""
    confidence = np.asarray(confidence)
    prediction = np.asarray(prediction)
    if confidence.dtype != np.float16:
        raise ValueError(f"confidence must be float16, got {confidence.dtype}")
    if confidence.shape != prediction.shape:
        raise ValueError(f"confidence shape {confidence.shape} differs from prediction shape {prediction.shape}")
    return confidence, prediction
