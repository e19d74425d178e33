"""ST / CBST / DA / DARS pseudo-label rules: exact thresholds, counts, determinism, edge cases."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.confidence.maps import (
    _SUM_ALIGN_PIXELS,
    BAND_ROWS,
    _max_softmax_and_argmax,
    _row_bands,
    _runs,
    _upsampled_band,
    confidence_and_prediction,
)
from pipeline_lib.errors import UserError
from pipeline_lib.predict.upsample import upsample_logits
from pipeline_lib.pseudo_label.rules import (
    METHODS,
    ClassThresholds,
    _thresholds_from_order_statistics,
    assign_pseudo_labels,
    compute_thresholds,
    target_counts,
    validate_labeling_ratio,
)

FAST = settings(max_examples=40, deadline=None)
THRESHOLD_FIELDS = ("threshold", "keep_probability", "target_count", "above_threshold")
# float16 bit patterns from 0.0625 to 1.0: 4097 distinct confidences, so small inputs can avoid ties.
DISTINCT_CONFIDENCES = np.arange(0x2C00, 0x3C01, dtype=np.uint16).view(np.float16)


# Test oracles: a brute-force statement of the thresholds (sorting the pooled confidences in memory) and
# a plain count of pseudo-labelled pixels, to hold the streaming code against.
def thresholds_by_sorting(confidences: list[np.ndarray], predictions: list[np.ndarray], method: str,
                          labeling_ratio: float, labeled_shares: np.ndarray) -> ClassThresholds:
    """Brute-force reference for :func:`compute_thresholds`: sorts the pooled confidences in memory."""
    num_classes = np.asarray(labeled_shares).size
    pooled = np.concatenate([np.asarray(c, np.float16).ravel() for c in confidences])
    classes = np.concatenate([np.asarray(p).ravel() for p in predictions]).astype(np.int64)
    descending = {j: np.sort(pooled[classes == j].astype(np.float64))[::-1] for j in range(num_classes)}
    descending[None] = np.sort(pooled.astype(np.float64))[::-1]

    def kth_largest(class_index: int | None, k: int) -> float:
        return float(descending[class_index][k - 1])

    def count_at_or_above(class_index: int | None, value: float) -> int:
        return int(np.count_nonzero(descending[class_index] >= value))

    predicted = np.bincount(classes, minlength=num_classes)
    return _thresholds_from_order_statistics(method, labeling_ratio, labeled_shares, predicted,
                                             kth_largest, count_at_or_above)


def pseudo_label_counts(pseudo_labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(C,) int64 pixels per class over pseudo-label masks (255 not counted)."""
    counts = np.zeros(num_classes, np.int64)
    for mask in pseudo_labels:
        counts += np.bincount(np.asarray(mask).ravel(), minlength=256)[:num_classes]
    return counts


