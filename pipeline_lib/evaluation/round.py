"""The evaluate step of a round: score its model on the val split, write the summary as DVC metrics, the whole
evaluation as an artifact and per-class IoU as a DVC plot; or, on request, on the test split, written apart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline_lib.atomic import write_json, write_text
from pipeline_lib.data.classes import class_shares
from pipeline_lib.data.prepared import load_class_distribution, load_spec, read_split
from pipeline_lib.device import pick_device, resolve_precision
from pipeline_lib.evaluation.loop import evaluate
from pipeline_lib.evaluation.metrics import summary_metrics, tail_classes_from_shares
from pipeline_lib.layout import RoundPaths
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.settings import EvaluateSettings, InferenceSettings


def evaluate_round(round_name: str, evaluate_settings: EvaluateSettings, inference: InferenceSettings,
                   prepared: Path, outputs: Path, split: str = "val") -> dict:
    """Evaluate ``outputs/<round>/model.pt`` on the val split; write its metrics.json (the summary: a DVC
    metrics file), evaluation.json (everything, per class too, and the device and precision the model was
    trained at) and per_class_iou.csv (a DVC plot). Returns the whole evaluation.

    ``split="test"`` scores the test split instead and writes test_evaluation.json only: no stage's output, so
    that the pipeline (and whatever is chosen with it) never reads the test score. The tail classes are the
    same as on val (from the labelled split or ``evaluate.tail_classes``)."""
    spec = load_spec(prepared)
    names = list(spec.classes.names)
    shares = class_shares(load_class_distribution(prepared))
    tail = tail_classes_from_shares(shares, evaluate_settings.tail_share_threshold,
                                    evaluate_settings.tail_classes, names)
    paths = RoundPaths.of(outputs, round_name)
    model, checkpoint = load_checkpoint(paths.model, expect_classes=names)
    device = pick_device()
    inference = replace(inference, precision=resolve_precision(device, inference.precision, checkpoint["arch"]))
    metrics, _ = evaluate(model.to(device).eval(), read_split(prepared, split, spec), spec, device,
                          tail_classes=tail, **inference.as_kwargs())
    trained_with = (checkpoint.get("provenance") or {}).get("trained_with")
    if trained_with is not None:  # absent from checkpoints saved before it was recorded
        metrics["trained_with"] = trained_with
    metrics["evaluated_with"] = {"device": device.type, "precision": inference.precision}
    metrics["arch"] = checkpoint["arch"]  # the stage notes one that model.arch does not name
    if split != "val":
        metrics["split"] = split
        write_json(paths.test_evaluation, metrics)
        return metrics
    write_json(paths.evaluation, metrics)
    write_json(paths.metrics, summary_metrics(metrics))
    iou = {name: "" if value is None else value for name, value in metrics["iou"].items()}
    rows = ["class,iou,tail"] + [f"{name},{iou[name]},{int(i in tail)}" for i, name in enumerate(names)]
    write_text(paths.per_class_iou, "\n".join(rows) + "\n")
    return metrics
