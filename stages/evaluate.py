"""evaluate: mIoU, per-class IoU, pixel accuracy and tail/head mIoU of a round's model on the val split."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline_lib.atomic import write_json, write_text
from pipeline_lib.config import BASELINE_ROUND, RoundPaths, check_round
from pipeline_lib.data.prepared import load_class_distribution, load_spec, read_split
from pipeline_lib.inference_settings import InferenceSettings
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.params import Params, fraction
from pipeline_lib.predict.evaluation import evaluate as evaluate_model
from pipeline_lib.predict.metrics import tail_classes_from_shares
from pipeline_lib.train.loop import pick_device

from . import run_standalone


def evaluate(
    round_name: str = typer.Option(BASELINE_ROUND, "--round", help="Which round's model to evaluate."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads evaluate.*, inference.*)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Evaluate outputs/<round>/model.pt on the val split; write metrics.json and per_class_iou.csv."""
    p = Params.load(params)
    check_round(p, round_name)
    spec = load_spec(prepared)
    names = list(spec.classes.names)
    explicit = p.raw("evaluate.tail_classes", None)
    if explicit is not None and not isinstance(explicit, list):
        explicit = [explicit]
    tail = tail_classes_from_shares(load_class_distribution(prepared),
                                    p.get("evaluate.tail_share_threshold", float, fraction), explicit, names)
    paths = RoundPaths.of(outputs, round_name)
    model, _ = load_checkpoint(paths.model, expect_classes=names)
    device = pick_device()
    metrics, _ = evaluate_model(model.to(device).eval(), read_split(prepared, "val", spec), spec, device,
                                tail_classes=tail, **InferenceSettings.from_params(p).as_kwargs())
    write_json(paths.metrics, metrics)
    rows = ["class,iou,tail"] + [f"{name},{'' if metrics['iou'][name] is None else metrics['iou'][name]},{int(i in tail)}"
                                 for i, name in enumerate(names)]
    write_text(paths.per_class_iou, "\n".join(rows) + "\n")
    summary = "  ".join(f"{label} {metrics[key]:.4f}" for key, label in
                        (("miou", "mIoU"), ("tail_miou", "tail mIoU"), ("head_miou", "head mIoU"))
                        if metrics[key] is not None)
    typer.echo(f"{round_name}: {summary} → {paths.metrics}")


if __name__ == "__main__":
    run_standalone(evaluate)