def make_images(seed: int, num_classes: int, num_images: int, side: int, tie_levels: int | None,
                class_weights: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-image float16 confidences and uint8 predictions.

    ``tie_levels=None``: all confidences distinct (no ties anywhere); otherwise they take only that
    many values, with 1.0 among them (as float16 saturation produces for confident pixels).
    """
    rng = np.random.default_rng(seed)
    pixels = num_images * side * side
    if tie_levels is None:
        assert pixels <= DISTINCT_CONFIDENCES.size
        pooled = rng.choice(DISTINCT_CONFIDENCES, pixels, replace=False)
    else:
        pooled = rng.choice(np.linspace(0.3, 1.0, tie_levels).astype(np.float16), pixels)
    classes = rng.choice(num_classes, pixels, p=class_weights).astype(np.uint8)
    shape = (num_images, side, side)
    return list(pooled.reshape(shape)), list(classes.reshape(shape))


def histogram_of(confidences, predictions, num_classes: int) -> np.ndarray:
    """The histogram counts of the images, as the confidence stage stores them."""
    histogram = ConfidenceHistogram(num_classes)
    for confidence, prediction in zip(confidences, predictions):
        histogram.add(confidence, prediction)
    return histogram.counts


def label_all(confidences, predictions, thresholds: ClassThresholds, seed: int = 0) -> list[np.ndarray]:
    return [assign_pseudo_labels(c, p, thresholds, seed, i) for i, (c, p) in enumerate(zip(confidences, predictions))]


def ties_at(confidences, predictions, class_index: int | None, value: float) -> int:
    conf = np.concatenate([c.ravel() for c in confidences]).astype(np.float64)
    pred = np.concatenate([p.ravel() for p in predictions])
    mask = conf == value
    if class_index is not None:
        mask &= pred == class_index
    return int(np.count_nonzero(mask))


shares_strategy = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=5).filter(lambda s: sum(s) > 0.05)


@FAST
@given(shares=shares_strategy, seed=st.integers(0, 2**32 - 1), num_images=st.integers(1, 4),
       side=st.integers(1, 12), ties=st.one_of(st.none(), st.integers(1, 6)),
       ratio=st.floats(0.01, 1.0), method=st.sampled_from(METHODS))
def test_histogram_thresholds_equal_sorting_exactly(shares, seed, num_images, side, ties, ratio, method):
    confidences, predictions = make_images(seed, len(shares), num_images, side, ties)
    streamed = compute_thresholds(histogram_of(confidences, predictions, len(shares)), method, ratio, shares)
    sorted_ = thresholds_by_sorting(confidences, predictions, method, ratio, shares)
    assert streamed.method == sorted_.method == method
    for field in THRESHOLD_FIELDS:
        np.testing.assert_array_equal(getattr(streamed, field), getattr(sorted_, field), err_msg=field)
        assert getattr(streamed, field).shape == (len(shares),)
    assert streamed.threshold.dtype == np.float32
    assert streamed.keep_probability.dtype == np.float64
    assert streamed.target_count.dtype == streamed.above_threshold.dtype == np.int64


@FAST
@given(shares=shares_strategy, seed=st.integers(0, 2**32 - 1), num_images=st.integers(1, 4),
       side=st.integers(1, 12), ties=st.one_of(st.none(), st.integers(1, 6)),
       ratio=st.floats(0.01, 1.0), method=st.sampled_from(METHODS))
def test_labelled_fraction_is_alpha_up_to_the_stated_bounds(shares, seed, num_images, side, ties, ratio, method):
    num_classes = len(shares)
    confidences, predictions = make_images(seed, num_classes, num_images, side, ties)
    thresholds = compute_thresholds(histogram_of(confidences, predictions, num_classes), method, ratio, shares)
    labels = label_all(confidences, predictions, thresholds)
    kept = pseudo_label_counts(labels, num_classes)
    total = num_images * side * side
    predicted = np.bincount(np.concatenate([p.ravel() for p in predictions]), minlength=num_classes)
    wanted = Fraction(repr(ratio)) * total // 1

    if method == "st":
        t = float(thresholds.threshold[0])
        ties_at_t = ties_at(confidences, predictions, None, t) if np.isfinite(t) else 1
        assert wanted <= kept.sum() <= wanted + ties_at_t - 1
    for j in range(num_classes):
        t = float(thresholds.threshold[j])
        tied = ties_at(confidences, predictions, j, t) if np.isfinite(t) else 1
        if method == "cbst":
            assert thresholds.target_count[j] == min(Fraction(repr(ratio)) * int(predicted[j]) // 1 + 1, predicted[j])
            assert thresholds.target_count[j] <= kept[j] <= thresholds.target_count[j] + tied - 1
        elif method == "da":
            floor_ = min(thresholds.target_count[j], predicted[j])
            assert floor_ <= kept[j] <= floor_ + tied - 1
        elif method == "dars":
            floor_ = min(thresholds.target_count[j], thresholds.above_threshold[j])
            assert floor_ <= kept[j] <= floor_ + num_images - 1
            assert kept[j] <= thresholds.above_threshold[j]
    if method in ("da", "dars"):
        # Σ floor(α f_j N) loses less than one pixel per class against α N.
        assert wanted - num_classes < thresholds.target_count.sum() <= wanted
    # Every kept pixel carries its predicted class; the rest is 255.
    for label, prediction in zip(labels, predictions):
        assert label.dtype == np.uint8 and label.shape == prediction.shape
        assert np.all((label == 255) | (label == prediction))


@FAST
@given(shares=shares_strategy, seed=st.integers(0, 2**32 - 1), num_images=st.integers(1, 4),
       side=st.integers(4, 12), fraction=st.floats(0.05, 1.0), ties=st.one_of(st.none(), st.integers(2, 5)))
def test_da_and_dars_follow_the_labelled_class_shares(shares, seed, num_images, side, fraction, ties):
    num_classes = len(shares)
    confidences, predictions = make_images(seed, num_classes, num_images, side, ties)
    total = num_images * side * side
    normalised = np.asarray(shares) / np.sum(shares)
    predicted = np.bincount(np.concatenate([p.ravel() for p in predictions]), minlength=num_classes)
    # Choose α so that every class has at least as many predicted pixels as it should receive.
    with np.errstate(divide="ignore", over="ignore"):
        ratio = fraction * min(1.0, float(np.min(predicted / (normalised * total))))
    assume(ratio * total >= 1)
    histogram = histogram_of(confidences, predictions, num_classes)
    # floor(α · f_j · N), exactly: α as written, f_j from the shares' exact values.
    weights = [Fraction(float(w)) for w in shares]
    floors = np.array([Fraction(repr(ratio)) * w * total / sum(weights) // 1 for w in weights])
    dars = compute_thresholds(histogram, "dars", ratio, shares)
    kept_dars = pseudo_label_counts(label_all(confidences, predictions, dars), num_classes)
    # Up to flooring n_j and the per-image flooring of the random drop.
    assert np.all(kept_dars >= floors)
    assert np.all(kept_dars < floors + num_images)
    if ties is None:  # without ties DA hits n_j exactly too
        da = compute_thresholds(histogram, "da", ratio, shares)
        kept_da = pseudo_label_counts(label_all(confidences, predictions, da), num_classes)
        np.testing.assert_array_equal(kept_da, da.target_count)
        np.testing.assert_array_equal(kept_da, floors)


@FAST
@given(shares=shares_strategy, seed=st.integers(0, 2**32 - 1), num_images=st.integers(1, 4),
       side=st.integers(1, 12), ties=st.one_of(st.none(), st.integers(1, 6)), ratio=st.floats(0.01, 1.0))
def test_dars_equals_da_whenever_nothing_needs_dropping(shares, seed, num_images, side, ties, ratio):
    confidences, predictions = make_images(seed, len(shares), num_images, side, ties)
    histogram = histogram_of(confidences, predictions, len(shares))
    da = compute_thresholds(histogram, "da", ratio, shares)
    dars = compute_thresholds(histogram, "dars", ratio, shares)
    np.testing.assert_array_equal(da.threshold, dars.threshold)
    np.testing.assert_array_equal(da.above_threshold, dars.above_threshold)
    if ties is None:  # no ties: ñ_j <= n_j, so s_j = 1 everywhere
        assert np.all(dars.keep_probability == 1.0)
    if np.all(dars.keep_probability == 1.0):
        for a, b in zip(label_all(confidences, predictions, da), label_all(confidences, predictions, dars, seed=7)):
            np.testing.assert_array_equal(a, b)


def saturated_image(pixels: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One image, one class, every confidence 1.0: DA keeps all of them, DARS must sample."""
    return np.ones((1, pixels), np.float16), np.zeros((1, pixels), np.uint8)


@pytest.mark.parametrize("pixels, ratio, target", [(1000, 0.3, 300), (10, 0.9, 9), (1000, 0.999, 999), (7, 0.5, 3)])
def test_dars_keeps_exactly_the_target_in_one_image(pixels, ratio, target):
    confidence, prediction = saturated_image(pixels)
    histogram = histogram_of([confidence], [prediction], 1)
    dars = compute_thresholds(histogram, "dars", ratio, np.array([1.0]))
    assert dars.target_count[0] == target and dars.above_threshold[0] == pixels
    assert dars.keep_probability[0] == pytest.approx(target / pixels)
    label = assign_pseudo_labels(confidence, prediction, dars, seed=0, image_index=0)
    # Exact: in float64, 10 * (1 - 0.9) = 0.9999999999999998 would floor to 0 dropped pixels.
    assert np.count_nonzero(label == 0) == target
    da = compute_thresholds(histogram, "da", ratio, np.array([1.0]))
    assert np.count_nonzero(assign_pseudo_labels(confidence, prediction, da, 0, 0) == 0) == pixels


def test_dars_sampling_is_seeded_by_seed_and_image_index():
    confidence, prediction = saturated_image(1000)
    dars = compute_thresholds(histogram_of([confidence], [prediction], 1), "dars", 0.5, np.array([1.0]))
    first = assign_pseudo_labels(confidence, prediction, dars, seed=3, image_index=5)
    np.testing.assert_array_equal(first, assign_pseudo_labels(confidence, prediction, dars, seed=3, image_index=5))
    assert not np.array_equal(first, assign_pseudo_labels(confidence, prediction, dars, seed=4, image_index=5))
    assert not np.array_equal(first, assign_pseudo_labels(confidence, prediction, dars, seed=3, image_index=6))
    assert np.count_nonzero(first == 0) == 500


def test_dars_drops_pixels_in_fortran_ordered_and_transposed_inputs():
    confidence, prediction = np.ones((20, 30), np.float16), np.zeros((20, 30), np.uint8)
    dars = compute_thresholds(histogram_of([confidence], [prediction], 1), "dars", 0.5, np.array([1.0]))
    for conf, pred in ((np.asfortranarray(confidence), np.asfortranarray(prediction)), (confidence.T, prediction.T)):
        label = assign_pseudo_labels(conf, pred, dars, seed=0, image_index=0)
        assert label.shape == pred.shape and np.count_nonzero(label == 0) == 300


def test_dars_result_does_not_depend_on_processing_order():
    confidences, predictions = make_images(11, 3, 5, 10, tie_levels=3)
    shares = np.array([0.5, 0.3, 0.2])
    dars = compute_thresholds(histogram_of(confidences, predictions, 3), "dars", 0.4, shares)
    assert np.any(dars.keep_probability < 1)
    forward = label_all(confidences, predictions, dars, seed=1)
    backward = {i: assign_pseudo_labels(confidences[i], predictions[i], dars, 1, i) for i in reversed(range(5))}
    for i in range(5):
        np.testing.assert_array_equal(forward[i], backward[i])


def test_class_missing_from_labelled_set_or_predictions_keeps_nothing():
    confidences, predictions = make_images(5, 3, 2, 8, tie_levels=None, class_weights=np.array([0.5, 0.5, 0.0]))
    shares = np.array([0.0, 0.6, 0.4])  # class 0 absent from the labelled set, class 2 never predicted
    histogram = histogram_of(confidences, predictions, 3)
    with np.errstate(all="raise"):
        for method in METHODS:
            thresholds = compute_thresholds(histogram, method, 0.5, shares)
            kept = pseudo_label_counts(label_all(confidences, predictions, thresholds), 3)
            assert kept[2] == 0 and thresholds.above_threshold[2] == 0
            assert np.all(np.isfinite(thresholds.keep_probability))
            if method in ("da", "dars"):
                assert thresholds.threshold[0] == np.inf and kept[0] == 0
                assert thresholds.threshold[2] == np.inf and thresholds.keep_probability[2] == 1.0
            if method == "cbst":
                assert thresholds.threshold[2] == np.inf and kept[0] > 0


def test_tiny_ratio_keeps_nothing_rather_than_failing():
    confidences, predictions = make_images(2, 2, 1, 4, tie_levels=None)
    histogram = histogram_of(confidences, predictions, 2)
    for method in ("st", "da", "dars"):  # α·N = 0.16 < 1 pixel
        thresholds = compute_thresholds(histogram, method, 0.01, np.array([0.5, 0.5]))
        assert np.all(thresholds.threshold == np.inf)
        assert np.all(label_all(confidences, predictions, thresholds)[0] == 255)
    # CBST's rank is floor(α·P_j) + 1: the most confident pixel of each predicted class, as the authors'.
    thresholds = compute_thresholds(histogram, "cbst", 0.01, np.array([0.5, 0.5]))
    predicted = histogram.sum(axis=1)
    assert np.all(thresholds.target_count == np.minimum(1, predicted))


def test_cbst_threshold_is_the_authors_rank_with_ties_kept():
    # Class 0: ten pixels; α = 0.2 gives k = floor(0.2 · 10) = 2, so the threshold is the 3rd largest, 0.75
    # (index −3 of the ascending sort), and both pixels tied at it are kept: 4 in all.
    values = np.array([0.9, 0.8, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125], np.float16)
    confidence, prediction = values.reshape(2, 5), np.zeros((2, 5), np.uint8)
    histogram = histogram_of([confidence], [prediction], 1)
    thresholds = compute_thresholds(histogram, "cbst", 0.2, np.ones(1))
    assert thresholds.threshold[0] == np.float32(0.75) and thresholds.target_count[0] == 3
    assert thresholds.above_threshold[0] == 4
    assert (label_all([confidence], [prediction], thresholds)[0] == 0).sum() == 4
    # α = 1: one past every pixel; the rank stops at P_j (the authors' index would run out): keep all.
    assert compute_thresholds(histogram, "cbst", 1.0, np.ones(1)).threshold[0] == np.float32(0.125)


def test_st_uses_one_global_threshold_and_reports_per_class_counts():
    confidences, predictions = make_images(9, 3, 2, 10, tie_levels=None)
    st_ = compute_thresholds(histogram_of(confidences, predictions, 3), "st", 0.25, np.array([0.2, 0.3, 0.5]))
    assert len(set(st_.threshold.tolist())) == 1
    assert st_.above_threshold.sum() == 50  # no ties: exactly α·N
    np.testing.assert_array_equal(st_.target_count, st_.above_threshold)
    np.testing.assert_array_equal(st_.keep_probability, 1.0)


def test_full_ratio_keeps_everything_for_st_and_cbst():
    confidences, predictions = make_images(4, 3, 2, 6, tie_levels=4)
    histogram = histogram_of(confidences, predictions, 3)
    for method in ("st", "cbst"):
        labels = label_all(confidences, predictions, compute_thresholds(histogram, method, 1.0, np.ones(3)))
        assert not any(np.any(label == 255) for label in labels)


def test_target_counts():
    np.testing.assert_array_equal(target_counts(np.array([0.5, 0.25, 0.25, 0.0]), 0.2, 1000), [100, 50, 50, 0])
    # Shares are renormalised over valid pixels, as the paper divides by the valid ratio.
    np.testing.assert_array_equal(target_counts(np.array([0.3, 0.3]), 0.5, 100), [25, 25])
    assert target_counts(np.array([1.0]), 0.29, 100)[0] == 29  # not 28 from 0.29*100 = 28.999999999999996
    assert target_counts(np.array([1.0]), 0.29, 100).dtype == np.int64


def test_target_counts_are_exact_floors_at_cityscapes_magnitudes():
    # α · f_j · N just below an integer, at the ~1e9-pixel counts of Cityscapes: 999,999,999.9995 must give
    # 999,999,999 (a relative tolerance of 1e-12 turned it into 10^9), and an exact integer stays itself.
    counts = np.array([1, 1999])  # f_0 = 1/2000 of the labelled pixels
    assert target_counts(counts, 1.0, 2 * 10**12 - 1)[0] == 999_999_999
    assert target_counts(counts, 1.0, 2 * 10**12)[0] == 10**9
    # f_1 · α · N = 1999/2000 · 0.2 · 10^10 = 1,999,000,000 exactly; one pixel fewer gives 1,998,999,999.
    assert target_counts(counts, 0.2, 10**10)[1] == 1_999_000_000
    assert target_counts(counts, 0.2, 10**10 - 1)[1] == 1_998_999_999
    # α is the decimal it is written as: 0.7 · 10 = 7, though the double 0.7 · 10 is 7.000000000000001 and
    # 0.1 · 3 (0.30000000000000004) · 10 would be 3.0000000000000004.
    assert target_counts(np.array([1]), 0.7, 10)[0] == 7 and target_counts(np.array([1]), 0.3, 10)[0] == 3


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), float("inf"), "abc", None, True])
def test_invalid_labeling_ratio_is_refused_with_its_name_and_value(bad):
    with pytest.raises(UserError, match="labeling_ratio") as info:
        validate_labeling_ratio(bad)
    assert repr(bad) in str(info.value)
    histogram = histogram_of(*make_images(0, 2, 1, 2, None), 2)
    with pytest.raises(UserError, match="labeling_ratio"):
        compute_thresholds(histogram, "dars", bad, np.array([0.5, 0.5]))


