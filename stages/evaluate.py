"""evaluate: mIoU, per-class IoU, pixel accuracy and tail/head mIoU of a round's model on the val split."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def evaluate(
    round_name: str = typer.Option("r0", "--round", help="Which round's model to evaluate."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads evaluate.*, inference.*)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Evaluate outputs/<round>/model.pt on the val split; write metrics.json and per_class_iou.csv."""
    from pipeline_lib.settings import EvaluateSettings, InferenceSettings, Params, check_round

    p = Params.load(params)
    check_round(p, round_name)
    evaluate_settings, inference = EvaluateSettings.from_params(p), InferenceSettings.from_params(p)

    from pipeline_lib.predict.evaluation import evaluate_round

    metrics = evaluate_round(round_name, evaluate_settings, inference, prepared, outputs)
    summary = "  ".join(f"{label} {metrics[key]:.4f}" for key, label in
                        (("miou", "mIoU"), ("tail_miou", "tail mIoU"), ("head_miou", "head mIoU"))
                        if metrics[key] is not None)
    typer.echo(f"{round_name}: {summary} → {outputs / round_name / 'metrics.json'}")


if __name__ == "__main__":
    run_standalone(evaluate)
