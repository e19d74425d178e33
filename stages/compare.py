"""compare: per-class IoU and the summary of DVC experiments or git revisions, side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def compare(
    runs: list[str] = typer.Argument(None, help="Experiment names as `dvc exp show` prints them, git revisions, or "
                                                "'workspace'. Default: the workspace and every finished experiment "
                                                "of HEAD."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (for the round schedule)."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
    out: Path = typer.Option(None, help="Also write the tables (markdown) to this file."),
) -> None:
    """Print each run's summary (every round's mIoU and tail mIoU, the pseudo labels' share and accuracy), then
    per-class IoU, tail mIoU, mIoU and the gain over the first run, for the first and the last round."""
    from pipeline_lib.params import Params
    from pipeline_lib.settings import BASELINE_ROUND, round_schedule

    rounds = [BASELINE_ROUND, *round_schedule(Params.load(params))]

    from pipeline_lib.atomic import write_text
    from pipeline_lib.experiments.comparison import WORKSPACE, class_names_of, compare_runs, experiment_names, read_runs

    results = read_runs(runs or [WORKSPACE, *experiment_names(finished=True)], rounds, outputs=outputs)
    text = compare_runs(results, rounds, class_names_of(results))
    typer.echo(text)
    if out is not None:
        write_text(out, text)
        typer.echo(f"wrote {out}")


if __name__ == "__main__":
    run_standalone(compare)