def test_valid_labeling_ratio_passes_through():
    assert validate_labeling_ratio(1) == 1.0
    assert validate_labeling_ratio(np.float32(0.5)) == 0.5


def test_unknown_method_is_refused_listing_the_methods():
    histogram = histogram_of(*make_images(0, 2, 1, 2, None), 2)
    with pytest.raises(UserError, match="'bogus'.*st, cbst, da, dars"):
        compute_thresholds(histogram, "bogus", 0.2, np.array([0.5, 0.5]))


@pytest.mark.parametrize("shares, message", [
    ([0.5, 0.5, 0.0], "3 classes"),
    ([0.0, 0.0], "positive sum"),
    ([-0.5, 1.5], "non-negative"),
])
def test_bad_labelled_shares_are_refused(shares, message):
    histogram = histogram_of(*make_images(0, 2, 1, 2, None), 2)
    with pytest.raises(UserError, match=message):
        compute_thresholds(histogram, "da", 0.2, np.array(shares))


def assign_by_definition(confidence: np.ndarray, prediction: np.ndarray, thresholds: ClassThresholds, seed: int,
                         image_index: int) -> np.ndarray:
    """The rule as documented, step by step: keep conf >= t_j (compared as float32), then for DARS, class by class in
    order, drop floor(c (ñ_j − n_j) / ñ_j) of the c kept pixels, chosen among their ascending positions by the
    generator seeded with (seed, image_index). Pins the draws: every stored pseudo label depends on them."""
    keep = confidence.astype(np.float32) >= thresholds.threshold.astype(np.float32)[prediction]
    flat = np.where(keep, prediction, 255).astype(np.uint8).ravel()
    if thresholds.method == "dars":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, image_index])))
        for j in range(thresholds.threshold.size):
            target, above = int(thresholds.target_count[j]), int(thresholds.above_threshold[j])
            positions = np.flatnonzero(flat == j)
            drop = positions.size * (above - target) // above if above > target else 0
            if drop:
                flat[positions[rng.choice(positions.size, size=drop, replace=False)]] = 255
    return flat.reshape(prediction.shape)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), num_classes=st.integers(1, 6), side=st.integers(1, 24),
       ties=st.one_of(st.none(), st.integers(1, 4)), ratio=st.sampled_from([0.05, 0.2, 0.5, 0.9]),
       method=st.sampled_from(["st", "cbst", "da", "dars"]))
