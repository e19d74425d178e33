"""pseudo-label: thresholds from one streaming pass over the logits store, pseudo labels from a second."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def pseudo_label(
    round_name: str = typer.Option(..., "--round", help="The round (r1, r2…) whose pseudo labels to make."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads pseudo_label.*, "
                                "rounds.<round>.labeling_ratio and .teacher)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Write outputs/<round>/pseudo_labels.zarr, pseudo_label_stats.json and class_distribution.csv."""
    from pipeline_lib.settings import Params, PseudoLabelSettings, self_training_round

    p = Params.load(params)
    settings, teacher = PseudoLabelSettings.from_params(p, round_name), self_training_round(p, round_name).teacher

    from pipeline_lib.pseudo_label.round import pseudo_label_round

    stats = pseudo_label_round(round_name, teacher, settings, prepared, outputs, report=typer.echo)
    typer.echo(f"{round_name}: {settings.method} labelled {stats['fraction_labeled']:.3f} of pixels, "
               f"KL(labelled‖pseudo) = {stats['kl_divergence']:.4f} → {outputs / round_name / 'pseudo_labels.zarr'}")


if __name__ == "__main__":
    run_standalone(pseudo_label)
