"""The float16-bit-pattern histogram (confidence.histogram) and the exact order statistics read from its counts
(pseudo_label.ranking)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.pseudo_label.ranking import ConfidenceRanking, float16_value, smallest_bits_at_or_above

FAST = settings(max_examples=60, deadline=None)


def random_batch(seed: int, num_classes: int, size: int, distinct_levels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Confidences in (0, 1]; with ``distinct_levels`` they take few values, so ties are frequent."""
    rng = np.random.default_rng(seed)
    if distinct_levels is None:
        confidence = rng.uniform(0.0, 1.0, size).astype(np.float16)
    else:
        levels = np.linspace(0.2, 1.0, distinct_levels).astype(np.float16)
        confidence = rng.choice(levels, size)
    prediction = rng.integers(0, num_classes, size).astype(np.uint8)
    return confidence, prediction


@FAST
@given(seed=st.integers(0, 2**32 - 1), num_classes=st.integers(1, 6), size=st.integers(1, 400),
       levels=st.one_of(st.none(), st.integers(1, 5)), data=st.data())
def test_kth_largest_equals_sorting(seed, num_classes, size, levels, data):
    confidence, prediction = random_batch(seed, num_classes, size, levels)
    histogram = ConfidenceHistogram(num_classes)
    histogram.add(confidence, prediction)
    histogram = ConfidenceRanking(histogram.counts)
    for class_index in [None, *range(num_classes)]:
        values = confidence if class_index is None else confidence[prediction == class_index]
        descending = np.sort(values.astype(np.float64))[::-1]
        if descending.size == 0:
            with pytest.raises(ValueError):
                histogram.kth_largest(class_index, 1)
            continue
        k = data.draw(st.integers(1, descending.size))
        assert histogram.kth_largest(class_index, k) == descending[k - 1]
        assert histogram.kth_largest(class_index, descending.size) == descending[-1]
        with pytest.raises(ValueError):
            histogram.kth_largest(class_index, descending.size + 1)


@FAST
@given(seed=st.integers(0, 2**32 - 1), num_classes=st.integers(1, 4), size=st.integers(0, 300),
       value=st.one_of(st.floats(-1.0, 2.0), st.sampled_from([0.0, 1.0, 0.5, np.inf, 1e6, 0.1, 1 / 3])))
def test_count_at_or_above_equals_brute_force(seed, num_classes, size, value):
    confidence, prediction = random_batch(seed, num_classes, size, None)
    counted = ConfidenceHistogram(num_classes)
    counted.add(confidence, prediction)
    histogram = ConfidenceRanking(counted.counts)
    exact = confidence.astype(np.float64)
    assert histogram.count_at_or_above(None, value) == np.count_nonzero(exact >= value)
    for class_index in range(num_classes):
        expected = np.count_nonzero(exact[prediction == class_index] >= value)
        assert histogram.count_at_or_above(class_index, value) == expected


def test_smallest_bits_at_or_above_rounds_up_only_when_needed():
    assert smallest_bits_at_or_above(1.0) == 0x3C00
    assert float16_value(smallest_bits_at_or_above(1 / 3)) >= 1 / 3
    assert float16_value(smallest_bits_at_or_above(1 / 3) - 1) < 1 / 3
    assert smallest_bits_at_or_above(1e9) == 0x7C00  # beyond float16: only +inf is >= it


@FAST
@given(seed=st.integers(0, 2**32 - 1), num_classes=st.integers(1, 5), parts=st.integers(1, 4))
def test_merge_equals_adding_everything_to_one(seed, num_classes, parts):
    batches = [random_batch(seed + i, num_classes, 50 + 7 * i, 3 if i % 2 else None) for i in range(parts)]
    together = ConfidenceHistogram(num_classes)
    merged = ConfidenceHistogram(num_classes)
    for confidence, prediction in batches:
        together.add(confidence, prediction)
        worker = ConfidenceHistogram(num_classes)
        worker.add(confidence, prediction)
        merged.merge(worker)
    np.testing.assert_array_equal(merged.counts, together.counts)
    assert merged.total() == sum(c.size for c, _ in batches)
    np.testing.assert_array_equal(
        ConfidenceRanking(merged.counts).predicted_per_class(),
        np.bincount(np.concatenate([p for _, p in batches]), minlength=num_classes))


def test_values_above_one_keep_their_order():
    # Softmax never exceeds 1, but the histogram must stay exact if it is fed other scores.
    histogram = ConfidenceHistogram(2)
    histogram.add(np.array([0.5, 1.0], np.float16), np.array([0, 1]))
    histogram.add(np.array([2.0, 65504.0, np.inf, 0.25], np.float16), np.array([0, 0, 1, 1]))
    assert histogram.total() == 6
    histogram = ConfidenceRanking(histogram.counts)
    assert histogram.kth_largest(None, 1) == np.inf
    assert histogram.kth_largest(None, 2) == 65504.0
    assert histogram.kth_largest(0, 3) == 0.5
    assert histogram.kth_largest(1, 2) == 1.0
    assert histogram.count_at_or_above(None, 1.0) == 4
    assert histogram.total() == 6


def test_two_dimensional_images_and_int_predictions_are_accepted():
    confidence = np.full((3, 4), 0.75, np.float16)
    prediction = np.arange(12).reshape(3, 4) % 3
    histogram = ConfidenceHistogram(3)
    histogram.add(confidence, prediction)
    np.testing.assert_array_equal(ConfidenceRanking(histogram.counts).predicted_per_class(), [4, 4, 4])
    histogram.add(np.zeros((0, 4), np.float16), np.zeros((0, 4), np.uint8))  # empty: a no-op
    assert histogram.total() == 12


@pytest.mark.parametrize("confidence, prediction, message", [
    (np.array([0.5], np.float32), np.array([0]), "float16"),
    (np.array([0.5, 0.5], np.float16), np.array([0]), "shape"),
    (np.array([-0.5], np.float16), np.array([0]), "non-negative"),
    (np.array([-0.0], np.float16), np.array([0]), "non-negative"),
    (np.array([np.nan], np.float16), np.array([0]), "NaN"),
    (np.array([0.5], np.float16), np.array([3]), "0..2"),
    (np.array([0.5], np.float16), np.array([-1]), "0..2"),
    (np.array([0.5], np.float16), np.array([0.0]), "integer"),
])
def test_add_refuses_inputs_that_would_break_the_ordering(confidence, prediction, message):
    histogram = ConfidenceHistogram(3)
    with pytest.raises(ValueError, match=message):
        histogram.add(confidence, prediction)
    assert histogram.total() == 0


def test_constructor_and_merge_check_the_class_count():
    with pytest.raises(ValueError):
        ConfidenceHistogram(0)
    with pytest.raises(ValueError):
        ConfidenceHistogram(256)
    with pytest.raises(ValueError, match="merge"):
        ConfidenceHistogram(3).merge(ConfidenceHistogram(4))
    with pytest.raises(ValueError):
        ConfidenceRanking(ConfidenceHistogram(3).counts).count_at_or_above(0, np.nan)
    with pytest.raises(ValueError):
        ConfidenceRanking(ConfidenceHistogram(3).counts).kth_largest(3, 1)


@pytest.mark.parametrize("counts", [np.zeros((2, 100), np.int64), np.zeros((2, 1 << 16), np.float64),
                                    -np.ones((2, 1 << 16), np.int64), np.zeros(1 << 16, np.int64)])
def test_ranking_refuses_counts_that_are_not_a_histogram(counts):
    with pytest.raises(ValueError, match="counts"):
        ConfidenceRanking(counts)