def test_assign_equals_the_rule_by_definition(seed, num_classes, side, ties, ratio, method):
    confidences, predictions = make_images(seed, num_classes, 3, side, ties)
    shares = np.random.default_rng(seed).uniform(0.1, 1.0, num_classes)
    thresholds = compute_thresholds(histogram_of(confidences, predictions, num_classes), method, ratio, shares)
    for i, (confidence, prediction) in enumerate(zip(confidences, predictions)):
        expected = assign_by_definition(confidence, prediction, thresholds, 7, i)
        np.testing.assert_array_equal(assign_pseudo_labels(confidence, prediction, thresholds, 7, i), expected)


def test_assign_checks_its_inputs():
    thresholds = compute_thresholds(histogram_of(*make_images(0, 2, 1, 4, None), 2), "da", 0.5, np.ones(2))
    for bad in (-0.5, np.nan):
        with pytest.raises(ValueError, match="non-negative and not NaN"):
            assign_pseudo_labels(np.full((2, 2), bad, np.float16), np.zeros((2, 2), np.uint8), thresholds, 0, 0)
    with pytest.raises(ValueError, match="float16"):
        assign_pseudo_labels(np.ones((2, 2), np.float32), np.zeros((2, 2), np.uint8), thresholds, 0, 0)
    with pytest.raises(ValueError, match="0..1"):
        assign_pseudo_labels(np.ones((2, 2), np.float16), np.full((2, 2), 2, np.uint8), thresholds, 0, 0)
    with pytest.raises(ValueError, match="shape"):
        assign_pseudo_labels(np.ones((2, 2), np.float16), np.zeros((2, 3), np.uint8), thresholds, 0, 0)


