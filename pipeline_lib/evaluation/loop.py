"""The evaluation loop: predict every labelled sample at label resolution and score the confusion matrix; and
the evaluate step of a round, which writes the scores as DVC metrics and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.atomic import write_json, write_text
from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.data.prepared import (
    DatasetSpec,
    Sample,
    load_class_distribution,
    load_image,
    load_label,
    load_spec,
    read_split,
)
from pipeline_lib.data.transforms import normalize_image
from pipeline_lib.device import pick_device
from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.predict.inference import predict_labels
from pipeline_lib.predict.metrics import confusion_matrix, segmentation_metrics, tail_classes_from_shares
from pipeline_lib.progress import track
from pipeline_lib.settings import EvaluateSettings, InferenceSettings


def evaluate(model: torch.nn.Module, samples: list[Sample], spec: DatasetSpec, device: torch.device,
             mode: str = "whole", crop_size: int | None = None, stride: int | None = None, flip: bool = False,
             tail_classes: Sequence[int] = (), progress: bool = True,
             autocast: bool | None = None) -> tuple[dict, np.ndarray]:
    """Score ``model`` on ``samples`` (each must have a label); returns (metrics dict, (C, C) confusion).

    The model is put in eval mode for the loop and returned to its previous mode afterwards.
    The metrics dict is ``segmentation_metrics`` plus ``images`` (the number scored).
    """
    if not samples:
        raise UserError(f"dataset {spec.name!r}: nothing to evaluate (the split is empty)")
    unlabeled = [s for s in samples if s.label is None]
    if unlabeled:
        raise UserError(f"{unlabeled[0].image}: evaluation sample has no label "
                        f"({len(unlabeled)} of {len(samples)} samples lack one)")
    classes = spec.classes
    confusion = np.zeros((classes.num_classes, classes.num_classes), np.int64)
    was_training = model.training
    model.eval()
    try:
        for sample in track(samples, desc="evaluate", unit="img", enabled=progress):
            image = load_image(sample.image)
            label = load_label(sample.label, spec, image.shape[:2])  # ignore is 255 from here on
            prediction = predict_labels(model, normalize_image(image).to(device), label.shape, mode=mode,
                                        crop_size=crop_size, stride=stride, flip=flip, autocast=autocast)
            if prediction.max(initial=0) >= classes.num_classes:
                raise UserError(f"the model predicts class {prediction.max()} but dataset {spec.name!r} has "
                                f"{classes.num_classes} classes; was it trained on another dataset?")
            confusion += confusion_matrix(prediction, label, classes.num_classes, ignore_index=IGNORE_INDEX)
    finally:
        model.train(was_training)
    metrics = segmentation_metrics(confusion, list(classes.names), list(tail_classes))
    metrics["images"] = len(samples)
    return metrics, confusion


def evaluate_round(round_name: str, evaluate_settings: EvaluateSettings, inference: InferenceSettings,
                   prepared: Path, outputs: Path) -> dict:
    """Evaluate ``outputs/<round>/model.pt`` on the val split; write its metrics.json (a DVC metrics file) and
    per_class_iou.csv (a DVC plot). Returns the metrics."""
    spec = load_spec(prepared)
    names = list(spec.classes.names)
    tail = tail_classes_from_shares(load_class_distribution(prepared), evaluate_settings.tail_share_threshold,
                                    evaluate_settings.tail_classes, names)
    paths = RoundPaths.of(outputs, round_name)
    model, _ = load_checkpoint(paths.model, expect_classes=names)
    device = pick_device()
    metrics, _ = evaluate(model.to(device).eval(), read_split(prepared, "val", spec), spec, device,
                          tail_classes=tail, **inference.as_kwargs())
    write_json(paths.metrics, metrics)
    iou = {name: "" if value is None else value for name, value in metrics["iou"].items()}
    rows = ["class,iou,tail"] + [f"{name},{iou[name]},{int(i in tail)}" for i, name in enumerate(names)]
    write_text(paths.per_class_iou, "\n".join(rows) + "\n")
    return metrics
