"""evaluate: mIoU, per-class IoU and accuracy, pixel accuracy and tail/head mIoU of a round's model on the val
split (or, on request, the test split), printed as a class | IoU | Acc table."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import OUTPUTS, PREPARED, run_standalone


def evaluate(
    round_name: str = typer.Option("r0", "--round", help="Which round's model to evaluate."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads evaluate.*, inference.*, "
                        "model.arch)."),
    prepared: Path = PREPARED,
    outputs: Path = OUTPUTS,
    split: str = typer.Option("val", help="val (the pipeline's evaluation, its DVC metrics) or test: the "
                              "dataset's test split where prepare found one (CamVid), written to "
                              "test_evaluation.json only; report it after choosing on val."),
) -> None:
    """Evaluate outputs/<round>/model.pt on the val split; print the per-class table; write metrics.json (the
    summary), evaluation.json (per class too) and per_class_iou.csv. With --split test: the test split, written
    to test_evaluation.json and nothing else."""
    from pipeline_lib.params import Params
    from pipeline_lib.settings import EvaluateSettings, InferenceSettings, check_round

    from pipeline_lib.errors import UserError

    if split not in ("val", "test"):
        raise UserError(f"--split must be val or test; got {split!r}")
    p = Params.load(params)
    check_round(p, round_name)
    evaluate_settings, inference = EvaluateSettings.from_params(p), InferenceSettings.from_params(p)
    arch = p.get("model.arch", str)  # for a note only

    from pipeline_lib.evaluation.metrics import class_table
    from pipeline_lib.evaluation.round import evaluate_round

    metrics = evaluate_round(round_name, evaluate_settings, inference, prepared, outputs, split)
    if metrics["arch"] != arch:  # e.g. a model.pt placed by hand
        typer.secho(f"note: {outputs / round_name / 'model.pt'} is a {metrics['arch']}; model.arch says {arch}",
                    fg=typer.colors.YELLOW, err=True)
    written = "test_evaluation.json" if split == "test" else "metrics.json, evaluation.json"
    typer.echo(f"{round_name}, {metrics['images']} {split} images (×100):\n{class_table(metrics)}"
               f"→ {outputs / round_name}/{written}")


if __name__ == "__main__":
    run_standalone(evaluate)