def direct_softmax(logits: torch.Tensor, size: tuple[int, int], temperature: float) -> tuple[np.ndarray, np.ndarray]:
    scaled = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0] / temperature
    return torch.softmax(scaled, dim=0).max(dim=0).values.numpy().astype(np.float16), scaled.argmax(dim=0).numpy()


@FAST
@given(seed=st.integers(0, 2**31 - 1), num_classes=st.integers(1, 8), height=st.integers(1, 9),
       width=st.integers(1, 9), scale=st.sampled_from([1, 2, 3]), temperature=st.sampled_from([1.0, 0.5, 2.5]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.float64]), as_numpy=st.booleans())
def test_confidence_and_prediction_match_a_direct_torch_computation(seed, num_classes, height, width, scale,
                                                                    temperature, dtype, as_numpy):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(num_classes, height, width, generator=generator) * 4).to(dtype)
    size = (height * scale + (scale > 1), width * scale)
    given_logits = logits.numpy().copy() if as_numpy else logits.clone()
    confidence, prediction = confidence_and_prediction(given_logits, size, temperature)
    expected_confidence, expected_prediction = direct_softmax(logits, size, temperature)
    assert confidence.dtype == np.float16 and prediction.dtype == np.uint8
    assert confidence.shape == prediction.shape == size
    np.testing.assert_array_equal(prediction, expected_prediction)
    # Same float32 maths in another order: equal up to one float16 rounding step.
    np.testing.assert_allclose(confidence.astype(np.float32), expected_confidence.astype(np.float32),
                               rtol=2**-10, atol=0)
    # The caller's logits are never modified (the in-place softmax works on a copy).
    if as_numpy:
        np.testing.assert_array_equal(given_logits, logits.numpy())
    else:
        assert torch.equal(given_logits, logits)


