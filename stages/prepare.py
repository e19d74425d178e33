"""prepare: write the prepared dataset (split lists, class metadata, labelled class distribution)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def prepare(
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads data.* and synthetic.*)."),
    out: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory to write."),
) -> None:
    """Prepare the dataset named by data.dataset: split it and record its class distribution."""
    from pipeline_lib.data.prepare import prepare_dataset
    from pipeline_lib.params import Params
    from pipeline_lib.settings import DataSettings

    settings = DataSettings.from_params(Params.load(params))
    prepare_dataset(settings, out)
    typer.echo(f"prepared {settings.dataset} dataset in {out}")


if __name__ == "__main__":
    run_standalone(prepare)
