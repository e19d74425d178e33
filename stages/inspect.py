"""inspect: look at a round's cached pseudo labels — PNG panels, a class-distribution plot and an HTML report.

Not a pipeline stage (it writes nothing DVC tracks); it reads the round's artifacts from the workspace or,
with --rev, from any git revision or DVC experiment whose outputs are in the DVC cache.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline_lib.errors import UserError
from stages import run_standalone

DEFAULT_RANDOM_IMAGES = 8


def inspect(
    round_name: str = typer.Option(..., "--round", help="The round whose pseudo labels to look at (r1, r2…)."),
    rev: str | None = typer.Option(None, "--rev", help="Read the round from this git revision or DVC "
                                   "experiment instead of the workspace (its outputs must be in the DVC cache)."),
    images: str | None = typer.Option(None, "--images", help="Comma-separated unlabelled image ids to show."),
    random_count: int | None = typer.Option(None, "--random", help="Show this many randomly chosen unlabelled "
                                            f"images (the default, with {DEFAULT_RANDOM_IMAGES})."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random choice of images."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/<round>); a previous "
                                    "report there is replaced whole."),
    export_labels: Path | None = typer.Option(None, "--export-labels", help="Also write every pseudo label of "
                                              "the round to this folder as <image_id>.png (single-channel uint8 "
                                              "train ids, 255 = ignore)."),
    compare: str | None = typer.Option(None, "--compare", help="More pseudo-label series for the distribution "
                                       "plot: comma-separated rounds (r2) or REV:ROUND (e.g. cbst-exp:r1)."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds), relative to --repo."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory, relative to --repo."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round outputs, relative to --repo."),
    repo: Path = typer.Option(Path("."), help="The project's repository root."),
) -> None:
    """Render pseudo label, overlay, confidence and ground truth of some unlabelled images into an HTML report."""
    if images is not None and random_count is not None:
        raise UserError("give either --images or --random, not both")
    requested = [i.strip() for i in images.split(",") if i.strip()] if images is not None else None
    if requested is not None and not requested:
        raise UserError("--images is empty; give comma-separated image ids")
    out = out if out is not None else Path("reports") / round_name

    from pipeline_lib.inspection.round_report import inspect_round

    count = DEFAULT_RANDOM_IMAGES if random_count is None else random_count
    where, shown, notes = inspect_round(round_name, rev, requested, count, seed, out, export_labels, compare,
                                        params, prepared, outputs, repo, echo=typer.echo)
    for note in notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{round_name} ({where}): {shown} images → {out / 'index.html'}")


if __name__ == "__main__":
    run_standalone(inspect)
