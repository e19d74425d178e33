"""check: every value of params.yaml, checked before any other stage runs (the first stage of dvc.yaml, and run by
`./run.sh pipeline` before `dvc repro` builds its graph)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run_standalone


def check(params: Path = typer.Option(Path("params.yaml"), help="Parameter file to check."),
          out: Path | None = typer.Option(None, help="Write this file when the parameters are valid (the stage's "
                                          "output; the same text for every valid file).")) -> None:
    """Check params.yaml as every stage will read it; one `error:` line for the first bad value.

    `./run.sh pipeline` runs it before `dvc repro`; run it yourself before a plain `dvc repro`, whose own
    messages for a missing teacher or an empty `rounds` name DVC's paths and templates, not the key."""
    from pipeline_lib.atomic import write_text
    from pipeline_lib.check import check_params
    from pipeline_lib.params import Params

    rounds = check_params(Params.load(params))
    if out is not None:
        write_text(out, "every value of the parameter file checked by `dars check`\n")
    typer.echo(f"{params}: valid; rounds {', '.join(rounds)}")


if __name__ == "__main__":
    run_standalone(check)
