"""The ``dars`` command: one sub-command per pipeline step (each is also a DVC stage)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from . import reports_user_errors
from .ablation import app as ablation_app
from .check import check
from .compare import compare
from .confidence import confidence
from .evaluate import evaluate
from .infer import infer
from .inspect import inspect
from .predict import predict
from .prepare import prepare
from .pseudo_label import pseudo_label
from .train import train

app = typer.Typer(
    name="dars",
    help="DARS semi-supervised segmentation as a DVC pipeline. `dvc repro` runs the stages below in order "
         "(prepare → train r0 → evaluate r0 → for each round: infer → confidence → pseudo-label → train → "
         "evaluate); run one by hand with the same arguments dvc.yaml gives it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs more than the rest of the start-up
)

for name, command in (("check", check), ("prepare", prepare), ("train", train), ("evaluate", evaluate),
                      ("infer", infer), ("confidence", confidence),
                      ("pseudo-label", pseudo_label), ("inspect", inspect), ("compare", compare),
                      ("predict", predict)):
    app.command(name)(reports_user_errors(command))


app.add_typer(ablation_app, name="ablation")


@app.command("models")
def models() -> None:
    """List the model architectures model.arch accepts, each with what it is."""
    from pipeline_lib.models.build import ARCHITECTURES, DESCRIPTIONS

    width = max(map(len, ARCHITECTURES))
    for arch in ARCHITECTURES:
        typer.echo(f"{arch:<{width}}  {DESCRIPTIONS[arch]}")


def run_the_checkouts_own_code() -> None:
    """Re-execute as ``python -m stages.cli`` when the working directory is another checkout of this project than
    the one these modules come from. An editable install (``./run.sh``) imports them from the repository it was
    installed from, whatever the directory: a stage that DVC runs in a clone or in its experiments' temporary
    workspace would run that repository's code as it is now, while DVC hashes the checkout's own files, and
    its run cache would keep outputs under code that did not make them."""
    here = Path.cwd()
    own = here / "stages" / "cli.py"
    if (own.is_file() and (here / "pipeline_lib" / "__init__.py").is_file()
            and own.resolve() != Path(__file__).resolve()):
        os.execv(sys.executable, [sys.executable, "-m", "stages.cli", *sys.argv[1:]])


def main() -> None:
    run_the_checkouts_own_code()
    app(prog_name="dars")


if __name__ == "__main__":
    app(prog_name="dars")
