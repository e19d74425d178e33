"""The evaluation loop: predict every labelled sample at label resolution and score the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import DatasetSpec, Sample, load_label
from pipeline_lib.errors import UserError
from pipeline_lib.evaluation.metrics import confusion_matrix, segmentation_metrics
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.predict.inference import predict_labels
from pipeline_lib.progress import track


def evaluate(model: torch.nn.Module, samples: list[Sample], spec: DatasetSpec, device: torch.device,
             mode: str = "whole", crop_size: int | None = None, stride: int | None = None, flip: bool = False,
             tail_classes: Sequence[int] = (), progress: bool = True,
             precision: str = "auto", base_size: int | None = None) -> tuple[dict, np.ndarray]:
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
                                        crop_size=crop_size, stride=stride, flip=flip, precision=precision,
                                        base_size=base_size)
            if prediction.max(initial=0) >= classes.num_classes:
                raise UserError(f"the model predicts class {prediction.max()} but dataset {spec.name!r} has "
                                f"{classes.num_classes} classes; was it trained on another dataset?")
            confusion += confusion_matrix(prediction, label, classes.num_classes, ignore_index=IGNORE_INDEX)
    finally:
        model.train(was_training)
    metrics = segmentation_metrics(confusion, list(classes.names), list(tail_classes))
    metrics["images"] = len(samples)
    return metrics, confusion
