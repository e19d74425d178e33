"""Segmentation metrics from a confusion matrix (pure numpy, no I/O).

Conventions (the same as cityscapesscripts and mmsegmentation):

- The confusion matrix has rows = ground truth, columns = prediction; ignore pixels are not counted.
- IoU of class c = TP / (TP + FP + FN). A class that appears in neither the ground truth nor the
  prediction has no IoU (0/0): it is reported as ``None`` and left out of every mean. A class that
  is predicted but absent from the truth has IoU 0 and *does* count (the false positives are real).
- Means that have nothing to average are ``None`` (never NaN), so the dict is valid JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline_lib.errors import UserError


def confusion_matrix(prediction: np.ndarray, label: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """(C, C) int64 pixel counts, ``[truth, predicted]``, over the pixels whose label is not ``ignore_index``."""
    prediction = np.asarray(prediction)
    label = np.asarray(label)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from label shape {label.shape}")
    valid = label != ignore_index
    truth = label[valid].astype(np.int64)
    predicted = prediction[valid].astype(np.int64)
    # Out-of-range values would silently land in a neighbouring cell of the flattened matrix.
    for name, values in (("label", truth), ("prediction", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} values must lie in 0..{num_classes - 1} (or be {ignore_index} in the "
                             f"label); got {values.min()}..{values.max()}")
    counts = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def segmentation_metrics(confusion: np.ndarray, class_names: Sequence[str],
                         tail_classes: Sequence[int] = ()) -> dict:
    """mIoU, per-class IoU, pixel accuracy, mean class accuracy, and the tail / head split of the mIoU.

    ``miou`` averages the classes present in the truth or the prediction (see the module docstring);
    ``tail_miou`` averages those of them listed in ``tail_classes``, ``head_miou`` the others.
    ``mean_class_accuracy`` averages recall (TP / truth pixels) over the classes present in the truth.
    """
    confusion = np.asarray(confusion, np.int64)
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix shape {confusion.shape} does not match {num_classes} classes")
    tail = sorted(set(int(c) for c in tail_classes))
    if any(not 0 <= c < num_classes for c in tail):
        raise ValueError(f"tail classes {tail} outside 0..{num_classes - 1}")

    true_positive = np.diag(confusion).astype(np.float64)
    truth_pixels = confusion.sum(axis=1).astype(np.float64)
    predicted_pixels = confusion.sum(axis=0).astype(np.float64)
    union = truth_pixels + predicted_pixels - true_positive
    iou = [float(true_positive[c] / union[c]) if union[c] > 0 else None for c in range(num_classes)]
    recall = [float(true_positive[c] / truth_pixels[c]) if truth_pixels[c] > 0 else None
              for c in range(num_classes)]
    total = float(confusion.sum())

    tail_set = set(tail)
    return {
        "miou": _mean_or_none(iou),
        "tail_miou": _mean_or_none([iou[c] for c in tail]),
        "head_miou": _mean_or_none([iou[c] for c in range(num_classes) if c not in tail_set]),
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else None,
        "mean_class_accuracy": _mean_or_none(recall),
        "iou": {name: iou[c] for c, name in enumerate(class_names)},
        "class_accuracy": {name: recall[c] for c, name in enumerate(class_names)},
        "tail_classes": [class_names[c] for c in tail],
        "evaluated_pixels": int(total),
    }


# What people compare across experiments: the DVC metrics file holds these and nothing else, so that
# `dvc exp show` stays readable (the per-class values would add two columns per class and round).
SUMMARY_METRICS = ("miou", "tail_miou", "head_miou", "pixel_accuracy", "mean_class_accuracy")


def summary_metrics(metrics: dict) -> dict:
    """The :data:`SUMMARY_METRICS` of a :func:`segmentation_metrics` dict, in that order."""
    return {key: metrics[key] for key in SUMMARY_METRICS}


def _percent(value: float | None, width: int) -> str:
    return f"{'–':>{width}}" if value is None else f"{100 * value:{width}.2f}"


def class_table(metrics: dict) -> str:
    """A :func:`segmentation_metrics` dict as a markdown table, class | IoU | Acc (×100, tail classes marked),
    followed by one line of the summary metrics."""
    names = list(metrics["iou"])
    tail = set(metrics.get("tail_classes", ()))
    width = max(len("class"), *(len(name) + 2 for name in names))
    lines = [f"| {'class':<{width}} |    IoU |    Acc |", f"|{'-' * (width + 2)}|-------:|-------:|"]
    for name in names:
        label = f"{name} *" if name in tail else name
        lines.append(f"| {label:<{width}} | {_percent(metrics['iou'][name], 6)} | "
                     f"{_percent(metrics['class_accuracy'][name], 6)} |")
    summary = [("mIoU", "miou"), ("tail mIoU", "tail_miou"), ("head mIoU", "head_miou"),
               ("pixel acc", "pixel_accuracy"), ("mean acc", "mean_class_accuracy")]
    lines.append("")
    lines.append("  ".join(f"{label} {_percent(metrics[key], 0).strip()}" for label, key in summary)
                 + (f"   (* = tail class, {len(tail)} of {len(names)})" if tail else ""))
    return "\n".join(lines) + "\n"


def tail_classes_from_shares(labeled_shares: np.ndarray, threshold: float | None,
                             explicit: Sequence[str | int] | None, class_names: Sequence[str]) -> list[int]:
    """The tail (rare) classes, as sorted class ids.

    ``explicit`` (class names or ids) when given -- it overrides the threshold, so a user can list
    classes without also clearing the default threshold -- else the classes whose share of the
    labelled pixels is below ``threshold`` (e.g. 0.01); neither means no tail classes.
    """
    num_classes = len(class_names)
    if explicit is not None:
        ids = set()
        for item in explicit:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not 0 <= item < num_classes:
                    raise UserError(f"tail class id {item} outside 0..{num_classes - 1}")
                ids.add(int(item))
            elif isinstance(item, str) and item in class_names:
                ids.add(list(class_names).index(item))
            else:
                raise UserError(f"unknown tail class {item!r}; valid names: {', '.join(class_names)}")
        return sorted(ids)
    if threshold is None:
        return []
    if not 0.0 < float(threshold) <= 1.0:
        raise UserError(f"tail class share threshold must be in (0, 1], got {threshold}")
    shares = np.asarray(labeled_shares, np.float64)
    if shares.shape != (num_classes,):
        raise UserError(f"labelled class shares hold {shares.size} values but there are {num_classes} classes; "
                        "rerun the prepare stage")
    return [int(c) for c in np.flatnonzero(shares < float(threshold))]
