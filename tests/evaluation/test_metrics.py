import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline_lib.errors import UserError
from pipeline_lib.evaluation.metrics import (
    class_table,
    confusion_matrix,
    segmentation_metrics,
    summary_metrics,
    tail_classes_from_shares,
)

NAMES3 = ["road", "pole", "sign"]

# (truth, predicted) pairs: (0,0) (0,1) (1,1) (1,2) (2,2), plus one ignored pixel predicted as 0.
LABEL3 = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PRED3 = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)


def test_confusion_matrix_by_hand():
    confusion = confusion_matrix(PRED3, LABEL3, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert confusion.dtype == np.int64


def test_metrics_by_hand():
    m = segmentation_metrics(confusion_matrix(PRED3, LABEL3, 3), NAMES3, tail_classes=[1])
    # IoU = TP / (truth + predicted - TP): road 1/(2+1-1), pole 1/(2+2-1), sign 1/(1+2-1)
    assert m["iou"] == pytest.approx({"road": 1 / 2, "pole": 1 / 3, "sign": 1 / 2})
    assert m["miou"] == pytest.approx(4 / 9)
    assert m["pixel_accuracy"] == pytest.approx(3 / 5)
    assert m["mean_class_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["tail_miou"] == pytest.approx(1 / 3)
    assert m["head_miou"] == pytest.approx(1 / 2)
    assert m["tail_classes"] == ["pole"]
    assert m["evaluated_pixels"] == 5
    json.dumps(m, allow_nan=False)


def test_class_absent_from_truth_and_prediction_is_left_out():
    names = NAMES3 + ["train"]
    m = segmentation_metrics(confusion_matrix(PRED3, LABEL3, 4), names, tail_classes=[3])
    assert m["iou"]["train"] is None and m["class_accuracy"]["train"] is None
    assert m["miou"] == pytest.approx(4 / 9)  # not 4/9 * 3/4
    assert m["tail_miou"] is None  # no tail class has an IoU
    assert m["head_miou"] == pytest.approx(4 / 9)
    json.dumps(m, allow_nan=False)


def test_false_positive_class_counts_as_zero():
    label = np.array([0, 0, 0, 0])
    prediction = np.array([0, 0, 0, 1])
    m = segmentation_metrics(confusion_matrix(prediction, label, 2), ["a", "b"])
    assert m["iou"] == pytest.approx({"a": 3 / 4, "b": 0.0})
    assert m["miou"] == pytest.approx(3 / 8)
    assert m["class_accuracy"]["b"] is None  # recall is undefined without truth pixels
    assert m["mean_class_accuracy"] == pytest.approx(3 / 4)


def test_perfect_prediction_scores_one():
    label = np.array([[0, 1, 2], [2, 255, 1]], np.uint8)
    prediction = np.where(label == 255, 0, label)
    m = segmentation_metrics(confusion_matrix(prediction, label, 3), NAMES3, tail_classes=[2])
    for key in ("miou", "tail_miou", "head_miou", "pixel_accuracy", "mean_class_accuracy"):
        assert m[key] == 1.0


def test_all_ignored_gives_none_not_nan():
    label = np.full((2, 2), 255, np.uint8)
    m = segmentation_metrics(confusion_matrix(np.zeros((2, 2), np.uint8), label, 3), NAMES3)
    assert m["miou"] is None and m["pixel_accuracy"] is None and m["mean_class_accuracy"] is None
    json.dumps(m, allow_nan=False)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match="label"):
        confusion_matrix(np.array([0]), np.array([7]), 3)


def test_custom_ignore_index():
    confusion = confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 2]), 2, ignore_index=2)
    np.testing.assert_array_equal(confusion, [[1, 0], [0, 1]])


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (6, 7), elements=st.sampled_from([0, 1, 2, 3, 255])),
       arrays(np.uint8, (6, 7), elements=st.integers(0, 3)))
def test_confusion_properties(label, prediction):
    confusion = confusion_matrix(prediction, label, 4)
    valid = label != 255
    assert confusion.sum() == valid.sum()
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(label[valid], minlength=4))
    np.testing.assert_array_equal(confusion.sum(0), np.bincount(prediction[valid], minlength=4))
    m = segmentation_metrics(confusion, ["a", "b", "c", "d"], tail_classes=[0, 3])
    ious = [v for v in m["iou"].values() if v is not None]
    if ious:
        assert 0.0 <= m["miou"] <= 1.0
        assert math.isclose(m["miou"], float(np.mean(ious)))
        assert m["pixel_accuracy"] == pytest.approx((label[valid] == prediction[valid]).mean())
    # A perfect prediction of the same label is always 1.
    perfect = segmentation_metrics(confusion_matrix(np.where(valid, label, 0), label, 4), ["a", "b", "c", "d"])
    assert perfect["miou"] in (None, 1.0)


def test_tail_from_threshold():
    shares = np.array([0.5, 0.005, 0.3, 0.009, 0.186])
    names = ["a", "b", "c", "d", "e"]
    assert tail_classes_from_shares(shares, 0.01, None, names) == [1, 3]
    assert tail_classes_from_shares(shares, None, None, names) == []


def test_tail_from_explicit_names_and_ids():
    names = ["road", "pole", "sign", "train"]
    assert tail_classes_from_shares(np.zeros(4), None, ["train", 1, "pole"], names) == [1, 3]
    # An explicit list wins over the threshold (which would pick every class here).
    assert tail_classes_from_shares(np.zeros(4), 0.01, ["sign"], names) == [2]
    assert tail_classes_from_shares(np.zeros(4), 0.01, [], names) == []


def test_tail_errors_name_the_problem():
    names = ["road", "pole"]
    with pytest.raises(UserError, match=r"'trian'.*road, pole"):
        tail_classes_from_shares(np.zeros(2), None, ["trian"], names)
    with pytest.raises(UserError, match="5"):
        tail_classes_from_shares(np.zeros(2), None, [5], names)
    with pytest.raises(UserError, match="threshold"):
        tail_classes_from_shares(np.zeros(2), 1.5, None, names)
    with pytest.raises(UserError, match="3 values"):
        tail_classes_from_shares(np.zeros(3), 0.01, None, names)


def test_summary_metrics_are_the_scalars_only():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 0]])
    m = segmentation_metrics(confusion, ["road", "pole", "sign"], tail_classes=[1])
    summary = summary_metrics(m)
    assert list(summary) == ["miou", "tail_miou", "head_miou", "pixel_accuracy", "mean_class_accuracy"]
    assert all(summary[key] == m[key] for key in summary)


def test_class_table_rows_values_and_tail_marks():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # 'sign' is neither true nor predicted
    m = segmentation_metrics(confusion, ["road", "pole", "sign"], tail_classes=[1])
    lines = class_table(m).splitlines()
    assert lines[0].split("|")[1:4] == [" class  ", "    IoU ", "    Acc "]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:4]] for line in lines[2:5]}
    assert rows == {"road": ["75.00", "75.00"], "pole *": ["66.67", "100.00"], "sign": ["–", "–"]}
    assert lines[-1].startswith("mIoU 70.83  tail mIoU 66.67  head mIoU 75.00  pixel acc 83.33  mean acc 87.50")
    assert lines[-1].endswith("(* = tail class, 1 of 3)")
