"""check: every value of params.yaml, checked before `dvc repro` builds its graph (not a DVC stage)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def check(params: Path = typer.Option(Path("params.yaml"), help="Parameter file to check.")) -> None:
    """Check params.yaml as every stage will read it; one `error:` line for the first bad value.

    `./run.sh pipeline` runs it before `dvc repro`; run it yourself before a plain `dvc repro`, whose own
    messages for a missing teacher or an empty `rounds` name DVC's paths and templates, not the key."""
    from pipeline_lib.check import check_params
    from pipeline_lib.params import Params

    rounds = check_params(Params.load(params))
    typer.echo(f"{params}: valid; rounds {', '.join(rounds)}")


if __name__ == "__main__":
    run_standalone(check)