def test_confidence_and_prediction_accepts_read_only_arrays_and_refuses_bad_temperature():
    logits = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    logits.flags.writeable = False
    confidence, prediction = confidence_and_prediction(logits, (4, 5))
    assert np.all(confidence >= np.float16(1 / 3)) and np.all(confidence <= 1)
    np.testing.assert_array_equal(prediction, logits.argmax(axis=0))
    for bad in (0, -1.0, float("nan"), "hot"):
        with pytest.raises(UserError, match="temperature"):
            confidence_and_prediction(logits, (4, 5), bad)
    assert upsample_logits(logits, (8, 10)).shape == (3, 8, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_logits_give_the_cpu_result():
    logits = torch.randn(4, 6, 7, generator=torch.Generator().manual_seed(0)) * 4
    cpu_confidence, cpu_prediction = confidence_and_prediction(logits, (12, 14), 1.5)
    gpu_confidence, gpu_prediction = confidence_and_prediction(logits.cuda(), (12, 14), 1.5)
    np.testing.assert_array_equal(gpu_prediction, cpu_prediction)
    np.testing.assert_allclose(gpu_confidence.astype(np.float32), cpu_confidence.astype(np.float32), rtol=2**-10)


def whole_image_confidence_and_prediction(logits: np.ndarray, size: tuple[int, int],
                                          temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward computation the banded one must equal bit for bit: upsample the whole image,
    divide by T, max/argmax (ties to the lowest class), max softmax = 1 / sum exp(z - max) in float32."""
    tensor = torch.from_numpy(logits).float()
    if tuple(tensor.shape[1:]) != tuple(size):
        tensor = F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False)[0]
    tensor = tensor / temperature if temperature != 1.0 else tensor.clone()
    top, prediction = tensor.max(dim=0)
    confidence = (tensor - top).exp().sum(dim=0).reciprocal()
    return confidence.numpy(), prediction.to(torch.uint8).numpy()


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    view = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32}[expected.dtype]
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual.view(view), expected.view(view))


@contextlib.contextmanager
def torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_torch_thread():
    # Bands are used at one torch thread only (as the pseudo-label stage's workers run).
    return torch_threads(1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_classes=st.integers(1, 30), logit_height=st.integers(1, 48),
       logit_width=st.integers(1, 48), geometry=st.sampled_from(["power_of_two", "any", "width_only"]),
       factor=st.sampled_from([1, 2, 4, 8, 16]), width=st.integers(1, 300), tie_levels=st.sampled_from([None, 3, 7]),
       temperature=st.sampled_from([1.0, 0.7, 2.5]), band_rows=st.sampled_from([1, 7, 16, 64]),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_banded_confidence_and_prediction_equal_the_whole_image_computation_bit_for_bit(
        seed, num_classes, logit_height, logit_width, geometry, factor, width, tie_levels,
        temperature, band_rows, dtype):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (num_classes, logit_height, logit_width))
    if tie_levels is not None:  # few distinct values: exact ties between classes, before and after upsampling
        logits = rng.integers(0, tie_levels, logits.shape).astype(np.float64)
    logits = logits.astype(dtype)
    if geometry == "power_of_two":  # Cityscapes-like: label = 2^j x logits rows, any width
        size = (logit_height * factor, width)
    elif geometry == "width_only":
        size = (logit_height, width)
    else:  # non-integer scale factors
        size = (int(rng.integers(1, 400)), width)
    given_logits = logits.copy()
    with one_torch_thread():
        expected_confidence, expected_prediction = whole_image_confidence_and_prediction(logits, size, temperature)
        # float32 confidences first: a float32 rounding difference seldom survives float16 rounding.
        confidence32, prediction32 = _max_softmax_and_argmax(given_logits, size, temperature, band_rows,
                                                            torch.float32)
        confidence, prediction = confidence_and_prediction(given_logits, size, temperature, band_rows=band_rows)
    assert_same_bits(confidence32.numpy(), expected_confidence)
    np.testing.assert_array_equal(prediction32.numpy(), expected_prediction)
    assert_same_bits(confidence, expected_confidence.astype(np.float16))
    np.testing.assert_array_equal(prediction, expected_prediction)
    np.testing.assert_array_equal(given_logits, logits)


def test_banded_computation_at_cityscapes_geometry_equals_the_whole_image():
    # Stride 8 into 2048-wide labels (a band start then needs no logit row above it), with ties.
    logits = np.random.default_rng(3).integers(-4, 5, (19, 40, 256)).astype(np.float16)
    logits[7] = logits[2]  # whole tied classes: the lower index must win
    for temperature in (1.0, 1.3):
        with one_torch_thread():
            confidence, prediction = _max_softmax_and_argmax(logits, (320, 2048), temperature, BAND_ROWS,
                                                             torch.float32)
            expected_confidence, expected_prediction = whole_image_confidence_and_prediction(
                logits, (320, 2048), temperature)
        assert_same_bits(confidence.numpy(), expected_confidence)
        np.testing.assert_array_equal(prediction.numpy(), expected_prediction)
        assert not (prediction == 7).any()


def test_with_several_torch_threads_the_result_is_the_whole_image_one():
    logits = np.random.default_rng(4).normal(0, 3, (19, 40, 64)).astype(np.float16)
    logits[5] = logits[1]
    with torch_threads(2):
        confidence, prediction = _max_softmax_and_argmax(logits, (320, 512), 1.3, 16, torch.float32)
        expected_confidence, expected_prediction = whole_image_confidence_and_prediction(logits, (320, 512), 1.3)
    assert_same_bits(confidence.numpy(), expected_confidence)
    np.testing.assert_array_equal(prediction.numpy(), expected_prediction)


@pytest.mark.parametrize("logits_shape, label_size, band_rows", [
    ((19, 24, 8), (192, 32), 16),  # narrow: a band's width pass would use torch's other upsampling kernel
    ((19, 32, 2), (256, 16), 64),  # narrow and tall
    ((23, 20, 13), (160, 101), 1),  # odd width: band starts on multiples of the sum's block
    ((23, 20, 13), (150, 37), 1),  # non-integer scale, odd width
    ((11, 64, 16), (192, 192), 16),  # integer scale 3: coordinates change when rows shift, so not banded
    ((5, 1, 1), (260, 1), 1),  # the last band holds the sum's leftover pixels
    ((7, 300, 20), (300, 45), 32),  # same height: width-only upsampling
    ((7, 100, 20), (100, 20), 32),  # no resizing at all
])
def test_banded_computation_equals_the_whole_image_in_corner_cases(logits_shape, label_size, band_rows):
    logits = np.random.default_rng(1).normal(0, 3, logits_shape).astype(np.float32)
    logits[-1] = logits[0]  # a whole class tied with class 0, which must win
    with one_torch_thread():
        confidence, prediction = _max_softmax_and_argmax(logits, label_size, 1.3, band_rows, torch.float32)
        expected_confidence, expected_prediction = whole_image_confidence_and_prediction(logits, label_size, 1.3)
    assert_same_bits(confidence.numpy(), expected_confidence)
    np.testing.assert_array_equal(prediction.numpy(), expected_prediction)


@pytest.mark.parametrize("logit_height, label_size, factor", [
    (128, (1024, 2048), 8), (40, (320, 2048), 8), (25, (100, 250), 4), (14, (224, 37), 16), (30, (30, 511), 1),
    (60, (120, 300), 2), (50, (333, 401), None), (7, (1000, 3), None), (3, (700, 1), None)])
@pytest.mark.parametrize("band_rows", [1, 5, 64, 10_000])
def test_row_bands_tile_the_label_and_meet_the_exactness_conditions(logit_height, label_size, factor, band_rows):
    height, width = label_size
    bands = _row_bands(label_size, logit_height, band_rows, factor)
    assert bands[0].start == 0 and bands[-1].stop == height
    assert all(a.stop == b.start for a, b in zip(bands, bands[1:])) and all(b.start < b.stop for b in bands)
    # Band starts at multiples of the sum's block of pixels, and a last band of at least one block.
    assert all(band.start * width % _SUM_ALIGN_PIXELS == 0 for band in bands)
    assert len(bands) == 1 or (height - bands[-1].start) * width >= _SUM_ALIGN_PIXELS
    if factor is None:
        return
    for band in bands:
        # The logit rows read are exactly the bilinear neighbours of the band's label rows.
        neighbours = set()
        for y in range(band.start, band.stop):
            source = max(0.0, (y + 0.5) / factor - 0.5)
            neighbours |= {min(int(source), logit_height - 1), min(int(source) + 1, logit_height - 1)}
        assert (band.input_start, band.input_stop) == (min(neighbours), max(neighbours) + 1)
        # Its runs tile it, each run's rows between the same two logit rows.
        runs = _runs(band, logit_height, factor)
        assert runs[0].start == band.start and runs[-1].start + runs[-1].runs * runs[-1].length == band.stop
        assert all(a.start + a.runs * a.length == b.start for a, b in zip(runs, runs[1:]))


def test_separable_band_upsampling_equals_torch_upsampling_the_whole_image_bit_for_bit():
    # The label rows of a band are combined from torch's width interpolation by hand; torch's own kernel
    # rounds the same way (float32 bits compared; the first rows, clamped to logit row 0, and the last ones,
    # without a logit row below, included).
    logits = torch.from_numpy(np.random.default_rng(5).normal(0, 4, (19, 40, 256)).astype(np.float32))
    expected = upsample_logits(logits, (320, 2048))
    with one_torch_thread():
        bands = _row_bands((320, 2048), 40, 64, 8)
        workspace = torch.empty(19 * max(b.stop - b.start for b in bands) * 2048)
        for band in bands:
            got = _upsampled_band(logits, band, 2048, 8, workspace)
            assert torch.equal(got.view(torch.int32), expected[:, band.start:band.stop].contiguous().view(torch.int32))
    assert len(bands) > 2


def test_confidence_and_prediction_nan_logits_give_nan_confidence_and_bad_band_rows_are_refused():
    logits = np.zeros((3, 40, 40), np.float32)
    logits[1, 20, 20] = np.nan
    confidence, _ = confidence_and_prediction(logits, (320, 320))
    assert np.isnan(confidence[160, 160]) and not np.isnan(confidence[0, 0])
    with pytest.raises(ValueError, match="band_rows"):
        confidence_and_prediction(logits, (320, 320), band_rows=0)
